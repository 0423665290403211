//! The `AuthUser` extractor: a valid access token whose session and device are still alive.
//!
//! The JWT alone would stay valid until it expires; checking the session row on every request
//! is what makes logout, password reset and device revocation take effect at once (one indexed
//! lookup by primary key).

use crate::AppState;
use crate::error::{ApiError, ErrorCode};
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use uuid::Uuid;

#[derive(Debug, Clone, Copy)]
pub struct AuthUser {
    pub user_id: Uuid,
    pub session_id: Uuid,
    pub device_id: Uuid,
}

fn bearer(parts: &Parts) -> Option<&str> {
    let value = parts.headers.get(axum::http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then_some(token.trim())
}

impl AuthUser {
    /// Validates a raw access token (also used by the WebSocket handshake).
    pub async fn from_token(state: &AppState, token: &str) -> Result<Self, ApiError> {
        let claims = Self::from_signature(state, token)?;
        let alive = sqlx::query_scalar!(
            r#"SELECT EXISTS (
                 SELECT 1 FROM session_tokens s
                   JOIN devices d ON d.id = s.device_id
                   JOIN user_accounts u ON u.id = s.user_id
                  WHERE s.id = $1 AND s.user_id = $2 AND s.device_id = $3
                    AND s.revoked_at IS NULL AND s.expires_at > now()
                    AND d.revoked_at IS NULL AND u.status = 'active') AS "alive!""#,
            claims.session_id,
            claims.user_id,
            claims.device_id,
        )
        .fetch_one(&state.db)
        .await?;
        if !alive {
            return Err(session_revoked());
        }
        Ok(claims)
    }

    /// The token's signature and expiry only, without the database.
    fn from_signature(state: &AppState, token: &str) -> Result<Self, ApiError> {
        let claims = state.jwt.verify(token).ok_or_else(invalid_token)?;
        Ok(Self { user_id: claims.sub, session_id: claims.sid, device_id: claims.did })
    }
}

fn invalid_token() -> ApiError {
    ApiError::new(ErrorCode::InvalidToken, "the access token is invalid or expired")
}

/// The answer when the session, its device or its account has ended.
pub fn session_revoked() -> ApiError {
    ApiError::new(ErrorCode::SessionRevoked, "this session has ended; sign in again")
}

/// An access token checked for its signature and expiry only. A handler taking this instead of
/// [`AuthUser`] promises to check the session in its own statement, in the same round trip as
/// its work (the send batch does: `conclave_send_messages`), and to answer [`session_revoked`]
/// when it has ended.
#[derive(Debug, Clone, Copy)]
pub struct SignedToken(pub AuthUser);

impl FromRequestParts<AppState> for SignedToken {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let token = bearer(parts).ok_or_else(missing_token)?;
        AuthUser::from_signature(state, token).map(Self)
    }
}

fn missing_token() -> ApiError {
    ApiError::new(ErrorCode::MissingToken, "send an access token: Authorization: Bearer <token>")
}

impl FromRequestParts<AppState> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let token = bearer(parts).ok_or_else(missing_token)?;
        Self::from_token(state, token).await
    }
}
