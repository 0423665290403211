//! JSON bodies of the key-package endpoints (protocol v2, MLS): a device publishes key packages so
//! that others can add it to a conversation's group while it is offline.
//!
//! A key package is a TLS-encoded `MLSMessage` carrying a `KeyPackage` (RFC 9420 section 10),
//! base64url here like every byte field. The server checks only its size; the client that claims
//! it verifies it (its signature, its suite, and the identity chain of its credential).

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The most one-time key packages one device may hold unclaimed on the server.
pub const MAX_STORED_KEY_PACKAGES: usize = 100;
/// The most users whose devices' key packages one claim may ask for.
pub const MAX_CLAIMED_USERS: usize = 100;
/// Bounds of one encoded key package, in bytes.
pub const KEY_PACKAGE_BYTES: std::ops::RangeInclusive<usize> = 64..=8192;

/// One encoded key package.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "utoipa", schema(value_type = String, format = Byte, content_encoding = "base64url", min_length = 86, max_length = 10923))]
#[serde(transparent)]
pub struct KeyPackageBytes(#[serde(with = "crate::b64")] pub Vec<u8>);

/// `POST /v1/key-packages`: key packages of the calling device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct UploadKeyPackages {
    /// One-time key packages, each handed out at most once; the device may hold at most 100.
    #[cfg_attr(feature = "utoipa", schema(max_items = 100))]
    #[serde(default)]
    pub key_packages: Vec<KeyPackageBytes>,
    /// A last-resort key package (marked so inside, RFC 9420 section 16.8), replacing the device's
    /// previous one; handed out when the one-time packages run out, and not consumed.
    #[serde(default)]
    pub last_resort: Option<KeyPackageBytes>,
}

/// How many key packages the calling device has left on the server (`GET /v1/key-packages`, and
/// the answer to an upload), so the SDK knows when to top them up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub struct KeyPackageStock {
    /// Unclaimed one-time key packages.
    pub available: u32,
    /// Whether a last-resort key package is stored.
    pub last_resort: bool,
}

/// `POST /v1/organizations/{organization_id}/key-packages/claim`: one key package for every active
/// device of these users (members of the organization), or only for the devices named.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ClaimKeyPackages {
    #[cfg_attr(feature = "utoipa", schema(min_items = 1, max_items = 100))]
    pub user_ids: Vec<Uuid>,
    /// Only these devices of those users (a member adding the one device of a user that is not in
    /// the group yet does not use up the packages of the others); all their active devices when
    /// empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[cfg_attr(feature = "utoipa", schema(max_items = 1000))]
    pub device_ids: Vec<Uuid>,
}

/// A claimed key package and the device it is for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub struct ClaimedKeyPackage {
    pub user_id: Uuid,
    pub device_id: Uuid,
    pub key_package: KeyPackageBytes,
    /// The device's last-resort package (its one-time packages ran out): the device should be
    /// asked to update its leaf soon after it joins.
    pub last_resort: bool,
}

/// The answer to a claim.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub struct ClaimedKeyPackages {
    /// One per active device that had a key package, in user then device order.
    pub key_packages: Vec<ClaimedKeyPackage>,
    /// Active devices of the users asked for that have no key package left at all: they cannot be
    /// added until they upload more.
    pub exhausted: Vec<DeviceRef>,
}

/// A device, named by its user and its id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub struct DeviceRef {
    pub user_id: Uuid,
    pub device_id: Uuid,
}
