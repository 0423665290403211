//! A BotAgent in PostgreSQL: [`provision`] and [`cleanup`].

use super::{Note, Outcome, SyncError, applied_note, violation_or};
use crate::conditions::{Readiness, reason};
use crate::db::{self, Applied};
use crate::plan::rotation::Rotating;
use crate::plan::{self, K8sRef};
use conclave_resources::bot::BotAgentStatus;
use conclave_resources::{BotAgent, Workspace};
use kube::ResourceExt;
use sqlx::PgConnection;

pub fn k8s_ref(bot: &BotAgent) -> K8sRef {
    K8sRef::new(bot.namespace().unwrap_or_default(), bot.name_any())
}

/// Mirrors the bot and the digests of the tokens in its Secret (`token`, already generated or
/// rotated by the controller) into PostgreSQL.
pub async fn provision(
    conn: &mut PgConnection,
    bot: &BotAgent,
    workspace: Option<&Workspace>,
    token: &Rotating,
) -> Result<Outcome<BotAgentStatus>, SyncError> {
    if let Err(invalid) = bot.spec.validate() {
        return Ok(Outcome::blocked(reason::INVALID_SPEC, invalid.0));
    }
    let me = k8s_ref(bot);
    let ws_name = &bot.spec.workspace_ref.name;
    if workspace.is_none() {
        return Ok(Outcome::blocked(
            reason::WORKSPACE_NOT_FOUND,
            format!("Workspace {ws_name} does not exist in namespace {}", me.namespace),
        ));
    }
    let Some((organization_id, ws)) = db::workspace::find_by_ref(conn, &K8sRef::new(&me.namespace, ws_name)).await?
    else {
        return Ok(Outcome::blocked(
            reason::WORKSPACE_NOT_READY,
            format!("Workspace {ws_name} is not provisioned yet"),
        ));
    };
    let desired = match plan::bot::desired(bot, organization_id, ws.id, token) {
        Ok(desired) => desired,
        Err(invalid) => return Ok(Outcome::blocked(reason::INVALID_SPEC, invalid.0)),
    };
    let applied = match db::bot::apply(conn, &desired, &me).await {
        Ok(applied) => applied,
        Err(err) => return violation_or(err),
    };
    let id = match &applied {
        Applied::Conflict(message) => return Ok(Outcome::blocked(reason::CONFLICT, message.clone())),
        other => other.id().unwrap_or_default(),
    };
    let notes = applied_note("bot", &applied).into_iter().collect();
    let connected = connected(conn, id).await?;
    Ok(Outcome {
        readiness: Readiness::ready(reason::PROVISIONED, format!("bot {id} is provisioned")),
        status: BotAgentStatus {
            bot_id: Some(id.to_string()),
            secret_name: Some(plan::bot::secret_name(&me.name)),
            token_rotated_at: token.issued_at.map(|t| t.to_rfc3339()),
            previous_token_expires_at: token.previous_expires_at.map(|t| t.to_rfc3339()),
            connected: Some(connected),
            ..Default::default()
        },
        notes,
    })
}

/// Whether the bot holds a live session: one of its account's, not ended, opened with its
/// current token or with the previous one while the overlap lasts (what the data plane accepts).
pub async fn connected(conn: &mut PgConnection, bot_id: uuid::Uuid) -> Result<bool, SyncError> {
    Ok(sqlx::query_scalar!(
        r#"SELECT EXISTS (
             SELECT 1 FROM bot_agents b
               JOIN user_accounts u ON u.bot_id = b.id
               JOIN session_tokens s ON s.user_id = u.id
               JOIN devices d ON d.id = s.device_id
              WHERE b.id = $1 AND b.enabled AND s.revoked_at IS NULL AND s.expires_at > now()
                AND d.revoked_at IS NULL
                AND (s.bot_token_hash = b.token_hash
                     OR (s.bot_token_hash = b.previous_token_hash AND b.previous_token_expires_at > now()))
           ) AS "connected!""#,
        bot_id
    )
    .fetch_one(conn)
    .await?)
}

/// Deletes the bot's row.
pub async fn cleanup(conn: &mut PgConnection, bot: &BotAgent) -> Result<Note, SyncError> {
    Ok(match db::bot::delete(conn, &k8s_ref(bot)).await? {
        Some(id) => Note::normal("Deleted", format!("bot {id} deleted; its tokens no longer work")),
        None => Note::normal("Deleted", "no bot row to delete"),
    })
}
