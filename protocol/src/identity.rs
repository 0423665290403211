//! Protocol v2's identity chain on the wire: a user's identity key (Ed25519) signs each of their
//! devices' credentials, and the credential is the `identity` of the device's MLS leaves.
//!
//! The server keeps each user's current identity public key and each device's credential so that
//! a client can verify a listing it is given, and it relays the identity key, sealed by one of the
//! user's devices for another, when a user adds a device. It never holds an identity secret: a
//! transfer is HPKE-sealed to a key the new device made and showed its owner out of band (the link
//! code), so the server can neither read it nor substitute its own recipient.
//!
//! Layout of a device credential (133 bytes, all fixed-size):
//!
//! | bytes | field |
//! |---|---|
//! | 0..4 | magic `CNC2` |
//! | 4 | version, `1` |
//! | 5..21 | user id (UUID, 16 bytes) |
//! | 21..37 | device id (UUID) |
//! | 37..69 | the user's identity public key (raw Ed25519) |
//! | 69..133 | Ed25519 signature by the identity key over [`device_signing_input`] |

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The first bytes of every device credential.
pub const CREDENTIAL_MAGIC: &[u8; 4] = b"CNC2";
/// The credential layout's version byte.
pub const CREDENTIAL_VERSION: u8 = 1;
/// The length of an encoded device credential.
pub const CREDENTIAL_LEN: usize = 4 + 1 + 16 + 16 + 32 + 64;
/// Domain separation of the identity signature over a device.
pub const DEVICE_SIGNING_LABEL: &[u8] = b"conclave/v2/device-credential";
/// HPKE `info` of an identity transfer (followed by `0x00 || user_id || device_id`).
pub const IDENTITY_TRANSFER_LABEL: &[u8] = b"conclave/v2/identity-transfer";
/// The most bytes a sealed identity transfer may have (32-byte encapsulated key, 32-byte seed,
/// 16-byte tag, with room to spare).
pub const MAX_SEALED_TRANSFER: usize = 256;
/// How long a sealed transfer waits for its device, in seconds.
pub const TRANSFER_LIFETIME_SECONDS: i64 = 15 * 60;

/// What the identity key signs for a device: `label || 0x00 || user_id || device_id ||
/// leaf_signature_key` (the device's raw Ed25519 MLS signature key, 32 bytes).
pub fn device_signing_input(user_id: Uuid, device_id: Uuid, leaf_signature_key: &[u8; 32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(DEVICE_SIGNING_LABEL.len() + 1 + 16 + 16 + 32);
    out.extend_from_slice(DEVICE_SIGNING_LABEL);
    out.push(0);
    out.extend_from_slice(user_id.as_bytes());
    out.extend_from_slice(device_id.as_bytes());
    out.extend_from_slice(leaf_signature_key);
    out
}

/// The HPKE `info` of an identity transfer to `device_id` of `user_id`:
/// `label || 0x00 || user_id || device_id`.
pub fn identity_transfer_info(user_id: Uuid, device_id: Uuid) -> Vec<u8> {
    let mut out = Vec::with_capacity(IDENTITY_TRANSFER_LABEL.len() + 1 + 32);
    out.extend_from_slice(IDENTITY_TRANSFER_LABEL);
    out.push(0);
    out.extend_from_slice(user_id.as_bytes());
    out.extend_from_slice(device_id.as_bytes());
    out
}

/// The fields of an encoded credential, checked for layout only (no signature check here).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CredentialFields {
    pub user_id: Uuid,
    pub device_id: Uuid,
    pub identity_key: [u8; 32],
    pub signature: [u8; 64],
}

impl CredentialFields {
    /// The 133-byte encoding.
    pub fn encode(&self) -> [u8; CREDENTIAL_LEN] {
        let mut out = [0u8; CREDENTIAL_LEN];
        out[0..4].copy_from_slice(CREDENTIAL_MAGIC);
        out[4] = CREDENTIAL_VERSION;
        out[5..21].copy_from_slice(self.user_id.as_bytes());
        out[21..37].copy_from_slice(self.device_id.as_bytes());
        out[37..69].copy_from_slice(&self.identity_key);
        out[69..133].copy_from_slice(&self.signature);
        out
    }

    /// Parses an encoded credential; `None` when the length, magic or version is wrong.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        if bytes.len() != CREDENTIAL_LEN || &bytes[0..4] != CREDENTIAL_MAGIC || bytes[4] != CREDENTIAL_VERSION {
            return None;
        }
        Some(Self {
            user_id: Uuid::from_slice(&bytes[5..21]).ok()?,
            device_id: Uuid::from_slice(&bytes[21..37]).ok()?,
            identity_key: bytes[37..69].try_into().ok()?,
            signature: bytes[69..133].try_into().ok()?,
        })
    }
}

/// `PUT /v1/identity`: the caller's identity public key and the calling device's credential under
/// it. The first call makes the key the account's; later devices send the same key with their own
/// credential. A different key is refused (`identity_exists`) unless `replace` is set, which a
/// user who lost every device does to start a new identity (everyone who talks to them is warned).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct PublishIdentity {
    /// The identity public key (raw Ed25519).
    #[serde(with = "crate::b64")]
    #[cfg_attr(feature = "utoipa", schema(value_type = String, format = Byte, content_encoding = "base64url", min_length = 43, max_length = 43))]
    pub public_key: [u8; 32],
    /// The calling device's credential, signed by that key over the device's Ed25519 key.
    #[serde(with = "crate::b64")]
    #[cfg_attr(feature = "utoipa", schema(value_type = String, format = Byte, content_encoding = "base64url", min_length = 178, max_length = 178))]
    pub credential: [u8; CREDENTIAL_LEN],
    /// Replace the account's identity key with this one.
    #[serde(default)]
    pub replace: bool,
}

/// A user's current identity public key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub struct Identity {
    pub user_id: Uuid,
    #[serde(with = "crate::b64")]
    #[cfg_attr(feature = "utoipa", schema(value_type = String, format = Byte, content_encoding = "base64url", min_length = 43, max_length = 43))]
    pub public_key: [u8; 32],
    /// When this key became the account's.
    pub created_at: DateTime<Utc>,
    /// How many identity keys the account had before this one (0 for its first).
    pub replaced: i64,
}

/// `PUT /v1/devices/{device_id}/identity-transfer`: the identity key, HPKE-sealed by one of the
/// caller's devices to the link key of another (`docs/protocol-v2.md`, "Adding a device").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SealedIdentity {
    /// `enc || ciphertext` of HPKE base mode (X25519, HKDF-SHA256, ChaCha20-Poly1305).
    #[serde(with = "crate::b64")]
    #[cfg_attr(feature = "utoipa", schema(value_type = String, format = Byte, content_encoding = "base64url", max_length = 342))]
    pub sealed: Vec<u8>,
}

/// `GET /v1/identity/transfer`: the sealed identity waiting for the calling device (handed out
/// once).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub struct IdentityTransfer {
    /// The device that sealed it.
    pub from_device_id: Uuid,
    #[serde(with = "crate::b64")]
    #[cfg_attr(feature = "utoipa", schema(value_type = String, format = Byte, content_encoding = "base64url"))]
    pub sealed: Vec<u8>,
    pub created_at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_credential_round_trips_and_a_wrong_layout_is_refused() {
        let fields = CredentialFields {
            user_id: Uuid::from_u128(1),
            device_id: Uuid::from_u128(2),
            identity_key: [3; 32],
            signature: [4; 64],
        };
        let bytes = fields.encode();
        assert_eq!(CredentialFields::decode(&bytes), Some(fields));
        let mut wrong = bytes;
        wrong[4] = 2;
        assert_eq!(CredentialFields::decode(&wrong), None);
        assert_eq!(CredentialFields::decode(&bytes[..132]), None);
    }

    #[test]
    fn the_transfer_info_binds_user_and_device() {
        let info = identity_transfer_info(Uuid::from_u128(1), Uuid::from_u128(2));
        assert!(info.starts_with(IDENTITY_TRANSFER_LABEL));
        assert_eq!(info.len(), IDENTITY_TRANSFER_LABEL.len() + 33);
        assert_ne!(info, identity_transfer_info(Uuid::from_u128(2), Uuid::from_u128(1)));
    }
}
