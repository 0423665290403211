//! Contact invitations: addressed to an email (always emailed, whether or not the address has an
//! account, so the answer reveals nothing), or an open `cvc_` code to share out of band (only its
//! digest is stored; whoever presents it first becomes the contact). Either way accepting writes
//! both directions of the contact at once.

use super::{Contact, fetch_contact, standing};
use crate::AppState;
use crate::audit::{self, Actor};
use crate::auth::credentials::Email;
use crate::context::session::AuthUser;
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::extract::{ApiJson, ApiPath, ClientIp};
use crate::ratelimit;
use crate::tokens::{self, Kind};
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::PgConnection;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

const VALID_DAYS: i32 = 14;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(accept_code))
        .routes(routes!(revoke))
        .routes(routes!(accept_addressed))
        .routes(routes!(decline))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ContactInvitation {
    pub id: Uuid,
    pub inviter_user_id: Uuid,
    pub inviter_display_name: Option<String>,
    /// The address it was sent to; none for a shareable code.
    pub invitee_email: Option<String>,
    pub status: String,
    pub expires_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = ContactInvitationCreated)]
pub struct Created {
    #[serde(flatten)]
    invitation: ContactInvitation,
    /// The shareable code, shown once (code invitations only).
    #[serde(skip_serializing_if = "Option::is_none")]
    code: Option<String>,
    email_sent: bool,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = ContactInvitations)]
pub struct Mine {
    sent: Vec<ContactInvitation>,
    received: Vec<ContactInvitation>,
}

/// The caller's address when confirmed: only then may they answer invitations sent to it.
async fn confirmed_email(conn: &mut PgConnection, user_id: Uuid) -> ApiResult<Option<String>> {
    Ok(sqlx::query_scalar!(
        r#"SELECT email::text AS "email!" FROM user_accounts WHERE id = $1 AND email_confirmed_at IS NOT NULL"#,
        user_id
    )
    .fetch_optional(conn)
    .await?)
}

async fn fetch(conn: &mut PgConnection, id: Uuid) -> ApiResult<ContactInvitation> {
    Ok(sqlx::query_as!(
        ContactInvitation,
        r#"SELECT i.id, i.inviter_user_id, p.display_name AS "inviter_display_name?", i.invitee_email::text AS "invitee_email?",
                  i.status, i.expires_at, i.created_at
             FROM contact_invitations i LEFT JOIN user_profiles p ON p.user_id = i.inviter_user_id
            WHERE i.id = $1"#,
        id
    )
    .fetch_one(conn)
    .await?)
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[schema(as = NewContactInvitation)]
#[serde(deny_unknown_fields)]
pub struct NewInvitation {
    #[serde(default)]
    email: Option<String>,
}

#[utoipa::path(
    post,
    path = "/v1/contacts/invitations",
    tag = "contacts",
    operation_id = "create_contact_invitation",
    request_body = NewInvitation,
    responses(
        (status = 201, description = "An email invitation, or a shareable code (shown once)", body = Created),
        (status = 403, description = "`contact_refused`", body = crate::error::ErrorBody),
        (status = 409, description = "`already_contacts`, `invitation_exists`", body = crate::error::ErrorBody),
        (status = 429, description = "`rate_limited`: too many invitations sent", body = crate::error::ErrorBody),
    )
)]
#[tracing::instrument(skip(state, auth, body), fields(user_id = %auth.user_id))]
async fn create(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiJson(body): ApiJson<NewInvitation>,
) -> ApiResult<(StatusCode, axum::Json<Created>)> {
    let email = body.email.as_deref().map(Email::parse).transpose()?;
    ratelimit::check(&state, ratelimit::CONTACT_INVITATION, &auth.user_id.to_string()).await?;
    let mut tx = state.db.begin().await?;
    let me = sqlx::query!(
        r#"SELECT u.email::text AS "email!", p.display_name AS "display_name?"
             FROM user_accounts u LEFT JOIN user_profiles p ON p.user_id = u.id WHERE u.id = $1"#,
        auth.user_id
    )
    .fetch_one(&mut *tx)
    .await?;
    let (id, code) = match &email {
        Some(email) => {
            if email.as_str() == me.email {
                return Err(ApiError::validation("email", "is your own address"));
            }
            let invitee = sqlx::query_scalar!("SELECT id FROM user_accounts WHERE email = $1", email.as_str())
                .fetch_optional(&mut *tx)
                .await?;
            if let Some(invitee) = invitee {
                let standing = standing(&mut tx, auth.user_id, invitee).await?;
                if standing.theirs == Some("blocked") {
                    return Err(refused());
                }
                if standing.mine == Some("blocked") {
                    return Err(ApiError::new(
                        ErrorCode::ContactBlocked,
                        "you blocked this person: remove the block first (DELETE /v1/contacts/{user_id})",
                    ));
                }
                if standing.mine == Some("accepted") {
                    return Err(ApiError::new(ErrorCode::AlreadyContacts, "you are already contacts"));
                }
            }
            let pending = sqlx::query_scalar!(
                r#"SELECT EXISTS (SELECT 1 FROM contact_invitations WHERE inviter_user_id = $1 AND invitee_email = $2
                                     AND status = 'pending' AND expires_at > now()) AS "pending!""#,
                auth.user_id,
                email.as_str()
            )
            .fetch_one(&mut *tx)
            .await?;
            if pending {
                return Err(ApiError::new(ErrorCode::InvitationExists, "you already invited this address"));
            }
            let id = sqlx::query_scalar!(
                "INSERT INTO contact_invitations (inviter_user_id, invitee_email, invitee_user_id, expires_at)
                 VALUES ($1, $2, $3, now() + make_interval(days => $4)) RETURNING id",
                auth.user_id,
                email.as_str(),
                invitee,
                VALID_DAYS
            )
            .fetch_one(&mut *tx)
            .await?;
            (id, None)
        }
        None => {
            let code = tokens::generate(Kind::ContactCode);
            let id = sqlx::query_scalar!(
                "INSERT INTO contact_invitations (inviter_user_id, code_hash, expires_at)
                 VALUES ($1, $2, now() + make_interval(days => $3)) RETURNING id",
                auth.user_id,
                tokens::digest(&code),
                VALID_DAYS
            )
            .fetch_one(&mut *tx)
            .await?;
            (id, Some(code))
        }
    };
    let invitation = fetch(&mut tx, id).await?;
    tx.commit().await?;
    let email_sent = match email {
        Some(to) if state.mailer.enabled() => {
            let name = me.display_name.unwrap_or_else(|| me.email.clone());
            let body = format!(
                "{name} ({inviter}) would like to add you as a contact on Conclave.\n\n\
                 Sign in with this email address (or create an account with it) at {url}, then accept the \
                 invitation among your contact requests (GET /v1/contacts/invitations). It is valid for {VALID_DAYS} days.\n\n\
                 If you do not know this person, ignore this message.\n",
                inviter = me.email,
                url = state.mailer.public_url,
            );
            state.mailer.send_later(to, "A contact invitation on Conclave", body);
            true
        }
        _ => false,
    };
    Ok((StatusCode::CREATED, axum::Json(Created { invitation, code, email_sent })))
}

fn refused() -> ApiError {
    ApiError::new(ErrorCode::ContactRefused, "this person does not accept contact invitations from you")
}

/// Pending invitations I sent, and those sent to my confirmed address or to me, except from
/// people I blocked.
#[utoipa::path(
    get,
    path = "/v1/contacts/invitations",
    tag = "contacts",
    operation_id = "list_contact_invitations",
    responses((status = 200, description = "Pending invitations sent and received", body = Mine))
)]
#[tracing::instrument(skip(state, auth), fields(user_id = %auth.user_id))]
async fn list(State(state): State<AppState>, auth: AuthUser) -> ApiResult<axum::Json<Mine>> {
    let mut tx = state.db.begin().await?;
    let email = confirmed_email(&mut tx, auth.user_id).await?;
    let rows = sqlx::query!(
        r#"SELECT i.id, i.inviter_user_id, p.display_name AS "inviter_display_name?", i.invitee_email::text AS "invitee_email?",
                  i.status, i.expires_at, i.created_at
             FROM contact_invitations i LEFT JOIN user_profiles p ON p.user_id = i.inviter_user_id
            WHERE i.status = 'pending'
              AND (i.inviter_user_id = $1
                   OR (i.expires_at > now()
                       AND (i.invitee_user_id = $1 OR ($2::text IS NOT NULL AND i.invitee_email = $2))
                       AND NOT EXISTS (SELECT 1 FROM contact_links l
                                        WHERE l.user_id = $1 AND l.contact_user_id = i.inviter_user_id AND l.status = 'blocked')))
            ORDER BY i.created_at DESC, i.id"#,
        auth.user_id,
        email
    )
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    let mut mine = Mine { sent: Vec::new(), received: Vec::new() };
    for row in rows {
        let sent = row.inviter_user_id == auth.user_id;
        let invitation = ContactInvitation {
            id: row.id,
            inviter_user_id: row.inviter_user_id,
            inviter_display_name: row.inviter_display_name,
            invitee_email: row.invitee_email,
            status: row.status,
            expires_at: row.expires_at,
            created_at: row.created_at,
        };
        if sent { mine.sent.push(invitation) } else { mine.received.push(invitation) }
    }
    Ok(axum::Json(mine))
}

/// An invitation being answered, locked.
struct Open {
    id: Uuid,
    inviter_user_id: Uuid,
    status: String,
    expired: bool,
}

/// Refuses an invitation that can no longer be answered.
fn ensure_pending(invitation: &Open) -> ApiResult<()> {
    match invitation.status.as_str() {
        "pending" if invitation.expired => {
            Err(ApiError::new(ErrorCode::InvitationExpired, "this invitation has expired"))
        }
        "pending" => Ok(()),
        "accepted" => Err(ApiError::new(ErrorCode::InvitationUsed, "this invitation has already been accepted")),
        "declined" => Err(ApiError::new(ErrorCode::InvitationDeclined, "this invitation was declined")),
        _ => Err(ApiError::new(ErrorCode::InvitationRevoked, "this invitation was withdrawn")),
    }
}

/// The audit entry of an answer to an invitation (account-level: contacts belong to people).
async fn record_answer(
    conn: &mut PgConnection,
    auth: AuthUser,
    ip: ClientIp,
    action: &str,
    invitation: &Open,
) -> ApiResult<()> {
    audit::record(
        conn,
        audit::Entry {
            organization_id: None,
            actor: Actor::of(auth),
            action,
            target: Some(("user", invitation.inviter_user_id)),
            ip: ip.0,
            details: serde_json::json!({ "invitation_id": invitation.id }),
        },
    )
    .await?;
    Ok(())
}

/// Accepts inside the caller's transaction: both directions of the contact and the audit entry,
/// or nothing.
async fn accept_in(conn: &mut PgConnection, auth: AuthUser, ip: ClientIp, invitation: Open) -> ApiResult<Contact> {
    let me = auth.user_id;
    if invitation.inviter_user_id == me {
        return Err(ApiError::new(ErrorCode::OwnInvitation, "you cannot accept your own invitation"));
    }
    ensure_pending(&invitation)?;
    if standing(&mut *conn, me, invitation.inviter_user_id).await?.blocked() {
        return Err(refused());
    }
    sqlx::query!(
        "UPDATE contact_invitations SET status = 'accepted', responded_at = now(), invitee_user_id = $2 WHERE id = $1",
        invitation.id,
        me
    )
    .execute(&mut *conn)
    .await?;
    sqlx::query!(
        "INSERT INTO contact_links (user_id, contact_user_id, status) VALUES ($1, $2, 'accepted'), ($2, $1, 'accepted')
         ON CONFLICT (user_id, contact_user_id) DO NOTHING",
        me,
        invitation.inviter_user_id
    )
    .execute(&mut *conn)
    .await?;
    record_answer(&mut *conn, auth, ip, "contact.accepted", &invitation).await?;
    fetch_contact(conn, me, invitation.inviter_user_id).await?.ok_or_else(ApiError::internal)
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[schema(as = ContactCodeRequest)]
#[serde(deny_unknown_fields)]
pub struct CodeRequest {
    code: String,
}

#[utoipa::path(
    post,
    path = "/v1/contacts/invitations/accept",
    tag = "contacts",
    operation_id = "accept_contact_code",
    request_body = CodeRequest,
    responses(
        (status = 200, description = "The new contact", body = Contact),
        (status = 403, description = "`contact_refused`", body = crate::error::ErrorBody),
        (status = 409, description = "`own_invitation`", body = crate::error::ErrorBody),
        (status = 410, description = "`invitation_used`", body = crate::error::ErrorBody),
    )
)]
#[tracing::instrument(skip(state, auth, body), fields(user_id = %auth.user_id))]
async fn accept_code(
    State(state): State<AppState>,
    auth: AuthUser,
    ip: ClientIp,
    ApiJson(body): ApiJson<CodeRequest>,
) -> ApiResult<axum::Json<Contact>> {
    let code = body.code.trim();
    if !tokens::looks_like(Kind::ContactCode, code) {
        return Err(ApiError::not_found("invitation"));
    }
    let mut tx = state.db.begin().await?;
    let invitation = sqlx::query_as!(
        Open,
        r#"SELECT id, inviter_user_id, status, expires_at <= now() AS "expired!"
             FROM contact_invitations WHERE code_hash = $1 FOR UPDATE"#,
        tokens::digest(code)
    )
    .fetch_optional(&mut *tx)
    .await?
    .ok_or_else(|| ApiError::not_found("invitation"))?;
    let contact = accept_in(&mut tx, auth, ip, invitation).await?;
    tx.commit().await?;
    Ok(axum::Json(contact))
}

/// An email invitation addressed to the caller's confirmed address (or, when the address had an
/// account at the time, to that account); anything else is 404.
async fn addressed_to_me(conn: &mut PgConnection, me: Uuid, id: Uuid) -> ApiResult<Open> {
    let email = confirmed_email(&mut *conn, me).await?.ok_or_else(|| ApiError::not_found("invitation"))?;
    sqlx::query_as!(
        Open,
        r#"SELECT id, inviter_user_id, status, expires_at <= now() AS "expired!"
             FROM contact_invitations
            WHERE id = $1 AND code_hash IS NULL AND invitee_email = $3
              AND (invitee_user_id IS NULL OR invitee_user_id = $2)
            FOR UPDATE"#,
        id,
        me,
        email
    )
    .fetch_optional(conn)
    .await?
    .ok_or_else(|| ApiError::not_found("invitation"))
}

#[utoipa::path(
    post,
    path = "/v1/contacts/invitations/{invitation_id}/accept",
    tag = "contacts",
    operation_id = "accept_contact_invitation",
    responses(
        (status = 200, description = "The new contact", body = Contact),
        (status = 410, description = "`invitation_declined`, `invitation_used`", body = crate::error::ErrorBody),
    )
)]
#[tracing::instrument(skip(state, auth), fields(user_id = %auth.user_id))]
async fn accept_addressed(
    State(state): State<AppState>,
    auth: AuthUser,
    ip: ClientIp,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<axum::Json<Contact>> {
    let mut tx = state.db.begin().await?;
    let invitation = addressed_to_me(&mut tx, auth.user_id, id).await?;
    let contact = accept_in(&mut tx, auth, ip, invitation).await?;
    tx.commit().await?;
    Ok(axum::Json(contact))
}

#[utoipa::path(
    post,
    path = "/v1/contacts/invitations/{invitation_id}/decline",
    tag = "contacts",
    operation_id = "decline_contact_invitation",
    responses((status = 204, description = "Declined"))
)]
#[tracing::instrument(skip(state, auth), fields(user_id = %auth.user_id))]
async fn decline(
    State(state): State<AppState>,
    auth: AuthUser,
    ip: ClientIp,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<StatusCode> {
    let mut tx = state.db.begin().await?;
    let invitation = addressed_to_me(&mut tx, auth.user_id, id).await?;
    ensure_pending(&invitation)?;
    sqlx::query!(
        "UPDATE contact_invitations SET status = 'declined', responded_at = now(), invitee_user_id = $2 WHERE id = $1",
        invitation.id,
        auth.user_id
    )
    .execute(&mut *tx)
    .await?;
    record_answer(&mut tx, auth, ip, "contact.declined", &invitation).await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The inviter withdraws a pending invitation (an email one, or a code not yet used).
#[utoipa::path(
    delete,
    path = "/v1/contacts/invitations/{invitation_id}",
    tag = "contacts",
    operation_id = "revoke_contact_invitation",
    responses((status = 204, description = "Withdrawn"))
)]
#[tracing::instrument(skip(state, auth), fields(user_id = %auth.user_id))]
async fn revoke(State(state): State<AppState>, auth: AuthUser, ApiPath(id): ApiPath<Uuid>) -> ApiResult<StatusCode> {
    let mut tx = state.db.begin().await?;
    let revoked = sqlx::query!(
        "UPDATE contact_invitations SET status = 'revoked', responded_at = now()
          WHERE id = $1 AND inviter_user_id = $2 AND status = 'pending'",
        id,
        auth.user_id
    )
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if revoked == 0 {
        return Err(ApiError::not_found("invitation"));
    }
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}
