//! Delivered and read receipts as per-member cursors: "everything up to sequence N". A send to
//! a channel of thousands writes no receipt rows at all; each member's client moves its own
//! cursor as messages arrive and are read, and a sender sees who has a cursor at or past a
//! message's sequence number (docs/receipts.md).

use crate::AppState;
use crate::context::member_tx;
use crate::context::seat;
use crate::context::session::AuthUser;
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiPath};
use crate::realtime::{self, LiveEvent};
use axum::extract::State;
use conclave_protocol::api::{Member, UpdateReceipts};
use conclave_protocol::events::ServerFrame;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(update))
}

#[utoipa::path(
    post,
    path = "/v1/organizations/{organization_id}/conversations/{conversation_id}/receipts",
    tag = "messages",
    operation_id = "update_receipts",
    request_body = UpdateReceipts,
    responses((status = 200, description = "The caller's cursors", body = Member))
)]
async fn update(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiPath((organization_id, conversation_id)): ApiPath<(Uuid, Uuid)>,
    ApiJson(body): ApiJson<UpdateReceipts>,
) -> ApiResult<axum::Json<Member>> {
    if body.delivered_seq.is_none() && body.read_seq.is_none() {
        return Err(ApiError::validation("delivered_seq", "give delivered_seq, read_seq or both"));
    }
    if body.delivered_seq.is_some_and(|s| s < 0) || body.read_seq.is_some_and(|s| s < 0) {
        return Err(ApiError::validation("read_seq", "sequence numbers are not negative"));
    }
    let (mut tx, _) = member_tx(&state, auth, organization_id).await?;
    let seat = seat(&mut tx, auth.user_id, conversation_id, false).await?;
    // Cursors only move forward, never past the last message, and read implies delivered.
    let read = body.read_seq.unwrap_or(0).min(seat.last_seq);
    let delivered = body.delivered_seq.unwrap_or(0).max(read).min(seat.last_seq);
    let member = sqlx::query_as!(
        Member,
        "UPDATE conversation_members
            SET delivered_seq = GREATEST(delivered_seq, $3), read_seq = GREATEST(read_seq, $4)
          WHERE conversation_id = $1 AND user_id = $2
          RETURNING user_id, role, delivered_seq, read_seq",
        conversation_id,
        auth.user_id,
        delivered,
        read
    )
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    realtime::publish(
        &state,
        LiveEvent::frame(
            organization_id,
            conversation_id,
            ServerFrame::ReceiptUpdated { conversation_id, member: member.clone() },
        ),
    )
    .await;
    // The reader's own devices update their unread badges (notifications feature).
    crate::notifications::unread::announce(&state, organization_id, conversation_id, auth.user_id).await;
    Ok(axum::Json(member))
}
