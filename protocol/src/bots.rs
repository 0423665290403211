//! The bodies of the bot endpoints: a bot opens a session as a device of its own with the token
//! from its Kubernetes Secret (`POST /v1/bot/sessions`), then uses the API like any member.

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
}

impl BotSessionRequest {
    /// A session on a new device.
    pub fn new_device(device: NewDevice) -> Self {
        Self { device_id: None, device: Some(device) }
    }

    /// A session on a device registered before.
    pub fn on_device(device_id: Uuid) -> Self {
        Self { device_id: Some(device_id), device: None }
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
