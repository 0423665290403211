//! A cache of devices' Ed25519 verifying keys, shared by every handler that checks a device's
//! signature.

use crate::context::session::session_revoked;
use crate::error::{ApiError, ApiResult};
use ed25519_dalek::VerifyingKey;
use sqlx::PgPool;
use std::collections::HashMap;
use std::sync::Mutex;
use uuid::Uuid;

/// Devices' Ed25519 keys, which never change once registered (a device that needs new keys
/// registers as a new device), so they are kept after the first send. Revocation is checked by
/// the send itself, in the database.
#[derive(Default)]
pub struct SigningKeys {
    keys: Mutex<HashMap<Uuid, VerifyingKey>>,
}

/// Keys kept before the cache starts over (a few hundred bytes each).
const MAX_DEVICE_KEYS: usize = 100_000;

impl SigningKeys {
    pub async fn get(&self, db: &PgPool, device_id: Uuid) -> ApiResult<VerifyingKey> {
        if let Some(key) = self.keys.lock().map_err(|_| ApiError::internal())?.get(&device_id) {
            return Ok(*key);
        }
        let bytes = sqlx::query_scalar!("SELECT ed25519_public_key FROM devices WHERE id = $1", device_id)
            .fetch_optional(db)
            .await?
            .ok_or_else(session_revoked)?;
        let bytes: [u8; 32] = bytes.try_into().map_err(|_| ApiError::internal())?;
        let key = VerifyingKey::from_bytes(&bytes).map_err(|_| ApiError::internal())?;
        let mut keys = self.keys.lock().map_err(|_| ApiError::internal())?;
        if keys.len() >= MAX_DEVICE_KEYS {
            keys.clear();
        }
        keys.insert(device_id, key);
        Ok(key)
    }
}
