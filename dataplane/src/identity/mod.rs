//! Protocol v2's identity chain, as far as the server holds it: each user's identity public key,
//! each device's credential under it, and identity keys in transit between two devices of a user.
//!
//! The server checks what it is given (a credential names the calling user and device, carries the
//! key being published and verifies over the device's registered Ed25519 key), so a listing never
//! carries garbage; clients still verify every credential themselves, because a malicious server
//! could list anything. A transfer is opaque: HPKE-sealed by one device to a key the receiving
//! device showed its owner out of band, handed out once to that device within 15 minutes.

use crate::AppState;
use crate::audit::{self, Actor};
use crate::context::member_tx;
use crate::context::session::AuthUser;
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::extract::{ApiJson, ApiPath, ClientIp};
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use conclave_protocol::identity::{
    CredentialFields, Identity, IdentityTransfer, MAX_SEALED_TRANSFER, PublishIdentity, SealedIdentity,
    TRANSFER_LIFETIME_SECONDS, device_signing_input,
};
use ed25519_dalek::{Signature, VerifyingKey};
use sqlx::PgConnection;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(own, publish))
        .routes(routes!(member_identity))
        .routes(routes!(send_transfer))
        .routes(routes!(take_transfer))
}

struct IdentityRow {
    public_key: Vec<u8>,
    created_at: DateTime<Utc>,
    replaced: i64,
}

impl IdentityRow {
    fn into_identity(self, user_id: Uuid) -> ApiResult<Identity> {
        Ok(Identity {
            user_id,
            public_key: self.public_key.try_into().map_err(|_| ApiError::internal())?,
            created_at: self.created_at,
            replaced: self.replaced,
        })
    }
}

async fn current(conn: &mut PgConnection, user_id: Uuid) -> ApiResult<Option<Identity>> {
    sqlx::query_as!(
        IdentityRow,
        r#"SELECT public_key, created_at,
                  (SELECT count(*) FROM identity_keys r WHERE r.user_id = k.user_id AND r.retired_at IS NOT NULL) AS "replaced!"
             FROM identity_keys k WHERE user_id = $1 AND retired_at IS NULL"#,
        user_id
    )
    .fetch_optional(conn)
    .await?
    .map(|row| row.into_identity(user_id))
    .transpose()
}

fn invalid_credential(reason: &'static str) -> ApiError {
    ApiError::new(ErrorCode::InvalidCredential, format!("the device credential {reason}"))
}

/// Checks that `body.credential` is the calling device's, under `body.public_key`, over the
/// device's registered Ed25519 key.
fn check_credential(body: &PublishIdentity, auth: AuthUser, device_key: &[u8]) -> ApiResult<()> {
    let fields = CredentialFields::decode(&body.credential).ok_or_else(|| invalid_credential("is malformed"))?;
    if fields.user_id != auth.user_id || fields.device_id != auth.device_id {
        return Err(invalid_credential("names another user or device"));
    }
    if fields.identity_key != body.public_key {
        return Err(invalid_credential("is signed by another identity key"));
    }
    let leaf: [u8; 32] = device_key.try_into().map_err(|_| ApiError::internal())?;
    let identity = VerifyingKey::from_bytes(&body.public_key)
        .map_err(|_| ApiError::validation("public_key", "is not a valid Ed25519 key"))?;
    identity
        .verify_strict(
            &device_signing_input(auth.user_id, auth.device_id, &leaf),
            &Signature::from_bytes(&fields.signature),
        )
        .map_err(|_| invalid_credential("does not verify with the identity key over this device's key"))
}

#[utoipa::path(
    get,
    path = "/v1/identity",
    tag = "devices",
    operation_id = "own_identity",
    responses(
        (status = 200, description = "The caller's identity key", body = Identity),
        (status = 404, description = "`not_found`: the account has no identity key yet", body = crate::error::ErrorBody),
    )
)]
async fn own(State(state): State<AppState>, auth: AuthUser) -> ApiResult<axum::Json<Identity>> {
    let mut conn = state.db.acquire().await?;
    current(&mut conn, auth.user_id).await?.map(axum::Json).ok_or_else(|| ApiError::not_found("identity"))
}

#[utoipa::path(
    put,
    path = "/v1/identity",
    tag = "devices",
    operation_id = "publish_identity",
    request_body = PublishIdentity,
    responses(
        (status = 200, description = "The account's identity key, with the calling device's credential stored", body = Identity),
        (status = 409, description = "`identity_exists`: the account has another identity key (send `replace` to start a new one)", body = crate::error::ErrorBody),
        (status = 422, description = "`invalid_credential`: the credential is not this device's under this key", body = crate::error::ErrorBody),
    )
)]
async fn publish(
    State(state): State<AppState>,
    auth: AuthUser,
    ip: ClientIp,
    ApiJson(body): ApiJson<PublishIdentity>,
) -> ApiResult<axum::Json<Identity>> {
    let mut tx = state.db.begin().await?;
    // The device row is locked so that two devices of one user publishing at once are ordered.
    let device_key = sqlx::query_scalar!(
        "SELECT ed25519_public_key FROM devices WHERE id = $1 AND user_id = $2 AND revoked_at IS NULL FOR UPDATE",
        auth.device_id,
        auth.user_id
    )
    .fetch_one(&mut *tx)
    .await?;
    check_credential(&body, auth, &device_key)?;
    sqlx::query!("SELECT id FROM user_accounts WHERE id = $1 FOR UPDATE", auth.user_id).fetch_one(&mut *tx).await?;
    match current(&mut tx, auth.user_id).await? {
        Some(identity) if identity.public_key == body.public_key => {}
        Some(_) if !body.replace => {
            return Err(ApiError::new(
                ErrorCode::IdentityExists,
                "the account has another identity key: receive it from one of your devices, or replace it",
            ));
        }
        existing => {
            if existing.is_some() {
                sqlx::query!(
                    "UPDATE identity_keys SET retired_at = now() WHERE user_id = $1 AND retired_at IS NULL",
                    auth.user_id
                )
                .execute(&mut *tx)
                .await?;
                // Credentials under the old key no longer verify against the account's key, nor
                // do the key packages that carry them.
                sqlx::query!("UPDATE devices SET credential = NULL WHERE user_id = $1", auth.user_id)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query!(
                    "DELETE FROM device_key_packages WHERE device_id IN (SELECT id FROM devices WHERE user_id = $1)",
                    auth.user_id
                )
                .execute(&mut *tx)
                .await?;
            }
            sqlx::query!(
                "INSERT INTO identity_keys (user_id, public_key) VALUES ($1, $2)",
                auth.user_id,
                &body.public_key[..]
            )
            .execute(&mut *tx)
            .await?;
            audit::record(
                &mut tx,
                audit::Entry {
                    organization_id: None,
                    actor: Actor::of(auth),
                    action: if existing.is_some() { "identity.replaced" } else { "identity.created" },
                    target: Some(("user", auth.user_id)),
                    ip: ip.0,
                    // A fingerprint, not the key: the trail keeps nothing an erasure could not
                    // unlink from the person (docs/compliance.md).
                    details: serde_json::json!({ "key_fingerprint": key_fingerprint(&body.public_key) }),
                },
            )
            .await?;
        }
    }
    sqlx::query!("UPDATE devices SET credential = $2 WHERE id = $1", auth.device_id, &body.credential[..])
        .execute(&mut *tx)
        .await?;
    let identity = current(&mut tx, auth.user_id).await?.ok_or_else(ApiError::internal)?;
    tx.commit().await?;
    Ok(axum::Json(identity))
}

#[utoipa::path(
    get,
    path = "/v1/organizations/{organization_id}/members/{user_id}/identity",
    tag = "devices",
    operation_id = "member_identity",
    responses(
        (status = 200, description = "A member's identity key", body = Identity),
        (status = 404, description = "`not_found`: not a member of the organization, or no identity key yet", body = crate::error::ErrorBody),
    )
)]
async fn member_identity(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiPath((organization_id, user_id)): ApiPath<(Uuid, Uuid)>,
) -> ApiResult<axum::Json<Identity>> {
    let (mut tx, _) = member_tx(&state, auth, organization_id).await?;
    // Someone outside the organization is answered exactly like an unknown id.
    let member = sqlx::query_scalar!(
        r#"SELECT EXISTS (SELECT 1 FROM organization_memberships WHERE organization_id = $1 AND user_id = $2) AS "member!""#,
        organization_id,
        user_id
    )
    .fetch_one(&mut *tx)
    .await?;
    let identity = if member { current(&mut tx, user_id).await? } else { None };
    tx.commit().await?;
    identity.map(axum::Json).ok_or_else(|| ApiError::not_found("identity"))
}

#[utoipa::path(
    put,
    path = "/v1/devices/{device_id}/identity-transfer",
    tag = "devices",
    operation_id = "send_identity_transfer",
    request_body = SealedIdentity,
    responses(
        (status = 204, description = "Waiting for the device (15 minutes, handed out once); replaces an earlier one"),
        (status = 404, description = "`not_found`: not another active device of the caller's", body = crate::error::ErrorBody),
    )
)]
async fn send_transfer(
    State(state): State<AppState>,
    auth: AuthUser,
    ip: ClientIp,
    ApiPath(device_id): ApiPath<Uuid>,
    ApiJson(body): ApiJson<SealedIdentity>,
) -> ApiResult<StatusCode> {
    if !(48..=MAX_SEALED_TRANSFER).contains(&body.sealed.len()) {
        return Err(ApiError::validation("sealed", "a sealed identity has 48 to 256 bytes"));
    }
    let mut tx = state.db.begin().await?;
    let target = sqlx::query_scalar!(
        "SELECT id FROM devices WHERE id = $1 AND user_id = $2 AND revoked_at IS NULL AND id <> $3",
        device_id,
        auth.user_id,
        auth.device_id
    )
    .fetch_optional(&mut *tx)
    .await?;
    if target.is_none() {
        return Err(ApiError::not_found("device"));
    }
    sqlx::query!(
        "INSERT INTO identity_transfers (device_id, from_device_id, sealed, expires_at)
         VALUES ($1, $2, $3, now() + make_interval(secs => $4))
         ON CONFLICT (device_id) DO UPDATE
            SET from_device_id = EXCLUDED.from_device_id, sealed = EXCLUDED.sealed,
                created_at = now(), expires_at = EXCLUDED.expires_at",
        device_id,
        auth.device_id,
        body.sealed,
        TRANSFER_LIFETIME_SECONDS as f64
    )
    .execute(&mut *tx)
    .await?;
    audit::record(
        &mut tx,
        audit::Entry {
            organization_id: None,
            actor: Actor::of(auth),
            action: "identity.transfer_sent",
            target: Some(("device", device_id)),
            ip: ip.0,
            details: serde_json::json!({}),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    post,
    path = "/v1/identity/transfer",
    tag = "devices",
    operation_id = "take_identity_transfer",
    responses(
        (status = 200, description = "The identity key sealed for the calling device; removed from the server", body = IdentityTransfer),
        (status = 404, description = "`not_found`: nothing is waiting for this device (none sent, taken, or expired)", body = crate::error::ErrorBody),
    )
)]
async fn take_transfer(State(state): State<AppState>, auth: AuthUser) -> ApiResult<axum::Json<IdentityTransfer>> {
    // An expired transfer is deleted as well, but not handed out.
    let taken = sqlx::query!(
        r#"DELETE FROM identity_transfers WHERE device_id = $1
           RETURNING from_device_id, sealed, created_at, expires_at > now() AS "fresh!""#,
        auth.device_id
    )
    .fetch_optional(&state.db)
    .await?;
    match taken {
        Some(row) if row.fresh => Ok(axum::Json(IdentityTransfer {
            from_device_id: row.from_device_id,
            sealed: row.sealed,
            created_at: row.created_at,
        })),
        _ => Err(ApiError::not_found("identity transfer")),
    }
}

/// The first 16 bytes of the key's SHA-256, in hex: enough to tell keys apart in the audit trail.
fn key_fingerprint(public_key: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(&Sha256::digest(public_key)[..16])
}
