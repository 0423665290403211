//! Rate limits in Redis, shared by every replica: a fixed window per (limit, key), counted with
//! one `INCR` and an expiry. Over the limit the caller gets 429 with `Retry-After` set to what is
//! left of the window.
//!
//! Lockouts too: failures counted per key, and after enough of them a lock with an expiry
//! ([`record_failure`], [`locked`]); sign-in uses them (`auth::login`).

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
/// The exact-email member lookup: enough to add colleagues, too few to guess addresses in bulk.
pub const MEMBER_LOOKUP: Limit = Limit { name: "member_lookup", max: 30, window_seconds: 600 };
/// Notification email digests per recipient, whatever their frequency (a second fence).
pub const DIGEST: Limit = Limit { name: "digest", max: 30, window_seconds: 24 * 3600 };
/// TURN credentials per device: a few per call, never a stream.
pub const TURN_CREDENTIALS: Limit = Limit { name: "turn_credentials", max: 60, window_seconds: 600 };
pub const REFRESH: Limit = Limit { name: "refresh", max: 60, window_seconds: 60 };

/// Counts one attempt against `limit` for `key` (an IP address, an email digest, a user id).
pub async fn check(state: &AppState, limit: Limit, key: &str) -> ApiResult<()> {
    let now = crate::clock::unix_seconds();
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

/// Takes one of the `threshold` attempts a key may have before its lock: answers the lock's
/// remaining seconds when it is locked, or when `threshold` attempts are already counted (in
/// flight or failed), else 0 after counting this one. Counting before the password is hashed is
/// what keeps concurrent guesses to the threshold: they cannot all pass the check while the
/// first ones are still hashing.
const TAKE_ATTEMPT: &str = r"
local ttl = redis.call('TTL', KEYS[2])
if ttl > 0 then return ttl end
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('EXPIRE', KEYS[1], ARGV[2]) end
if n > tonumber(ARGV[1]) then
  redis.call('DECR', KEYS[1])
  return tonumber(ARGV[2])
end
return 0
";

/// A taken attempt failed: when the attempts counted reach the threshold, drops the count and
/// sets the lock (unless a lock is already there). Answers 1 when this very failure engaged the
/// lock, so the lock engages exactly once however many failures finish together.
const RECORD_FAILURE: &str = r"
local n = tonumber(redis.call('GET', KEYS[1]) or '0')
if n >= tonumber(ARGV[1]) then
  redis.call('DEL', KEYS[1])
  if redis.call('SET', KEYS[2], '1', 'NX', 'EX', ARGV[2]) then return 1 end
end
return 0
";

/// The failure counter and the lock of `key`. The braces are a hash tag: both keys live in the
/// same Redis Cluster slot, as a script touching both requires.
fn lockout_keys(state: &AppState, key: &str) -> (String, String) {
    let base = format!("{}:lockout:{{{key}}}", state.config.redis_namespace);
    (format!("{base}:failures"), format!("{base}:lock"))
}

/// Runs one of the lockout scripts on `key`'s counter and lock.
async fn lockout_script(state: &AppState, script: &str, key: &str, threshold: u32, seconds: u64) -> ApiResult<i64> {
    let (failures, lock) = lockout_keys(state, key);
    Ok(redis::cmd("EVAL")
        .arg(script)
        .arg(2)
        .arg(&failures)
        .arg(&lock)
        .arg(threshold.max(1))
        .arg(seconds.max(1))
        .query_async(&mut state.redis.clone())
        .await?)
}

/// Takes an attempt for `key` ([`TAKE_ATTEMPT`]): the seconds to wait when it may not have one.
pub async fn take_attempt(state: &AppState, key: &str, threshold: u32, seconds: u64) -> ApiResult<Option<u64>> {
    let wait = lockout_script(state, TAKE_ATTEMPT, key, threshold, seconds).await?;
    Ok(u64::try_from(wait).ok().filter(|&seconds| seconds > 0))
}

/// Records that an attempt taken with [`take_attempt`] failed: `threshold` attempts within
/// `seconds` of the first lock `key` for `seconds`. True when this failure engaged the lock.
pub async fn record_failure(state: &AppState, key: &str, threshold: u32, seconds: u64) -> ApiResult<bool> {
    Ok(lockout_script(state, RECORD_FAILURE, key, threshold, seconds).await? == 1)
}

/// Forgets the failures of `key` and lifts its lock (a password reset proved the owner).
pub async fn lift(state: &AppState, key: &str) -> ApiResult<()> {
    let (failures, lock) = lockout_keys(state, key);
    redis::cmd("DEL").arg(&failures).arg(&lock).query_async::<()>(&mut state.redis.clone()).await?;
    Ok(())
}

/// Marks `key` as used for `seconds`: true the first time, false while it is still marked (a
/// replay). One `SET NX`, so of two concurrent uses exactly one is the first.
pub async fn use_once(state: &AppState, key: &str, seconds: u64) -> ApiResult<bool> {
    let key = format!("{}:used:{key}", state.config.redis_namespace);
    let set: Option<String> = redis::cmd("SET")
        .arg(&key)
        .arg(1)
        .arg("NX")
        .arg("EX")
        .arg(seconds.max(1))
        .query_async(&mut state.redis.clone())
        .await?;
    Ok(set.is_some())
}

/// Forgets the failures of `key` (after a success: failures count "in a row"). A lock stays.
pub async fn clear_failures(state: &AppState, key: &str) -> ApiResult<()> {
    let (failures, _) = lockout_keys(state, key);
    redis::cmd("DEL").arg(&failures).query_async::<()>(&mut state.redis.clone()).await?;
    Ok(())
}
