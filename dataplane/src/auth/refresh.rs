//! Refresh-token rotation with reuse detection (RFC 9700 §4.14).
//!
//! Every use of a refresh token marks it rotated and mints its successor in the same family. A
//! rotated token presented again means two parties hold the family (one of them a thief), so the
//! whole family and its session are revoked, and the reuse is audited.

use super::{TokenPair, access_token};
use crate::AppState;
use crate::audit::{self, Actor};
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::extract::{ApiJson, ClientIp};
use crate::ratelimit;
use crate::tokens::{self, Kind};
use axum::extract::State;
use conclave_protocol::auth::{RefreshRequest, TokenType};
use serde_json::json;

fn invalid() -> ApiError {
    ApiError::new(ErrorCode::InvalidRefreshToken, "the refresh token is invalid, expired or revoked")
}

#[utoipa::path(
    post,
    path = "/v1/auth/refresh",
    tag = "auth",
    operation_id = "refresh",
    security(()),
    request_body = RefreshRequest,
    responses(
        (status = 200, description = "A new access token and the next refresh token", body = TokenPair),
        (status = 401, description = "`invalid_refresh_token`, `refresh_token_reused`", body = crate::error::ErrorBody),
        (status = 429, description = "`rate_limited`", body = crate::error::ErrorBody),
    )
)]
#[tracing::instrument(skip_all)]
pub async fn refresh(
    State(state): State<AppState>,
    ip: ClientIp,
    ApiJson(body): ApiJson<RefreshRequest>,
) -> ApiResult<axum::Json<TokenPair>> {
    ratelimit::check(&state, ratelimit::REFRESH, &ip.key()).await?;
    if !tokens::looks_like(Kind::Refresh, &body.refresh_token) {
        return Err(invalid());
    }
    let mut tx = state.db.begin().await?;
    // Lock the row: two concurrent refreshes with one token must not both rotate it.
    let token = sqlx::query!(
        r#"SELECT r.id, r.user_id, r.session_id, r.family_id, r.rotated_at IS NOT NULL AS "rotated!",
                  r.revoked_at IS NOT NULL AS "revoked!", r.expires_at <= now() AS "expired!",
                  s.device_id, s.revoked_at IS NOT NULL AS "session_revoked!", s.bot_token_hash IS NOT NULL AS "bot!"
             FROM refresh_tokens r JOIN session_tokens s ON s.id = r.session_id
            WHERE r.token_hash = $1
            FOR UPDATE OF r"#,
        tokens::digest(&body.refresh_token)
    )
    .fetch_optional(&mut *tx)
    .await?
    .ok_or_else(invalid)?;

    if token.rotated && !token.revoked {
        sqlx::query!(
            "UPDATE refresh_tokens SET revoked_at = now(), revoked_reason = 'reuse_detected'
              WHERE family_id = $1 AND revoked_at IS NULL",
            token.family_id
        )
        .execute(&mut *tx)
        .await?;
        sqlx::query!(
            "UPDATE session_tokens SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL",
            token.session_id
        )
        .execute(&mut *tx)
        .await?;
        audit::record(
            &mut tx,
            audit::Entry {
                organization_id: None,
                actor: Actor::User { user_id: token.user_id, device_id: Some(token.device_id) },
                action: "auth.refresh_token_reused",
                target: Some(("session", token.session_id)),
                ip: ip.0,
                details: json!({ "family_id": token.family_id }),
            },
        )
        .await?;
        tx.commit().await?;
        return Err(ApiError::new(
            ErrorCode::RefreshTokenReused,
            "this refresh token was already used; the session has been ended for safety",
        ));
    }
    if token.revoked || token.expired || token.session_revoked || token.rotated {
        return Err(invalid());
    }
    let device_alive = sqlx::query_scalar!(
        r#"SELECT EXISTS (SELECT 1 FROM devices d JOIN user_accounts u ON u.id = d.user_id
                           WHERE d.id = $1 AND d.revoked_at IS NULL AND u.status = 'active') AS "alive!""#,
        token.device_id
    )
    .fetch_one(&mut *tx)
    .await?;
    if !device_alive {
        return Err(invalid());
    }

    let next = tokens::generate(Kind::Refresh);
    let ttl = state.config.refresh_token_ttl as f64;
    sqlx::query!("UPDATE refresh_tokens SET rotated_at = now() WHERE id = $1", token.id).execute(&mut *tx).await?;
    sqlx::query!(
        "INSERT INTO refresh_tokens (user_id, session_id, family_id, parent_id, token_hash, expires_at)
         VALUES ($1, $2, $3, $4, $5, now() + make_interval(secs => $6))",
        token.user_id,
        token.session_id,
        token.family_id,
        token.id,
        tokens::digest(&next),
        ttl,
    )
    .execute(&mut *tx)
    .await?;
    sqlx::query!(
        "UPDATE session_tokens SET last_used_at = now(), expires_at = now() + make_interval(secs => $2) WHERE id = $1",
        token.session_id,
        ttl
    )
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(axum::Json(TokenPair {
        access_token: access_token(&state, token.user_id, token.session_id, token.device_id, token.bot)?,
        token_type: TokenType::Bearer,
        expires_in: state.config.access_token_ttl,
        refresh_token: next,
        user_id: token.user_id,
        session_id: token.session_id,
        device_id: token.device_id,
    }))
}
