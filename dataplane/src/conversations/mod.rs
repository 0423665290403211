//! Conversations inside a workspace: direct, group and channel; their members; their key
//! generations; invites.
//!
//! The key rule the server enforces without seeing a key: when membership changes (someone
//! joins, leaves or is removed) or a member's device is revoked, the conversation is marked
//! `rotation_required`, and no message is accepted until a member uploads the next generation
//! wrapped for exactly the devices of the current members.

pub(crate) mod commits;
mod invites;
pub(crate) mod keys;
mod members;
pub mod removals;

use crate::AppState;
use crate::context::session::AuthUser;
use crate::context::{kind_str, member_tx, parse_kind, seat};
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::extract::{ApiJson, ApiPath};
use crate::outbox::events::{self, Event};
use crate::realtime::{self, LiveEvent};
use axum::extract::State;
use axum::http::StatusCode;
use conclave_protocol::api::{Conversation, ConversationKind, CreateConversation, Member};
use conclave_protocol::events::ServerFrame;
use serde_json::json;
use sqlx::PgConnection;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

pub use keys::require_rotation;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create))
        .routes(routes!(list))
        .routes(routes!(show))
        .merge(members::router())
        .merge(keys::router())
        .merge(commits::router())
        .merge(removals::router())
        .merge(invites::router())
}

/// The whole conversation as its members see it.
pub async fn load(conn: &mut PgConnection, conversation_id: Uuid) -> ApiResult<Conversation> {
    let row = sqlx::query!(
        r#"SELECT id, organization_id, workspace_id, kind, name::text AS "name?", current_key_generation, rotation_required, last_seq, history_removed_before_seq, created_at
             FROM conversations WHERE id = $1"#,
        conversation_id
    )
    .fetch_optional(&mut *conn)
    .await?
    .ok_or_else(|| ApiError::not_found("conversation"))?;
    let members = sqlx::query_as!(
        Member,
        "SELECT user_id, role, delivered_seq, read_seq FROM conversation_members WHERE conversation_id = $1 ORDER BY joined_at, user_id",
        conversation_id
    )
    .fetch_all(&mut *conn)
    .await?;
    Ok(Conversation {
        id: row.id,
        organization_id: row.organization_id,
        workspace_id: row.workspace_id,
        kind: parse_kind(&row.kind)?,
        name: row.name,
        current_key_generation: row.current_key_generation,
        rotation_required: row.rotation_required,
        last_seq: row.last_seq,
        history_removed_before_seq: row.history_removed_before_seq,
        members,
        created_at: row.created_at,
    })
}

#[utoipa::path(
    post,
    path = "/v1/organizations/{organization_id}/workspaces/{workspace_id}/conversations",
    tag = "conversations",
    operation_id = "create_conversation",
    request_body = CreateConversation,
    responses(
        (status = 201, description = "Created", body = Conversation),
        (status = 422, description = "`invalid_reference`: a member named is not a member of the organization (another organization's people answer like unknown ids)", body = crate::error::ErrorBody),
    )
)]
async fn create(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiPath((organization_id, workspace_id)): ApiPath<(Uuid, Uuid)>,
    ApiJson(body): ApiJson<CreateConversation>,
) -> ApiResult<(StatusCode, axum::Json<Conversation>)> {
    let (mut tx, member) = member_tx(&state, auth, organization_id).await?;
    member.require(crate::context::Role::Member)?;
    let workspace =
        sqlx::query_scalar!("SELECT id FROM workspaces WHERE id = $1", workspace_id).fetch_optional(&mut *tx).await?;
    if workspace.is_none() {
        return Err(ApiError::not_found("workspace"));
    }
    let mut others: Vec<Uuid> = body.member_user_ids.iter().copied().filter(|id| *id != auth.user_id).collect();
    others.sort();
    others.dedup();
    let name = match (body.kind, body.name.as_deref().map(str::trim)) {
        (ConversationKind::Channel, Some(name)) => {
            let valid = !name.is_empty()
                && name.len() <= 63
                && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                && !name.starts_with('-')
                && !name.ends_with('-');
            if !valid {
                return Err(ApiError::validation("name", "must be 1-63 lower-case letters, digits and inner hyphens"));
            }
            Some(name.to_owned())
        }
        (ConversationKind::Channel, None) => return Err(ApiError::validation("name", "is required for a channel")),
        (_, Some(_)) => return Err(ApiError::validation("name", "only channels have a name")),
        (_, None) => None,
    };
    if body.kind == ConversationKind::Direct && others.len() != 1 {
        return Err(ApiError::validation("member_user_ids", "a direct conversation has exactly one other member"));
    }
    if others.len() > crate::limits::MAX_INITIAL_MEMBERS {
        return Err(ApiError::validation("member_user_ids", "too many members at once (at most 1000)"));
    }
    let id = sqlx::query_scalar!(
        "INSERT INTO conversations (organization_id, workspace_id, kind, name, created_by, rotation_required, rotation_reason)
         VALUES ($1, $2, $3, $4, $5, true, 'initial') RETURNING id",
        organization_id,
        workspace_id,
        kind_str(body.kind),
        name,
        auth.user_id
    )
    .fetch_one(&mut *tx)
    .await
    .map_err(|e| match conclave_schema::Violation::from_sqlx(&e) {
        Some(v) if v.kind == conclave_schema::ViolationKind::Duplicate => {
            ApiError::new(ErrorCode::ChannelNameTaken, "a channel with this name already exists in the workspace")
        }
        _ => ApiError::from(e),
    })?;
    sqlx::query!(
        "INSERT INTO conversation_members (organization_id, conversation_id, user_id, role) VALUES ($1, $2, $3, 'owner')",
        organization_id,
        id,
        auth.user_id
    )
    .execute(&mut *tx)
    .await?;
    // Members must belong to the organization: the composite foreign key refuses anyone else,
    // with a message naming the rule.
    sqlx::query!(
        "INSERT INTO conversation_members (organization_id, conversation_id, user_id, role)
         SELECT $1, $2, u, 'member' FROM unnest($3::uuid[]) AS u",
        organization_id,
        id,
        &others
    )
    .execute(&mut *tx)
    .await?;
    let created = json!({
        "conversation_id": id, "workspace_id": workspace_id, "kind": kind_str(body.kind),
        "created_by": auth.user_id, "member_count": others.len() + 1,
    });
    events::in_conversation(&mut tx, organization_id, id, Event::ConversationCreated, created).await?;
    let conversation = load(&mut tx, id).await?;
    tx.commit().await?;
    for member in &conversation.members {
        realtime::publish(&state, LiveEvent::member_added(organization_id, id, member.user_id)).await;
    }
    Ok((StatusCode::CREATED, axum::Json(conversation)))
}

#[utoipa::path(
    get,
    path = "/v1/organizations/{organization_id}/conversations",
    tag = "conversations",
    operation_id = "list_conversations",
    responses((status = 200, description = "The caller's conversations in the organization", body = Vec<Conversation>))
)]
async fn list(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiPath(organization_id): ApiPath<Uuid>,
) -> ApiResult<axum::Json<Vec<Conversation>>> {
    let (mut tx, _) = member_tx(&state, auth, organization_id).await?;
    let ids = sqlx::query_scalar!(
        "SELECT conversation_id FROM conversation_members WHERE user_id = $1 ORDER BY joined_at",
        auth.user_id
    )
    .fetch_all(&mut *tx)
    .await?;
    let mut conversations = Vec::with_capacity(ids.len());
    for id in ids {
        conversations.push(load(&mut tx, id).await?);
    }
    tx.commit().await?;
    Ok(axum::Json(conversations))
}

#[utoipa::path(
    get,
    path = "/v1/organizations/{organization_id}/conversations/{conversation_id}",
    tag = "conversations",
    operation_id = "get_conversation",
    responses((status = 200, description = "The conversation", body = Conversation))
)]
async fn show(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiPath((organization_id, conversation_id)): ApiPath<(Uuid, Uuid)>,
) -> ApiResult<axum::Json<Conversation>> {
    let (mut tx, _) = member_tx(&state, auth, organization_id).await?;
    seat(&mut tx, auth.user_id, conversation_id, false).await?;
    let conversation = load(&mut tx, conversation_id).await?;
    tx.commit().await?;
    Ok(axum::Json(conversation))
}

/// Announces that sends are refused until a new generation arrives.
pub async fn announce_rotation(state: &AppState, organization_id: Uuid, conversation_id: Uuid) {
    realtime::publish(
        state,
        LiveEvent::frame(organization_id, conversation_id, ServerFrame::RotationRequired { conversation_id }),
    )
    .await;
}
