//! The bodies of the bot endpoints: a bot opens a session as a device of its own with the token
//! from its Kubernetes Secret (`POST /v1/bot/sessions`), then uses the API like any member.

use crate::auth::DeviceProof;
use crate::devices::NewDevice;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Opens a session for the bot presenting its token (`Authorization: Bearer cbot_...`): on a
/// device the bot registered before (`device_id`), or on a new one whose keys the bot process
/// generated (`device`). Exactly one of the two.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct BotSessionRequest {
    /// A device of this bot, registered by an earlier session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_id: Option<Uuid>,
    /// Or a new device (its public keys and their binding signature).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<NewDevice>,
    /// Required with `device_id`: the device's signature over
    /// `bot_session_proof_input(device_id, unix_seconds)` (`docs/bots.md`), made within 300
    /// seconds of the server's clock and used once. A token and a device id are not enough.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_proof: Option<DeviceProof>,
}

impl BotSessionRequest {
    /// A session on a new device.
    pub fn new_device(device: NewDevice) -> Self {
        Self { device_id: None, device: Some(device), device_proof: None }
    }

    /// A session on a device registered before, with that device's `proof` (the SDK's
    /// `DeviceKeys::bot_session_proof`).
    pub fn on_device(device_id: Uuid, proof: DeviceProof) -> Self {
        Self { device_id: Some(device_id), device: None, device_proof: Some(proof) }
    }
}

/// The scopes a BotAgent can hold, as the database and the data plane spell them (the
/// `BotScope` of the custom resource serializes to the same strings).
pub const SCOPES: [&str; 10] = [
    "messages:read",
    "messages:write",
    "conversations:read",
    "conversations:write",
    "members:read",
    "reactions:write",
    "pins:write",
    "calls:read",
    "files:read",
    "files:write",
];
