//! Organizations and workspaces as their members see them. The operator creates both; this API
//! reads them and manages who belongs. Every organization-scoped request starts with
//! [`member_tx`], which opens a tenant transaction and loads the caller's membership: a caller
//! who is not a member gets exactly the 404 an unknown id gets.

use crate::AppState;
use crate::context::member_tx;
use crate::context::session::AuthUser;
use crate::db;
use crate::error::ApiResult;
use crate::extract::ApiPath;
use axum::extract::State;
use conclave_protocol::tenancy::Organization;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

mod invitations;
mod members;
mod policy;
mod workspaces;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(show))
        .merge(invitations::router())
        .merge(members::router())
        .merge(workspaces::router())
}

#[utoipa::path(
    get,
    path = "/v1/organizations",
    tag = "organizations",
    operation_id = "list_organizations",
    responses((status = 200, description = "The organizations the caller belongs to", body = Vec<Organization>))
)]
async fn list(State(state): State<AppState>, auth: AuthUser) -> ApiResult<axum::Json<Vec<Organization>>> {
    let mut tx = db::user_tx(&state, auth.user_id).await?;
    let organizations = sqlx::query_as!(
        Organization,
        r#"SELECT o.id, o.slug::text AS "slug!", o.display_name, m.role, o.require_totp, o.allowed_email_domains, o.created_at
             FROM organization_memberships m JOIN organizations o ON o.id = m.organization_id
            WHERE m.user_id = $1 AND o.status = 'active'
            ORDER BY o.display_name"#,
        auth.user_id
    )
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(axum::Json(organizations))
}

#[utoipa::path(
    get,
    path = "/v1/organizations/{organization_id}",
    tag = "organizations",
    operation_id = "get_organization",
    responses((status = 200, description = "The organization", body = Organization))
)]
async fn show(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiPath(organization_id): ApiPath<Uuid>,
) -> ApiResult<axum::Json<Organization>> {
    let (mut tx, _member) = member_tx(&state, auth, organization_id).await?;
    let organization = sqlx::query_as!(
        Organization,
        r#"SELECT o.id, o.slug::text AS "slug!", o.display_name, m.role, o.require_totp, o.allowed_email_domains, o.created_at
             FROM organizations o JOIN organization_memberships m ON m.organization_id = o.id AND m.user_id = $2
            WHERE o.id = $1"#,
        organization_id,
        auth.user_id
    )
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(axum::Json(organization))
}
