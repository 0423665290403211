//! Mentions, declared by the sender: the server cannot read a message, so whom it mentions is
//! told beside it, once, by the device that sent it (docs/notifications.md says what that
//! reveals). Each mentioned member must be in the conversation; each gets a `message.mentioned`
//! push row, which passes a `mentions` level.
//!
//! Declared after the send rather than inside it, so the send path stays as it is: a member at
//! level `mentions` gets the mention's push (the message's own push is skipped by their level),
//! a member at `all` gets one notification per conversation either way (both carry the same
//! `Topic`, and the message's push is skipped once the mention is recorded).

use crate::AppState;
use crate::context::session::AuthUser;
use crate::context::{member_tx, seat};
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::extract::{ApiJson, ApiPath};
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

/// The most members one message may mention (a larger audience is a channel-wide message).
pub const MAX_MENTIONS: usize = 50;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(declare))
}

/// `POST .../messages/{message_id}/mentions`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct DeclareMentions {
    /// Members of the conversation other than the sender, at most 50.
    #[schema(max_items = 50)]
    user_ids: Vec<Uuid>,
}

#[utoipa::path(
    post,
    path = "/v1/organizations/{organization_id}/conversations/{conversation_id}/messages/{message_id}/mentions",
    tag = "notifications",
    operation_id = "declare_mentions",
    request_body = DeclareMentions,
    responses(
        (status = 204, description = "Recorded; each mentioned member's devices get a mention push"),
        (status = 403, description = "`not_the_sender`", body = crate::error::ErrorBody),
        (status = 409, description = "`duplicate`: mentions were already declared for this message", body = crate::error::ErrorBody),
        (status = 422, description = "`invalid_mention`", body = crate::error::ErrorBody),
    )
)]
async fn declare(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiPath((organization_id, conversation_id, message_id)): ApiPath<(Uuid, Uuid, Uuid)>,
    ApiJson(body): ApiJson<DeclareMentions>,
) -> ApiResult<StatusCode> {
    let mut mentioned = body.user_ids;
    mentioned.sort();
    mentioned.dedup();
    if mentioned.is_empty() || mentioned.len() > MAX_MENTIONS {
        return Err(ApiError::validation("user_ids", "give 1 to 50 members"));
    }
    let (mut tx, _) = member_tx(&state, auth, organization_id).await?;
    seat(&mut tx, auth.user_id, conversation_id, false).await?;
    let message = sqlx::query!(
        "SELECT sender_user_id, seq, deleted_at FROM messages WHERE id = $1 AND conversation_id = $2",
        message_id,
        conversation_id
    )
    .fetch_optional(&mut *tx)
    .await?
    .ok_or_else(|| ApiError::not_found("message"))?;
    if message.sender_user_id != Some(auth.user_id) || message.deleted_at.is_some() {
        return Err(ApiError::new(ErrorCode::NotTheSender, "only the sender declares a message's mentions"));
    }
    let members = sqlx::query_scalar!(
        r#"SELECT user_id AS "user_id!" FROM conversation_members
            WHERE conversation_id = $1 AND user_id = ANY($2) AND user_id <> $3"#,
        conversation_id,
        &mentioned,
        auth.user_id
    )
    .fetch_all(&mut *tx)
    .await?;
    if members.len() != mentioned.len() {
        return Err(ApiError::new(
            ErrorCode::InvalidMention,
            "every mentioned user must be a member of the conversation other than the sender",
        ));
    }
    let inserted = sqlx::query!(
        "INSERT INTO message_mentions (organization_id, message_id, mentioned_user_id)
         SELECT $1, $2, unnest($3::uuid[]) ON CONFLICT DO NOTHING",
        organization_id,
        message_id,
        &mentioned
    )
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if inserted == 0 {
        return Err(ApiError::new(ErrorCode::Duplicate, "mentions were already declared for this message"));
    }
    sqlx::query!(
        "INSERT INTO outbound_notifications (organization_id, channel, event_type, recipient_user_id, payload)
         SELECT DISTINCT $1::uuid, 'push', 'message.mentioned', m, jsonb_build_object(
                    'conversation_id', $2::uuid, 'message_id', $3::uuid, 'seq', $4::bigint)
           FROM unnest($5::uuid[]) AS m
          WHERE EXISTS (SELECT 1 FROM push_subscriptions p WHERE p.user_id = m)",
        organization_id,
        conversation_id,
        message_id,
        message.seq,
        &mentioned
    )
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}
