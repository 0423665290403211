//! Legal holds: an organization's admins and owners place them on the organization, a workspace,
//! a conversation or a member, and lift them; the retention sweep deletes nothing a standing
//! hold covers. Every change is audited. A hold is lifted, never deleted, so the list keeps who
//! held what, when and why.

use crate::AppState;
use crate::audit::{self, Actor};
use crate::context::admin_tx;
use crate::context::session::AuthUser;
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiPath, ClientIp};
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use conclave_protocol::compliance::{HoldScope, LegalHold, PlaceHold};
use serde_json::json;
use sqlx::PgConnection;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list, place)).routes(routes!(lift))
}

struct Row {
    id: Uuid,
    organization_id: Uuid,
    scope: String,
    target_id: Option<Uuid>,
    reason: String,
    placed_by: Option<Uuid>,
    placed_at: DateTime<Utc>,
    lifted_by: Option<Uuid>,
    lifted_at: Option<DateTime<Utc>>,
}

impl Row {
    fn into_hold(self) -> ApiResult<LegalHold> {
        Ok(LegalHold {
            id: self.id,
            organization_id: self.organization_id,
            scope: HoldScope::parse(&self.scope).ok_or_else(ApiError::internal)?,
            target_id: self.target_id,
            reason: self.reason,
            placed_by: self.placed_by,
            placed_at: self.placed_at,
            lifted_by: self.lifted_by,
            lifted_at: self.lifted_at,
        })
    }
}

#[utoipa::path(
    get,
    path = "/v1/organizations/{organization_id}/legal-holds",
    tag = "compliance",
    operation_id = "list_legal_holds",
    responses(
        (status = 200, description = "Every hold of the organization, standing and lifted, newest first", body = Vec<LegalHold>),
        (status = 403, description = "`insufficient_role`: admins and owners only", body = crate::error::ErrorBody),
    )
)]
#[tracing::instrument(skip(state, auth), fields(user_id = %auth.user_id))]
async fn list(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiPath(organization_id): ApiPath<Uuid>,
) -> ApiResult<axum::Json<Vec<LegalHold>>> {
    let (mut tx, _) = admin_tx(&state, auth, organization_id).await?;
    let rows = sqlx::query_as!(
        Row,
        "SELECT id, organization_id, scope, target_id, reason, placed_by, placed_at, lifted_by, lifted_at
           FROM legal_holds WHERE organization_id = $1 ORDER BY placed_at DESC, id DESC",
        organization_id
    )
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(axum::Json(rows.into_iter().map(Row::into_hold).collect::<ApiResult<_>>()?))
}

/// A reason given for a compliance decision (a hold, a privacy request's outcome): 1-500
/// characters once trimmed, as the tables' checks require.
pub(crate) fn checked_reason(text: &str) -> ApiResult<&str> {
    let reason = text.trim();
    if reason.is_empty() || reason.chars().count() > 500 {
        return Err(ApiError::validation("reason", "must be 1-500 characters"));
    }
    Ok(reason)
}

/// 404 unless the target is in this organization (row-level security hides other tenants'
/// workspaces and conversations, so their ids answer like unknown ones).
async fn check_target(conn: &mut PgConnection, organization_id: Uuid, body: &PlaceHold) -> ApiResult<Option<Uuid>> {
    let target = match (body.scope, body.target_id) {
        (HoldScope::Organization, None) => return Ok(None),
        (HoldScope::Organization, Some(_)) => {
            return Err(ApiError::validation("target_id", "a hold on the organization has no target"));
        }
        (_, None) => return Err(ApiError::validation("target_id", "is required for this scope")),
        (_, Some(target)) => target,
    };
    let found = match body.scope {
        HoldScope::Workspace => sqlx::query_scalar!("SELECT id FROM workspaces WHERE id = $1", target)
            .fetch_optional(&mut *conn)
            .await?
            .is_some(),
        HoldScope::Conversation => sqlx::query_scalar!("SELECT id FROM conversations WHERE id = $1", target)
            .fetch_optional(&mut *conn)
            .await?
            .is_some(),
        HoldScope::User => sqlx::query_scalar!(
            "SELECT id FROM organization_memberships WHERE organization_id = $1 AND user_id = $2",
            organization_id,
            target
        )
        .fetch_optional(&mut *conn)
        .await?
        .is_some(),
        HoldScope::Organization => true,
    };
    if !found {
        return Err(ApiError::not_found(match body.scope {
            HoldScope::Workspace => "workspace",
            HoldScope::Conversation => "conversation",
            _ => "member",
        }));
    }
    Ok(Some(target))
}

#[utoipa::path(
    post,
    path = "/v1/organizations/{organization_id}/legal-holds",
    tag = "compliance",
    operation_id = "place_legal_hold",
    request_body = PlaceHold,
    responses(
        (status = 201, description = "The hold stands: retention deletes nothing it covers", body = LegalHold),
        (status = 403, description = "`insufficient_role`: admins and owners only", body = crate::error::ErrorBody),
    )
)]
#[tracing::instrument(skip(state, auth, body), fields(actor = %auth.user_id))]
async fn place(
    State(state): State<AppState>,
    auth: AuthUser,
    ip: ClientIp,
    ApiPath(organization_id): ApiPath<Uuid>,
    ApiJson(body): ApiJson<PlaceHold>,
) -> ApiResult<(StatusCode, axum::Json<LegalHold>)> {
    let (mut tx, _) = admin_tx(&state, auth, organization_id).await?;
    let reason = checked_reason(&body.reason)?;
    let target = check_target(&mut tx, organization_id, &body).await?;
    // Waits for retention batches (and erasures) of this organization that started before it:
    // they hold this lock shared, so none of them deletes what this hold covers.
    lock_holds(&mut tx, organization_id, false).await?;
    let row = sqlx::query_as!(
        Row,
        "INSERT INTO legal_holds (organization_id, scope, target_id, reason, placed_by)
         VALUES ($1, $2, $3, $4, $5)
         RETURNING id, organization_id, scope, target_id, reason, placed_by, placed_at, lifted_by, lifted_at",
        organization_id,
        body.scope.as_str(),
        target,
        reason,
        auth.user_id
    )
    .fetch_one(&mut *tx)
    .await?;
    audit::record(
        &mut tx,
        audit::Entry {
            organization_id: Some(organization_id),
            actor: Actor::of(auth),
            action: "legal_hold.placed",
            target: Some(("legal_hold", row.id)),
            ip: ip.0,
            details: json!({ "scope": body.scope.as_str(), "target_id": target }),
        },
    )
    .await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, axum::Json(row.into_hold()?)))
}

#[utoipa::path(
    post,
    path = "/v1/organizations/{organization_id}/legal-holds/{hold_id}/lift",
    tag = "compliance",
    operation_id = "lift_legal_hold",
    responses(
        (status = 200, description = "The hold, lifted (lifting a lifted hold changes nothing)", body = LegalHold),
        (status = 403, description = "`insufficient_role`: admins and owners only", body = crate::error::ErrorBody),
    )
)]
#[tracing::instrument(skip(state, auth), fields(actor = %auth.user_id))]
async fn lift(
    State(state): State<AppState>,
    auth: AuthUser,
    ip: ClientIp,
    ApiPath((organization_id, hold_id)): ApiPath<(Uuid, Uuid)>,
) -> ApiResult<axum::Json<LegalHold>> {
    let (mut tx, _) = admin_tx(&state, auth, organization_id).await?;
    let lifted = sqlx::query_as!(
        Row,
        "UPDATE legal_holds SET lifted_at = now(), lifted_by = $3
          WHERE organization_id = $1 AND id = $2 AND lifted_at IS NULL
         RETURNING id, organization_id, scope, target_id, reason, placed_by, placed_at, lifted_by, lifted_at",
        organization_id,
        hold_id,
        auth.user_id
    )
    .fetch_optional(&mut *tx)
    .await?;
    let row = match lifted {
        Some(row) => {
            audit::record(
                &mut tx,
                audit::Entry {
                    organization_id: Some(organization_id),
                    actor: Actor::of(auth),
                    action: "legal_hold.lifted",
                    target: Some(("legal_hold", row.id)),
                    ip: ip.0,
                    details: json!({ "scope": row.scope, "target_id": row.target_id }),
                },
            )
            .await?;
            row
        }
        None => sqlx::query_as!(
            Row,
            "SELECT id, organization_id, scope, target_id, reason, placed_by, placed_at, lifted_by, lifted_at
               FROM legal_holds WHERE organization_id = $1 AND id = $2",
            organization_id,
            hold_id
        )
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| ApiError::not_found("legal hold"))?,
    };
    tx.commit().await?;
    Ok(axum::Json(row.into_hold()?))
}

/// The lock between placing holds (exclusive) and deleting what a hold could cover (shared:
/// retention batches, erasures), per organization, until the end of the transaction.
pub(crate) async fn lock_holds(
    conn: &mut PgConnection,
    organization_id: Uuid,
    shared: bool,
) -> Result<(), sqlx::Error> {
    sqlx::query!("SELECT conclave_lock_holds($1, $2)", organization_id, shared).execute(conn).await?;
    Ok(())
}
