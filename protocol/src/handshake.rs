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
    /// The delivery service's proposals the commit includes by reference
    /// (`GET .../proposals`), in the order received: stored with the commit, since every member
    /// needs them to process it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[cfg_attr(feature = "utoipa", schema(max_items = 1000))]
    pub proposals: Vec<MlsBytes>,
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
    /// The delivery service's proposals it includes by reference: process them first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub proposals: Vec<MlsBytes>,
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

/// The basic credential's identity of the delivery service as a group's external sender.
pub const DELIVERY_SERVICE_IDENTITY: &[u8] = b"conclave/v2/delivery-service";

/// `GET /v1/mls/delivery-service`: what a device puts in a new group's `external_senders`
/// extension (RFC 9420 section 12.1.8.1) so that the delivery service can propose the removal of a
/// removed member's or revoked device's leaf, and nothing else.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub struct DeliveryService {
    /// The removal key (raw Ed25519 public key) under the basic credential
    /// `conclave/v2/delivery-service`. Absent when the data plane has none configured: groups are
    /// then made without an external sender, and members commit removals themselves.
    #[serde(with = "crate::b64::option", default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "utoipa", schema(value_type = Option<String>, format = Byte, content_encoding = "base64url", min_length = 43, max_length = 43))]
    pub removal_key: Option<[u8; 32]>,
    /// The key it replaces, during a rotation's overlap: groups made with it still get proposals
    /// signed with it until a member moves them to `removal_key`.
    #[serde(with = "crate::b64::option", default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "utoipa", schema(value_type = Option<String>, format = Byte, content_encoding = "base64url", min_length = 43, max_length = 43))]
    pub previous_removal_key: Option<[u8; 32]>,
}

/// `GET .../conversations/{conversation_id}/proposals`: the delivery service's `Remove` proposals
/// for the current epoch, one per leaf of a device that is no longer an active device of a member
/// (removed or left, or revoked), in leaf order. A member commits them (by reference) before any
/// application message is accepted again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub struct PendingProposals {
    /// The epoch they were made in: the conversation's current one.
    pub epoch: i32,
    /// Each a `PublicMessage` by external sender, signed with the removal key the group holds.
    /// Empty when nothing is to be removed, or the group has no external sender the data plane
    /// holds the key of.
    pub proposals: Vec<MlsBytes>,
}
