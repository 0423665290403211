//! JSON bodies of the MLS handshake endpoints (protocol v2): the server orders each conversation's
//! commits (exactly one per epoch, the first to arrive), keeps each epoch's commit for devices
//! catching up, the Welcome for the devices a commit adds, and the latest group info for a device
//! that must rejoin by external commit. All MLS messages are TLS-encoded `MLSMessage`s, opaque to
//! the server, base64url here like every byte field.
//!
//! An epoch is what protocol v1 called a key generation: `current_key_generation` of a
//! conversation is its group's current epoch, and the errors keep their v1 names
//! (`stale_generation` when another commit won the epoch).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The largest commit, Welcome or group info accepted, in bytes (a Welcome that adds a device to a
/// group of 1,000 devices carries the ratchet tree and is the largest of them).
pub const MAX_HANDSHAKE_BYTES: usize = 1 << 20;

/// One TLS-encoded `MLSMessage`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "utoipa", schema(value_type = String, format = Byte, content_encoding = "base64url", min_length = 2, max_length = 1398102))]
#[serde(transparent)]
pub struct MlsBytes(#[serde(with = "crate::b64")] pub Vec<u8>);

/// `POST .../conversations/{conversation_id}/commits`: a commit made in the conversation's current
/// epoch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct UploadCommit {
    /// The epoch the commit was made in: the conversation's current epoch, or the commit lost the
    /// race (409 `stale_generation`).
    #[cfg_attr(feature = "utoipa", schema(minimum = 0))]
    pub epoch: i32,
    pub commit: MlsBytes,
    /// The group info of the epoch the commit opens (signed by the committer, with the ratchet
    /// tree), for devices that rejoin by external commit.
    pub group_info: MlsBytes,
    /// The Welcome for the devices the commit adds; present exactly when `welcomed_devices` is
    /// not empty.
    #[serde(default)]
    pub welcome: Option<MlsBytes>,
    /// The devices the Welcome is for: active devices of current members. The server hands the
    /// Welcome to these devices only.
    #[serde(default)]
    pub welcomed_devices: Vec<Uuid>,
}

/// The answer to an accepted commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub struct CommitAccepted {
    /// The epoch the commit opened, now the conversation's current one.
    pub epoch: i32,
}

/// A commit as stored: `GET .../commits?after=N` lists them in epoch order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub struct StoredCommit {
    /// The epoch this commit opened (it was made in `epoch - 1`).
    pub epoch: i32,
    pub commit: MlsBytes,
    /// The device that sent it (absent once that device is deleted).
    pub committed_by_device_id: Option<Uuid>,
    pub created_at: DateTime<Utc>,
}

/// `GET .../commits?after=N`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema, utoipa::IntoParams))]
#[serde(deny_unknown_fields)]
pub struct CommitsQuery {
    /// Only commits that opened an epoch after this one.
    #[serde(default)]
    pub after: i32,
}

/// `GET .../welcome`: the latest Welcome addressed to the calling device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub struct StoredWelcome {
    /// The epoch the Welcome joins the device into.
    pub epoch: i32,
    pub welcome: MlsBytes,
}

/// `GET .../group-info`: the group info of the current epoch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub struct StoredGroupInfo {
    pub epoch: i32,
    pub group_info: MlsBytes,
}
