//! JSON bodies of the account and session endpoints (`/v1/auth/*`, `/v1/me`).
//!
//! The server checks what these carry (address syntax, password strength, TOTP codes); these
//! types only give the shape. `Debug` never prints a password, a code or a token.

use std::fmt;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::devices::NewDevice;

/// `POST /v1/auth/register`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    #[cfg_attr(feature = "utoipa", schema(format = Email, max_length = 254))]
    pub email: String,
    /// At least 12 characters, at most 256 bytes; not a common password, not the email address.
    #[cfg_attr(feature = "utoipa", schema(min_length = 12, max_length = 256))]
    pub password: String,
    /// The name other people see.
    #[cfg_attr(feature = "utoipa", schema(min_length = 1, max_length = 100))]
    pub display_name: String,
}

impl fmt::Debug for RegisterRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegisterRequest")
            .field("email", &self.email)
            .field("display_name", &self.display_name)
            .finish_non_exhaustive()
    }
}

/// The answer to a registration. It is the same whether the address was free or already had an
/// account (whose owner is then emailed instead), so it tells nobody whether an address is
/// registered; the account's id comes with the confirmation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub struct Registered {
    /// The address as the server normalised it (trimmed, lower-case).
    pub email: String,
    /// False when this deployment sends no email (then confirmation cannot happen).
    pub confirmation_email_sent: bool,
}

/// `POST /v1/auth/confirm-email`: the token the confirmation email carried.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ConfirmEmailRequest {
    pub token: String,
}

impl fmt::Debug for ConfirmEmailRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ConfirmEmailRequest { <redacted> }")
    }
}

/// `POST /v1/auth/login`. Exactly one of `device_id` and `device` is given (the server answers
/// 422 `validation_failed` otherwise).
// (A doc comment is the schema's description: `LoginRequest::on_device` and
// `LoginRequest::with_new_device` build one of each kind.)
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    pub email: String,
    pub password: String,
    /// A current TOTP code, when the account has TOTP enabled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub totp_code: Option<String>,
    /// Or one of the recovery codes issued when TOTP was enabled (each works once).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recovery_code: Option<String>,
    /// Sign in on a device registered before...
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_id: Option<Uuid>,
    /// ...or register this one now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device: Option<NewDevice>,
    /// Required with `device_id`: that device's proof that it is signing in now, by its
    /// registered key (`docs/protocol.md`, "Sign-in"); a password and a device id are not enough.
    /// With it, failures by others against the address do not lock the device out.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_proof: Option<DeviceProof>,
}

/// A registered device's Ed25519 signature that it is the one asking now: over
/// `login_proof_input(email, device_id, unix_seconds)` for a sign-in (`docs/protocol.md`,
/// "Sign-in"), over `bot_session_proof_input(device_id, unix_seconds)` for a bot's session
/// (`docs/bots.md`).
// The signed bytes: `crate::layout::login_proof_input`, `crate::layout::bot_session_proof_input`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct DeviceProof {
    /// When the proof was made (Unix seconds); accepted within 300 seconds of the server's clock.
    pub unix_seconds: u64,
    #[serde(with = "crate::b64")]
    #[cfg_attr(feature = "utoipa", schema(value_type = String, format = Byte, content_encoding = "base64url", min_length = 86, max_length = 86))]
    pub signature: [u8; 64],
}

impl LoginRequest {
    /// A sign-in on the device `device_id`, registered before, with its `proof` (made by the
    /// device's key: the SDK's `DeviceKeys::device_proof`).
    pub fn on_device(
        email: impl Into<String>,
        password: impl Into<String>,
        device_id: Uuid,
        proof: DeviceProof,
    ) -> Self {
        Self {
            device_id: Some(device_id),
            device_proof: Some(proof),
            ..Self::without_device(email.into(), password.into())
        }
    }

    /// A sign-in that registers `device` and opens its first session.
    pub fn with_new_device(email: impl Into<String>, password: impl Into<String>, device: NewDevice) -> Self {
        Self { device: Some(device), ..Self::without_device(email.into(), password.into()) }
    }

    fn without_device(email: String, password: String) -> Self {
        Self {
            email,
            password,
            totp_code: None,
            recovery_code: None,
            device_id: None,
            device: None,
            device_proof: None,
        }
    }
}

impl fmt::Debug for LoginRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoginRequest")
            .field("email", &self.email)
            .field("device_id", &self.device_id)
            .field("device", &self.device)
            .finish_non_exhaustive()
    }
}

/// `POST /v1/auth/refresh`: the single-use token of the current pair.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    pub refresh_token: String,
}

impl fmt::Debug for RefreshRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RefreshRequest { <redacted> }")
    }
}

/// How an access token is presented: `Authorization: Bearer <token>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub enum TokenType {
    Bearer,
}

/// What a successful login or refresh returns.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub struct TokenPair {
    /// The bearer token for API calls (a JWT).
    pub access_token: String,
    pub token_type: TokenType,
    /// Seconds until the access token expires.
    pub expires_in: u64,
    /// The single-use token that renews the pair.
    pub refresh_token: String,
    pub user_id: Uuid,
    pub session_id: Uuid,
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

/// `GET /v1/me`: the signed-in account, session and device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub struct Me {
    pub user_id: Uuid,
    pub email: String,
    pub display_name: Option<String>,
    /// Whether the address was confirmed.
    pub email_confirmed: bool,
    /// Whether TOTP sign-in is enabled.
    pub totp_enabled: bool,
    pub session_id: Uuid,
    pub device_id: Uuid,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::Platform;
    use serde_json::json;

    fn device() -> NewDevice {
        NewDevice {
            name: "laptop".into(),
            platform: Platform::Cli,
            ed25519_public_key: [2; 32],
            key_signature: [3; 64],
        }
    }

    #[test]
    fn a_login_names_either_a_registered_device_or_a_new_one() {
        let proof = DeviceProof { unix_seconds: 7, signature: [4; 64] };
        let existing =
            serde_json::to_value(LoginRequest::on_device("a@example.org", "pw", Uuid::nil(), proof)).expect("json");
        let signature = crate::b64::encode([4u8; 64]);
        assert_eq!(
            existing,
            json!({"email": "a@example.org", "password": "pw", "device_id": Uuid::nil(),
                   "device_proof": {"unix_seconds": 7, "signature": signature}})
        );
        let new = serde_json::to_value(LoginRequest::with_new_device("a@example.org", "pw", device())).expect("json");
        assert!(new.get("device_id").is_none());
        assert_eq!(new["device"]["platform"], "cli");
        assert_eq!(new["device"]["key_signature"].as_str().map(str::len), Some(86), "64 bytes in base64url");
        let read: LoginRequest = serde_json::from_value(new).expect("the server reads what the client writes");
        assert_eq!(read.device, Some(device()));
    }

    #[test]
    fn secrets_stay_out_of_debug_output() {
        let proof = DeviceProof { unix_seconds: 7, signature: [4; 64] };
        let mut login = LoginRequest::on_device("a@example.org", "hunter2-password", Uuid::nil(), proof);
        login.totp_code = Some("123456".into());
        let register = RegisterRequest {
            email: "a@example.org".into(),
            password: "hunter2-password".into(),
            display_name: "A".into(),
        };
        let pair = TokenPair {
            access_token: "secret-access".into(),
            token_type: TokenType::Bearer,
            expires_in: 900,
            refresh_token: "secret-refresh".into(),
            user_id: Uuid::nil(),
            session_id: Uuid::nil(),
            device_id: Uuid::nil(),
        };
        let refresh = RefreshRequest { refresh_token: "secret-refresh".into() };
        let confirm = ConfirmEmailRequest { token: "secret-token".into() };
        let printed = format!("{login:?} {register:?} {pair:?} {refresh:?} {confirm:?}");
        for secret in ["hunter2", "123456", "secret"] {
            assert!(!printed.contains(secret), "{printed}");
        }
        assert_eq!(serde_json::to_value(&pair).expect("json")["token_type"], "Bearer");
    }

    #[test]
    fn requests_refuse_unknown_fields() {
        let body = json!({"email": "a@example.org", "password": "p", "display_name": "A", "admin": true});
        assert!(serde_json::from_value::<RegisterRequest>(body).is_err());
    }
}
