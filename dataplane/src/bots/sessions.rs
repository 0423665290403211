//! `POST /v1/bot/sessions`: a bot opens a session as a device of its own.
//!
//! The first session creates the bot's account (its principal): a `user_accounts` row linked to
//! the BotAgent by `bot_id`, with a confirmed address under the reserved `.invalid` top-level
//! domain (RFC 2606: no mail can reach it) and a password hash no password matches, so the
//! account can be reached with the bot token only. Every session makes sure the account carries
//! the BotAgent's display name and is a member of its organization and workspace (the BotAgent
//! declares that membership; the `member` role, and what the bot may do is then bounded by its
//! scopes). The device's keys come from the bot process, never from the server or the operator.

use super::BotToken;
use crate::AppState;
use crate::audit::{self, Actor};
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::extract::{ApiJson, ClientIp};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use base64::Engine as _;
use conclave_protocol::auth::TokenPair;
use conclave_protocol::bots::BotSessionRequest;
use conclave_protocol::devices::Platform;
use conclave_protocol::layout;
use serde_json::json;
use sqlx::PgConnection;
use uuid::Uuid;

/// Opens a session for the bot whose token is presented, on a device of the bot's.
#[utoipa::path(
    post,
    path = "/v1/bot/sessions",
    tag = "bots",
    operation_id = "open_bot_session",
    request_body = BotSessionRequest,
    responses(
        (status = 201, description = "A session on the bot's device: use its tokens as any client does", body = TokenPair),
        (status = 401, description = "`invalid_bot_token`, `missing_token`, or `invalid_device_proof` (the proof of a registered device is forged, stale or used before)", body = crate::error::ErrorBody),
    )
)]
#[tracing::instrument(skip_all)]
pub(super) async fn open(
    State(state): State<AppState>,
    token: BotToken,
    ip: ClientIp,
    headers: HeaderMap,
    ApiJson(body): ApiJson<BotSessionRequest>,
) -> ApiResult<(StatusCode, axum::Json<TokenPair>)> {
    let BotToken { bot, digest } = token;
    // The request's shape first, then the device's proof, and only then a transaction: a
    // refused request writes nothing and holds no lock while Redis remembers its proof.
    let asked = match (body.device_id, &body.device, &body.device_proof) {
        (Some(device_id), None, Some(proof)) => Asked::Registered(device_id, proof),
        (Some(_), None, None) => {
            // A token and a device id are not enough: the device proves that it is asking.
            return Err(ApiError::validation("device_proof", "a session on a registered device needs its proof"));
        }
        (None, Some(device), None) => {
            if device.platform != Platform::Bot {
                return Err(ApiError::validation("device.platform", "a bot's device has the platform `bot`"));
            }
            crate::devices::validate(device)?;
            Asked::New(device)
        }
        (None, Some(_), Some(_)) => {
            return Err(ApiError::validation("device_proof", "a new device has nothing to prove yet: send no proof"));
        }
        _ => return Err(ApiError::validation("device", "send exactly one of `device_id` and `device`")),
    };
    if let Asked::Registered(device_id, proof) = asked {
        let key = sqlx::query_scalar!(
            "SELECT d.ed25519_public_key FROM devices d JOIN user_accounts u ON u.id = d.user_id
              WHERE d.id = $1 AND u.bot_id = $2 AND d.revoked_at IS NULL",
            device_id,
            bot.bot_id,
        )
        .fetch_optional(&state.db)
        .await?;
        let Some(key) = key else { return Err(ApiError::not_found("device")) };
        let holds =
            crate::auth::proof_holds(proof, Some(&key), |seconds| layout::bot_session_proof_input(device_id, seconds))
                && crate::auth::first_use_of(&state, proof).await?;
        if !holds {
            return Err(ApiError::new(
                ErrorCode::InvalidDeviceProof,
                "the device proof is not a fresh signature by this device's key, or was used before",
            ));
        }
    }

    let mut tx = state.db.begin().await?;
    let user_id = principal(&mut tx, bot.bot_id).await?;
    conclave_schema::TenantContext::organization(bot.organization_id).with_user(user_id).apply(&mut tx).await?;
    sqlx::query!(
        "INSERT INTO user_profiles (user_id, display_name) VALUES ($1, $2)
         ON CONFLICT (user_id) DO UPDATE SET display_name = EXCLUDED.display_name
          WHERE user_profiles.display_name IS DISTINCT FROM EXCLUDED.display_name",
        user_id,
        bot.display_name,
    )
    .execute(&mut *tx)
    .await?;
    sqlx::query!(
        "INSERT INTO organization_memberships (organization_id, user_id, role) VALUES ($1, $2, 'member')
         ON CONFLICT (organization_id, user_id) DO NOTHING",
        bot.organization_id,
        user_id,
    )
    .execute(&mut *tx)
    .await?;
    sqlx::query!(
        "INSERT INTO workspace_memberships (organization_id, workspace_id, user_id) VALUES ($1, $2, $3)
         ON CONFLICT (workspace_id, user_id) DO NOTHING",
        bot.organization_id,
        bot.workspace_id,
        user_id,
    )
    .execute(&mut *tx)
    .await?;
    let device_id = match asked {
        Asked::Registered(device_id, _) => {
            // Still unrevoked, and kept so until this session is committed.
            sqlx::query_scalar!(
                "SELECT id FROM devices WHERE id = $1 AND user_id = $2 AND revoked_at IS NULL FOR SHARE",
                device_id,
                user_id,
            )
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(|| ApiError::not_found("device"))?
        }
        Asked::New(device) => crate::devices::insert(&mut tx, user_id, device).await?,
    };
    let user_agent = headers.get(axum::http::header::USER_AGENT).and_then(|v| v.to_str().ok());
    let pair = crate::auth::open_session_for(&mut tx, &state, user_id, device_id, user_agent, Some(&digest)).await?;
    audit::record(
        &mut tx,
        audit::Entry {
            organization_id: Some(bot.organization_id),
            actor: Actor::User { user_id, device_id: Some(device_id) },
            action: "bot.session_opened",
            target: Some(("bot", bot.bot_id)),
            ip: ip.0,
            details: json!({ "previous_token": bot.previous_token, "new_device": body.device.is_some() }),
        },
    )
    .await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, axum::Json(pair)))
}

/// What the session is asked for.
#[derive(Clone, Copy)]
enum Asked<'a> {
    /// A device an earlier session registered, with its proof.
    Registered(Uuid, &'a conclave_protocol::auth::DeviceProof),
    /// A new device.
    New(&'a conclave_protocol::devices::NewDevice),
}

/// The bot's account, created on its first session.
async fn principal(conn: &mut PgConnection, bot_id: Uuid) -> ApiResult<Uuid> {
    if let Some(id) =
        sqlx::query_scalar!("SELECT id FROM user_accounts WHERE bot_id = $1", bot_id).fetch_optional(&mut *conn).await?
    {
        return Ok(id);
    }
    // A well-formed argon2id hash of random bytes: no password verifies against it.
    let b64 = base64::engine::general_purpose::STANDARD_NO_PAD;
    let unusable = format!(
        "$argon2id$v=19$m=19456,t=2,p=1${}${}",
        b64.encode(crate::tokens::random_bytes::<16>()),
        b64.encode(crate::tokens::random_bytes::<32>())
    );
    let inserted = sqlx::query_scalar!(
        "INSERT INTO user_accounts (email, password_hash, email_confirmed_at, bot_id)
         VALUES ($1, $2, now(), $3) ON CONFLICT (bot_id) DO NOTHING RETURNING id",
        format!("bot-{}@bots.conclave.invalid", bot_id.simple()),
        unusable,
        bot_id,
    )
    .fetch_optional(&mut *conn)
    .await?;
    match inserted {
        Some(id) => Ok(id),
        // Another replica created it first, in the same instant.
        None => Ok(sqlx::query_scalar!("SELECT id FROM user_accounts WHERE bot_id = $1", bot_id)
            .fetch_one(&mut *conn)
            .await?),
    }
}
