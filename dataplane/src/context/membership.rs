//! The caller's standing in an organization: every organization-scoped request starts with
//! [`member_tx`], which opens a tenant transaction and loads the caller's membership, enforcing
//! the organization's security policy on the way. A caller who is not a member gets exactly the
//! 404 an unknown id gets.
//!
//! The same policy (membership, TOTP required, session lifetime) is checked a second time inside
//! the send batch's SQL function (`conclave_send_messages`, migration 12), because a batch stores
//! many callers' sends in one statement without a `member_tx` per send; the tests in
//! `tests/api/tenancy.rs` hold the two to the same answers.

use crate::AppState;
use crate::context::session::AuthUser;
use crate::db;
use crate::error::{ApiError, ApiResult, ErrorCode};
use serde::{Deserialize, Serialize};
use sqlx::{Postgres, Transaction};
use uuid::Uuid;

/// Organization roles, weakest first, so `role >= Role::Admin` reads as it should.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Guest,
    Member,
    Admin,
    Owner,
}

impl Role {
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "guest" => Some(Self::Guest),
            "member" => Some(Self::Member),
            "admin" => Some(Self::Admin),
            "owner" => Some(Self::Owner),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Guest => "guest",
            Self::Member => "member",
            Self::Admin => "admin",
            Self::Owner => "owner",
        }
    }
}

/// The caller's standing in an organization, loaded inside a tenant transaction.
#[derive(Debug, Clone, Copy)]
pub struct Membership {
    pub organization_id: Uuid,
    pub user_id: Uuid,
    pub role: Role,
}

impl Membership {
    /// Refuses (403 `insufficient_role`) unless the member holds at least `needed`.
    pub fn require(&self, needed: Role) -> ApiResult<()> {
        if self.role >= needed {
            Ok(())
        } else {
            Err(ApiError::new(
                ErrorCode::InsufficientRole,
                format!("this needs the {} role or higher in the organization", needed.as_str()),
            ))
        }
    }
}

/// Opens a tenant transaction for the caller in `organization_id` and loads their membership;
/// 404 when the organization does not exist or the caller is not in it. Also enforces the
/// organization's security policy (TOTP required).
pub async fn member_tx(
    state: &AppState,
    auth: AuthUser,
    organization_id: Uuid,
) -> ApiResult<(Transaction<'static, Postgres>, Membership)> {
    let mut tx = db::tenant_tx(state, organization_id, auth.user_id).await?;
    let row = sqlx::query!(
        r#"SELECT m.role, o.require_totp, o.session_lifetime_seconds,
                  EXISTS (SELECT 1 FROM totp_secrets t WHERE t.user_id = m.user_id AND t.confirmed_at IS NOT NULL) AS "has_totp!",
                  coalesce((SELECT now() - s.created_at > make_interval(secs => o.session_lifetime_seconds)
                              FROM session_tokens s WHERE s.id = $3), false) AS "session_too_old!"
             FROM organization_memberships m JOIN organizations o ON o.id = m.organization_id
            WHERE m.organization_id = $1 AND m.user_id = $2 AND o.status = 'active'"#,
        organization_id,
        auth.user_id,
        auth.session_id
    )
    .fetch_optional(&mut *tx)
    .await?
    .ok_or_else(|| ApiError::not_found("organization"))?;
    // The organization's session lifetime: a session older than that signs in again before it
    // may act in this organization (other organizations keep their own policy).
    if row.session_too_old {
        return Err(session_expired_by_organization(row.session_lifetime_seconds));
    }
    if row.require_totp && !row.has_totp {
        return Err(totp_required_by_organization());
    }
    let role = Role::parse(&row.role).ok_or_else(ApiError::internal)?;
    Ok((tx, Membership { organization_id, user_id: auth.user_id, role }))
}

/// [`member_tx`] for what only the organization's admins and owners may do: 403
/// `insufficient_role` for anyone else in it.
pub async fn admin_tx(
    state: &AppState,
    auth: AuthUser,
    organization_id: Uuid,
) -> ApiResult<(Transaction<'static, Postgres>, Membership)> {
    let (tx, me) = member_tx(state, auth, organization_id).await?;
    me.require(Role::Admin)?;
    Ok((tx, me))
}

/// The answer when a session is older than the organization's `session_lifetime_seconds`.
pub fn session_expired_by_organization(lifetime_seconds: Option<i32>) -> ApiError {
    let hours = lifetime_seconds.unwrap_or_default() as f64 / 3600.0;
    ApiError::new(
        ErrorCode::SessionExpiredByOrganization,
        format!("this organization limits sessions to {hours:.1} hours: sign in again"),
    )
}

/// The answer when the organization requires TOTP and the user has not enabled it.
pub fn totp_required_by_organization() -> ApiError {
    ApiError::new(
        ErrorCode::TotpRequiredByOrganization,
        "this organization requires two-factor sign-in: enable TOTP first (POST /v1/auth/totp)",
    )
}
