//! The `AuthUser` extractor: a valid access token whose session and device are still alive.
//!
//! The JWT alone would stay valid until it expires; checking the session row on every request
//! is what makes logout, password reset and device revocation take effect at once (one indexed
//! lookup by primary key). A bot's session (`crate::bots`) is also checked against the token that
//! opened it and the scopes of its BotAgent, on every request, here.

use crate::AppState;
use crate::error::{ApiError, ErrorCode};
use axum::extract::{FromRequestParts, MatchedPath};
use axum::http::Method;
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
    /// Validates a raw access token for a request to `route` (the method and the path template
    /// the router matched; also used by the WebSocket handshake). A bot's session is also held
    /// to its token and its scopes (`crate::bots::scopes`).
    pub async fn from_token(state: &AppState, token: &str, route: Route<'_>) -> Result<Self, ApiError> {
        Self::with_bot_scopes(state, token, route).await.map(|(auth, _)| auth)
    }

    /// [`Self::from_token`], with the scopes of the bot whose session it is (`None`: a person's).
    pub async fn with_bot_scopes(
        state: &AppState,
        token: &str,
        route: Route<'_>,
    ) -> Result<(Self, Option<Vec<String>>), ApiError> {
        let claims = Self::from_signature(state, token)?;
        let session = sqlx::query!(
            r#"SELECT s.bot_token_hash FROM session_tokens s
                 JOIN devices d ON d.id = s.device_id
                 JOIN user_accounts u ON u.id = s.user_id
                WHERE s.id = $1 AND s.user_id = $2 AND s.device_id = $3
                  AND s.revoked_at IS NULL AND s.expires_at > now()
                  AND d.revoked_at IS NULL AND u.status = 'active'"#,
            claims.session_id,
            claims.user_id,
            claims.device_id,
        )
        .fetch_optional(&state.db)
        .await?
        .ok_or_else(session_revoked)?;
        let Some(digest) = session.bot_token_hash else { return Ok((claims, None)) };
        let scopes = crate::bots::scopes_of_token(state, &digest).await?.ok_or_else(session_revoked)?;
        crate::bots::scopes::authorize(&scopes, route.method, route.path)?;
        Ok((claims, Some(scopes)))
    }

    /// The token's signature and expiry only, without the database; `true` with a bot's.
    fn from_signature(state: &AppState, token: &str) -> Result<Self, ApiError> {
        Self::claims(state, token).map(|(auth, _)| auth)
    }

    fn claims(state: &AppState, token: &str) -> Result<(Self, bool), ApiError> {
        let claims = state.jwt.verify(token).ok_or_else(invalid_token)?;
        Ok((Self { user_id: claims.sub, session_id: claims.sid, device_id: claims.did }, claims.bot))
    }
}

/// What a request asks for, as the bot scopes are declared: its method and the path template
/// the router matched (`/v1/organizations/{organization_id}/...`).
#[derive(Debug, Clone, Copy)]
pub struct Route<'a> {
    pub method: &'a Method,
    pub path: &'a str,
}

impl<'a> Route<'a> {
    /// The route of a request's parts. Without a matched path (never, behind the router) the
    /// literal path stands in: no bot scope names it, so a bot is refused rather than let through.
    pub fn of(parts: &'a Parts) -> Self {
        let path = parts.extensions.get::<MatchedPath>().map_or_else(|| parts.uri.path(), |p| p.as_str());
        Self { method: &parts.method, path }
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
/// when it has ended. A bot's token (its claims say so) is checked in full, with the bot's
/// scopes, as [`AuthUser`] is: bots are few, and their scopes are not in the batch's statement.
#[derive(Debug, Clone, Copy)]
pub struct SignedToken(pub AuthUser);

impl FromRequestParts<AppState> for SignedToken {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let token = bearer(parts).ok_or_else(missing_token)?;
        match AuthUser::claims(state, token)? {
            (auth, false) => Ok(Self(auth)),
            (_, true) => AuthUser::from_token(state, token, Route::of(parts)).await.map(Self),
        }
    }
}

fn missing_token() -> ApiError {
    ApiError::new(ErrorCode::MissingToken, "send an access token: Authorization: Bearer <token>")
}

impl FromRequestParts<AppState> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let token = bearer(parts).ok_or_else(missing_token)?;
        Self::from_token(state, token, Route::of(parts)).await
    }
}
