//! TOTP (RFC 6238: SHA-1, 6 digits, 30-second steps, ±1 step of clock skew) as a second factor.
//!
//! The seed is sealed at rest (crate::sealing). Each accepted code records its time step, and
//! a code for that step or an earlier one is refused: a code cannot be replayed inside its window.
//! Enrolment returns ten recovery codes once; only their digests are kept, and each works once.

use crate::AppState;
use crate::audit::{self, Actor};
use crate::context::session::AuthUser;
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::extract::{ApiJson, ClientIp};
use crate::ratelimit;
use crate::sealing::totp_context;
use crate::tokens;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::PgConnection;
use totp_rs::{Algorithm, Builder, Secret, Totp};
use uuid::Uuid;

const STEP: u64 = 30;
const RECOVERY_CODES: usize = 10;

fn base32(bytes: &[u8]) -> String {
    Secret::from(bytes.to_vec()).to_base32()
}

fn totp(seed: Vec<u8>) -> Totp {
    Builder::new()
        .with_algorithm(Algorithm::SHA1)
        .with_digits(6)
        .with_skew(1)
        .with_step_duration(STEP)
        .with_secret(seed)
        .build_noncompliant()
}

/// The time step a code matches, looking one step either side of now.
fn matching_step(seed: &[u8], code: &str, at: u64) -> Option<u64> {
    let code = code.trim();
    if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // The library compares in constant time and returns the matching step.
    totp(seed.to_vec()).check(code, at)
}

fn normalise_recovery(code: &str) -> String {
    code.trim().to_lowercase().replace(['-', ' '], "")
}

struct Seed {
    seed: Vec<u8>,
    confirmed: bool,
    last_step: Option<i64>,
}

async fn load_seed(conn: &mut PgConnection, state: &AppState, user_id: Uuid) -> ApiResult<Option<Seed>> {
    let row = sqlx::query!(
        "SELECT secret_sealed, confirmed_at IS NOT NULL AS \"confirmed!\", last_used_step FROM totp_secrets WHERE user_id = $1 FOR UPDATE",
        user_id
    )
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let seed = state.sealing.open(&totp_context(user_id), &row.secret_sealed).ok_or_else(|| {
        tracing::error!(%user_id, "a TOTP seed does not open with the configured at-rest key");
        ApiError::internal()
    })?;
    Ok(Some(Seed { seed, confirmed: row.confirmed, last_step: row.last_used_step }))
}

/// Accepts a fresh code (recording its step) or an unused recovery code.
async fn verify_second_factor(
    conn: &mut PgConnection,
    user_id: Uuid,
    seed: &Seed,
    code: Option<&str>,
    recovery: Option<&str>,
) -> ApiResult<()> {
    let refused = || ApiError::new(ErrorCode::InvalidTotp, "the code is wrong, expired or already used");
    if let Some(code) = code {
        let step = matching_step(&seed.seed, code, crate::clock::unix_seconds()).ok_or_else(refused)? as i64;
        if seed.last_step.is_some_and(|last| step <= last) {
            return Err(refused());
        }
        sqlx::query!("UPDATE totp_secrets SET last_used_step = $2 WHERE user_id = $1", user_id, step)
            .execute(&mut *conn)
            .await?;
        return Ok(());
    }
    if let Some(recovery) = recovery {
        let used = sqlx::query!(
            "UPDATE totp_recovery_codes SET used_at = now() WHERE user_id = $1 AND code_hash = $2 AND used_at IS NULL RETURNING id",
            user_id,
            tokens::digest(&normalise_recovery(recovery))
        )
        .fetch_optional(&mut *conn)
        .await?;
        return used.map(|_| ()).ok_or_else(refused);
    }
    Err(ApiError::new(ErrorCode::TotpRequired, "this account requires a TOTP code (totp_code) or a recovery code"))
}

/// The login step: passes when the account has no confirmed TOTP, else needs a valid factor.
pub async fn check_login(
    conn: &mut PgConnection,
    state: &AppState,
    user_id: Uuid,
    code: Option<&str>,
    recovery: Option<&str>,
) -> ApiResult<()> {
    match load_seed(conn, state, user_id).await? {
        Some(seed) if seed.confirmed => {
            if code.is_some() || recovery.is_some() {
                ratelimit::check(state, ratelimit::TOTP, &user_id.to_string()).await?;
            }
            verify_second_factor(conn, user_id, &seed, code, recovery).await
        }
        _ => Ok(()),
    }
}

#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = TotpEnrolment)]
pub struct Enrolment {
    /// The seed in base32, for manual entry.
    secret: String,
    /// An `otpauth://` URI, for a QR code.
    otpauth_uri: String,
}

#[utoipa::path(
    post,
    path = "/v1/auth/totp",
    tag = "auth",
    operation_id = "enroll_totp",
    responses(
        (status = 201, description = "Enrolment started: confirm it with a code", body = Enrolment),
        (status = 409, description = "`totp_already_enabled`", body = crate::error::ErrorBody),
    )
)]
pub async fn enroll(State(state): State<AppState>, auth: AuthUser) -> ApiResult<(StatusCode, axum::Json<Enrolment>)> {
    let mut tx = state.db.begin().await?;
    if let Some(existing) = load_seed(&mut tx, &state, auth.user_id).await?
        && existing.confirmed
    {
        return Err(ApiError::new(
            ErrorCode::TotpAlreadyEnabled,
            "TOTP is already enabled; disable it first to enrol again",
        ));
    }
    let seed = tokens::random_bytes::<20>();
    let sealed = state.sealing.seal(&totp_context(auth.user_id), &seed);
    sqlx::query!(
        "INSERT INTO totp_secrets (user_id, secret_sealed) VALUES ($1, $2)
         ON CONFLICT (user_id) DO UPDATE SET secret_sealed = EXCLUDED.secret_sealed, confirmed_at = NULL, last_used_step = NULL",
        auth.user_id,
        sealed
    )
    .execute(&mut *tx)
    .await?;
    let email = sqlx::query_scalar!("SELECT email::text AS \"email!\" FROM user_accounts WHERE id = $1", auth.user_id)
        .fetch_one(&mut *tx)
        .await?;
    tx.commit().await?;
    let secret = base32(&seed);
    let otpauth_uri = format!(
        "otpauth://totp/Conclave:{}?secret={secret}&issuer=Conclave&algorithm=SHA1&digits=6&period={STEP}",
        email.replace('@', "%40")
    );
    Ok((StatusCode::CREATED, axum::Json(Enrolment { secret, otpauth_uri })))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[schema(as = TotpCodeRequest)]
#[serde(deny_unknown_fields)]
pub struct CodeRequest {
    code: Option<String>,
    recovery_code: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = TotpConfirmed)]
pub struct Confirmed {
    /// Shown once: store them somewhere safe. Each signs in once without the authenticator.
    recovery_codes: Vec<String>,
}

#[utoipa::path(
    post,
    path = "/v1/auth/totp/confirm",
    tag = "auth",
    operation_id = "confirm_totp",
    request_body = CodeRequest,
    responses(
        (status = 200, description = "TOTP is on; the recovery codes are shown once", body = Confirmed),
        (status = 429, description = "`rate_limited`", body = crate::error::ErrorBody),
    )
)]
pub async fn confirm(
    State(state): State<AppState>,
    auth: AuthUser,
    ip: ClientIp,
    ApiJson(body): ApiJson<CodeRequest>,
) -> ApiResult<axum::Json<Confirmed>> {
    ratelimit::check(&state, ratelimit::TOTP, &auth.user_id.to_string()).await?;
    let mut tx = state.db.begin().await?;
    let seed = load_seed(&mut tx, &state, auth.user_id)
        .await?
        .ok_or_else(|| ApiError::new(ErrorCode::TotpNotEnrolled, "start TOTP enrolment first (POST /v1/auth/totp)"))?;
    if seed.confirmed {
        return Err(ApiError::new(ErrorCode::TotpAlreadyEnabled, "TOTP is already enabled"));
    }
    let code = body.code.as_deref().ok_or_else(|| ApiError::validation("code", "is required"))?;
    verify_second_factor(&mut tx, auth.user_id, &seed, Some(code), None).await?;
    sqlx::query!("UPDATE totp_secrets SET confirmed_at = now() WHERE user_id = $1", auth.user_id)
        .execute(&mut *tx)
        .await?;
    sqlx::query!("DELETE FROM totp_recovery_codes WHERE user_id = $1", auth.user_id).execute(&mut *tx).await?;
    let mut codes = Vec::with_capacity(RECOVERY_CODES);
    for _ in 0..RECOVERY_CODES {
        let raw = base32(&tokens::random_bytes::<10>()).to_lowercase();
        let code = format!("{}-{}-{}-{}", &raw[0..4], &raw[4..8], &raw[8..12], &raw[12..16]);
        sqlx::query!(
            "INSERT INTO totp_recovery_codes (user_id, code_hash) VALUES ($1, $2)",
            auth.user_id,
            tokens::digest(&normalise_recovery(&code))
        )
        .execute(&mut *tx)
        .await?;
        codes.push(code);
    }
    audit::record(
        &mut tx,
        audit::Entry {
            organization_id: None,
            actor: Actor::of(auth),
            action: "auth.totp_enabled",
            target: Some(("user", auth.user_id)),
            ip: ip.0,
            details: json!({}),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(axum::Json(Confirmed { recovery_codes: codes }))
}

/// Turning the second factor off needs a fresh code (or a recovery code), not just a session.
#[utoipa::path(
    post,
    path = "/v1/auth/totp/disable",
    tag = "auth",
    operation_id = "disable_totp",
    request_body = CodeRequest,
    responses(
        (status = 204, description = "TOTP is off"),
        (status = 401, description = "`invalid_totp`, `totp_required`", body = crate::error::ErrorBody),
        (status = 409, description = "`totp_not_enabled`: there is no confirmed TOTP to turn off", body = crate::error::ErrorBody),
        (status = 429, description = "`rate_limited`", body = crate::error::ErrorBody),
    )
)]
pub async fn disable(
    State(state): State<AppState>,
    auth: AuthUser,
    ip: ClientIp,
    ApiJson(body): ApiJson<CodeRequest>,
) -> ApiResult<StatusCode> {
    ratelimit::check(&state, ratelimit::TOTP, &auth.user_id.to_string()).await?;
    let mut tx = state.db.begin().await?;
    let seed = load_seed(&mut tx, &state, auth.user_id)
        .await?
        .filter(|s| s.confirmed)
        .ok_or_else(|| ApiError::new(ErrorCode::TotpNotEnabled, "TOTP is not enabled"))?;
    verify_second_factor(&mut tx, auth.user_id, &seed, body.code.as_deref(), body.recovery_code.as_deref()).await?;
    sqlx::query!("DELETE FROM totp_secrets WHERE user_id = $1", auth.user_id).execute(&mut *tx).await?;
    audit::record(
        &mut tx,
        audit::Entry {
            organization_id: None,
            actor: Actor::of(auth),
            action: "auth.totp_disabled",
            target: Some(("user", auth.user_id)),
            ip: ip.0,
            details: json!({}),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_6238_sha1_vectors_match() {
        // RFC 6238 appendix B: the ASCII seed "12345678901234567890", 8-digit codes; we check
        // the 6-digit truncation of the same values.
        let generator = Builder::new()
            .with_algorithm(Algorithm::SHA1)
            .with_digits(8)
            .with_step_duration(30)
            .with_secret(b"12345678901234567890".to_vec())
            .build_noncompliant();
        assert_eq!(generator.generate(59).to_string(), "94287082");
        assert_eq!(generator.generate(1_111_111_109).to_string(), "07081804");
        assert_eq!(generator.generate(20_000_000_000).to_string(), "65353130");
    }

    #[test]
    fn a_code_matches_its_step_and_its_neighbours_only() {
        let seed = b"0123456789abcdefghij".to_vec();
        let at = 1_700_000_000;
        let code = totp(seed.clone()).generate(at).to_string();
        assert_eq!(matching_step(&seed, &code, at), Some(at / STEP));
        assert_eq!(matching_step(&seed, &code, at + STEP), Some(at / STEP), "accepted one step late");
        assert_eq!(matching_step(&seed, &code, at + 3 * STEP), None, "refused three steps late");
        assert_eq!(matching_step(&seed, "12a456", at), None);
    }

    #[test]
    fn base32_follows_rfc_4648() {
        assert_eq!(base32(b"foobar"), "MZXW6YTBOI");
        assert_eq!(base32(b"f"), "MY");
    }
}
