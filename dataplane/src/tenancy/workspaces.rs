//! Workspaces as an organization's members see them, and joining or leaving them.
//!
//! The operator creates workspaces; members join and leave them freely. A guest may only join a
//! workspace that allows guests (`guest_access`), and only sees the members of workspaces they
//! are in.

use crate::AppState;
use crate::audit::{self, Actor};
use crate::context::session::AuthUser;
use crate::context::{Membership, Role, member_tx};
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::extract::{ApiPath, ClientIp};
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use conclave_protocol::tenancy::Workspace;
use serde::Serialize;
use serde_json::json;
use sqlx::PgConnection;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(show))
        .routes(routes!(join))
        .routes(routes!(leave))
        .routes(routes!(members))
}

/// One workspace of the organization, or all of them (`workspace_id` NULL).
async fn fetch(conn: &mut PgConnection, member: &Membership, workspace_id: Option<Uuid>) -> ApiResult<Vec<Workspace>> {
    Ok(sqlx::query_as!(
        Workspace,
        r#"SELECT w.id, w.slug::text AS "slug!", w.display_name, w.guest_access, w.message_retention_days,
                  EXISTS (SELECT 1 FROM workspace_memberships wm WHERE wm.workspace_id = w.id AND wm.user_id = $2) AS "joined!",
                  (SELECT count(*) FROM workspace_memberships wm WHERE wm.workspace_id = w.id) AS "member_count!",
                  w.created_at
             FROM workspaces w
            WHERE w.organization_id = $1 AND ($3::uuid IS NULL OR w.id = $3)
            ORDER BY w.display_name, w.id"#,
        member.organization_id,
        member.user_id,
        workspace_id,
    )
    .fetch_all(conn)
    .await?)
}

async fn fetch_one(conn: &mut PgConnection, member: &Membership, workspace_id: Uuid) -> ApiResult<Workspace> {
    fetch(conn, member, Some(workspace_id)).await?.pop().ok_or_else(|| ApiError::not_found("workspace"))
}

#[utoipa::path(
    get,
    path = "/v1/organizations/{organization_id}/workspaces",
    tag = "workspaces",
    operation_id = "list_workspaces",
    responses((status = 200, description = "The workspaces the caller may see", body = Vec<Workspace>))
)]
#[tracing::instrument(skip(state, auth), fields(user_id = %auth.user_id))]
async fn list(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiPath(organization_id): ApiPath<Uuid>,
) -> ApiResult<axum::Json<Vec<Workspace>>> {
    let (mut tx, me) = member_tx(&state, auth, organization_id).await?;
    let workspaces = fetch(&mut tx, &me, None).await?;
    tx.commit().await?;
    Ok(axum::Json(workspaces))
}

#[utoipa::path(
    get,
    path = "/v1/organizations/{organization_id}/workspaces/{workspace_id}",
    tag = "workspaces",
    operation_id = "get_workspace",
    responses((status = 200, description = "The workspace", body = Workspace))
)]
#[tracing::instrument(skip(state, auth), fields(user_id = %auth.user_id))]
async fn show(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiPath((organization_id, workspace_id)): ApiPath<(Uuid, Uuid)>,
) -> ApiResult<axum::Json<Workspace>> {
    let (mut tx, me) = member_tx(&state, auth, organization_id).await?;
    let workspace = fetch_one(&mut tx, &me, workspace_id).await?;
    tx.commit().await?;
    Ok(axum::Json(workspace))
}

/// The workspace role that follows from the organization role.
pub(super) fn workspace_role(role: Role) -> &'static str {
    match role {
        Role::Guest => "guest",
        Role::Member => "member",
        Role::Admin | Role::Owner => "admin",
    }
}

/// Brings someone's workspace memberships in line with a new organization role: the workspace
/// role follows, and a guest keeps only the workspaces that admit guests.
pub(super) async fn follow_role(
    conn: &mut PgConnection,
    organization_id: Uuid,
    user_id: Uuid,
    role: Role,
) -> ApiResult<u64> {
    let removed = if role == Role::Guest {
        sqlx::query!(
            "DELETE FROM workspace_memberships wm USING workspaces w
              WHERE w.organization_id = wm.organization_id AND w.id = wm.workspace_id
                AND wm.organization_id = $1 AND wm.user_id = $2 AND NOT w.guest_access",
            organization_id,
            user_id
        )
        .execute(&mut *conn)
        .await?
        .rows_affected()
    } else {
        0
    };
    sqlx::query!(
        "UPDATE workspace_memberships SET role = $3 WHERE organization_id = $1 AND user_id = $2",
        organization_id,
        user_id,
        workspace_role(role)
    )
    .execute(&mut *conn)
    .await?;
    Ok(removed)
}

/// 201 when the caller joined, 200 when they already were a member.
#[utoipa::path(
    post,
    path = "/v1/organizations/{organization_id}/workspaces/{workspace_id}/join",
    tag = "workspaces",
    operation_id = "join_workspace",
    responses(
        (status = 201, description = "Joined", body = Workspace),
        (status = 200, description = "Already a member", body = Workspace),
        (status = 403, description = "`guest_access_disabled`", body = crate::error::ErrorBody),
    )
)]
#[tracing::instrument(skip(state, auth), fields(user_id = %auth.user_id))]
async fn join(
    State(state): State<AppState>,
    auth: AuthUser,
    ip: ClientIp,
    ApiPath((organization_id, workspace_id)): ApiPath<(Uuid, Uuid)>,
) -> ApiResult<(StatusCode, axum::Json<Workspace>)> {
    let (mut tx, me) = member_tx(&state, auth, organization_id).await?;
    let workspace = fetch_one(&mut tx, &me, workspace_id).await?;
    if workspace.joined {
        tx.commit().await?;
        return Ok((StatusCode::OK, axum::Json(workspace)));
    }
    if me.role == Role::Guest && !workspace.guest_access {
        return Err(ApiError::new(ErrorCode::GuestAccessDisabled, "this workspace does not admit guests"));
    }
    let joined = sqlx::query_scalar!(
        "INSERT INTO workspace_memberships (organization_id, workspace_id, user_id, role) VALUES ($1, $2, $3, $4)
         ON CONFLICT (workspace_id, user_id) DO NOTHING RETURNING id",
        organization_id,
        workspace_id,
        auth.user_id,
        workspace_role(me.role),
    )
    .fetch_optional(&mut *tx)
    .await?;
    if joined.is_some() {
        audit::record(
            &mut tx,
            audit::Entry {
                organization_id: Some(organization_id),
                actor: Actor::of(auth),
                action: "workspace.joined",
                target: Some(("workspace", workspace_id)),
                ip: ip.0,
                details: json!({ "role": workspace_role(me.role) }),
            },
        )
        .await?;
    }
    let workspace = fetch_one(&mut tx, &me, workspace_id).await?;
    tx.commit().await?;
    let status = if joined.is_some() { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, axum::Json(workspace)))
}

#[utoipa::path(
    post,
    path = "/v1/organizations/{organization_id}/workspaces/{workspace_id}/leave",
    tag = "workspaces",
    operation_id = "leave_workspace",
    responses(
        (status = 204, description = "Left the workspace"),
        (status = 409, description = "`not_a_workspace_member`", body = crate::error::ErrorBody),
    )
)]
#[tracing::instrument(skip(state, auth), fields(user_id = %auth.user_id))]
async fn leave(
    State(state): State<AppState>,
    auth: AuthUser,
    ip: ClientIp,
    ApiPath((organization_id, workspace_id)): ApiPath<(Uuid, Uuid)>,
) -> ApiResult<StatusCode> {
    let (mut tx, me) = member_tx(&state, auth, organization_id).await?;
    fetch_one(&mut tx, &me, workspace_id).await?;
    let left = sqlx::query_scalar!(
        "DELETE FROM workspace_memberships WHERE organization_id = $1 AND workspace_id = $2 AND user_id = $3 RETURNING id",
        organization_id,
        workspace_id,
        auth.user_id,
    )
    .fetch_optional(&mut *tx)
    .await?;
    if left.is_none() {
        return Err(ApiError::new(ErrorCode::NotAWorkspaceMember, "you are not a member of this workspace"));
    }
    audit::record(
        &mut tx,
        audit::Entry {
            organization_id: Some(organization_id),
            actor: Actor::of(auth),
            action: "workspace.left",
            target: Some(("workspace", workspace_id)),
            ip: ip.0,
            details: json!({}),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct WorkspaceMember {
    pub user_id: Uuid,
    pub display_name: Option<String>,
    pub role: String,
    pub joined_at: DateTime<Utc>,
}

#[utoipa::path(
    get,
    path = "/v1/organizations/{organization_id}/workspaces/{workspace_id}/members",
    tag = "workspaces",
    operation_id = "list_workspace_members",
    responses(
        (status = 200, description = "The workspace's members", body = Vec<WorkspaceMember>),
        (status = 403, description = "`insufficient_role`", body = crate::error::ErrorBody),
    )
)]
#[tracing::instrument(skip(state, auth), fields(user_id = %auth.user_id))]
async fn members(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiPath((organization_id, workspace_id)): ApiPath<(Uuid, Uuid)>,
) -> ApiResult<axum::Json<Vec<WorkspaceMember>>> {
    let (mut tx, me) = member_tx(&state, auth, organization_id).await?;
    let workspace = fetch_one(&mut tx, &me, workspace_id).await?;
    if me.role == Role::Guest && !workspace.joined {
        return Err(ApiError::new(
            ErrorCode::InsufficientRole,
            "guests see the members of the workspaces they belong to only",
        ));
    }
    let members = sqlx::query_as!(
        WorkspaceMember,
        r#"SELECT wm.user_id, p.display_name AS "display_name?", wm.role, wm.created_at AS joined_at
             FROM workspace_memberships wm LEFT JOIN user_profiles p ON p.user_id = wm.user_id
            WHERE wm.organization_id = $1 AND wm.workspace_id = $2
            ORDER BY wm.created_at, wm.user_id"#,
        organization_id,
        workspace_id,
    )
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(axum::Json(members))
}
