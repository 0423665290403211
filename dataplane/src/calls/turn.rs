//! TURN credentials: the TURN REST API scheme (draft-uberti-behave-turn-rest) that coturn checks
//! with `use-auth-secret` and `static-auth-secret`. Nothing is stored: the username carries its
//! expiry, and the TURN server recomputes the password from the secret it shares with us.

use crate::AppState;
use crate::config::Secret;
use crate::context::session::AuthUser;
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::ratelimit;
use axum::extract::State;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Utc};
use conclave_protocol::calls::TurnCredentials;
use hmac::{Hmac, KeyInit, Mac};
use sha1::Sha1;
use uuid::Uuid;

/// Mints credentials for `user_id` valid until `now + ttl_seconds`: username
/// `<expiry unix seconds>:<user id>`, password base64(HMAC-SHA1(secret, username)).
pub fn mint(secret: &[u8], urls: &[String], user_id: Uuid, now: DateTime<Utc>, ttl_seconds: i64) -> TurnCredentials {
    let expires = now.timestamp() + ttl_seconds;
    let username = format!("{expires}:{user_id}");
    // HMAC takes keys of any length.
    let mut mac = <Hmac<Sha1> as KeyInit>::new_from_slice(secret).unwrap_or_else(|_| unreachable!());
    mac.update(username.as_bytes());
    TurnCredentials {
        urls: urls.to_vec(),
        credential: STANDARD.encode(mac.finalize().into_bytes()),
        username,
        ttl_seconds,
        expires_at: DateTime::from_timestamp(expires, 0).unwrap_or(now),
    }
}

#[utoipa::path(
    post,
    path = "/v1/calls/turn-credentials",
    tag = "calls",
    operation_id = "turn_credentials",
    responses(
        (status = 200, description = "Credentials for the TURN servers, valid for `ttl_seconds`", body = TurnCredentials),
        (status = 429, description = "`rate_limited`", body = crate::error::ErrorBody),
        (status = 503, description = "`turn_not_configured`", body = crate::error::ErrorBody),
    )
)]
#[tracing::instrument(skip_all, fields(user_id = %auth.user_id, device_id = %auth.device_id))]
pub(super) async fn turn_credentials(
    State(state): State<AppState>,
    auth: AuthUser,
) -> ApiResult<axum::Json<TurnCredentials>> {
    let config = &state.config;
    let secret = config.turn_shared_secret.as_ref().map(Secret::expose).filter(|s| !s.is_empty());
    let (Some(secret), false) = (secret, config.turn_urls.is_empty()) else {
        return Err(ApiError::new(ErrorCode::TurnNotConfigured, "this deployment has no TURN server"));
    };
    ratelimit::check(&state, ratelimit::TURN_CREDENTIALS, &auth.device_id.to_string()).await?;
    let minted =
        mint(secret.as_bytes(), &config.turn_urls, auth.user_id, Utc::now(), config.turn_credential_ttl_seconds);
    Ok(axum::Json(minted))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_is_the_base64_hmac_sha1_of_the_username() {
        // The expected value computed independently (Python's hmac module).
        let user = Uuid::nil();
        let now = DateTime::from_timestamp(1_700_000_000, 0).expect("time");
        let c = mint(b"Jefe", &["turn:127.0.0.1:3478".into()], user, now, 3600);
        assert_eq!(c.username, "1700003600:00000000-0000-0000-0000-000000000000");
        assert_eq!(c.credential, "70N+RigpSDloudhQr+Jsc1EEesw=");
        assert_eq!(c.expires_at.timestamp(), 1_700_003_600);
        assert_eq!(c.urls, ["turn:127.0.0.1:3478"]);
    }
}
