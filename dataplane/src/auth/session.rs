//! The `AuthUser` extractor: a valid access token whose session and device are still alive.
//!
//! The JWT alone would stay valid until it expires; checking the session row on every request
//! is what makes logout, password reset and device revocation take effect at once (one indexed
//! lookup by primary key).

use crate::AppState;
use crate::error::ApiError;
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
        let invalid = || ApiError::unauthorized("invalid_token", "the access token is invalid or expired");
        let claims = state.jwt.verify(token).ok_or_else(invalid)?;
        let alive = sqlx::query_scalar!(
            r#"SELECT EXISTS (
                 SELECT 1 FROM session_tokens s
                   JOIN devices d ON d.id = s.device_id
                   JOIN user_accounts u ON u.id = s.user_id
                  WHERE s.id = $1 AND s.user_id = $2 AND s.device_id = $3
                    AND s.revoked_at IS NULL AND s.expires_at > now()
                    AND d.revoked_at IS NULL AND u.status = 'active') AS "alive!""#,
            claims.sid,
            claims.sub,
            claims.did,
        )
        .fetch_one(&state.db)
        .await?;
        if !alive {
            return Err(ApiError::unauthorized("session_revoked", "this session has ended; sign in again"));
        }
        Ok(Self { user_id: claims.sub, session_id: claims.sid, device_id: claims.did })
    }
}

impl FromRequestParts<AppState> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let token = bearer(parts).ok_or_else(|| {
            ApiError::unauthorized("missing_token", "send an access token: Authorization: Bearer <token>")
        })?;
        Self::from_token(state, token).await
    }
}
