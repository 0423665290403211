//! Who belongs to an organization, with which role, and how that changes.
//!
//! Rules: any member lists the members (emails only for admins and owners); admins and owners
//! change roles up to admin and remove non-owners; only owners grant, remove or take away the
//! owner role; anyone may leave. The last owner can never be removed or demoted (409
//! `last_owner`), so an organization is never left without someone who can manage it.

use super::{policy, workspaces};
use crate::AppState;
use crate::audit::{self, Actor};
use crate::context::session::AuthUser;
use crate::context::{Membership, Role, member_tx};
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::extract::{ApiJson, ApiPath, ClientIp};
use axum::extract::State;
use axum::http::StatusCode;
use conclave_protocol::tenancy::OrganizationMember as Member;
use serde::Deserialize;
use serde_json::json;
use sqlx::PgConnection;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list)).routes(routes!(change_role, remove))
}

/// Parses a role sent by a client, naming the field when it is not one.
pub(super) fn role_field(text: &str) -> ApiResult<Role> {
    Role::parse(text.trim()).ok_or_else(|| ApiError::validation("role", "must be one of owner, admin, member, guest"))
}

#[utoipa::path(
    get,
    path = "/v1/organizations/{organization_id}/members",
    tag = "organizations",
    operation_id = "list_organization_members",
    responses((status = 200, description = "The members (emails shown to admins and owners)", body = Vec<Member>))
)]
#[tracing::instrument(skip(state, auth), fields(user_id = %auth.user_id))]
async fn list(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiPath(organization_id): ApiPath<Uuid>,
) -> ApiResult<axum::Json<Vec<Member>>> {
    let (mut tx, me) = member_tx(&state, auth, organization_id).await?;
    let mut members = sqlx::query_as!(
        Member,
        r#"SELECT m.user_id, u.email::text AS "email?", p.display_name AS "display_name?", m.role, m.created_at AS joined_at
             FROM organization_memberships m
             JOIN user_accounts u ON u.id = m.user_id
             LEFT JOIN user_profiles p ON p.user_id = m.user_id
            WHERE m.organization_id = $1
            ORDER BY m.created_at, m.user_id"#,
        organization_id
    )
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    if me.role < Role::Admin {
        for member in &mut members {
            member.email = None;
        }
    }
    Ok(axum::Json(members))
}

/// The target's current role, read after [`policy::lock`]; 404 when they are not a member.
async fn role_of(conn: &mut PgConnection, organization_id: Uuid, user_id: Uuid) -> ApiResult<Role> {
    let role = sqlx::query_scalar!(
        "SELECT role FROM organization_memberships WHERE organization_id = $1 AND user_id = $2",
        organization_id,
        user_id
    )
    .fetch_optional(conn)
    .await?
    .ok_or_else(|| ApiError::not_found("member"))?;
    Role::parse(&role).ok_or_else(ApiError::internal)
}

/// Refuses (409 `last_owner`) when `user_id` is the only owner. Only meaningful under
/// [`policy::lock`], which keeps the count from changing until the transaction ends.
async fn ensure_not_last_owner(conn: &mut PgConnection, organization_id: Uuid) -> ApiResult<()> {
    let owners = sqlx::query_scalar!(
        r#"SELECT count(*) AS "count!" FROM organization_memberships WHERE organization_id = $1 AND role = 'owner'"#,
        organization_id
    )
    .fetch_one(conn)
    .await?;
    if owners <= 1 {
        return Err(ApiError::new(
            ErrorCode::LastOwner,
            "the organization's last owner cannot be removed or demoted: make someone else an owner first",
        ));
    }
    Ok(())
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RoleChange {
    role: String,
}

#[utoipa::path(
    patch,
    path = "/v1/organizations/{organization_id}/members/{user_id}",
    tag = "organizations",
    operation_id = "change_member_role",
    request_body = RoleChange,
    responses((status = 200, description = "The member with their new role", body = Member))
)]
#[tracing::instrument(skip(state, auth, body), fields(actor = %auth.user_id))]
async fn change_role(
    State(state): State<AppState>,
    auth: AuthUser,
    ip: ClientIp,
    ApiPath((organization_id, user_id)): ApiPath<(Uuid, Uuid)>,
    ApiJson(body): ApiJson<RoleChange>,
) -> ApiResult<axum::Json<Member>> {
    let (mut tx, me) = member_tx(&state, auth, organization_id).await?;
    me.require(Role::Admin)?;
    let role = role_field(&body.role)?;
    policy::lock(&mut tx, organization_id).await?;
    let current = role_of(&mut tx, organization_id, user_id).await?;
    if current == Role::Owner || role == Role::Owner {
        owner_only(&me)?;
    }
    if current != role {
        if current == Role::Owner {
            ensure_not_last_owner(&mut tx, organization_id).await?;
        }
        sqlx::query!(
            "UPDATE organization_memberships SET role = $3 WHERE organization_id = $1 AND user_id = $2",
            organization_id,
            user_id,
            role.as_str()
        )
        .execute(&mut *tx)
        .await?;
        // A member demoted to guest loses the workspaces that do not admit guests.
        let workspaces_left = workspaces::follow_role(&mut tx, organization_id, user_id, role).await?;
        audit::record(
            &mut tx,
            audit::Entry {
                organization_id: Some(organization_id),
                actor: Actor::of(auth),
                action: "member.role_changed",
                target: Some(("user", user_id)),
                ip: ip.0,
                details: json!({ "from": current.as_str(), "to": role.as_str(), "workspaces_left": workspaces_left }),
            },
        )
        .await?;
    }
    let member = sqlx::query_as!(
        Member,
        r#"SELECT m.user_id, u.email::text AS "email?", p.display_name AS "display_name?", m.role, m.created_at AS joined_at
             FROM organization_memberships m
             JOIN user_accounts u ON u.id = m.user_id
             LEFT JOIN user_profiles p ON p.user_id = m.user_id
            WHERE m.organization_id = $1 AND m.user_id = $2"#,
        organization_id,
        user_id
    )
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(axum::Json(member))
}

fn owner_only(me: &Membership) -> ApiResult<()> {
    if me.role == Role::Owner {
        return Ok(());
    }
    Err(ApiError::new(ErrorCode::InsufficientRole, "only an owner may grant, change or remove the owner role"))
}

/// An admin removes someone, or a member leaves. Their workspace memberships go with them (the
/// foreign key cascades).
#[utoipa::path(
    delete,
    path = "/v1/organizations/{organization_id}/members/{user_id}",
    tag = "organizations",
    operation_id = "remove_organization_member",
    responses(
        (status = 204, description = "Removed from the organization"),
        (status = 409, description = "`last_owner`", body = crate::error::ErrorBody),
        (status = 403, description = "`insufficient_role`", body = crate::error::ErrorBody),
    )
)]
#[tracing::instrument(skip(state, auth), fields(actor = %auth.user_id))]
async fn remove(
    State(state): State<AppState>,
    auth: AuthUser,
    ip: ClientIp,
    ApiPath((organization_id, user_id)): ApiPath<(Uuid, Uuid)>,
) -> ApiResult<StatusCode> {
    let (mut tx, me) = member_tx(&state, auth, organization_id).await?;
    let leaving = user_id == me.user_id;
    if !leaving {
        me.require(Role::Admin)?;
    }
    policy::lock(&mut tx, organization_id).await?;
    let current = role_of(&mut tx, organization_id, user_id).await?;
    if current == Role::Owner {
        if !leaving {
            owner_only(&me)?;
        }
        ensure_not_last_owner(&mut tx, organization_id).await?;
    }
    sqlx::query!(
        "DELETE FROM organization_memberships WHERE organization_id = $1 AND user_id = $2",
        organization_id,
        user_id
    )
    .execute(&mut *tx)
    .await?;
    audit::record(
        &mut tx,
        audit::Entry {
            organization_id: Some(organization_id),
            actor: Actor::of(auth),
            action: "member.removed",
            target: Some(("user", user_id)),
            ip: ip.0,
            details: json!({ "role": current.as_str(), "left": leaving }),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}
