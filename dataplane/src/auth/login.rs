//! Login (password, then TOTP when enrolled), lockout after repeated failures, and logout.
//!
//! The lockout follows OWASP's, with its "device cookie" refinement so that strangers cannot
//! keep an owner out. Failed sign-ins are counted per [`Subject`]:
//! - the email address (by its digest), whether or not an account has it, so a locked unknown
//!   address answers exactly like a locked account and nobody learns who is registered;
//! - or, when the request carries a valid device proof, that device: a device that signed in
//!   before is a subject of its own, so failures by strangers against the address never lock
//!   its owner out of it, and failures made with the device's own proof lock only that device.
//!
//! `lockout_threshold` failures within `lockout_seconds` of the first lock the subject for
//! `lockout_seconds`; its sign-ins are then refused before the password is checked. A password
//! reset lifts the locks of the account's address and devices ([`lift_locks`]). The per
//! source rate limit applies to every request, proven or not. A device proof serves one sign-in:
//! a proof seen before is refused like a forged one, so one captured on the way cannot be
//! replayed within its window. `docs/protocol.md` ("Sign-in") states the policy for clients.

use super::credentials::{Email, verify_password_or_decoy};
use super::{TokenPair, open_session, totp};
use crate::AppState;
use crate::audit::{self, Actor};
use crate::clock::unix_seconds;
use crate::context::session::AuthUser;
use crate::devices;
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::extract::{ApiJson, ClientIp};
use crate::ratelimit;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use conclave_protocol::auth::{DeviceProof, LoginRequest};
use conclave_protocol::layout;
use ed25519_dalek::{Signature, VerifyingKey};
use serde_json::json;
use uuid::Uuid;

/// How far a device proof's time may be from the server's, either way.
pub const PROOF_MAX_SKEW_SECONDS: u64 = 300;

/// What failed sign-ins are counted against (see the module's documentation).
#[derive(Debug, Clone, Copy)]
enum Subject<'a> {
    Email(&'a Email),
    Device(Uuid),
}

impl Subject<'_> {
    fn key(self) -> String {
        match self {
            Subject::Email(email) => format!("login:email:{}", hex::encode(crate::tokens::digest(email.as_str()))),
            Subject::Device(device_id) => format!("login:device:{device_id}"),
        }
    }
}

fn invalid_credentials() -> ApiError {
    ApiError::new(ErrorCode::InvalidCredentials, "the email or password is wrong")
}

/// The same answer for a locked account and a locked unknown address.
fn locked(seconds: u64) -> ApiError {
    ApiError::new(ErrorCode::AccountLocked, "too many failed sign-ins; try again later").retry_after(seconds)
}

/// Whether `proof` is a fresh signature by `device_key` over `input(proof.unix_seconds)`: the
/// key of the unrevoked device the request names (none when the account or the device does not
/// exist, and then no proof holds). Shared by sign-in and bot sessions.
pub(crate) fn proof_holds(proof: &DeviceProof, device_key: Option<&[u8]>, input: impl FnOnce(u64) -> Vec<u8>) -> bool {
    if unix_seconds().abs_diff(proof.unix_seconds) > PROOF_MAX_SKEW_SECONDS {
        return false;
    }
    let Some(key) =
        device_key.and_then(|key| <[u8; 32]>::try_from(key).ok()).and_then(|key| VerifyingKey::from_bytes(&key).ok())
    else {
        return false;
    };
    key.verify_strict(&input(proof.unix_seconds), &Signature::from_bytes(&proof.signature)).is_ok()
}

/// Whether `proof` is used for the first time: it is remembered (by its signature, which
/// `verify_strict` admits in one encoding only) until it is too old to hold anyway. Only a proof that holds is remembered, so forgeries cannot fill Redis.
pub(crate) async fn first_use_of(state: &AppState, proof: &DeviceProof) -> ApiResult<bool> {
    let remaining = (proof.unix_seconds + PROOF_MAX_SKEW_SECONDS).saturating_sub(unix_seconds()) + 1;
    let key = format!("login-proof:{}", hex::encode(proof.signature));
    ratelimit::use_once(state, &key, remaining).await
}

/// Lifts the sign-in locks of an account (its address and each of its devices) and forgets
/// their failures: after a password reset the owner is proven, and the new password must work.
pub async fn lift_locks(state: &AppState, email: &Email, device_ids: &[Uuid]) -> ApiResult<()> {
    ratelimit::lift(state, &Subject::Email(email).key()).await?;
    for device_id in device_ids {
        ratelimit::lift(state, &Subject::Device(*device_id).key()).await?;
    }
    Ok(())
}

/// Failures before a lock, and how long the lock lasts, as configured.
fn lockout_policy(state: &AppState) -> (u32, u64) {
    (
        u32::try_from(state.config.lockout_threshold).unwrap_or(1),
        u64::try_from(state.config.lockout_seconds).unwrap_or(1),
    )
}

/// Counts a failed sign-in against `subject` and, when the account exists, in its security state
/// (one upsert, so concurrent failures are each counted) and the audit log. Returns the answer.
async fn count_failure(
    state: &AppState,
    ip: &ClientIp,
    subject: Subject<'_>,
    user_id: Option<Uuid>,
    invalid_proof: bool,
) -> ApiResult<ApiError> {
    let (threshold, seconds) = lockout_policy(state);
    let engaged = ratelimit::record_failure(state, &subject.key(), threshold, seconds).await?;
    let Some(user_id) = user_id else { return Ok(invalid_credentials()) };
    // The account's lock mirrors the address's, for people reading the database.
    let account_locked = engaged && matches!(subject, Subject::Email(_));
    let mut tx = state.db.begin().await?;
    let failed = sqlx::query_scalar!(
        "INSERT INTO user_security_states (user_id, failed_login_count, last_failed_at, locked_until)
         VALUES ($1, 1, now(), CASE WHEN $2 THEN now() + make_interval(secs => $3) END)
         ON CONFLICT (user_id) DO UPDATE SET failed_login_count = user_security_states.failed_login_count + 1,
             last_failed_at = now(), locked_until = coalesce(EXCLUDED.locked_until, user_security_states.locked_until)
         RETURNING failed_login_count",
        user_id,
        account_locked,
        state.config.lockout_seconds as f64,
    )
    .fetch_one(&mut *tx)
    .await?;
    let by_device = matches!(subject, Subject::Device(_));
    let entry = |action| audit::Entry {
        organization_id: None,
        actor: Actor::User { user_id, device_id: None },
        action,
        target: Some(("user", user_id)),
        ip: ip.0,
        details: json!({ "failed_attempts": failed, "invalid_device_proof": invalid_proof, "proven_device": by_device }),
    };
    audit::record(&mut tx, entry("auth.login_failed")).await?;
    if engaged {
        audit::record(&mut tx, entry("auth.locked_out")).await?;
    }
    tx.commit().await?;
    Ok(invalid_credentials())
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
        (status = 404, description = "`not_found`: the `device_id` is not one of this account's devices", body = crate::error::ErrorBody),
        (status = 403, description = "`account_locked` (with `Retry-After`), `account_disabled`, `email_not_confirmed`", body = crate::error::ErrorBody),
        (status = 429, description = "`rate_limited` (with `Retry-After`): too many sign-ins from this source address", body = crate::error::ErrorBody),
    )
)]
#[tracing::instrument(skip_all)]
pub async fn login(
    State(state): State<AppState>,
    ip: ClientIp,
    headers: HeaderMap,
    ApiJson(body): ApiJson<LoginRequest>,
) -> ApiResult<axum::Json<TokenPair>> {
    // Per source address; the per-address limit is the lockout below, which a proven device escapes.
    ratelimit::check(&state, ratelimit::LOGIN, &ip.key()).await?;
    let email = Email::parse(&body.email)?;
    if body.device_id.is_some() == body.device.is_some() {
        return Err(ApiError::validation(
            "device",
            "give either device_id (a registered device) or device (a new one)",
        ));
    }
    if body.device_proof.is_some() != body.device_id.is_some() {
        // A password and a device id are not enough: the device proves that it is signing in.
        return Err(ApiError::validation(
            "device_proof",
            "a registered device signs in with its device_id and its proof, each requiring the other",
        ));
    }
    if let Some(device) = &body.device {
        devices::validate(device)?;
    }

    // No row lock: failures are counted by atomic updates, and hashing must not hold a lock.
    let account = sqlx::query!(
        r#"SELECT u.id, u.password_hash, u.email_confirmed_at IS NOT NULL AS "confirmed!", u.status,
                  d.ed25519_public_key AS "device_key?"
             FROM user_accounts u
             LEFT JOIN devices d ON d.id = $2 AND d.user_id = u.id AND d.revoked_at IS NULL
            WHERE u.email = $1"#,
        email.as_str(),
        body.device_id,
    )
    .fetch_optional(&state.db)
    .await?;
    // None: no proof given; Some(false): forged, stale, not this account's device, or replayed.
    let proof = match body.device_proof.as_ref().zip(body.device_id) {
        None => None,
        Some((proof, device_id)) => Some(
            proof_holds(proof, account.as_ref().and_then(|a| a.device_key.as_deref()), |seconds| {
                layout::login_proof_input(email.as_str(), device_id, seconds)
            }) && first_use_of(&state, proof).await?,
        ),
    };
    let subject = match (proof, body.device_id) {
        (Some(true), Some(device_id)) => Subject::Device(device_id),
        _ => Subject::Email(&email),
    };
    // Up to here, and from here to the answer, an unknown address takes the same path as an
    // account: the same lock, the same hashing (against a decoy), the same counting.
    // The attempt is counted before the password is hashed, so concurrent guesses cannot all
    // pass while the first are still hashing (a success forgets the count).
    let (threshold, lock_seconds) = lockout_policy(&state);
    if let Some(seconds) = ratelimit::take_attempt(&state, &subject.key(), threshold, lock_seconds).await? {
        return Err(locked(seconds));
    }
    let password_ok =
        verify_password_or_decoy(&body.password, account.as_ref().map(|a| a.password_hash.as_str())).await?;
    let account = match account {
        Some(account) if password_ok && proof != Some(false) => account,
        account => {
            return Err(count_failure(&state, &ip, subject, account.map(|a| a.id), proof == Some(false)).await?);
        }
    };
    let actor = Actor::User { user_id: account.id, device_id: None };
    if account.status != "active" {
        return Err(ApiError::new(ErrorCode::AccountDisabled, "this account is disabled"));
    }
    if !account.confirmed {
        return Err(ApiError::new(ErrorCode::EmailNotConfirmed, "confirm your email address before signing in"));
    }
    let mut tx = state.db.begin().await?;
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
    // The lock, if any, stays until it ends: it is the address's, not this device's.
    sqlx::query!(
        "UPDATE user_security_states SET failed_login_count = 0, last_login_at = now() WHERE user_id = $1",
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
            details: json!({ "new_device": body.device.is_some(), "proven_device": proof == Some(true) }),
        },
    )
    .await?;
    tx.commit().await?;
    if let Err(err) = ratelimit::clear_failures(&state, &subject.key()).await {
        // The sign-in stands; the count only ends sooner or later by its expiry.
        tracing::warn!(error = %err.message, "clearing failed sign-ins failed");
    }
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
