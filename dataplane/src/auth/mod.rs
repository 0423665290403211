//! Accounts and authentication: registration and email confirmation, login with lockout and
//! TOTP, access tokens (JWT) and rotating refresh tokens, logout, password change and reset.

pub mod credentials;
pub mod jwt;
mod login;
mod password;
mod refresh;
mod register;
pub mod session;
mod totp;

use crate::AppState;
use crate::error::{ApiError, ApiResult};
use axum::Router;
use axum::extract::State;
use axum::routing::{get, post};
use serde::Serialize;
use serde_json::Value;
use session::AuthUser;
use sqlx::PgConnection;
use uuid::Uuid;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/auth/register", post(register::register))
        .route("/v1/auth/confirm-email", post(register::confirm_email))
        .route("/v1/auth/confirm-email/resend", post(register::resend_confirmation))
        .route("/v1/auth/login", post(login::login))
        .route("/v1/auth/logout", post(login::logout))
        .route("/v1/auth/refresh", post(refresh::refresh))
        .route("/v1/auth/password", post(password::change))
        .route("/v1/auth/password-reset", post(password::request_reset))
        .route("/v1/auth/password-reset/confirm", post(password::confirm_reset))
        .route("/v1/auth/totp", post(totp::enroll))
        .route("/v1/auth/totp/confirm", post(totp::confirm))
        .route("/v1/auth/totp/disable", post(totp::disable))
        .route("/v1/me", get(me))
        .route("/.well-known/jwks.json", get(jwks))
}

/// The feature's part of the OpenAPI document (`crate::openapi`).
#[derive(utoipa::OpenApi)]
#[openapi(paths(
    register::register,
    register::confirm_email,
    register::resend_confirmation,
    login::login,
    login::logout,
    refresh::refresh,
    password::change,
    password::request_reset,
    password::confirm_reset,
    totp::enroll,
    totp::confirm,
    totp::disable,
    me,
    jwks
))]
pub(crate) struct ApiDoc;

/// What a successful login or refresh returns.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TokenPair {
    pub access_token: String,
    /// Always `Bearer`.
    #[schema(value_type = String)]
    pub token_type: &'static str,
    /// Seconds until the access token expires.
    pub expires_in: u64,
    pub refresh_token: String,
    pub user_id: Uuid,
    pub session_id: Uuid,
    pub device_id: Uuid,
}

fn now_seconds() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

pub fn access_token(state: &AppState, user_id: Uuid, session_id: Uuid, device_id: Uuid) -> ApiResult<String> {
    let now = now_seconds();
    let claims = jwt::Claims {
        iss: jwt::ISSUER.to_owned(),
        sub: user_id,
        sid: session_id,
        did: device_id,
        iat: now,
        exp: now + state.config.access_token_ttl,
    };
    state.jwt.issue(&claims).map_err(|e| {
        tracing::error!(error = %e, "signing an access token failed");
        ApiError::internal()
    })
}

/// Opens a session on a device and mints its first refresh token (a new family).
pub async fn open_session(
    conn: &mut PgConnection,
    state: &AppState,
    user_id: Uuid,
    device_id: Uuid,
    user_agent: Option<&str>,
) -> ApiResult<TokenPair> {
    let refresh_token = crate::tokens::generate(crate::tokens::Kind::Refresh);
    let digest = crate::tokens::digest(&refresh_token);
    let ttl = state.config.refresh_token_ttl as f64;
    // The session row keeps the digest of the credential that opened it.
    let session_id = sqlx::query_scalar!(
        "INSERT INTO session_tokens (user_id, device_id, token_hash, expires_at, user_agent)
         VALUES ($1, $2, $3, now() + make_interval(secs => $4), left($5, 512)) RETURNING id",
        user_id,
        device_id,
        digest,
        ttl,
        user_agent,
    )
    .fetch_one(&mut *conn)
    .await?;
    sqlx::query!(
        "INSERT INTO refresh_tokens (user_id, session_id, family_id, token_hash, expires_at)
         VALUES ($1, $2, $2, $3, now() + make_interval(secs => $4))",
        user_id,
        session_id,
        digest,
        ttl,
    )
    .execute(&mut *conn)
    .await?;
    Ok(TokenPair {
        access_token: access_token(state, user_id, session_id, device_id)?,
        token_type: "Bearer",
        expires_in: state.config.access_token_ttl,
        refresh_token,
        user_id,
        session_id,
        device_id,
    })
}

/// Ends sessions of a user and their refresh tokens; `keep` spares one session (the caller's).
pub async fn revoke_sessions(
    conn: &mut PgConnection,
    user_id: Uuid,
    keep: Option<Uuid>,
    reason: &str,
) -> ApiResult<u64> {
    sqlx::query!(
        "UPDATE refresh_tokens SET revoked_at = now(), revoked_reason = $3
          WHERE user_id = $1 AND revoked_at IS NULL AND session_id IS DISTINCT FROM $2",
        user_id,
        keep,
        reason,
    )
    .execute(&mut *conn)
    .await?;
    let ended = sqlx::query!(
        "UPDATE session_tokens SET revoked_at = now()
          WHERE user_id = $1 AND revoked_at IS NULL AND id IS DISTINCT FROM $2",
        user_id,
        keep,
    )
    .execute(&mut *conn)
    .await?
    .rows_affected();
    Ok(ended)
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct Me {
    user_id: Uuid,
    email: String,
    display_name: Option<String>,
    email_confirmed: bool,
    totp_enabled: bool,
    session_id: Uuid,
    device_id: Uuid,
}

#[utoipa::path(
    get,
    path = "/v1/me",
    tag = "auth",
    operation_id = "me",
    responses((status = 200, description = "The signed-in account, session and device", body = Me))
)]
async fn me(State(state): State<AppState>, auth: AuthUser) -> ApiResult<axum::Json<Me>> {
    let row = sqlx::query!(
        r#"SELECT u.email AS "email!", p.display_name AS "display_name?", u.email_confirmed_at IS NOT NULL AS "confirmed!",
                  EXISTS (SELECT 1 FROM totp_secrets t WHERE t.user_id = u.id AND t.confirmed_at IS NOT NULL) AS "totp!"
             FROM user_accounts u LEFT JOIN user_profiles p ON p.user_id = u.id WHERE u.id = $1"#,
        auth.user_id
    )
    .fetch_one(&state.db)
    .await?;
    Ok(axum::Json(Me {
        user_id: auth.user_id,
        email: row.email,
        display_name: row.display_name,
        email_confirmed: row.confirmed,
        totp_enabled: row.totp,
        session_id: auth.session_id,
        device_id: auth.device_id,
    }))
}

#[utoipa::path(
    get,
    path = "/.well-known/jwks.json",
    tag = "auth",
    operation_id = "jwks",
    security(()),
    responses((status = 200, description = "The public keys access tokens are signed with (RFC 7517)", body = crate::openapi::Jwks))
)]
async fn jwks(State(state): State<AppState>) -> axum::Json<Value> {
    axum::Json(state.jwt.jwks().clone())
}
