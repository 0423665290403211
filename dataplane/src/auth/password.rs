//! Password change (signed in) and reset (by emailed token). Both end other sessions: a reset
//! every session, since whoever knew the old password may hold one.

use super::credentials::{Email, Password, hash_password, verify_password};
use super::revoke_sessions;
use crate::AppState;
use crate::audit::{self, Actor};
use crate::context::session::AuthUser;
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::extract::{ApiJson, ClientIp};
use crate::ratelimit;
use crate::tokens::{self, Kind};
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::json;

const RESET_MINUTES: i32 = 60;

#[derive(Deserialize, utoipa::ToSchema)]
#[schema(as = ChangePasswordRequest)]
#[serde(deny_unknown_fields)]
pub struct ChangeRequest {
    current_password: String,
    /// At least 12 characters, at most 256 bytes; not a common password, not the email address.
    #[schema(min_length = 12, max_length = 256)]
    new_password: String,
}

#[utoipa::path(
    post,
    path = "/v1/auth/password",
    tag = "auth",
    operation_id = "change_password",
    request_body = ChangeRequest,
    responses(
        (status = 204, description = "Changed; the other sessions are ended"),
        (status = 401, description = "`invalid_credentials`", body = crate::error::ErrorBody),
    )
)]
pub async fn change(
    State(state): State<AppState>,
    auth: AuthUser,
    ip: ClientIp,
    ApiJson(body): ApiJson<ChangeRequest>,
) -> ApiResult<StatusCode> {
    let account =
        sqlx::query!("SELECT email::text AS \"email!\", password_hash FROM user_accounts WHERE id = $1", auth.user_id)
            .fetch_one(&state.db)
            .await?;
    if !verify_password(&body.current_password, &account.password_hash).await? {
        return Err(ApiError::new(ErrorCode::InvalidCredentials, "the current password is wrong"));
    }
    let email = Email::parse(&account.email)?;
    let password = Password::parse(body.new_password, Some(&email))?;
    let hash = hash_password(&password).await?;
    let mut tx = state.db.begin().await?;
    sqlx::query!("UPDATE user_accounts SET password_hash = $2 WHERE id = $1", auth.user_id, hash)
        .execute(&mut *tx)
        .await?;
    sqlx::query!("UPDATE user_security_states SET password_changed_at = now() WHERE user_id = $1", auth.user_id)
        .execute(&mut *tx)
        .await?;
    let ended = revoke_sessions(&mut tx, auth.user_id, Some(auth.session_id), "password_changed").await?;
    audit::record(
        &mut tx,
        audit::Entry {
            organization_id: None,
            actor: Actor::of(auth),
            action: "auth.password_changed",
            target: Some(("user", auth.user_id)),
            ip: ip.0,
            details: json!({ "other_sessions_ended": ended }),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, utoipa::ToSchema)]
#[schema(as = PasswordResetRequest)]
#[serde(deny_unknown_fields)]
pub struct ResetRequest {
    email: String,
}

/// Always 202: the answer must not reveal whether the address has an account.
#[utoipa::path(
    post,
    path = "/v1/auth/password-reset",
    tag = "auth",
    operation_id = "request_password_reset",
    security(()),
    request_body = ResetRequest,
    responses(
        (status = 202, description = "Accepted, whether or not the address has an account"),
        (status = 503, description = "`email_disabled`", body = crate::error::ErrorBody),
        (status = 429, description = "`rate_limited`", body = crate::error::ErrorBody),
    )
)]
pub async fn request_reset(
    State(state): State<AppState>,
    ip: ClientIp,
    ApiJson(body): ApiJson<ResetRequest>,
) -> ApiResult<StatusCode> {
    ratelimit::check(&state, ratelimit::PASSWORD_RESET, &ip.key()).await?;
    let email = Email::parse(&body.email)?;
    ratelimit::check(&state, ratelimit::PASSWORD_RESET, &hex::encode(tokens::digest(email.as_str()))).await?;
    if !state.mailer.enabled() {
        return Err(ApiError::new(
            ErrorCode::EmailDisabled,
            "this deployment sends no email, so passwords cannot be reset by email",
        ));
    }
    let mut tx = state.db.begin().await?;
    let user =
        sqlx::query_scalar!("SELECT id FROM user_accounts WHERE email = $1 AND status = 'active'", email.as_str())
            .fetch_optional(&mut *tx)
            .await?;
    if let Some(user_id) = user {
        let token = tokens::generate(Kind::PasswordReset);
        sqlx::query!(
            "INSERT INTO password_reset_tokens (user_id, token_hash, expires_at) VALUES ($1, $2, now() + make_interval(mins => $3))",
            user_id,
            tokens::digest(&token),
            RESET_MINUTES,
        )
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        let body = format!(
            "Someone asked to reset the password of your Conclave account.\n\nReset token (valid for {RESET_MINUTES} minutes, usable once):\n\n{token}\n\nor open {}/reset-password?token={token}\n\nIf it was not you, ignore this message; your password is unchanged.\n",
            state.mailer.public_url
        );
        state.mailer.send_later(email, "Reset your password", body);
    }
    Ok(StatusCode::ACCEPTED)
}

#[derive(Deserialize, utoipa::ToSchema)]
#[schema(as = ConfirmPasswordResetRequest)]
#[serde(deny_unknown_fields)]
pub struct ConfirmResetRequest {
    token: String,
    /// At least 12 characters, at most 256 bytes; not a common password, not the email address.
    #[schema(min_length = 12, max_length = 256)]
    new_password: String,
}

#[utoipa::path(
    post,
    path = "/v1/auth/password-reset/confirm",
    tag = "auth",
    operation_id = "confirm_password_reset",
    security(()),
    request_body = ConfirmResetRequest,
    responses(
        (status = 204, description = "The password is reset and every session ended"),
        (status = 400, description = "`invalid_emailed_token`", body = crate::error::ErrorBody),
        (status = 422, description = "`weak_password`", body = crate::error::ErrorBody),
        (status = 429, description = "`rate_limited`: too many reset attempts from this address", body = crate::error::ErrorBody),
    )
)]
pub async fn confirm_reset(
    State(state): State<AppState>,
    ip: ClientIp,
    ApiJson(body): ApiJson<ConfirmResetRequest>,
) -> ApiResult<StatusCode> {
    ratelimit::check(&state, ratelimit::PASSWORD_RESET, &ip.key()).await?;
    let invalid = || ApiError::new(ErrorCode::InvalidEmailedToken, "the reset token is invalid, used or expired");
    if !tokens::looks_like(Kind::PasswordReset, &body.token) {
        return Err(invalid());
    }
    let digest = tokens::digest(&body.token);
    let account = sqlx::query!(
        r#"SELECT u.id, u.email::text AS "email!" FROM password_reset_tokens t JOIN user_accounts u ON u.id = t.user_id
            WHERE t.token_hash = $1 AND t.consumed_at IS NULL AND t.expires_at > now()"#,
        digest
    )
    .fetch_optional(&state.db)
    .await?
    .ok_or_else(invalid)?;
    // Check the policy before consuming the token, so a weak choice can be corrected.
    let email = Email::parse(&account.email)?;
    let password = Password::parse(body.new_password, Some(&email))?;
    let hash = hash_password(&password).await?;

    let mut tx = state.db.begin().await?;
    let consumed = sqlx::query!(
        "UPDATE password_reset_tokens SET consumed_at = now()
          WHERE token_hash = $1 AND consumed_at IS NULL AND expires_at > now() RETURNING id",
        digest
    )
    .fetch_optional(&mut *tx)
    .await?;
    if consumed.is_none() {
        return Err(invalid());
    }
    // Every other outstanding reset token of the account dies with this one.
    sqlx::query!(
        "UPDATE password_reset_tokens SET consumed_at = now() WHERE user_id = $1 AND consumed_at IS NULL",
        account.id
    )
    .execute(&mut *tx)
    .await?;
    sqlx::query!("UPDATE user_accounts SET password_hash = $2 WHERE id = $1", account.id, hash)
        .execute(&mut *tx)
        .await?;
    sqlx::query!(
        "UPDATE user_security_states SET password_changed_at = now(), failed_login_count = 0, locked_until = NULL WHERE user_id = $1",
        account.id
    )
    .execute(&mut *tx)
    .await?;
    let ended = revoke_sessions(&mut tx, account.id, None, "password_reset").await?;
    // The owner proved the address: the sign-in locks go (before the commit, so a failure here
    // leaves the token usable for another try rather than a reset password still locked out).
    let devices =
        sqlx::query_scalar!("SELECT id FROM devices WHERE user_id = $1", account.id).fetch_all(&mut *tx).await?;
    super::login::lift_locks(&state, &email, &devices).await?;
    audit::record(
        &mut tx,
        audit::Entry {
            organization_id: None,
            actor: Actor::User { user_id: account.id, device_id: None },
            action: "auth.password_reset",
            target: Some(("user", account.id)),
            ip: ip.0,
            details: json!({ "sessions_ended": ended }),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}
