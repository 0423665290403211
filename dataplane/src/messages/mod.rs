//! Encrypted messages: send (idempotent per client message id), history by cursor, edit,
//! delete, and delivered/read receipts.
//!
//! A send checks that its ciphertext is framed as an MLS application message of the conversation's
//! group in the epoch it names (the server reads nothing else: MLS authenticates the sender to the
//! group), then is stored by the send batch (`batch`: group commit): lock the conversation, check the
//! generation, take the next sequence number, store the ciphertext and the outbox rows for
//! webhooks and push. After commit it is published to Redis for every replica's sockets;
//! PostgreSQL stays the record.

pub mod batch;
mod receipts;

use crate::AppState;
use crate::context::member_tx;
use crate::context::seat;
use crate::context::session::{AuthUser, SignedToken};
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::outbox::events::{self, Event};
use crate::realtime::{self, LiveEvent};
use axum::extract::State;
use axum::http::StatusCode;
use conclave_protocol::api::{EditMessage, Message, MessagePage, SendMessage};
use conclave_protocol::events::ServerFrame;
use conclave_protocol::mls_wire;
use serde::Deserialize;
use serde_json::json;
use sqlx::PgConnection;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(send, history)).routes(routes!(edit, remove)).merge(receipts::router())
}

struct Row {
    id: Uuid,
    conversation_id: Uuid,
    seq: i64,
    sender_user_id: Option<Uuid>,
    sender_device_id: Option<Uuid>,
    client_message_id: Uuid,
    key_generation: i32,
    ciphertext: Option<Vec<u8>>,
    reply_to_id: Option<Uuid>,
    created_at: chrono::DateTime<chrono::Utc>,
    edited_at: Option<chrono::DateTime<chrono::Utc>>,
    deleted_at: Option<chrono::DateTime<chrono::Utc>>,
}

impl From<Row> for Message {
    fn from(r: Row) -> Self {
        Message {
            id: r.id,
            conversation_id: r.conversation_id,
            seq: r.seq,
            sender_user_id: r.sender_user_id,
            sender_device_id: r.sender_device_id,
            client_message_id: r.client_message_id,
            key_generation: r.key_generation,
            ciphertext: r.ciphertext,
            reply_to_id: r.reply_to_id,
            created_at: r.created_at,
            edited_at: r.edited_at,
            deleted_at: r.deleted_at,
        }
    }
}

/// Messages of a conversation with `seq` in `(after, upto]`, ascending.
pub async fn fetch_range(
    conn: &mut PgConnection,
    conversation_id: Uuid,
    after: i64,
    upto: i64,
    limit: i64,
) -> ApiResult<Vec<Message>> {
    let rows = sqlx::query_as!(
        Row,
        "SELECT id, conversation_id, seq, sender_user_id, sender_device_id, client_message_id, key_generation,
                ciphertext, reply_to_id, created_at, edited_at, deleted_at
           FROM messages WHERE conversation_id = $1 AND seq > $2 AND seq <= $3 ORDER BY seq LIMIT $4",
        conversation_id,
        after,
        upto,
        limit
    )
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().map(Message::from).collect())
}

async fn fetch_one(conn: &mut PgConnection, conversation_id: Uuid, message_id: Uuid) -> ApiResult<Message> {
    sqlx::query_as!(
        Row,
        "SELECT id, conversation_id, seq, sender_user_id, sender_device_id, client_message_id, key_generation,
                ciphertext, reply_to_id, created_at, edited_at, deleted_at
           FROM messages WHERE conversation_id = $1 AND id = $2",
        conversation_id,
        message_id
    )
    .fetch_optional(conn)
    .await?
    .map(Message::from)
    .ok_or_else(|| ApiError::not_found("message"))
}

/// Checks that `ciphertext` is framed as an MLS application message (`PrivateMessage`, content type
/// `application`) of this conversation's group in epoch `generation`. Nothing else is readable, and
/// nothing else needs to be: MLS authenticates the sender device to the members.
pub(crate) fn check_framing(conversation_id: Uuid, generation: i32, ciphertext: &[u8]) -> ApiResult<()> {
    let framed = mls_wire::framing(ciphertext).map_err(|e| ApiError::invalid_mls("ciphertext", e.to_string()))?;
    if framed.wire_format != mls_wire::wire_format::PRIVATE_MESSAGE
        || framed.content_type != mls_wire::content_type::APPLICATION
    {
        return Err(ApiError::invalid_mls("ciphertext", "is not an encrypted MLS application message"));
    }
    if framed.group_id != conversation_id.as_bytes() {
        return Err(ApiError::invalid_mls("ciphertext", "belongs to another conversation's group"));
    }
    if i64::try_from(framed.epoch).ok() != Some(i64::from(generation)) {
        return Err(ApiError::invalid_mls(
            "ciphertext",
            format!("is framed for epoch {}, not key_generation {generation}", framed.epoch),
        ));
    }
    Ok(())
}

fn check_size(ciphertext: &[u8]) -> ApiResult<()> {
    if ciphertext.len() > conclave_protocol::limits::MAX_MESSAGE_CIPHERTEXT_LEN {
        return Err(ApiError::new(
            ErrorCode::MessageTooLarge,
            format!(
                "a message's ciphertext is at most {} bytes",
                conclave_protocol::limits::MAX_MESSAGE_CIPHERTEXT_LEN
            ),
        ));
    }
    if ciphertext.len() < 16 {
        return Err(ApiError::validation("ciphertext", "is shorter than an AEAD tag"));
    }
    Ok(())
}

#[utoipa::path(
    post,
    path = "/v1/organizations/{organization_id}/conversations/{conversation_id}/messages",
    tag = "messages",
    operation_id = "send_message",
    request_body = SendMessage,
    responses(
        (status = 201, description = "Stored and published", body = Message),
        (status = 200, description = "Already stored under this `client_message_id`", body = Message),
        (status = 409, description = "`rotation_required`, `stale_generation`, `unknown_generation`", body = crate::error::ErrorBody),
        (status = 413, description = "`message_too_large`", body = crate::error::ErrorBody),
        (status = 422, description = "`invalid_mls_message`, `unknown_attachment`", body = crate::error::ErrorBody),
    )
)]
#[tracing::instrument(skip_all, fields(%conversation_id))]
async fn send(
    State(state): State<AppState>,
    SignedToken(auth): SignedToken,
    ApiPath((organization_id, conversation_id)): ApiPath<(Uuid, Uuid)>,
    ApiJson(body): ApiJson<SendMessage>,
) -> ApiResult<(StatusCode, axum::Json<Message>)> {
    // Everything that needs no database first; the session, memberships, generation and
    // attachments are checked by the batch that stores the send (`batch`), in one round trip.
    check_size(&body.ciphertext)?;
    let attachment_ids = crate::attachments::distinct(&body.attachment_ids)?;
    check_framing(conversation_id, body.key_generation, &body.ciphertext)?;
    let pending = batch::Pending {
        organization_id,
        auth,
        conversation_id,
        client_message_id: body.client_message_id,
        key_generation: body.key_generation,
        ciphertext: body.ciphertext,
        reply_to_id: body.reply_to_id,
        attachment_ids,
    };
    match state.sends.submit(pending).await? {
        batch::Stored::Existing(message) => Ok((StatusCode::OK, axum::Json(message))),
        batch::Stored::Created(message) => Ok((StatusCode::CREATED, axum::Json(message))),
    }
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct HistoryQuery {
    after_seq: Option<i64>,
    before_seq: Option<i64>,
    limit: Option<i64>,
}

#[utoipa::path(
    get,
    path = "/v1/organizations/{organization_id}/conversations/{conversation_id}/messages",
    tag = "messages",
    operation_id = "list_messages",
    params(HistoryQuery),
    responses(
        (status = 200, description = "A page of messages", body = MessagePage),
        (status = 422, description = "`validation_failed`", body = crate::error::ErrorBody),
    )
)]
async fn history(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiPath((organization_id, conversation_id)): ApiPath<(Uuid, Uuid)>,
    ApiQuery(query): ApiQuery<HistoryQuery>,
) -> ApiResult<axum::Json<MessagePage>> {
    let limit = crate::limits::page_limit(query.limit, crate::limits::DEFAULT_PAGE)?;
    let (mut tx, _) = member_tx(&state, auth, organization_id).await?;
    seat(&mut tx, auth.user_id, conversation_id, false).await?;
    let (messages, has_more) = match (query.after_seq, query.before_seq) {
        (Some(_), Some(_)) => return Err(ApiError::validation("after_seq", "give after_seq or before_seq, not both")),
        (after, None) => {
            let mut messages = fetch_range(&mut tx, conversation_id, after.unwrap_or(0), i64::MAX, limit + 1).await?;
            let more = messages.len() as i64 > limit;
            messages.truncate(limit as usize);
            (messages, more)
        }
        (None, Some(before)) => {
            let rows = sqlx::query_as!(
                Row,
                "SELECT id, conversation_id, seq, sender_user_id, sender_device_id, client_message_id, key_generation,
                        ciphertext, reply_to_id, created_at, edited_at, deleted_at
                   FROM messages WHERE conversation_id = $1 AND seq < $2 ORDER BY seq DESC LIMIT $3",
                conversation_id,
                before,
                limit + 1
            )
            .fetch_all(&mut *tx)
            .await?;
            let more = rows.len() as i64 > limit;
            (rows.into_iter().take(limit as usize).map(Message::from).collect(), more)
        }
    };
    tx.commit().await?;
    Ok(axum::Json(MessagePage { messages, has_more }))
}

#[utoipa::path(
    patch,
    path = "/v1/organizations/{organization_id}/conversations/{conversation_id}/messages/{message_id}",
    tag = "messages",
    operation_id = "edit_message",
    request_body = EditMessage,
    responses(
        (status = 200, description = "The edited message", body = Message),
        (status = 403, description = "`not_the_sender`", body = crate::error::ErrorBody),
    )
)]
async fn edit(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiPath((organization_id, conversation_id, message_id)): ApiPath<(Uuid, Uuid, Uuid)>,
    ApiJson(body): ApiJson<EditMessage>,
) -> ApiResult<axum::Json<Message>> {
    check_size(&body.ciphertext)?;
    let (mut tx, _) = member_tx(&state, auth, organization_id).await?;
    let seat = seat(&mut tx, auth.user_id, conversation_id, true).await?;
    let message = fetch_one(&mut tx, conversation_id, message_id).await?;
    if message.sender_device_id != Some(auth.device_id) {
        return Err(ApiError::new(ErrorCode::NotTheSender, "only the device that sent a message can edit it"));
    }
    if message.deleted_at.is_some() {
        return Err(ApiError::new(ErrorCode::MessageDeleted, "a deleted message cannot be edited"));
    }
    seat.check_generation(body.key_generation)?;
    check_framing(conversation_id, body.key_generation, &body.ciphertext)?;
    // The old ciphertext is replaced, not kept: the server never had the plaintext of either.
    sqlx::query!(
        "UPDATE messages SET key_generation = $3, ciphertext = $4, edited_at = now()
          WHERE conversation_id = $1 AND id = $2",
        conversation_id,
        message_id,
        body.key_generation,
        body.ciphertext
    )
    .execute(&mut *tx)
    .await?;
    let message = fetch_one(&mut tx, conversation_id, message_id).await?;
    let edited = json!({"conversation_id": conversation_id, "message_id": message_id, "seq": message.seq});
    events::in_conversation(&mut tx, organization_id, conversation_id, Event::MessageEdited, edited).await?;
    tx.commit().await?;
    realtime::publish(
        &state,
        LiveEvent::frame(organization_id, conversation_id, ServerFrame::MessageEdited { message: message.clone() }),
    )
    .await;
    Ok(axum::Json(message))
}

#[utoipa::path(
    delete,
    path = "/v1/organizations/{organization_id}/conversations/{conversation_id}/messages/{message_id}",
    tag = "messages",
    operation_id = "delete_message",
    responses(
        (status = 204, description = "Deleted: the message keeps its place in the sequence, without content"),
        (status = 403, description = "`not_the_sender`", body = crate::error::ErrorBody),
    )
)]
async fn remove(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiPath((organization_id, conversation_id, message_id)): ApiPath<(Uuid, Uuid, Uuid)>,
) -> ApiResult<StatusCode> {
    let (mut tx, _) = member_tx(&state, auth, organization_id).await?;
    let seat = seat(&mut tx, auth.user_id, conversation_id, false).await?;
    let message = fetch_one(&mut tx, conversation_id, message_id).await?;
    if message.sender_user_id != Some(auth.user_id) && !seat.is_admin() {
        return Err(ApiError::new(
            ErrorCode::NotTheSender,
            "only the sender or a conversation admin can delete a message",
        ));
    }
    if message.deleted_at.is_none() {
        // A tombstone keeps the sequence gap-free; the ciphertext is gone.
        sqlx::query!(
            "UPDATE messages SET ciphertext = NULL, deleted_at = now()
              WHERE conversation_id = $1 AND id = $2",
            conversation_id,
            message_id
        )
        .execute(&mut *tx)
        .await?;
        let deleted = json!({
            "conversation_id": conversation_id, "message_id": message_id, "seq": message.seq,
            "by_user_id": auth.user_id,
        });
        events::in_conversation(&mut tx, organization_id, conversation_id, Event::MessageDeleted, deleted).await?;
    }
    tx.commit().await?;
    realtime::publish(
        &state,
        LiveEvent::frame(
            organization_id,
            conversation_id,
            ServerFrame::MessageDeleted { conversation_id, message_id, seq: message.seq },
        ),
    )
    .await;
    Ok(StatusCode::NO_CONTENT)
}
