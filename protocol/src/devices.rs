//! JSON bodies of the device endpoints (`/v1/devices`), also carried by a login that registers
//! its device.
//!
//! A device publishes one key, Ed25519: it signs the device's sign-in proofs and its MLS leaves.
//! Registration proves possession of it with a signature over
//! [`crate::layout::device_key_input`]. The key has a fixed size, so a key of the wrong length is
//! refused when the body is read; the server verifies the signature.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// What kind of client a device is.
// The data plane stores the same words in `devices.platform` (the `sqlx` feature).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "sqlx", derive(sqlx::Type), sqlx(type_name = "text", rename_all = "snake_case"))]
#[serde(rename_all = "snake_case")]
pub enum Platform {
    Ios,
    Android,
    Web,
    Desktop,
    Cli,
    Bot,
}

impl Platform {
    /// The word on the wire (and in `devices.platform`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ios => "ios",
            Self::Android => "android",
            Self::Web => "web",
            Self::Desktop => "desktop",
            Self::Cli => "cli",
            Self::Bot => "bot",
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// `POST /v1/devices`, and `device` in a login that registers its device: the public key and the
/// signature that proves the registrant holds its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct NewDevice {
    /// A name for people ("laptop"): 1 to 100 characters once trimmed.
    #[cfg_attr(feature = "utoipa", schema(min_length = 1, max_length = 100))]
    pub name: String,
    pub platform: Platform,
    /// The Ed25519 public key that verifies the device's signatures (sign-in proofs, MLS leaves).
    #[serde(with = "crate::b64")]
    #[cfg_attr(feature = "utoipa", schema(value_type = String, format = Byte, content_encoding = "base64url", min_length = 43, max_length = 43))]
    pub ed25519_public_key: [u8; 32],
    /// The Ed25519 signature by that key over `"conclave/v2/device-key" || 0x00 || ed25519_public_key`,
    /// which proves possession of it (`docs/protocol.md`, "Device registration").
    // The signed bytes: `crate::layout::device_key_input`.
    #[serde(with = "crate::b64")]
    #[cfg_attr(feature = "utoipa", schema(value_type = String, format = Byte, content_encoding = "base64url", min_length = 86, max_length = 86))]
    pub key_signature: [u8; 64],
}

/// One of the caller's devices (`GET /v1/devices`), revoked ones included.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub struct Device {
    pub id: Uuid,
    pub name: String,
    pub platform: Platform,
    #[serde(with = "crate::b64")]
    #[cfg_attr(feature = "utoipa", schema(value_type = String, format = Byte, content_encoding = "base64url", min_length = 43, max_length = 43))]
    pub ed25519_public_key: [u8; 32],
    /// The device's credential under the account's identity key (protocol v2), once published.
    #[serde(with = "crate::b64::option", default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "utoipa", schema(value_type = Option<String>, format = Byte, content_encoding = "base64url", min_length = 178, max_length = 178))]
    pub credential: Option<[u8; crate::identity::CREDENTIAL_LEN]>,
    pub created_at: DateTime<Utc>,
    pub last_seen_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    /// Whether this is the device the request was made from.
    pub current: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn platforms_are_the_stored_words() {
        for platform in
            [Platform::Ios, Platform::Android, Platform::Web, Platform::Desktop, Platform::Cli, Platform::Bot]
        {
            assert_eq!(serde_json::to_value(platform).expect("json"), json!(platform.as_str()));
        }
        assert!(serde_json::from_value::<Platform>(json!("toaster")).is_err());
        assert_eq!(format!("{:<5}|", Platform::Cli), "cli  |");
    }

    #[test]
    fn a_key_of_the_wrong_length_is_refused_when_read() {
        let key = crate::b64::encode([1u8; 32]);
        let device = |ed25519: String| {
            json!({
                "name": "laptop",
                "platform": "cli",
                "ed25519_public_key": ed25519,
                "key_signature": crate::b64::encode([2u8; 64]),
            })
        };
        assert!(serde_json::from_value::<NewDevice>(device(key)).is_ok());
        assert!(serde_json::from_value::<NewDevice>(device(crate::b64::encode([1u8; 31]))).is_err());
        let mut with_x25519 = device(crate::b64::encode([1u8; 32]));
        with_x25519["x25519_public_key"] = json!(crate::b64::encode([1u8; 32]));
        assert!(serde_json::from_value::<NewDevice>(with_x25519).is_err(), "version 1's X25519 key is gone");
    }
}
