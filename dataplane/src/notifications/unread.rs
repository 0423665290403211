//! Unread counts from the read cursors the receipts keep (`conversation_members.read_seq`): a
//! conversation's unread messages are the messages of others after the caller's cursor that are
//! not deleted. Served by `GET /v1/organizations/{org}/unread`, sent as `unread_changed` to the
//! user's own sockets when their cursor moves, and used as the push badge.

use crate::AppState;
use crate::context::member_tx;
use crate::context::session::AuthUser;
use crate::db::tenant_tx;
use crate::error::ApiResult;
use crate::extract::ApiPath;
use crate::realtime::{self, LiveEvent};
use axum::extract::State;
use conclave_protocol::events::ServerFrame;
use conclave_protocol::notifications::{ConversationUnread, UnreadCounts};
use sqlx::PgConnection;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(get_unread))
}

/// The conversations of `user_id` in the organization of the transaction with something unread.
pub async fn counts(conn: &mut PgConnection, organization_id: Uuid, user_id: Uuid) -> sqlx::Result<UnreadCounts> {
    let conversations = sqlx::query_as!(
        ConversationUnread,
        r#"SELECT m.conversation_id, m.read_seq, c.last_seq,
                  (SELECT count(*) FROM messages x
                    WHERE x.conversation_id = m.conversation_id AND x.seq > m.read_seq
                      AND x.sender_user_id IS DISTINCT FROM m.user_id AND x.deleted_at IS NULL) AS "unread!"
             FROM conversation_members m JOIN conversations c ON c.id = m.conversation_id
            WHERE m.organization_id = $1 AND m.user_id = $2 AND c.last_seq > m.read_seq
            ORDER BY m.conversation_id"#,
        organization_id,
        user_id
    )
    .fetch_all(conn)
    .await?
    .into_iter()
    .filter(|c| c.unread > 0)
    .collect::<Vec<_>>();
    let total = conversations.iter().map(|c| c.unread).sum();
    Ok(UnreadCounts { organization_id, total, conversations })
}

#[utoipa::path(
    get,
    path = "/v1/organizations/{organization_id}/unread",
    tag = "notifications",
    operation_id = "get_unread_counts",
    responses((status = 200, description = "Unread messages per conversation and in the organization", body = UnreadCounts))
)]
async fn get_unread(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiPath(organization_id): ApiPath<Uuid>,
) -> ApiResult<axum::Json<UnreadCounts>> {
    let (mut tx, _) = member_tx(&state, auth, organization_id).await?;
    let answer = counts(&mut tx, organization_id, auth.user_id).await?;
    tx.commit().await?;
    Ok(axum::Json(answer))
}

/// Tells `user_id`'s sockets their unread count of a conversation, after their read cursor
/// moved. Best effort, like every publish: a client that missed it asks the API.
pub async fn announce(state: &AppState, organization_id: Uuid, conversation_id: Uuid, user_id: Uuid) {
    let counted = async {
        let mut tx = tenant_tx(state, organization_id, user_id).await?;
        let counts = counts(&mut tx, organization_id, user_id).await?;
        tx.commit().await?;
        Ok::<_, crate::error::ApiError>(counts)
    }
    .await;
    let counts = match counted {
        Ok(counts) => counts,
        Err(e) => {
            tracing::debug!(error = %e, "cannot count unread messages");
            return;
        }
    };
    let unread = counts.conversations.iter().find(|c| c.conversation_id == conversation_id).map_or(0, |c| c.unread);
    let frame =
        ServerFrame::UnreadChanged { organization_id, conversation_id, unread, organization_unread: counts.total };
    realtime::publish(state, LiveEvent::for_user(organization_id, conversation_id, user_id, frame)).await;
}
