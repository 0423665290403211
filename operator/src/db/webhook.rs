//! `webhook_endpoints`: the row, its sealed signing secret, and the delivery state the data
//! plane records.

use super::{Applied, audit, k8s_ref};
use crate::plan::webhook::WebhookRow;
use crate::plan::{K8sRef, Observed, RowAction, plan_row};
use chrono::{DateTime, Utc};
use conclave_credentials::seal;
use serde_json::json;
use sqlx::PgConnection;
use uuid::Uuid;

/// What the data plane records about deliveries.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Deliveries {
    pub last_delivery_at: Option<DateTime<Utc>>,
    pub last_delivery_status: Option<String>,
    pub last_delivery_error: Option<String>,
    pub consecutive_failures: i32,
    /// Set when the data plane disabled the endpoint after its failure budget, with why.
    pub disabled_reason: Option<String>,
    pub disabled_generation: Option<i64>,
    pub reenable_handled: Option<String>,
}

/// Our row, with the signing secret opened with `key` (`None` when it does not open).
pub async fn find_by_ref(
    conn: &mut PgConnection,
    me: &K8sRef,
    key: &[u8],
) -> Result<Option<(Observed<WebhookRow>, Deliveries)>, sqlx::Error> {
    let found = sqlx::query!(
        "SELECT id, organization_id, workspace_id, url, event_types, enabled, signing_secret_sealed,
                previous_signing_secret_sealed, previous_secret_expires_at, last_delivery_at,
                disabled_reason, disabled_generation, reenable_handled, last_delivery_status, last_delivery_error, consecutive_failures,
                k8s_namespace, k8s_name
           FROM webhook_endpoints WHERE k8s_namespace = $1 AND k8s_name = $2",
        me.namespace,
        me.name
    )
    .fetch_optional(conn)
    .await?;
    let Some(r) = found else { return Ok(None) };
    let open = |sealed: &[u8]| {
        seal::open(key, &seal::webhook_context(r.id), sealed).ok().and_then(|s| String::from_utf8(s).ok())
    };
    let secret = open(&r.signing_secret_sealed);
    let previous_secret = r.previous_signing_secret_sealed.as_deref().and_then(open);
    let observed = Observed {
        id: r.id,
        managed_by: k8s_ref(r.k8s_namespace, r.k8s_name),
        row: WebhookRow {
            organization_id: r.organization_id,
            workspace_id: r.workspace_id,
            url: r.url,
            event_types: r.event_types,
            enabled: r.enabled,
            signing_secret: secret,
            previous_signing_secret: previous_secret,
            previous_secret_expires_at: r.previous_secret_expires_at,
        },
    };
    let deliveries = Deliveries {
        last_delivery_at: r.last_delivery_at,
        last_delivery_status: r.last_delivery_status,
        last_delivery_error: r.last_delivery_error,
        consecutive_failures: r.consecutive_failures,
        disabled_reason: r.disabled_reason,
        disabled_generation: r.disabled_generation,
        reenable_handled: r.reenable_handled,
    };
    Ok(Some((observed, deliveries)))
}

/// Brings the endpoint declared by `me` to `desired`, sealing its secret with `key`.
pub async fn apply(
    conn: &mut PgConnection,
    desired: &WebhookRow,
    me: &K8sRef,
    key: &[u8],
) -> Result<(Applied, Deliveries), anyhow::Error> {
    let ours = find_by_ref(conn, me, key).await?;
    let action = plan_row(desired, me, ours.as_ref().map(|(o, _)| o), None);
    let sealed = |id: Uuid| -> Result<Sealed, anyhow::Error> {
        let context = seal::webhook_context(id);
        let current = desired.signing_secret.as_deref().unwrap_or_default().as_bytes();
        let previous = desired.previous_signing_secret.as_deref().map(|p| seal::seal(key, &context, p.as_bytes()));
        Ok(Sealed { current: seal::seal(key, &context, current)?, previous: previous.transpose()? })
    };
    let created = match &action {
        RowAction::Create => {
            // The id is chosen here because the sealed secret is bound to it.
            let id = Uuid::now_v7();
            write(conn, id, desired, me, &sealed(id)?).await?;
            let details = json!({"k8s_namespace": me.namespace, "k8s_name": me.name, "url": desired.url});
            audit::record(conn, Some(desired.organization_id), "webhook.provisioned", "webhook_endpoint", id, details)
                .await?;
            Some(id)
        }
        RowAction::Adopt { id, changed } | RowAction::Update { id, changed } => {
            write(conn, *id, desired, me, &sealed(*id)?).await?;
            if changed.contains(&"signing_secret_sealed") {
                audit::record(
                    conn,
                    Some(desired.organization_id),
                    "webhook.secret_changed",
                    "webhook_endpoint",
                    *id,
                    json!({}),
                )
                .await?;
            }
            None
        }
        RowAction::UpToDate { .. } | RowAction::Conflict { .. } => None,
    };
    let deliveries = ours.map(|(_, d)| d).unwrap_or_default();
    Ok((Applied::from_action(&action, created), deliveries))
}

/// The signing secrets sealed for one row.
struct Sealed {
    current: Vec<u8>,
    previous: Option<Vec<u8>>,
}

/// Writes the declared row with its `sealed` secrets: a new one managed by `me`, or over row
/// `id`, which keeps its Kubernetes reference. One statement for both, so the columns are listed
/// once.
async fn write(
    conn: &mut PgConnection,
    id: Uuid,
    desired: &WebhookRow,
    me: &K8sRef,
    sealed: &Sealed,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "INSERT INTO webhook_endpoints (id, organization_id, workspace_id, url, event_types,
             signing_secret_sealed, previous_signing_secret_sealed, previous_secret_expires_at, enabled,
             k8s_namespace, k8s_name)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
         ON CONFLICT (id) DO UPDATE SET organization_id = EXCLUDED.organization_id,
             workspace_id = EXCLUDED.workspace_id, url = EXCLUDED.url, event_types = EXCLUDED.event_types,
             signing_secret_sealed = EXCLUDED.signing_secret_sealed,
             previous_signing_secret_sealed = EXCLUDED.previous_signing_secret_sealed,
             previous_secret_expires_at = EXCLUDED.previous_secret_expires_at, enabled = EXCLUDED.enabled",
        id,
        desired.organization_id,
        desired.workspace_id,
        desired.url,
        &desired.event_types,
        &sealed.current,
        sealed.previous.as_deref(),
        desired.previous_secret_expires_at.filter(|_| sealed.previous.is_some()),
        desired.enabled,
        me.namespace,
        me.name
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Remembers the resource's generation when the endpoint was first seen disabled.
pub async fn remember_disabled_generation(
    conn: &mut PgConnection,
    id: Uuid,
    generation: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query!("UPDATE webhook_endpoints SET disabled_generation = $2 WHERE id = $1", id, generation)
        .execute(conn)
        .await?;
    Ok(())
}

/// Enables a disabled endpoint again, its failure count reset, remembering the re-enable request
/// it answered.
pub async fn reenable(
    conn: &mut PgConnection,
    organization_id: Uuid,
    id: Uuid,
    handled: Option<&str>,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE webhook_endpoints SET disabled_at = NULL, disabled_reason = NULL, disabled_generation = NULL,
                consecutive_failures = 0, failing_since = NULL, reenable_handled = $2
          WHERE id = $1",
        id,
        handled
    )
    .execute(&mut *conn)
    .await?;
    audit::record(conn, Some(organization_id), "webhook.reenabled", "webhook_endpoint", id, json!({})).await?;
    Ok(())
}

/// Deletes the endpoint (deliveries stop at once). Returns its id if it existed.
pub async fn delete(conn: &mut PgConnection, me: &K8sRef) -> Result<Option<Uuid>, sqlx::Error> {
    let found = sqlx::query!(
        "DELETE FROM webhook_endpoints WHERE k8s_namespace = $1 AND k8s_name = $2 RETURNING id, organization_id",
        me.namespace,
        me.name
    )
    .fetch_optional(&mut *conn)
    .await?;
    let Some(found) = found else { return Ok(None) };
    let details = json!({"k8s_namespace": me.namespace, "k8s_name": me.name});
    audit::record(conn, Some(found.organization_id), "webhook.deleted", "webhook_endpoint", found.id, details).await?;
    Ok(Some(found.id))
}
