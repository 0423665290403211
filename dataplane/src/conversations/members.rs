//! Adding and removing conversation members. Any change requires a new key generation: a new
//! member must not read what was said before they joined, a departed one nothing after.

use super::announce_rotation;
use crate::AppState;
use crate::audit::{self, Actor};
use crate::context::member_tx;
use crate::context::seat;
use crate::context::session::AuthUser;
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::extract::{ApiJson, ApiPath, ClientIp};
use crate::outbox::events::{self, Event};
use crate::realtime::{self, LiveEvent};
use axum::extract::State;
use axum::http::StatusCode;
use conclave_protocol::api::{AddMember, ConversationKind};
use serde_json::json;
use sqlx::PgConnection;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(add)).routes(routes!(remove))
}

/// Inserts a member and marks the conversation for rotation (caller holds the row lock).
pub async fn insert_member(
    conn: &mut PgConnection,
    organization_id: Uuid,
    conversation_id: Uuid,
    user_id: Uuid,
) -> ApiResult<bool> {
    let inserted = sqlx::query!(
        "INSERT INTO conversation_members (organization_id, conversation_id, user_id) VALUES ($1, $2, $3)
         ON CONFLICT (conversation_id, user_id) DO NOTHING",
        organization_id,
        conversation_id,
        user_id
    )
    .execute(&mut *conn)
    .await?
    .rows_affected();
    if inserted == 1 {
        sqlx::query!(
            "UPDATE conversations SET rotation_required = true, rotation_reason = 'member_added' WHERE id = $1",
            conversation_id
        )
        .execute(&mut *conn)
        .await?;
    }
    Ok(inserted == 1)
}

#[utoipa::path(
    post,
    path = "/v1/organizations/{organization_id}/conversations/{conversation_id}/members",
    tag = "conversations",
    operation_id = "add_conversation_member",
    request_body = AddMember,
    responses(
        (status = 201, description = "Added; the conversation now requires a key rotation"),
        (status = 403, description = "`insufficient_role`", body = crate::error::ErrorBody),
        (status = 409, description = "`already_member`, `direct_conversation`", body = crate::error::ErrorBody),
        (status = 422, description = "`invalid_reference`: the user is not a member of the organization (another organization's people answer like unknown ids)", body = crate::error::ErrorBody),
    )
)]
async fn add(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiPath((organization_id, conversation_id)): ApiPath<(Uuid, Uuid)>,
    ApiJson(body): ApiJson<AddMember>,
) -> ApiResult<StatusCode> {
    let (mut tx, _) = member_tx(&state, auth, organization_id).await?;
    let seat = seat(&mut tx, auth.user_id, conversation_id, true).await?;
    if seat.kind == ConversationKind::Direct {
        return Err(ApiError::new(ErrorCode::DirectConversation, "a direct conversation cannot get more members"));
    }
    if seat.kind == ConversationKind::Group && !seat.is_admin() {
        return Err(ApiError::new(
            ErrorCode::InsufficientRole,
            "only the conversation's owners and admins add members",
        ));
    }
    if !insert_member(&mut tx, organization_id, conversation_id, body.user_id).await? {
        return Err(ApiError::new(ErrorCode::AlreadyMember, "this person is already a member of the conversation"));
    }
    let joined = json!({"conversation_id": conversation_id, "user_id": body.user_id, "by_user_id": auth.user_id, "via": "added"});
    events::in_conversation(&mut tx, organization_id, conversation_id, Event::MemberJoined, joined).await?;
    tx.commit().await?;
    realtime::publish(&state, LiveEvent::member_added(organization_id, conversation_id, body.user_id)).await;
    announce_rotation(&state, organization_id, conversation_id).await;
    Ok(StatusCode::CREATED)
}

#[utoipa::path(
    delete,
    path = "/v1/organizations/{organization_id}/conversations/{conversation_id}/members/{user_id}",
    tag = "conversations",
    operation_id = "remove_conversation_member",
    responses(
        (status = 204, description = "Removed (or left); the conversation now requires a key rotation"),
        (status = 403, description = "`insufficient_role`", body = crate::error::ErrorBody),
    )
)]
async fn remove(
    State(state): State<AppState>,
    auth: AuthUser,
    ip: ClientIp,
    ApiPath((organization_id, conversation_id, user_id)): ApiPath<(Uuid, Uuid, Uuid)>,
) -> ApiResult<StatusCode> {
    let (mut tx, _) = member_tx(&state, auth, organization_id).await?;
    let seat = seat(&mut tx, auth.user_id, conversation_id, true).await?;
    let leaving = user_id == auth.user_id;
    if !leaving && !seat.is_admin() {
        return Err(ApiError::new(
            ErrorCode::InsufficientRole,
            "only the conversation's owners and admins remove members",
        ));
    }
    let removed = sqlx::query_scalar!(
        "DELETE FROM conversation_members WHERE conversation_id = $1 AND user_id = $2 RETURNING role",
        conversation_id,
        user_id
    )
    .fetch_optional(&mut *tx)
    .await?
    .ok_or_else(|| ApiError::not_found("member"))?;
    if removed == "owner" && !leaving {
        return Err(ApiError::new(
            ErrorCode::InsufficientRole,
            "an owner of the conversation can only leave by themself",
        ));
    }
    let reason = if leaving { "member_left" } else { "member_removed" };
    let left = json!({
        "conversation_id": conversation_id, "user_id": user_id, "by_user_id": auth.user_id,
        "reason": if leaving { "left" } else { "removed" },
    });
    events::in_conversation(&mut tx, organization_id, conversation_id, Event::MemberLeft, left).await?;
    sqlx::query!(
        "UPDATE conversations SET rotation_required = true, rotation_reason = $2 WHERE id = $1",
        conversation_id,
        reason
    )
    .execute(&mut *tx)
    .await?;
    audit::record(
        &mut tx,
        audit::Entry {
            organization_id: Some(organization_id),
            actor: Actor::of(auth),
            action: if leaving { "conversation.left" } else { "conversation.member_removed" },
            target: Some(("conversation", conversation_id)),
            ip: ip.0,
            details: json!({ "user_id": user_id }),
        },
    )
    .await?;
    tx.commit().await?;
    realtime::publish(&state, LiveEvent::member_removed(organization_id, conversation_id, user_id)).await;
    announce_rotation(&state, organization_id, conversation_id).await;
    Ok(StatusCode::NO_CONTENT)
}
