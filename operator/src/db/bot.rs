//! `bot_agents`: the row and the digests of its tokens.

use super::{Applied, audit, k8s_ref};
use crate::plan::bot::BotRow;
use crate::plan::{K8sRef, Observed, RowAction, plan_row};
use serde_json::json;
use sqlx::PgConnection;
use uuid::Uuid;

pub async fn find_by_ref(conn: &mut PgConnection, me: &K8sRef) -> Result<Option<Observed<BotRow>>, sqlx::Error> {
    let found = sqlx::query!(
        r#"SELECT id, organization_id, workspace_id, display_name, scopes, enabled,
                  token_hash::bytea AS "token_hash!", previous_token_hash::bytea AS "previous_token_hash?",
                  previous_token_expires_at, k8s_namespace, k8s_name
             FROM bot_agents WHERE k8s_namespace = $1 AND k8s_name = $2"#,
        me.namespace,
        me.name
    )
    .fetch_optional(conn)
    .await?;
    Ok(found.map(|r| Observed {
        id: r.id,
        managed_by: k8s_ref(r.k8s_namespace, r.k8s_name),
        row: BotRow {
            organization_id: r.organization_id,
            workspace_id: r.workspace_id,
            display_name: r.display_name,
            scopes: r.scopes,
            enabled: r.enabled,
            token_hash: r.token_hash,
            previous_token_hash: r.previous_token_hash,
            previous_token_expires_at: r.previous_token_expires_at,
        },
    }))
}

/// Brings the bot declared by `me` to `desired`.
pub async fn apply(conn: &mut PgConnection, desired: &BotRow, me: &K8sRef) -> Result<Applied, sqlx::Error> {
    let ours = find_by_ref(conn, me).await?;
    let action = plan_row(desired, me, ours.as_ref(), None);
    let created = match &action {
        RowAction::Create => {
            let id = write(conn, None, desired, me, false).await?;
            let details = json!({"k8s_namespace": me.namespace, "k8s_name": me.name});
            audit::record(conn, Some(desired.organization_id), "bot.provisioned", "bot_agent", id, details).await?;
            Some(id)
        }
        RowAction::Adopt { id, changed } | RowAction::Update { id, changed } => {
            let token_changed = changed.contains(&"token_hash");
            write(conn, Some(*id), desired, me, token_changed).await?;
            if token_changed {
                audit::record(conn, Some(desired.organization_id), "bot.token_rotated", "bot_agent", *id, json!({}))
                    .await?;
            }
            None
        }
        RowAction::UpToDate { .. } | RowAction::Conflict { .. } => None,
    };
    Ok(Applied::from_action(&action, created))
}

/// Writes the declared row: a new one managed by `me` (`id` is `None`), or over row `id`, which
/// keeps its Kubernetes reference and records the rotation when `token_changed`. One statement
/// for both, so the columns are listed once. Returns the row's id.
async fn write(
    conn: &mut PgConnection,
    id: Option<Uuid>,
    desired: &BotRow,
    me: &K8sRef,
    token_changed: bool,
) -> Result<Uuid, sqlx::Error> {
    sqlx::query_scalar!(
        "INSERT INTO bot_agents (id, organization_id, workspace_id, display_name, scopes, enabled, token_hash,
             previous_token_hash, previous_token_expires_at, k8s_namespace, k8s_name)
         VALUES (coalesce($1, conclave_uuid_v7()), $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
         ON CONFLICT (id) DO UPDATE SET organization_id = EXCLUDED.organization_id,
             workspace_id = EXCLUDED.workspace_id, display_name = EXCLUDED.display_name, scopes = EXCLUDED.scopes,
             enabled = EXCLUDED.enabled, token_hash = EXCLUDED.token_hash,
             previous_token_hash = EXCLUDED.previous_token_hash,
             previous_token_expires_at = EXCLUDED.previous_token_expires_at,
             token_rotated_at = CASE WHEN $12 THEN now() ELSE bot_agents.token_rotated_at END
         RETURNING id",
        id,
        desired.organization_id,
        desired.workspace_id,
        desired.display_name,
        &desired.scopes,
        desired.enabled,
        desired.token_hash,
        desired.previous_token_hash,
        desired.previous_token_expires_at,
        me.namespace,
        me.name,
        token_changed
    )
    .fetch_one(conn)
    .await
}

/// Deletes the bot (its tokens stop working at once). Returns its id if it existed.
pub async fn delete(conn: &mut PgConnection, me: &K8sRef) -> Result<Option<Uuid>, sqlx::Error> {
    let found = sqlx::query!(
        "DELETE FROM bot_agents WHERE k8s_namespace = $1 AND k8s_name = $2 RETURNING id, organization_id",
        me.namespace,
        me.name
    )
    .fetch_optional(&mut *conn)
    .await?;
    let Some(found) = found else { return Ok(None) };
    let details = json!({"k8s_namespace": me.namespace, "k8s_name": me.name});
    audit::record(conn, Some(found.organization_id), "bot.deleted", "bot_agent", found.id, details).await?;
    Ok(Some(found.id))
}
