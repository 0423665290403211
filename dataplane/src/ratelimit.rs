//! Rate limits in Redis, shared by every replica: a fixed window per (limit, key), counted with
//! one `INCR` and an expiry. Over the limit the caller gets 429 with `Retry-After` set to what is
//! left of the window.

use crate::AppState;
use crate::error::{ApiError, ApiResult, ErrorCode};

#[derive(Debug, Clone, Copy)]
pub struct Limit {
    pub name: &'static str,
    pub max: u32,
    pub window_seconds: u64,
}

pub const REGISTER: Limit = Limit { name: "register", max: 10, window_seconds: 3600 };
pub const LOGIN: Limit = Limit { name: "login", max: 20, window_seconds: 300 };
pub const PASSWORD_RESET: Limit = Limit { name: "password_reset", max: 5, window_seconds: 3600 };
pub const TOTP: Limit = Limit { name: "totp", max: 10, window_seconds: 300 };
/// Contact invitations send email to arbitrary addresses: bounded per inviter.
pub const CONTACT_INVITATION: Limit = Limit { name: "contact_invitation", max: 30, window_seconds: 3600 };
/// Organization invitations (and resends) send email too: bounded per admin.
pub const ORGANIZATION_INVITATION: Limit = Limit { name: "organization_invitation", max: 100, window_seconds: 3600 };
pub const REFRESH: Limit = Limit { name: "refresh", max: 60, window_seconds: 60 };

/// Counts one attempt against `limit` for `key` (an IP address, an email digest, a user id).
pub async fn check(state: &AppState, limit: Limit, key: &str) -> ApiResult<()> {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let window = now / limit.window_seconds;
    let redis_key = format!("{}:rl:{}:{}:{}", state.config.redis_namespace, limit.name, key, window);
    let mut redis = state.redis.clone();
    let (count,): (u64,) = redis::pipe()
        .atomic()
        .incr(&redis_key, 1u64)
        .expire(&redis_key, limit.window_seconds as i64 + 1)
        .ignore()
        .query_async(&mut redis)
        .await?;
    let max = u64::from(limit.max) * u64::from(state.config.rate_limit_factor.max(1));
    if count > max {
        let retry = (window + 1) * limit.window_seconds - now;
        return Err(ApiError::new(
            ErrorCode::RateLimited,
            format!("too many {} attempts, try again in {retry} seconds", limit.name.replace('_', " ")),
        )
        .retry_after(retry));
    }
    Ok(())
}
