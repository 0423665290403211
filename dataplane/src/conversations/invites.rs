//! Invites: links to join a conversation, with an expiry and a use limit. The token is shown
//! once; the server keeps its digest.
//!
//! Two words, two ideas, used consistently: an *invite* is a link that anyone holding it may
//! use (up to its limit); an *invitation* is addressed to one person (an email address for an
//! organization, a user for a contact) and is accepted or declined by them.

use super::members::insert_member;
use super::{announce_rotation, load};
use crate::AppState;
use crate::context::member_tx;
use crate::context::seat;
use crate::context::session::AuthUser;
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::extract::{ApiJson, ApiPath};
use crate::outbox::events::{self, Event};
use crate::realtime::{self, LiveEvent};
use crate::tokens::{self, Kind};
use axum::extract::State;
use axum::http::StatusCode;
use conclave_protocol::api::{AcceptInvite, Conversation, ConversationKind, CreateInvite, Invite};
use serde_json::json;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

const MAX_LIFETIME_SECONDS: i64 = 30 * 24 * 3600;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(create)).routes(routes!(accept))
}

#[utoipa::path(
    post,
    path = "/v1/organizations/{organization_id}/conversations/{conversation_id}/invites",
    tag = "conversations",
    operation_id = "create_conversation_invite",
    request_body = CreateInvite,
    responses((status = 201, description = "The invite; its token is shown once", body = Invite))
)]
async fn create(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiPath((organization_id, conversation_id)): ApiPath<(Uuid, Uuid)>,
    ApiJson(body): ApiJson<CreateInvite>,
) -> ApiResult<(StatusCode, axum::Json<Invite>)> {
    if !(60..=MAX_LIFETIME_SECONDS).contains(&body.expires_in_seconds) {
        return Err(ApiError::validation("expires_in_seconds", "must be between 60 seconds and 30 days"));
    }
    if body.max_uses.is_some_and(|n| n < 1) {
        return Err(ApiError::validation("max_uses", "must be at least 1"));
    }
    let (mut tx, _) = member_tx(&state, auth, organization_id).await?;
    let seat = seat(&mut tx, auth.user_id, conversation_id, false).await?;
    if seat.kind == ConversationKind::Direct {
        return Err(ApiError::new(ErrorCode::DirectConversation, "a direct conversation cannot be joined by invite"));
    }
    if !seat.is_admin() {
        return Err(ApiError::new(
            ErrorCode::InsufficientRole,
            "only the conversation's owners and admins create invites",
        ));
    }
    let token = tokens::generate(Kind::ConversationInvite);
    let row = sqlx::query!(
        "INSERT INTO conversation_invites (organization_id, conversation_id, created_by, token_hash, max_uses, expires_at)
         VALUES ($1, $2, $3, $4, $5, now() + make_interval(secs => $6)) RETURNING id, expires_at",
        organization_id,
        conversation_id,
        auth.user_id,
        tokens::digest(&token),
        body.max_uses,
        body.expires_in_seconds as f64
    )
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(Invite { id: row.id, token, expires_at: row.expires_at, max_uses: body.max_uses }),
    ))
}

#[utoipa::path(
    post,
    path = "/v1/organizations/{organization_id}/conversation-invites/accept",
    tag = "conversations",
    operation_id = "accept_conversation_invite",
    request_body = AcceptInvite,
    responses((status = 200, description = "Joined the conversation", body = Conversation))
)]
async fn accept(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiPath(organization_id): ApiPath<Uuid>,
    ApiJson(body): ApiJson<AcceptInvite>,
) -> ApiResult<axum::Json<Conversation>> {
    let invalid = || ApiError::new(ErrorCode::InvalidInvite, "the invite is invalid, expired, revoked or used up");
    if !tokens::looks_like(Kind::ConversationInvite, &body.token) {
        return Err(invalid());
    }
    let (mut tx, _) = member_tx(&state, auth, organization_id).await?;
    let conversation_id = sqlx::query_scalar!(
        "UPDATE conversation_invites SET use_count = use_count + 1
          WHERE token_hash = $1 AND revoked_at IS NULL AND expires_at > now() AND (max_uses IS NULL OR use_count < max_uses)
          RETURNING conversation_id",
        tokens::digest(&body.token)
    )
    .fetch_optional(&mut *tx)
    .await?
    .ok_or_else(invalid)?;
    // Lock the conversation like every membership change does.
    sqlx::query!("SELECT id FROM conversations WHERE id = $1 FOR UPDATE", conversation_id).fetch_one(&mut *tx).await?;
    if !insert_member(&mut tx, organization_id, conversation_id, auth.user_id).await? {
        return Err(ApiError::new(ErrorCode::AlreadyMember, "you are already a member of this conversation"));
    }
    let joined = json!({"conversation_id": conversation_id, "user_id": auth.user_id, "by_user_id": auth.user_id, "via": "invite"});
    events::in_conversation(&mut tx, organization_id, conversation_id, Event::MemberJoined, joined).await?;
    let conversation = load(&mut tx, conversation_id).await?;
    tx.commit().await?;
    realtime::publish(&state, LiveEvent::member_added(organization_id, conversation_id, auth.user_id)).await;
    announce_rotation(&state, organization_id, conversation_id).await;
    Ok(axum::Json(conversation))
}
