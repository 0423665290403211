//! Invitations into an organization.
//!
//! An admin invites an email address with a role; the invitee receives a `cvi_` token by email
//! (only its SHA-256 is stored) valid for seven days, and accepts it signed in with the account
//! whose confirmed email is that address. Accepting checks the organization's policy again (the
//! allowed domains and the member limit may have changed since the invitation was sent).
//!
//! The operator may create invitations for an organization's initial owners; nobody knows their
//! tokens, so an admin (an owner, for owner invitations) resends them, which rotates the token.

use super::members::role_field;
use super::policy;
use crate::AppState;
use crate::audit::{self, Actor};
use crate::auth::credentials::Email;
use crate::context::session::AuthUser;
use crate::context::{Role, member_tx};
use crate::db;
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::extract::{ApiJson, ApiPath, ClientIp};
use crate::ratelimit;
use crate::tokens::{self, Kind};
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use conclave_protocol::tenancy::{AcceptOrganizationInvitation as AcceptRequest, JoinedOrganization as Joined};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::PgConnection;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

const VALID_DAYS: i32 = 7;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(accept))
        .routes(routes!(revoke))
        .routes(routes!(resend))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = OrganizationInvitation)]
pub struct Invitation {
    pub id: Uuid,
    pub email: String,
    pub role: String,
    pub invited_by: Option<Uuid>,
    pub expires_at: DateTime<Utc>,
    pub expired: bool,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = OrganizationInvitationSent)]
pub struct Sent {
    #[serde(flatten)]
    invitation: Invitation,
    /// False when this deployment sends no email (the token then reaches nobody).
    email_sent: bool,
}

/// An open (neither accepted nor revoked) invitation of this organization.
async fn fetch_open(conn: &mut PgConnection, organization_id: Uuid, id: Uuid) -> ApiResult<Invitation> {
    sqlx::query_as!(
        Invitation,
        r#"SELECT id, email::text AS "email!", role, invited_by, expires_at, expires_at <= now() AS "expired!", created_at
             FROM organization_invitations
            WHERE organization_id = $1 AND id = $2 AND accepted_at IS NULL AND revoked_at IS NULL
            FOR UPDATE"#,
        organization_id,
        id
    )
    .fetch_optional(conn)
    .await?
    .ok_or_else(|| ApiError::not_found("invitation"))
}

/// Emails the token after the transaction that stored its digest committed.
fn send(state: &AppState, organization_id: Uuid, organization: &str, email: &str, role: &str, token: &str) -> bool {
    let Ok(to) = Email::parse(email) else { return false };
    state.mailer.send_if_enabled(to, "You are invited to an organization on Conclave", |url| {
        format!(
            "You are invited to join {organization} on Conclave as {article} {role}.\n\n\
             Your invitation token (valid for {VALID_DAYS} days):\n\n{token}\n\n\
             Sign in (or create an account) with this email address, then accept it:\n\
             POST {url}/v1/organizations/{organization_id}/invitations/accept with {{\"token\": \"<the token>\"}}\n\n\
             If you did not expect this invitation, ignore this message.\n",
            article = if role == "owner" || role == "admin" { "an" } else { "a" },
        )
    })
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[schema(as = NewOrganizationInvitation)]
#[serde(deny_unknown_fields)]
pub struct NewInvitation {
    email: String,
    role: String,
}

#[utoipa::path(
    post,
    path = "/v1/organizations/{organization_id}/invitations",
    tag = "organizations",
    operation_id = "create_invitation",
    request_body = NewInvitation,
    responses(
        (status = 201, description = "Invited (admins and owners)", body = Sent),
        (status = 409, description = "`invitation_exists`, `member_limit_reached`", body = crate::error::ErrorBody),
        (status = 403, description = "`insufficient_role`", body = crate::error::ErrorBody),
        (status = 422, description = "`email_domain_not_allowed`", body = crate::error::ErrorBody),
        (status = 429, description = "`rate_limited`", body = crate::error::ErrorBody),
    )
)]
#[tracing::instrument(skip(state, auth, body), fields(actor = %auth.user_id))]
async fn create(
    State(state): State<AppState>,
    auth: AuthUser,
    ip: ClientIp,
    ApiPath(organization_id): ApiPath<Uuid>,
    ApiJson(body): ApiJson<NewInvitation>,
) -> ApiResult<(StatusCode, axum::Json<Sent>)> {
    let (mut tx, me) = member_tx(&state, auth, organization_id).await?;
    me.require(Role::Admin)?;
    let email = Email::parse(&body.email)?;
    let role = role_field(&body.role)?;
    if role == Role::Owner {
        me.require(Role::Owner)?;
    }
    ratelimit::check(&state, ratelimit::ORGANIZATION_INVITATION, &auth.user_id.to_string()).await?;
    let policy = policy::lock(&mut tx, organization_id).await?;
    policy.check_domain(&email)?;
    let member = sqlx::query_scalar!(
        r#"SELECT EXISTS (SELECT 1 FROM organization_memberships m JOIN user_accounts u ON u.id = m.user_id
                           WHERE m.organization_id = $1 AND u.email = $2) AS "member!""#,
        organization_id,
        email.as_str()
    )
    .fetch_one(&mut *tx)
    .await?;
    if member {
        return Err(ApiError::new(ErrorCode::AlreadyMember, "this address already belongs to a member"));
    }
    policy.check_seat(&mut tx).await?;
    // An expired invitation still holds the one open slot per address; it is closed so a new
    // one can be sent (it could no longer be accepted anyway).
    sqlx::query!(
        "UPDATE organization_invitations SET revoked_at = now()
          WHERE organization_id = $1 AND email = $2 AND accepted_at IS NULL AND revoked_at IS NULL AND expires_at <= now()",
        organization_id,
        email.as_str()
    )
    .execute(&mut *tx)
    .await?;
    let token = tokens::generate(Kind::Invitation);
    let id = sqlx::query_scalar!(
        "INSERT INTO organization_invitations (organization_id, email, role, token_hash, invited_by, expires_at)
         VALUES ($1, $2, $3, $4, $5, now() + make_interval(days => $6))
         ON CONFLICT (organization_id, email) WHERE accepted_at IS NULL AND revoked_at IS NULL DO NOTHING
         RETURNING id",
        organization_id,
        email.as_str(),
        role.as_str(),
        tokens::digest(&token),
        auth.user_id,
        VALID_DAYS,
    )
    .fetch_optional(&mut *tx)
    .await?;
    let Some(id) = id else {
        return Err(ApiError::new(
            ErrorCode::InvitationExists,
            "an open invitation for this address exists: resend or revoke it instead",
        ));
    };
    audit::record(
        &mut tx,
        audit::Entry {
            organization_id: Some(organization_id),
            actor: Actor::of(auth),
            action: "invitation.created",
            target: Some(("invitation", id)),
            ip: ip.0,
            details: json!({ "role": role.as_str() }),
        },
    )
    .await?;
    let invitation = fetch_open(&mut tx, organization_id, id).await?;
    tx.commit().await?;
    let email_sent = send(&state, organization_id, &policy.display_name, email.as_str(), role.as_str(), &token);
    Ok((StatusCode::CREATED, axum::Json(Sent { invitation, email_sent })))
}

/// Open invitations, expired ones included (flagged) so an admin can resend them.
#[utoipa::path(
    get,
    path = "/v1/organizations/{organization_id}/invitations",
    tag = "organizations",
    operation_id = "list_invitations",
    responses(
        (status = 200, description = "Open invitations, expired ones flagged", body = Vec<Invitation>),
        (status = 403, description = "`insufficient_role`", body = crate::error::ErrorBody),
    )
)]
#[tracing::instrument(skip(state, auth), fields(actor = %auth.user_id))]
async fn list(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiPath(organization_id): ApiPath<Uuid>,
) -> ApiResult<axum::Json<Vec<Invitation>>> {
    let (mut tx, me) = member_tx(&state, auth, organization_id).await?;
    me.require(Role::Admin)?;
    let invitations = sqlx::query_as!(
        Invitation,
        r#"SELECT id, email::text AS "email!", role, invited_by, expires_at, expires_at <= now() AS "expired!", created_at
             FROM organization_invitations
            WHERE organization_id = $1 AND accepted_at IS NULL AND revoked_at IS NULL
            ORDER BY created_at, id"#,
        organization_id
    )
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(axum::Json(invitations))
}

#[utoipa::path(
    delete,
    path = "/v1/organizations/{organization_id}/invitations/{invitation_id}",
    tag = "organizations",
    operation_id = "revoke_invitation",
    responses((status = 204, description = "Revoked"))
)]
#[tracing::instrument(skip(state, auth), fields(actor = %auth.user_id))]
async fn revoke(
    State(state): State<AppState>,
    auth: AuthUser,
    ip: ClientIp,
    ApiPath((organization_id, invitation_id)): ApiPath<(Uuid, Uuid)>,
) -> ApiResult<StatusCode> {
    let (mut tx, me) = member_tx(&state, auth, organization_id).await?;
    me.require(Role::Admin)?;
    let invitation = fetch_open(&mut tx, organization_id, invitation_id).await?;
    if invitation.role == Role::Owner.as_str() {
        me.require(Role::Owner)?;
    }
    sqlx::query!(
        "UPDATE organization_invitations SET revoked_at = now() WHERE organization_id = $1 AND id = $2",
        organization_id,
        invitation_id
    )
    .execute(&mut *tx)
    .await?;
    audit::record(
        &mut tx,
        audit::Entry {
            organization_id: Some(organization_id),
            actor: Actor::of(auth),
            action: "invitation.revoked",
            target: Some(("invitation", invitation_id)),
            ip: ip.0,
            details: json!({ "role": invitation.role }),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Rotates the token (the old one stops working), restarts the validity and emails the new one.
#[utoipa::path(
    post,
    path = "/v1/organizations/{organization_id}/invitations/{invitation_id}/resend",
    tag = "organizations",
    operation_id = "resend_invitation",
    responses(
        (status = 200, description = "A new token is sent; the old one stops working", body = Sent),
        (status = 403, description = "`insufficient_role`", body = crate::error::ErrorBody),
        (status = 429, description = "`rate_limited`", body = crate::error::ErrorBody),
    )
)]
#[tracing::instrument(skip(state, auth), fields(actor = %auth.user_id))]
async fn resend(
    State(state): State<AppState>,
    auth: AuthUser,
    ip: ClientIp,
    ApiPath((organization_id, invitation_id)): ApiPath<(Uuid, Uuid)>,
) -> ApiResult<axum::Json<Sent>> {
    let (mut tx, me) = member_tx(&state, auth, organization_id).await?;
    me.require(Role::Admin)?;
    let invitation = fetch_open(&mut tx, organization_id, invitation_id).await?;
    if invitation.role == Role::Owner.as_str() {
        me.require(Role::Owner)?;
    }
    ratelimit::check(&state, ratelimit::ORGANIZATION_INVITATION, &auth.user_id.to_string()).await?;
    let policy = policy::lock(&mut tx, organization_id).await?;
    policy.check_domain(&Email::parse(&invitation.email)?)?;
    let token = tokens::generate(Kind::Invitation);
    sqlx::query!(
        "UPDATE organization_invitations SET token_hash = $3, expires_at = now() + make_interval(days => $4)
          WHERE organization_id = $1 AND id = $2",
        organization_id,
        invitation_id,
        tokens::digest(&token),
        VALID_DAYS,
    )
    .execute(&mut *tx)
    .await?;
    audit::record(
        &mut tx,
        audit::Entry {
            organization_id: Some(organization_id),
            actor: Actor::of(auth),
            action: "invitation.resent",
            target: Some(("invitation", invitation_id)),
            ip: ip.0,
            details: json!({ "role": invitation.role }),
        },
    )
    .await?;
    let invitation = fetch_open(&mut tx, organization_id, invitation_id).await?;
    tx.commit().await?;
    let email_sent = send(&state, organization_id, &policy.display_name, &invitation.email, &invitation.role, &token);
    Ok(axum::Json(Sent { invitation, email_sent }))
}

/// Accepting is the one organization route a non-member calls, so it cannot go through
/// `member_tx`; it opens the same tenant transaction itself. A token that matches no invitation
/// of this organization (including one of another organization) is a plain 404.
#[utoipa::path(
    post,
    path = "/v1/organizations/{organization_id}/invitations/accept",
    tag = "organizations",
    operation_id = "accept_invitation",
    request_body = AcceptRequest,
    responses(
        (status = 201, description = "Joined the organization", body = Joined),
        (status = 410, description = "`invitation_used`, `invitation_revoked`, `invitation_expired`", body = crate::error::ErrorBody),
        (status = 409, description = "`member_limit_reached`", body = crate::error::ErrorBody),
        (status = 403, description = "`invitation_email_mismatch`", body = crate::error::ErrorBody),
        (status = 422, description = "`email_domain_not_allowed`", body = crate::error::ErrorBody),
    )
)]
#[tracing::instrument(skip(state, auth, body), fields(user_id = %auth.user_id))]
async fn accept(
    State(state): State<AppState>,
    auth: AuthUser,
    ip: ClientIp,
    ApiPath(organization_id): ApiPath<Uuid>,
    ApiJson(body): ApiJson<AcceptRequest>,
) -> ApiResult<(StatusCode, axum::Json<Joined>)> {
    let token = body.token.trim();
    if !tokens::looks_like(Kind::Invitation, token) {
        return Err(ApiError::not_found("invitation"));
    }
    let mut tx = db::tenant_tx(&state, organization_id, auth.user_id).await?;
    let invitation = sqlx::query!(
        r#"SELECT id, email::text AS "email!", role, expires_at <= now() AS "expired!",
                  accepted_at IS NOT NULL AS "accepted!", revoked_at IS NOT NULL AS "revoked!"
             FROM organization_invitations WHERE organization_id = $1 AND token_hash = $2"#,
        organization_id,
        tokens::digest(token)
    )
    .fetch_optional(&mut *tx)
    .await?
    .ok_or_else(|| ApiError::not_found("invitation"))?;
    if invitation.accepted {
        return Err(ApiError::new(ErrorCode::InvitationUsed, "this invitation has already been accepted"));
    }
    if invitation.revoked {
        return Err(ApiError::new(ErrorCode::InvitationRevoked, "this invitation was revoked"));
    }
    if invitation.expired {
        return Err(ApiError::new(ErrorCode::InvitationExpired, "this invitation has expired: ask for a new one"));
    }
    // From here on the organization is locked: the seat count cannot change under us, and a
    // second accept of the same token waits and then finds it used.
    let policy = policy::lock(&mut tx, organization_id).await?;
    let account = sqlx::query!(
        r#"SELECT email::text AS "email!", email_confirmed_at IS NOT NULL AS "confirmed!" FROM user_accounts WHERE id = $1"#,
        auth.user_id
    )
    .fetch_one(&mut *tx)
    .await?;
    if !account.confirmed {
        return Err(ApiError::new(ErrorCode::EmailNotConfirmed, "confirm your email address first"));
    }
    let email = Email::parse(&account.email)?;
    if Email::parse(&invitation.email)? != email {
        return Err(ApiError::new(
            ErrorCode::InvitationEmailMismatch,
            "this invitation was sent to another email address than your account's",
        ));
    }
    let member = sqlx::query_scalar!(
        r#"SELECT EXISTS (SELECT 1 FROM organization_memberships WHERE organization_id = $1 AND user_id = $2) AS "member!""#,
        organization_id,
        auth.user_id
    )
    .fetch_one(&mut *tx)
    .await?;
    if member {
        return Err(ApiError::new(ErrorCode::AlreadyMember, "you already belong to this organization"));
    }
    policy.check_domain(&email)?;
    policy.check_seat(&mut tx).await?;
    let consumed = sqlx::query!(
        "UPDATE organization_invitations SET accepted_at = now(), accepted_by = $3
          WHERE organization_id = $1 AND id = $2 AND accepted_at IS NULL AND revoked_at IS NULL AND expires_at > now()",
        organization_id,
        invitation.id,
        auth.user_id
    )
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if consumed != 1 {
        return Err(ApiError::new(ErrorCode::InvitationUsed, "this invitation is no longer open"));
    }
    sqlx::query!(
        "INSERT INTO organization_memberships (organization_id, user_id, role) VALUES ($1, $2, $3)",
        organization_id,
        auth.user_id,
        invitation.role
    )
    .execute(&mut *tx)
    .await?;
    audit::record(
        &mut tx,
        audit::Entry {
            organization_id: Some(organization_id),
            actor: Actor::of(auth),
            action: "invitation.accepted",
            target: Some(("invitation", invitation.id)),
            ip: ip.0,
            details: json!({ "role": invitation.role }),
        },
    )
    .await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, axum::Json(Joined { organization_id, role: invitation.role })))
}
