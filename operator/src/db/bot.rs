//! `bot_agents`: the row and the digests of its tokens.

use super::{Applied, audit, k8s_ref};
use crate::plan::bot::BotRow;
use crate::plan::{K8sRef, Observed, RowAction, plan_row};
use serde_json::json;
use sqlx::{PgConnection, Row};
use uuid::Uuid;

pub async fn find_by_ref(conn: &mut PgConnection, me: &K8sRef) -> Result<Option<Observed<BotRow>>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT id, organization_id, workspace_id, display_name, scopes, enabled, token_hash, previous_token_hash,
                previous_token_expires_at, k8s_namespace, k8s_name
           FROM bot_agents WHERE k8s_namespace = $1 AND k8s_name = $2",
    )
    .bind(&me.namespace)
    .bind(&me.name)
    .fetch_optional(conn)
    .await?;
    let Some(row) = row else { return Ok(None) };
    Ok(Some(Observed {
        id: row.try_get("id")?,
        managed_by: k8s_ref(row.try_get("k8s_namespace")?, row.try_get("k8s_name")?),
        row: BotRow {
            organization_id: row.try_get("organization_id")?,
            workspace_id: row.try_get("workspace_id")?,
            display_name: row.try_get("display_name")?,
            scopes: row.try_get("scopes")?,
            enabled: row.try_get("enabled")?,
            token_hash: row.try_get("token_hash")?,
            previous_token_hash: row.try_get("previous_token_hash")?,
            previous_token_expires_at: row.try_get("previous_token_expires_at")?,
        },
    }))
}

/// Brings the bot declared by `me` to `desired`.
pub async fn apply(conn: &mut PgConnection, desired: &BotRow, me: &K8sRef) -> Result<Applied, sqlx::Error> {
    let ours = find_by_ref(conn, me).await?;
    let action = plan_row(desired, me, ours.as_ref(), None);
    let created = match &action {
        RowAction::Create => {
            let id: Uuid = sqlx::query_scalar(
                "INSERT INTO bot_agents (organization_id, workspace_id, display_name, scopes, enabled, token_hash,
                     previous_token_hash, previous_token_expires_at, k8s_namespace, k8s_name)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING id",
            )
            .bind(desired.organization_id)
            .bind(desired.workspace_id)
            .bind(&desired.display_name)
            .bind(&desired.scopes)
            .bind(desired.enabled)
            .bind(&desired.token_hash)
            .bind(&desired.previous_token_hash)
            .bind(desired.previous_token_expires_at)
            .bind(&me.namespace)
            .bind(&me.name)
            .fetch_one(&mut *conn)
            .await?;
            let details = json!({"k8s_namespace": me.namespace, "k8s_name": me.name});
            audit::record(conn, Some(desired.organization_id), "bot.provisioned", "bot_agent", id, details).await?;
            Some(id)
        }
        RowAction::Adopt { id, changed } | RowAction::Update { id, changed } => {
            let token_changed = changed.contains(&"token_hash");
            sqlx::query(
                "UPDATE bot_agents SET organization_id = $2, workspace_id = $3, display_name = $4, scopes = $5,
                     enabled = $6, token_hash = $7, previous_token_hash = $8, previous_token_expires_at = $9,
                     token_rotated_at = CASE WHEN $10 THEN now() ELSE token_rotated_at END
                 WHERE id = $1",
            )
            .bind(id)
            .bind(desired.organization_id)
            .bind(desired.workspace_id)
            .bind(&desired.display_name)
            .bind(&desired.scopes)
            .bind(desired.enabled)
            .bind(&desired.token_hash)
            .bind(&desired.previous_token_hash)
            .bind(desired.previous_token_expires_at)
            .bind(token_changed)
            .execute(&mut *conn)
            .await?;
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

/// Deletes the bot (its tokens stop working at once). Returns its id if it existed.
pub async fn delete(conn: &mut PgConnection, me: &K8sRef) -> Result<Option<Uuid>, sqlx::Error> {
    let found: Option<(Uuid, Uuid)> = sqlx::query_as(
        "DELETE FROM bot_agents WHERE k8s_namespace = $1 AND k8s_name = $2 RETURNING id, organization_id",
    )
    .bind(&me.namespace)
    .bind(&me.name)
    .fetch_optional(&mut *conn)
    .await?;
    if let Some((id, organization_id)) = found {
        let details = json!({"k8s_namespace": me.namespace, "k8s_name": me.name});
        audit::record(conn, Some(organization_id), "bot.deleted", "bot_agent", id, details).await?;
    }
    Ok(found.map(|(id, _)| id))
}
