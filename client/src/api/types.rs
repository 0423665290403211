//! Bodies of the account, device and organization endpoints, as this client reads and writes
//! them. (The messaging bodies are [`conclave_protocol::api`], shared with the server.)
//!
//! Answers are read leniently: fields this client does not use are ignored, and fields that a
//! newer server might omit have defaults, so the client keeps working as the API grows.

use std::fmt;

use chrono::{DateTime, Utc};
use conclave_protocol::b64;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::crypto::DeviceKeys;

/// `POST /v1/auth/register`.
#[derive(Serialize)]
pub struct Register<'a> {
    /// The account's email address.
    pub email: &'a str,
    /// The password (12 characters at least).
    pub password: &'a str,
    /// The name other people see.
    pub display_name: &'a str,
}

/// The answer to a registration.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Registered {
    /// The new account's id.
    pub user_id: Uuid,
    /// The address, normalised by the server (trimmed, lower-case).
    pub email: String,
    /// False when the deployment sends no email (then the account cannot be confirmed).
    pub confirmation_email_sent: bool,
}

/// A device to register: its public keys and their binding signature.
#[derive(Debug, Clone, Serialize)]
pub struct NewDevice {
    /// A name for people ("laptop").
    pub name: String,
    /// `cli` for this client.
    pub platform: String,
    /// The X25519 public key conversation keys are wrapped for.
    #[serde(with = "b64")]
    pub x25519_public_key: [u8; 32],
    /// The Ed25519 public key that verifies the device's signatures.
    #[serde(with = "b64")]
    pub ed25519_public_key: [u8; 32],
    /// [`DeviceKeys::binding_signature`].
    #[serde(with = "b64")]
    pub key_signature: [u8; 64],
}

impl NewDevice {
    /// The registration of `keys` under `name`, platform `cli`.
    pub fn cli(name: &str, keys: &DeviceKeys) -> Self {
        let public = keys.public();
        Self {
            name: name.to_owned(),
            platform: "cli".to_owned(),
            x25519_public_key: public.x25519,
            ed25519_public_key: public.ed25519,
            key_signature: keys.binding_signature(),
        }
    }
}

/// Which device a login opens a session on.
#[derive(Debug, Clone)]
pub enum LoginDevice {
    /// A device registered before (its id).
    Existing(Uuid),
    /// A new device, registered by the login itself.
    New(NewDevice),
}

/// `POST /v1/auth/login`.
#[derive(Clone)]
pub struct Login {
    /// The account's email address.
    pub email: String,
    /// The password.
    pub password: String,
    /// A current TOTP code, when the account has TOTP enabled.
    pub totp_code: Option<String>,
    /// Or a one-time recovery code.
    pub recovery_code: Option<String>,
    /// The device to sign in on.
    pub device: LoginDevice,
}

impl fmt::Debug for Login {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Login").field("email", &self.email).field("device", &self.device).finish_non_exhaustive()
    }
}

impl Serialize for Login {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Wire<'a> {
            email: &'a str,
            password: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            totp_code: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            recovery_code: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            device_id: Option<Uuid>,
            #[serde(skip_serializing_if = "Option::is_none")]
            device: Option<&'a NewDevice>,
        }
        let (device_id, device) = match &self.device {
            LoginDevice::Existing(id) => (Some(*id), None),
            LoginDevice::New(device) => (None, Some(device)),
        };
        Wire {
            email: &self.email,
            password: &self.password,
            totp_code: self.totp_code.as_deref(),
            recovery_code: self.recovery_code.as_deref(),
            device_id,
            device,
        }
        .serialize(serializer)
    }
}

/// What a login or a refresh returns. `Debug` hides the tokens.
#[derive(Clone, Deserialize)]
pub struct TokenPair {
    /// The bearer token for API calls.
    pub access_token: String,
    /// Always `Bearer`.
    #[serde(default)]
    pub token_type: String,
    /// Seconds until the access token expires.
    #[serde(default)]
    pub expires_in: u64,
    /// The single-use token that renews the pair.
    pub refresh_token: String,
    /// The signed-in account.
    pub user_id: Uuid,
    /// The session opened.
    pub session_id: Uuid,
    /// The device the session belongs to.
    pub device_id: Uuid,
}

impl fmt::Debug for TokenPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenPair")
            .field("user_id", &self.user_id)
            .field("session_id", &self.session_id)
            .field("device_id", &self.device_id)
            .field("expires_in", &self.expires_in)
            .finish_non_exhaustive()
    }
}

/// `GET /v1/me`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Me {
    /// The account.
    pub user_id: Uuid,
    /// Its email address.
    pub email: String,
    /// Its display name.
    #[serde(default)]
    pub display_name: Option<String>,
    /// Whether the address was confirmed.
    #[serde(default)]
    pub email_confirmed: bool,
    /// Whether TOTP sign-in is enabled.
    #[serde(default)]
    pub totp_enabled: bool,
    /// The current session.
    pub session_id: Uuid,
    /// The current device.
    pub device_id: Uuid,
}

/// One of the caller's devices (`GET /v1/devices`), revoked ones included.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Device {
    /// The device id.
    pub id: Uuid,
    /// Its name.
    pub name: String,
    /// `cli`, `ios`, `web`, ...
    pub platform: String,
    /// Its X25519 public key.
    #[serde(with = "b64")]
    pub x25519_public_key: [u8; 32],
    /// Its Ed25519 public key.
    #[serde(with = "b64")]
    pub ed25519_public_key: [u8; 32],
    /// When it was registered.
    pub created_at: DateTime<Utc>,
    /// When it last signed in.
    #[serde(default)]
    pub last_seen_at: Option<DateTime<Utc>>,
    /// When it was revoked, if it was.
    #[serde(default)]
    pub revoked_at: Option<DateTime<Utc>>,
    /// Whether it is the device making the request.
    #[serde(default)]
    pub current: bool,
}

/// An organization the caller belongs to (`GET /v1/organizations`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Organization {
    /// The organization id.
    pub id: Uuid,
    /// Its unique short name.
    pub slug: String,
    /// Its name for people.
    pub display_name: String,
    /// The caller's role: `owner`, `admin`, `member` or `guest`.
    #[serde(default)]
    pub role: Option<String>,
}

/// A workspace of an organization (`GET /v1/organizations/{org}/workspaces`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Workspace {
    /// The workspace id.
    pub id: Uuid,
    /// Its short name, unique in the organization.
    pub slug: String,
    /// Its name for people.
    pub display_name: String,
    /// Whether the caller has joined it.
    #[serde(default)]
    pub joined: bool,
}

/// A member of an organization (`GET /v1/organizations/{org}/members`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OrganizationMember {
    /// The member's account.
    pub user_id: Uuid,
    /// Their email address (the server shows it to organization admins only).
    #[serde(default)]
    pub email: Option<String>,
    /// Their display name.
    #[serde(default)]
    pub display_name: Option<String>,
    /// Their role in the organization.
    #[serde(default)]
    pub role: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_login_names_either_a_registered_device_or_a_new_one() {
        let keys = DeviceKeys::generate().expect("keys");
        let login = |device| Login {
            email: "a@example.org".into(),
            password: "pw".into(),
            totp_code: None,
            recovery_code: None,
            device,
        };
        let existing = serde_json::to_value(login(LoginDevice::Existing(Uuid::nil()))).expect("json");
        assert_eq!(existing, json!({"email": "a@example.org", "password": "pw", "device_id": Uuid::nil()}));
        let new = serde_json::to_value(login(LoginDevice::New(NewDevice::cli("laptop", &keys)))).expect("json");
        assert!(new.get("device_id").is_none());
        assert_eq!(new["device"]["platform"], "cli");
        assert_eq!(new["device"]["key_signature"].as_str().map(str::len), Some(86), "64 bytes in base64url");
        assert!(!format!("{:?}", login(LoginDevice::Existing(Uuid::nil()))).contains("pw"));
    }
}
