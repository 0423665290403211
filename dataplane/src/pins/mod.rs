//! Pinned messages of a conversation: pin, unpin, list.
//!
//! Who may pin: in a direct or group conversation every member (they are few and chose each
//! other); in a channel, which anyone in the workspace may join, only its owner and admins.
//! Unpinning follows the same rule. A message is pinned at most once; a deleted message cannot
//! be pinned, and its pin goes with it only when the row is erased (a tombstone keeps its pin
//! so the gap is visible; clients show it as deleted).

use crate::AppState;
use crate::context::member_tx;
use crate::context::session::AuthUser;
use crate::context::{Seat, seat};
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::extract::{ApiJson, ApiPath};
use crate::realtime::{self, LiveEvent};
use axum::extract::State;
use axum::http::StatusCode;
use conclave_protocol::api::ConversationKind;
use conclave_protocol::events::ServerFrame;
use conclave_protocol::rich::{Pin, PinMessage};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(pin, list)).routes(routes!(unpin))
}

fn may_pin(seat: &Seat) -> ApiResult<()> {
    if seat.kind == ConversationKind::Channel && !seat.is_admin() {
        return Err(ApiError::new(ErrorCode::InsufficientRole, "only a channel's owner and admins can pin or unpin"));
    }
    Ok(())
}

#[utoipa::path(
    post,
    path = "/v1/organizations/{organization_id}/conversations/{conversation_id}/pins",
    tag = "pins",
    operation_id = "pin_message",
    request_body = PinMessage,
    responses(
        (status = 201, description = "Pinned and published", body = Pin),
        (status = 403, description = "`insufficient_role` (channels: owner and admins only)", body = crate::error::ErrorBody),
        (status = 409, description = "`already_pinned`, `message_deleted`", body = crate::error::ErrorBody),
    )
)]
#[tracing::instrument(skip_all, fields(%conversation_id))]
async fn pin(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiPath((organization_id, conversation_id)): ApiPath<(Uuid, Uuid)>,
    ApiJson(body): ApiJson<PinMessage>,
) -> ApiResult<(StatusCode, axum::Json<Pin>)> {
    let (mut tx, _) = member_tx(&state, auth, organization_id).await?;
    let seat = seat(&mut tx, auth.user_id, conversation_id, false).await?;
    may_pin(&seat)?;
    let deleted = sqlx::query_scalar!(
        r#"SELECT deleted_at IS NOT NULL AS "deleted!" FROM messages WHERE conversation_id = $1 AND id = $2"#,
        conversation_id,
        body.message_id
    )
    .fetch_optional(&mut *tx)
    .await?
    .ok_or_else(|| ApiError::not_found("message"))?;
    if deleted {
        return Err(ApiError::new(ErrorCode::MessageDeleted, "a deleted message cannot be pinned"));
    }
    let pin = sqlx::query_as!(
        Pin,
        "INSERT INTO message_pins (organization_id, conversation_id, message_id, pinned_by) VALUES ($1, $2, $3, $4)
         ON CONFLICT (message_id) DO NOTHING
         RETURNING conversation_id, message_id, pinned_by, pinned_at",
        organization_id,
        conversation_id,
        body.message_id,
        auth.user_id
    )
    .fetch_optional(&mut *tx)
    .await?
    .ok_or_else(|| ApiError::new(ErrorCode::AlreadyPinned, "this message is already pinned"))?;
    tx.commit().await?;
    realtime::publish(
        &state,
        LiveEvent::frame(organization_id, conversation_id, ServerFrame::MessagePinned { pin: pin.clone() }),
    )
    .await;
    Ok((StatusCode::CREATED, axum::Json(pin)))
}

#[utoipa::path(
    get,
    path = "/v1/organizations/{organization_id}/conversations/{conversation_id}/pins",
    tag = "pins",
    operation_id = "list_pins",
    responses((status = 200, description = "The conversation's pins, oldest first", body = Vec<Pin>))
)]
async fn list(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiPath((organization_id, conversation_id)): ApiPath<(Uuid, Uuid)>,
) -> ApiResult<axum::Json<Vec<Pin>>> {
    let (mut tx, _) = member_tx(&state, auth, organization_id).await?;
    seat(&mut tx, auth.user_id, conversation_id, false).await?;
    let pins = sqlx::query_as!(
        Pin,
        "SELECT conversation_id, message_id, pinned_by, pinned_at FROM message_pins
          WHERE conversation_id = $1 ORDER BY pinned_at, id",
        conversation_id
    )
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(axum::Json(pins))
}

#[utoipa::path(
    delete,
    path = "/v1/organizations/{organization_id}/conversations/{conversation_id}/pins/{message_id}",
    tag = "pins",
    operation_id = "unpin_message",
    responses(
        (status = 204, description = "Unpinned and published"),
        (status = 404, description = "The message is not pinned", body = crate::error::ErrorBody),
    )
)]
async fn unpin(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiPath((organization_id, conversation_id, message_id)): ApiPath<(Uuid, Uuid, Uuid)>,
) -> ApiResult<StatusCode> {
    let (mut tx, _) = member_tx(&state, auth, organization_id).await?;
    let seat = seat(&mut tx, auth.user_id, conversation_id, false).await?;
    may_pin(&seat)?;
    let removed = sqlx::query!(
        "DELETE FROM message_pins WHERE conversation_id = $1 AND message_id = $2",
        conversation_id,
        message_id
    )
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if removed == 0 {
        return Err(ApiError::not_found("pin"));
    }
    tx.commit().await?;
    let frame = ServerFrame::MessageUnpinned { conversation_id, message_id };
    realtime::publish(&state, LiveEvent::frame(organization_id, conversation_id, frame)).await;
    Ok(StatusCode::NO_CONTENT)
}
