//! Accounts and authentication: registration and email confirmation, login with lockout and
//! TOTP, access tokens (JWT) and rotating refresh tokens, logout, password change and reset.

pub mod credentials;
pub mod jwt;
mod login;
pub(crate) use login::{first_use_of, proof_holds};
mod password;
mod refresh;
mod register;
mod totp;

use crate::AppState;
use crate::context::session::AuthUser;
use crate::error::{ApiError, ApiResult};
use axum::extract::State;
use conclave_protocol::auth::{Me, TokenPair, TokenType};
use serde_json::Value;
use sqlx::PgConnection;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(register::register))
        .routes(routes!(register::confirm_email))
        .routes(routes!(register::resend_confirmation))
        .routes(routes!(login::login))
        .routes(routes!(login::logout))
        .routes(routes!(refresh::refresh))
        .routes(routes!(password::change))
        .routes(routes!(password::request_reset))
        .routes(routes!(password::confirm_reset))
        .routes(routes!(totp::enroll))
        .routes(routes!(totp::confirm))
        .routes(routes!(totp::disable))
        .routes(routes!(me))
        .routes(routes!(jwks))
}

/// An access token for a session; `bot` when the session is a bot's (see [`jwt::Claims::bot`]).
pub fn access_token(
    state: &AppState,
    user_id: Uuid,
    session_id: Uuid,
    device_id: Uuid,
    bot: bool,
) -> ApiResult<String> {
    let now = crate::clock::unix_seconds();
    let claims = jwt::Claims {
        iss: jwt::ISSUER.to_owned(),
        sub: user_id,
        sid: session_id,
        did: device_id,
        iat: now,
        exp: now + state.config.access_token_ttl,
        bot,
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
    open_session_for(conn, state, user_id, device_id, user_agent, None).await
}

/// [`open_session`], for a bot when `bot_token_digest` is the digest of the bot token that opens
/// it: the session then lives only as long as that token does (`crate::bots`).
pub async fn open_session_for(
    conn: &mut PgConnection,
    state: &AppState,
    user_id: Uuid,
    device_id: Uuid,
    user_agent: Option<&str>,
    bot_token_digest: Option<&[u8]>,
) -> ApiResult<TokenPair> {
    let refresh_token = crate::tokens::generate(crate::tokens::Kind::Refresh);
    let digest = crate::tokens::digest(&refresh_token);
    let ttl = state.config.refresh_token_ttl as f64;
    // The session row keeps the digest of the credential that opened it.
    let session_id = sqlx::query_scalar!(
        "INSERT INTO session_tokens (user_id, device_id, token_hash, expires_at, user_agent, bot_token_hash)
         VALUES ($1, $2, $3, now() + make_interval(secs => $4), left($5, 512), $6) RETURNING id",
        user_id,
        device_id,
        digest,
        ttl,
        user_agent,
        bot_token_digest,
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
        access_token: access_token(state, user_id, session_id, device_id, bot_token_digest.is_some())?,
        token_type: TokenType::Bearer,
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
    responses((status = 200, description = "The public keys access tokens are signed with (RFC 7517)", body = Jwks))
)]
async fn jwks(State(state): State<AppState>) -> axum::Json<Value> {
    axum::Json(state.jwt.jwks().clone())
}

/// A JSON Web Key Set (RFC 7517): the Ed25519 keys access tokens are signed with.
#[derive(utoipa::ToSchema)]
#[allow(dead_code, reason = "documents the set that crate::auth::jwt builds")]
struct Jwks {
    keys: Vec<serde_json::Value>,
}
