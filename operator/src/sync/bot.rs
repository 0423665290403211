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
    Ok(Outcome {
        readiness: Readiness::ready(reason::PROVISIONED, format!("bot {id} is provisioned")),
        status: BotAgentStatus {
            bot_id: Some(id.to_string()),
            secret_name: Some(plan::bot::secret_name(&me.name)),
            token_rotated_at: token.issued_at.map(|t| t.to_rfc3339()),
            previous_token_expires_at: token.previous_expires_at.map(|t| t.to_rfc3339()),
            ..Default::default()
        },
        notes,
    })
}

/// Deletes the bot's row.
pub async fn cleanup(conn: &mut PgConnection, bot: &BotAgent) -> Result<Note, SyncError> {
    Ok(match db::bot::delete(conn, &k8s_ref(bot)).await? {
        Some(id) => Note::normal("Deleted", format!("bot {id} deleted; its tokens no longer work")),
        None => Note::normal("Deleted", "no bot row to delete"),
    })
}
