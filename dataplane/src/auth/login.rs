//! Login (password, then TOTP when enrolled), lockout after repeated failures, and logout.

use super::credentials::{Email, decoy_hash, verify_password};
use super::session::AuthUser;
use super::{TokenPair, open_session, totp};
use crate::AppState;
use crate::audit::{self, Actor};
use crate::devices::{self, NewDevice};
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::extract::{ApiJson, ClientIp};
use crate::ratelimit;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde::Deserialize;
use serde_json::json;
use uuid::Uuid;

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    email: String,
    password: String,
    /// A current TOTP code, when the account has TOTP enabled.
    totp_code: Option<String>,
    /// Or one of the recovery codes issued when TOTP was enabled (each works once).
    recovery_code: Option<String>,
    /// Sign in on a device registered before...
    device_id: Option<Uuid>,
    /// ...or register this one now.
    device: Option<NewDevice>,
}

fn invalid_credentials() -> ApiError {
    ApiError::new(ErrorCode::InvalidCredentials, "the email or password is wrong")
}

#[utoipa::path(
    post,
    path = "/v1/auth/login",
    tag = "auth",
    operation_id = "login",
    security(()),
    request_body = LoginRequest,
    responses(
        (status = 200, description = "Signed in", body = TokenPair),
        (status = 401, description = "`invalid_credentials`, `totp_required`, `invalid_totp`", body = crate::error::ErrorBody),
        (status = 403, description = "`account_locked` (with `Retry-After`), `account_disabled`, `email_not_confirmed`", body = crate::error::ErrorBody),
    )
)]
#[tracing::instrument(skip_all)]
pub async fn login(
    State(state): State<AppState>,
    ip: ClientIp,
    headers: HeaderMap,
    ApiJson(body): ApiJson<LoginRequest>,
) -> ApiResult<axum::Json<TokenPair>> {
    ratelimit::check(&state, ratelimit::LOGIN, &ip.key()).await?;
    let email = Email::parse(&body.email)?;
    ratelimit::check(&state, ratelimit::LOGIN, &hex::encode(crate::tokens::digest(email.as_str()))).await?;
    if body.device_id.is_some() == body.device.is_some() {
        return Err(ApiError::validation(
            "device",
            "give either device_id (a registered device) or device (a new one)",
        ));
    }
    if let Some(device) = &body.device {
        device.validate()?;
    }

    let mut tx = state.db.begin().await?;
    let account = sqlx::query!(
        r#"SELECT u.id, u.password_hash, u.email_confirmed_at IS NOT NULL AS "confirmed!", u.status,
                  s.failed_login_count AS "failed?", s.locked_until,
                  (s.locked_until > now()) AS "locked?",
                  ceil(extract(epoch FROM s.locked_until - now()))::bigint AS "lock_seconds?"
             FROM user_accounts u LEFT JOIN user_security_states s ON s.user_id = u.id
            WHERE u.email = $1
            FOR UPDATE OF u"#,
        email.as_str()
    )
    .fetch_optional(&mut *tx)
    .await?;
    let Some(account) = account else {
        // Spend the same time as a wrong password, so timing does not reveal who has an account.
        verify_password(&body.password, decoy_hash()).await?;
        return Err(invalid_credentials());
    };
    let actor = Actor::User { user_id: account.id, device_id: None };
    if account.locked == Some(true) {
        let seconds = account.lock_seconds.unwrap_or(60).max(1) as u64;
        return Err(ApiError::new(ErrorCode::AccountLocked, "too many failed sign-ins; the account is locked for now")
            .retry_after(seconds));
    }
    if !verify_password(&body.password, &account.password_hash).await? {
        let failed = account.failed.unwrap_or(0) + 1;
        let lock = failed >= state.config.lockout_threshold;
        sqlx::query!(
            "INSERT INTO user_security_states (user_id, failed_login_count, last_failed_at, locked_until)
             VALUES ($1, $2, now(), CASE WHEN $3 THEN now() + make_interval(secs => $4) END)
             ON CONFLICT (user_id) DO UPDATE SET failed_login_count = EXCLUDED.failed_login_count,
                 last_failed_at = now(), locked_until = coalesce(EXCLUDED.locked_until, user_security_states.locked_until)",
            account.id,
            if lock { 0 } else { failed },
            lock,
            state.config.lockout_seconds as f64,
        )
        .execute(&mut *tx)
        .await?;
        let entry = |action| audit::Entry {
            organization_id: None,
            actor,
            action,
            target: Some(("user", account.id)),
            ip: ip.0,
            details: json!({ "failed_attempts": failed }),
        };
        audit::record(&mut tx, entry("auth.login_failed")).await?;
        if lock {
            audit::record(&mut tx, entry("auth.locked_out")).await?;
        }
        tx.commit().await?;
        return Err(invalid_credentials());
    }
    if account.status != "active" {
        return Err(ApiError::new(ErrorCode::AccountDisabled, "this account is disabled"));
    }
    if !account.confirmed {
        return Err(ApiError::new(ErrorCode::EmailNotConfirmed, "confirm your email address before signing in"));
    }
    if let Err(err) =
        totp::check_login(&mut tx, &state, account.id, body.totp_code.as_deref(), body.recovery_code.as_deref()).await
    {
        // A wrong second factor is a failed sign-in too, and is recorded as one.
        if err.code == ErrorCode::InvalidTotp {
            audit::record(
                &mut tx,
                audit::Entry {
                    organization_id: None,
                    actor,
                    action: "auth.totp_failed",
                    target: Some(("user", account.id)),
                    ip: ip.0,
                    details: json!({}),
                },
            )
            .await?;
            tx.commit().await?;
        }
        return Err(err);
    }

    let device_id = match (&body.device, body.device_id) {
        (Some(device), _) => devices::insert(&mut tx, account.id, device).await?,
        (None, Some(id)) => sqlx::query_scalar!(
            "SELECT id FROM devices WHERE id = $1 AND user_id = $2 AND revoked_at IS NULL",
            id,
            account.id
        )
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| ApiError::not_found("device"))?,
        (None, None) => return Err(ApiError::validation("device", "is required")),
    };
    let user_agent = headers.get(axum::http::header::USER_AGENT).and_then(|v| v.to_str().ok());
    let pair = open_session(&mut tx, &state, account.id, device_id, user_agent).await?;
    sqlx::query!(
        "UPDATE user_security_states SET failed_login_count = 0, locked_until = NULL, last_login_at = now() WHERE user_id = $1",
        account.id
    )
    .execute(&mut *tx)
    .await?;
    sqlx::query!("UPDATE devices SET last_seen_at = now() WHERE id = $1", device_id).execute(&mut *tx).await?;
    audit::record(
        &mut tx,
        audit::Entry {
            organization_id: None,
            actor: Actor::User { user_id: account.id, device_id: Some(device_id) },
            action: "auth.login",
            target: Some(("session", pair.session_id)),
            ip: ip.0,
            details: json!({ "new_device": body.device.is_some() }),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(axum::Json(pair))
}

/// Ends the caller's session and its refresh tokens.
#[utoipa::path(
    post,
    path = "/v1/auth/logout",
    tag = "auth",
    operation_id = "logout",
    responses((status = 204, description = "The session and its refresh tokens are ended"))
)]
pub async fn logout(State(state): State<AppState>, auth: AuthUser, ip: ClientIp) -> ApiResult<StatusCode> {
    let mut tx = state.db.begin().await?;
    sqlx::query!(
        "UPDATE refresh_tokens SET revoked_at = now(), revoked_reason = 'logout' WHERE session_id = $1 AND revoked_at IS NULL",
        auth.session_id
    )
    .execute(&mut *tx)
    .await?;
    sqlx::query!("UPDATE session_tokens SET revoked_at = now() WHERE id = $1", auth.session_id)
        .execute(&mut *tx)
        .await?;
    audit::record(
        &mut tx,
        audit::Entry {
            organization_id: None,
            actor: Actor::of(auth),
            action: "auth.logout",
            target: Some(("session", auth.session_id)),
            ip: ip.0,
            details: json!({}),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}
