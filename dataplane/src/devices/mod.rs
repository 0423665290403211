//! Devices, and the Web Push subscriptions that belong to them.
//!
//! A device publishes one Ed25519 key (it signs the device's sign-in proofs and MLS leaves), with
//! a signature by it over `conclave_protocol::layout::device_key_input` proving that the registrant
//! holds it. Revoking a device ends its
//! sessions, refresh tokens and push subscriptions in one transaction, then tells every replica
//! through Redis to close its sockets.

mod push;

use crate::AppState;
use crate::audit::{self, Actor};
use crate::context::session::AuthUser;
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiPath, ClientIp};
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
pub use conclave_protocol::devices::{Device, NewDevice, Platform};
use ed25519_dalek::{Signature, VerifyingKey};
use sqlx::PgConnection;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list, register)).routes(routes!(revoke)).merge(push::router())
}

/// Checks the name and the proof of possession of the key (the key sizes are fixed by the type); the server
/// stores nothing it has not verified.
pub fn validate(device: &NewDevice) -> ApiResult<()> {
    let name = device.name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(ApiError::validation("name", "must have 1 to 100 characters"));
    }
    let verifying = VerifyingKey::from_bytes(&device.ed25519_public_key)
        .map_err(|_| ApiError::validation("ed25519_public_key", "is not a valid key"))?;
    let input = conclave_protocol::layout::device_key_input(&device.ed25519_public_key);
    verifying
        .verify_strict(&input, &Signature::from_bytes(&device.key_signature))
        .map_err(|_| ApiError::validation("key_signature", "does not verify with the device's signing key"))?;
    Ok(())
}

/// A `devices` row as read; the keys' sizes are checked by the table.
struct DeviceRow {
    id: Uuid,
    name: String,
    platform: Platform,
    ed25519_public_key: Vec<u8>,
    credential: Option<Vec<u8>>,
    created_at: DateTime<Utc>,
    last_seen_at: Option<DateTime<Utc>>,
    revoked_at: Option<DateTime<Utc>>,
    current: bool,
}

impl DeviceRow {
    fn into_device(self) -> ApiResult<Device> {
        Ok(Device {
            id: self.id,
            name: self.name,
            platform: self.platform,
            ed25519_public_key: self.ed25519_public_key.try_into().map_err(|_| ApiError::internal())?,
            credential: self.credential.map(|c| c.try_into().map_err(|_| ApiError::internal())).transpose()?,
            created_at: self.created_at,
            last_seen_at: self.last_seen_at,
            revoked_at: self.revoked_at,
            current: self.current,
        })
    }
}

/// Stores a validated device for `user_id`.
pub async fn insert(conn: &mut PgConnection, user_id: Uuid, device: &NewDevice) -> ApiResult<Uuid> {
    validate(device)?;
    let id = sqlx::query_scalar!(
        "INSERT INTO devices (user_id, name, platform, ed25519_public_key, key_signature)
         VALUES ($1, $2, $3, $4, $5) RETURNING id",
        user_id,
        device.name.trim(),
        device.platform.as_str(),
        &device.ed25519_public_key[..],
        &device.key_signature[..],
    )
    .fetch_one(conn)
    .await?;
    Ok(id)
}

#[utoipa::path(
    post,
    path = "/v1/devices",
    tag = "devices",
    operation_id = "register_device",
    request_body = NewDevice,
    responses((status = 201, description = "The device is registered", body = Device))
)]
async fn register(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiJson(body): ApiJson<NewDevice>,
) -> ApiResult<(StatusCode, axum::Json<Device>)> {
    let mut tx = state.db.begin().await?;
    let id = insert(&mut tx, auth.user_id, &body).await?;
    let device = fetch(&mut tx, auth, id).await?.ok_or_else(ApiError::internal)?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, axum::Json(device)))
}

async fn fetch(conn: &mut PgConnection, auth: AuthUser, id: Uuid) -> ApiResult<Option<Device>> {
    sqlx::query_as!(
        DeviceRow,
        r#"SELECT id, name, platform AS "platform: Platform", ed25519_public_key, credential, created_at, last_seen_at, revoked_at,
                  id = $2 AS "current!"
             FROM devices WHERE user_id = $1 AND id = $3"#,
        auth.user_id,
        auth.device_id,
        id,
    )
    .fetch_optional(conn)
    .await?
    .map(DeviceRow::into_device)
    .transpose()
}

#[utoipa::path(
    get,
    path = "/v1/devices",
    tag = "devices",
    operation_id = "list_devices",
    responses((status = 200, description = "The caller's devices, revoked ones included", body = Vec<Device>))
)]
async fn list(State(state): State<AppState>, auth: AuthUser) -> ApiResult<axum::Json<Vec<Device>>> {
    let devices = sqlx::query_as!(
        DeviceRow,
        r#"SELECT id, name, platform AS "platform: Platform", ed25519_public_key, credential, created_at, last_seen_at, revoked_at,
                  id = $2 AS "current!"
             FROM devices WHERE user_id = $1 ORDER BY created_at"#,
        auth.user_id,
        auth.device_id,
    )
    .fetch_all(&state.db)
    .await?
    .into_iter()
    .map(DeviceRow::into_device)
    .collect::<ApiResult<_>>()?;
    Ok(axum::Json(devices))
}

/// Ends everything a device holds, inside the caller's transaction. Returns false when the
/// device is not the user's or was already revoked.
pub async fn revoke_in(conn: &mut PgConnection, user_id: Uuid, device_id: Uuid) -> ApiResult<bool> {
    let revoked = sqlx::query_scalar!(
        "UPDATE devices SET revoked_at = now() WHERE id = $1 AND user_id = $2 AND revoked_at IS NULL RETURNING id",
        device_id,
        user_id,
    )
    .fetch_optional(&mut *conn)
    .await?;
    if revoked.is_none() {
        return Ok(false);
    }
    sqlx::query!(
        "UPDATE refresh_tokens SET revoked_at = now(), revoked_reason = 'device_revoked'
          WHERE revoked_at IS NULL AND session_id IN (SELECT id FROM session_tokens WHERE device_id = $1)",
        device_id
    )
    .execute(&mut *conn)
    .await?;
    sqlx::query!("UPDATE session_tokens SET revoked_at = now() WHERE device_id = $1 AND revoked_at IS NULL", device_id)
        .execute(&mut *conn)
        .await?;
    sqlx::query!("DELETE FROM push_subscriptions WHERE device_id = $1", device_id).execute(&mut *conn).await?;
    Ok(true)
}

/// Tells every replica a device is gone (after the revocation committed).
pub async fn publish_revocation(state: &AppState, user_id: Uuid, device_id: Uuid) {
    let payload = serde_json::json!({ "device_id": device_id, "user_id": user_id }).to_string();
    let mut redis = state.redis.clone();
    let published: Result<i64, _> = redis::cmd("PUBLISH")
        .arg(crate::realtime::revocations_channel(&state.config.redis_namespace))
        .arg(payload)
        .query_async(&mut redis)
        .await;
    if let Err(e) = published {
        // The sockets still fail their next session check; the publish only makes it immediate.
        tracing::warn!(error = %e, %device_id, "could not publish a device revocation");
    }
}

#[utoipa::path(
    delete,
    path = "/v1/devices/{device_id}",
    tag = "devices",
    operation_id = "revoke_device",
    responses((status = 204, description = "Revoked: its sessions, tokens, push subscriptions and sockets are ended"))
)]
async fn revoke(
    State(state): State<AppState>,
    auth: AuthUser,
    ip: ClientIp,
    ApiPath(device_id): ApiPath<Uuid>,
) -> ApiResult<StatusCode> {
    let mut tx = state.db.begin().await?;
    if !revoke_in(&mut tx, auth.user_id, device_id).await? {
        return Err(ApiError::not_found("device"));
    }
    // Conversations whose current key this device holds must move to a new generation.
    let rotations = crate::conversations::require_rotation(&mut tx, device_id).await?;
    audit::record(
        &mut tx,
        audit::Entry {
            organization_id: None,
            actor: Actor::of(auth),
            action: "device.revoked",
            target: Some(("device", device_id)),
            ip: ip.0,
            details: serde_json::json!({}),
        },
    )
    .await?;
    tx.commit().await?;
    publish_revocation(&state, auth.user_id, device_id).await;
    for (organization_id, conversation_id) in rotations {
        crate::conversations::announce_rotation(&state, organization_id, conversation_id).await;
    }
    Ok(StatusCode::NO_CONTENT)
}
