//! End-to-end encryption, version 2 of the protocol: MLS (RFC 9420) with an identity chain.
//!
//! - One MLS group per conversation (group id = the conversation id's 16 bytes), one leaf per
//!   member device, ciphersuite [`CIPHERSUITE`].
//! - Each leaf's `basic` credential is a [`DeviceCredential`]: the user's [`IdentityKey`] signs
//!   the device's id and its leaf signature key (the device's registered Ed25519 key). Every leaf
//!   a device meets (in a Welcome, a commit, a key package it adds, a message's sender) is checked
//!   against the identity key pinned for that user ([`TrustStore`]) and against the roster the
//!   server lists ([`Roster`]); a ghost device fails with a specific [`MlsError`].
//! - [Safety numbers](safety) let two people confirm each other's identity keys.
//! - The server is an MLS external sender that can only propose `Remove`
//!   ([`ExternalSenderKey`]); members commit those proposals.
//!
//! Cryptography happens here only: the data plane orders and relays opaque MLS messages.

mod delivery;
mod group;
pub mod identity;
pub mod safety;
mod sync;
#[cfg(test)]
mod tests;
pub mod transfer;
pub mod trust;
#[cfg(test)]
mod vectors;

pub use delivery::{DeliveryError, GroupAddress};
pub use group::{
    DELIVERY_SERVICE_IDENTITY, Device, EpochKey, ExternalSenderKey, Incoming, Leaf, MAXIMUM_FORWARD_DISTANCE,
    OUT_OF_ORDER_TOLERANCE, Outgoing, PAST_EPOCHS, REACTION_KEY_LABEL, Roster, group_id, verify_leaf,
};
pub use identity::{DeviceCredential, IdentityKey, IdentityPublicKey};
pub use openmls::group::MlsGroup;
pub use sync::{MAX_REBASES, Membership, Opened};
pub use trust::{FirstContact, Pin, Trust, TrustStore};

use thiserror::Error;
use uuid::Uuid;

/// `MLS_128_DHKEMX25519_CHACHA20POLY1305_SHA256_Ed25519` (0x0003): X25519 and Ed25519 as the
/// device keys already are, ChaCha20-Poly1305 fast without AES hardware (phones, small nodes).
pub const CIPHERSUITE: openmls::prelude::Ciphersuite =
    openmls::prelude::Ciphersuite::MLS_128_DHKEMX25519_CHACHA20POLY1305_SHA256_Ed25519;

/// Why an MLS operation failed. Each attack the malicious-server tests try ends in one of these.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum MlsError {
    /// A leaf's credential is not a Conclave device credential.
    #[error("a device credential is malformed")]
    MalformedCredential,
    /// A leaf's identity signature does not verify over its signature key.
    #[error("device {device_id} of user {user_id} is not signed by that user's identity key")]
    BadIdentitySignature { user_id: Uuid, device_id: Uuid },
    /// A leaf is signed by another identity key than the one pinned for its user: the user started
    /// a new identity, or someone is impersonating them. Never accepted silently.
    #[error("the identity key of user {user_id} changed: compare safety numbers before trusting it")]
    IdentityChanged { user_id: Uuid },
    /// Under [`FirstContact::VerifiedOnly`], a user whose safety number its owner has not
    /// confirmed: not added, and not sent to.
    #[error(
        "user {user_id} is not verified: compare safety numbers (`conclave verify`) before adding or writing to them"
    )]
    Unverified { user_id: Uuid },
    /// No identity key is known for this user.
    #[error("no identity key is known for user {user_id}")]
    UnknownIdentity { user_id: Uuid },
    /// A leaf belongs to a user the server does not list as a member of the conversation.
    #[error("device {device_id} belongs to user {user_id}, who is not a member of the conversation")]
    NotAMember { user_id: Uuid, device_id: Uuid },
    /// A leaf is a device the server lists as revoked.
    #[error("device {device_id} of user {user_id} was revoked")]
    RevokedDevice { user_id: Uuid, device_id: Uuid },
    /// A key package does not parse or verify, or is for another ciphersuite.
    #[error("a key package is malformed or not signed by its leaf")]
    MalformedKeyPackage,
    /// An MLS message does not parse.
    #[error("an MLS message is malformed")]
    MalformedMessage,
    /// A message for another group (conversation).
    #[error("the message belongs to another conversation")]
    WrongGroup,
    /// A message for an epoch this device is not in (a replayed or reordered commit, or this device
    /// fell behind).
    #[error("the message is for epoch {message}, the group is at epoch {group}")]
    WrongEpoch { message: u64, group: u64 },
    /// This device has seen a sign that the conversation moved past its epoch (a later epoch's
    /// message or commit, the server's listing or refusal) without the commits that lead there:
    /// it does not encrypt for an epoch a removed device may still hold until it catches up.
    #[error("this device is at epoch {group} but the conversation has reached epoch {later}: catch up before sending")]
    Behind { group: u64, later: u64 },
    /// The message cannot be decrypted: forged, replayed, or its epoch's secrets are gone.
    #[error("the message cannot be decrypted")]
    CannotDecrypt,
    /// A signed (public) message whose signature does not verify under its sender's key: for the
    /// delivery service's proposals, the group's external sender key.
    #[error("the message's signature does not verify")]
    BadSignature,
    /// A commit failed MLS validation.
    #[error("the commit is invalid: {0}")]
    InvalidCommit(String),
    /// A Welcome could not be used (not for this device, or invalid).
    #[error("the welcome cannot be used: {0}")]
    WelcomeRejected(String),
    /// A message from a sender that may not send it (an external application message, a member
    /// proposal, an external proposal other than Remove).
    #[error("the sender may not send this message")]
    UnauthorizedSender,
    /// A key package of a device of a user nobody asked to add: the server slipped it into a claim.
    #[error("device {device_id} of user {user_id} was handed out but not asked for")]
    Unrequested { user_id: Uuid, device_id: Uuid },
    /// An external commit bringing in a device that had no leaf in the group. External commits only
    /// bring back a device already in the group (its state lost); a new device comes in by a
    /// member's commit and a Welcome.
    #[error("device {device_id} of user {user_id} joined by external commit without having been in the group")]
    ExternalJoin { user_id: Uuid, device_id: Uuid },
    /// The delivery service proposed removing a device it still lists as an active device of a
    /// member: refused, since the server's own listing says the device stays.
    #[error("the server proposed removing device {device_id} of user {user_id}, which it lists as active")]
    UnexpectedRemoval { user_id: Uuid, device_id: Uuid },
    /// The device named is not in the group.
    #[error("the device is not in the group")]
    NotInGroup,
    /// The saved MLS state is corrupt.
    #[error("the saved MLS state is corrupt")]
    MalformedSnapshot,
    /// A link code is not one (wrong prefix, length or checksum: probably mistyped).
    #[error("the link code is malformed or mistyped")]
    MalformedLinkCode,
    /// A sealed identity key does not open with this device's link key (not for this device, or
    /// tampered with).
    #[error("the identity key received does not open with this device's link key")]
    TransferRejected,
    /// A lower-level cryptographic failure.
    #[error(transparent)]
    Crypto(#[from] crate::crypto::CryptoError),
    /// openmls refused an operation.
    #[error("{context}: {reason}")]
    Protocol { context: &'static str, reason: String },
}
