//! `webhook_endpoints`: the row, its sealed signing secret, and the delivery state the data
//! plane records.

use super::{Applied, audit, k8s_ref};
use crate::plan::webhook::WebhookRow;
use crate::plan::{K8sRef, Observed, RowAction, plan_row};
use chrono::{DateTime, Utc};
use conclave_resources::seal;
use serde_json::json;
use sqlx::{PgConnection, Row};
use uuid::Uuid;

/// What the data plane records about deliveries.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Deliveries {
    pub last_delivery_at: Option<DateTime<Utc>>,
    pub last_delivery_status: Option<String>,
    pub last_delivery_error: Option<String>,
    pub consecutive_failures: i32,
}

/// Our row, with the signing secret opened with `key` (`None` when it does not open).
pub async fn find_by_ref(
    conn: &mut PgConnection,
    me: &K8sRef,
    key: &[u8],
) -> Result<Option<(Observed<WebhookRow>, Deliveries)>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT id, organization_id, workspace_id, url, event_types, enabled, signing_secret_sealed,
                last_delivery_at, last_delivery_status, last_delivery_error, consecutive_failures,
                k8s_namespace, k8s_name
           FROM webhook_endpoints WHERE k8s_namespace = $1 AND k8s_name = $2",
    )
    .bind(&me.namespace)
    .bind(&me.name)
    .fetch_optional(conn)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let id: Uuid = row.try_get("id")?;
    let sealed: Vec<u8> = row.try_get("signing_secret_sealed")?;
    let secret = seal::open(key, &seal::webhook_context(id), &sealed).ok().and_then(|s| String::from_utf8(s).ok());
    let observed = Observed {
        id,
        managed_by: k8s_ref(row.try_get("k8s_namespace")?, row.try_get("k8s_name")?),
        row: WebhookRow {
            organization_id: row.try_get("organization_id")?,
            workspace_id: row.try_get("workspace_id")?,
            url: row.try_get("url")?,
            event_types: row.try_get("event_types")?,
            enabled: row.try_get("enabled")?,
            signing_secret: secret,
        },
    };
    let deliveries = Deliveries {
        last_delivery_at: row.try_get("last_delivery_at")?,
        last_delivery_status: row.try_get("last_delivery_status")?,
        last_delivery_error: row.try_get("last_delivery_error")?,
        consecutive_failures: row.try_get("consecutive_failures")?,
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
    let secret = desired.signing_secret.as_deref().unwrap_or_default().as_bytes();
    let created = match &action {
        RowAction::Create => {
            // The id is chosen here because the sealed secret is bound to it.
            let id = Uuid::now_v7();
            let sealed = seal::seal(key, &seal::webhook_context(id), secret)?;
            sqlx::query(
                "INSERT INTO webhook_endpoints (id, organization_id, workspace_id, url, event_types,
                     signing_secret_sealed, enabled, k8s_namespace, k8s_name)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            )
            .bind(id)
            .bind(desired.organization_id)
            .bind(desired.workspace_id)
            .bind(&desired.url)
            .bind(&desired.event_types)
            .bind(sealed)
            .bind(desired.enabled)
            .bind(&me.namespace)
            .bind(&me.name)
            .execute(&mut *conn)
            .await?;
            let details = json!({"k8s_namespace": me.namespace, "k8s_name": me.name, "url": desired.url});
            audit::record(conn, Some(desired.organization_id), "webhook.provisioned", "webhook_endpoint", id, details)
                .await?;
            Some(id)
        }
        RowAction::Adopt { id, changed } | RowAction::Update { id, changed } => {
            let sealed = seal::seal(key, &seal::webhook_context(id), secret)?;
            sqlx::query(
                "UPDATE webhook_endpoints SET organization_id = $2, workspace_id = $3, url = $4, event_types = $5,
                     signing_secret_sealed = $6, enabled = $7
                 WHERE id = $1",
            )
            .bind(id)
            .bind(desired.organization_id)
            .bind(desired.workspace_id)
            .bind(&desired.url)
            .bind(&desired.event_types)
            .bind(sealed)
            .bind(desired.enabled)
            .execute(&mut *conn)
            .await?;
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

/// Deletes the endpoint (deliveries stop at once). Returns its id if it existed.
pub async fn delete(conn: &mut PgConnection, me: &K8sRef) -> Result<Option<Uuid>, sqlx::Error> {
    let found: Option<(Uuid, Uuid)> = sqlx::query_as(
        "DELETE FROM webhook_endpoints WHERE k8s_namespace = $1 AND k8s_name = $2 RETURNING id, organization_id",
    )
    .bind(&me.namespace)
    .bind(&me.name)
    .fetch_optional(&mut *conn)
    .await?;
    if let Some((id, organization_id)) = found {
        let details = json!({"k8s_namespace": me.namespace, "k8s_name": me.name});
        audit::record(conn, Some(organization_id), "webhook.deleted", "webhook_endpoint", id, details).await?;
    }
    Ok(found.map(|(id, _)| id))
}
