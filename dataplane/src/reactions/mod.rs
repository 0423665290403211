//! Encrypted reactions to messages: add, list, remove.
//!
//! The server never reads a reaction. It checks what it can: the caller is a member, the
//! message exists and is not deleted, the reaction is sealed under the current generation (the
//! same rule as messages, so a removed member's old key stops working), the sizes; and it keeps
//! one reaction per (message, user, value) through the client's keyed `value_tag`
//! (`docs/protocol-v2.md`, "Reactions"). A reaction is removed by its tag.

use crate::AppState;
use crate::context::member_tx;
use crate::context::seat;
use crate::context::session::AuthUser;
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::extract::{ApiJson, ApiPath};
use crate::realtime::{self, LiveEvent};
use axum::extract::State;
use axum::http::StatusCode;
use conclave_protocol::events::ServerFrame;
use conclave_protocol::limits::{AEAD_TAG_LEN, MAX_REACTION_CIPHERTEXT_LEN};
use conclave_protocol::rich::{AddReaction, Reaction};
use sqlx::PgConnection;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(add, list)).routes(routes!(remove))
}

struct Row {
    id: Uuid,
    message_id: Uuid,
    user_id: Uuid,
    key_generation: i32,
    nonce: Vec<u8>,
    ciphertext: Vec<u8>,
    value_tag: Vec<u8>,
    created_at: chrono::DateTime<chrono::Utc>,
}

impl Row {
    fn into_reaction(self, conversation_id: Uuid) -> ApiResult<Reaction> {
        Ok(Reaction {
            id: self.id,
            conversation_id,
            message_id: self.message_id,
            user_id: self.user_id,
            key_generation: self.key_generation,
            nonce: self.nonce.try_into().map_err(|_| ApiError::internal())?,
            ciphertext: self.ciphertext,
            value_tag: self.value_tag.try_into().map_err(|_| ApiError::internal())?,
            created_at: self.created_at,
        })
    }
}

/// The message must be in the conversation (404 otherwise) and, for new reactions, not deleted.
async fn live_message(conn: &mut PgConnection, conversation_id: Uuid, message_id: Uuid) -> ApiResult<bool> {
    let deleted = sqlx::query_scalar!(
        r#"SELECT deleted_at IS NOT NULL AS "deleted!" FROM messages WHERE conversation_id = $1 AND id = $2"#,
        conversation_id,
        message_id
    )
    .fetch_optional(conn)
    .await?
    .ok_or_else(|| ApiError::not_found("message"))?;
    Ok(!deleted)
}

fn check_size(ciphertext: &[u8]) -> ApiResult<()> {
    if ciphertext.len() > MAX_REACTION_CIPHERTEXT_LEN {
        return Err(ApiError::new(
            ErrorCode::ReactionTooLarge,
            format!("a reaction's ciphertext is at most {MAX_REACTION_CIPHERTEXT_LEN} bytes"),
        ));
    }
    if ciphertext.len() <= AEAD_TAG_LEN {
        return Err(ApiError::validation("ciphertext", "must hold a non-empty value and its AEAD tag"));
    }
    Ok(())
}

#[utoipa::path(
    post,
    path = "/v1/organizations/{organization_id}/conversations/{conversation_id}/messages/{message_id}/reactions",
    tag = "reactions",
    operation_id = "add_reaction",
    request_body = AddReaction,
    responses(
        (status = 201, description = "Stored and published", body = Reaction),
        (status = 409, description = "`reaction_exists` (same user, message and value), `message_deleted`, `rotation_required`, `stale_generation`, `unknown_generation`", body = crate::error::ErrorBody),
        (status = 413, description = "`reaction_too_large`", body = crate::error::ErrorBody),
    )
)]
#[tracing::instrument(skip_all, fields(%conversation_id, %message_id))]
async fn add(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiPath((organization_id, conversation_id, message_id)): ApiPath<(Uuid, Uuid, Uuid)>,
    ApiJson(body): ApiJson<AddReaction>,
) -> ApiResult<(StatusCode, axum::Json<Reaction>)> {
    check_size(&body.ciphertext)?;
    let (mut tx, _) = member_tx(&state, auth, organization_id).await?;
    // Locked like a send, so a reaction cannot slip in under a generation being superseded.
    let seat = seat(&mut tx, auth.user_id, conversation_id, true).await?;
    if !live_message(&mut tx, conversation_id, message_id).await? {
        return Err(ApiError::new(ErrorCode::MessageDeleted, "a deleted message cannot be reacted to"));
    }
    seat.check_generation(body.key_generation)?;
    let row = sqlx::query_as!(
        Row,
        "INSERT INTO message_reactions (organization_id, message_id, user_id, key_generation, nonce, ciphertext, value_tag)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT (message_id, user_id, value_tag) DO NOTHING
         RETURNING id, message_id, user_id, key_generation, nonce, ciphertext, value_tag, created_at",
        organization_id,
        message_id,
        auth.user_id,
        body.key_generation,
        &body.nonce[..],
        body.ciphertext,
        &body.value_tag[..]
    )
    .fetch_optional(&mut *tx)
    .await?
    .ok_or_else(|| ApiError::new(ErrorCode::ReactionExists, "you already reacted to this message with this value"))?;
    tx.commit().await?;
    let reaction = row.into_reaction(conversation_id)?;
    realtime::publish(
        &state,
        LiveEvent::frame(organization_id, conversation_id, ServerFrame::ReactionAdded { reaction: reaction.clone() }),
    )
    .await;
    Ok((StatusCode::CREATED, axum::Json(reaction)))
}

#[utoipa::path(
    get,
    path = "/v1/organizations/{organization_id}/conversations/{conversation_id}/messages/{message_id}/reactions",
    tag = "reactions",
    operation_id = "list_reactions",
    responses((status = 200, description = "The message's reactions, oldest first", body = Vec<Reaction>))
)]
async fn list(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiPath((organization_id, conversation_id, message_id)): ApiPath<(Uuid, Uuid, Uuid)>,
) -> ApiResult<axum::Json<Vec<Reaction>>> {
    let (mut tx, _) = member_tx(&state, auth, organization_id).await?;
    seat(&mut tx, auth.user_id, conversation_id, false).await?;
    live_message(&mut tx, conversation_id, message_id).await?;
    let rows = sqlx::query_as!(
        Row,
        "SELECT id, message_id, user_id, key_generation, nonce, ciphertext, value_tag, created_at
           FROM message_reactions WHERE message_id = $1 ORDER BY created_at, id",
        message_id
    )
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    let reactions = rows.into_iter().map(|r| r.into_reaction(conversation_id)).collect::<ApiResult<Vec<_>>>()?;
    Ok(axum::Json(reactions))
}

#[utoipa::path(
    delete,
    path = "/v1/organizations/{organization_id}/conversations/{conversation_id}/messages/{message_id}/reactions/{value_tag}",
    tag = "reactions",
    operation_id = "remove_reaction",
    params(("value_tag" = String, Path, description = "The reaction's `value_tag`, base64url")),
    responses(
        (status = 204, description = "The caller's reaction with this tag is gone"),
        (status = 404, description = "No such reaction of the caller's, `not_found`", body = crate::error::ErrorBody),
    )
)]
async fn remove(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiPath((organization_id, conversation_id, message_id, value_tag)): ApiPath<(Uuid, Uuid, Uuid, String)>,
) -> ApiResult<StatusCode> {
    let value_tag: [u8; 32] = conclave_protocol::b64::decode(&value_tag)
        .ok()
        .and_then(|bytes| bytes.try_into().ok())
        .ok_or_else(|| ApiError::not_found("reaction"))?;
    let (mut tx, _) = member_tx(&state, auth, organization_id).await?;
    seat(&mut tx, auth.user_id, conversation_id, false).await?;
    live_message(&mut tx, conversation_id, message_id).await?;
    let removed = sqlx::query!(
        "DELETE FROM message_reactions WHERE message_id = $1 AND user_id = $2 AND value_tag = $3",
        message_id,
        auth.user_id,
        &value_tag[..]
    )
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if removed == 0 {
        return Err(ApiError::not_found("reaction"));
    }
    tx.commit().await?;
    let frame = ServerFrame::ReactionRemoved { conversation_id, message_id, user_id: auth.user_id, value_tag };
    realtime::publish(&state, LiveEvent::frame(organization_id, conversation_id, frame)).await;
    Ok(StatusCode::NO_CONTENT)
}
