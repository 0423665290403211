//! Which identity key this client believes each user has, and whether its owner compared safety
//! numbers.
//!
//! The first key seen for a user is pinned (trust on first use). A later, different key is never
//! accepted silently: every check against it fails with [`MlsError::IdentityChanged`] until the
//! person decides, having been warned ([`TrustStore::accept_change`]), typically because the other
//! user lost every device and started a new identity. Comparing safety numbers marks a pin as
//! verified; a changed key starts unverified again.
//!
//! Trust on first use leaves one opening: a server that answers a first contact with a device of
//! an identity key of its own is pinned as that user (comparing safety numbers shows it, and so
//! does the real user's first device met later). A client that cannot leave that open sets
//! [`FirstContact::VerifiedOnly`]: it adds, and sends to, only users whose safety number its owner
//! confirmed ([`MlsError::Unverified`] otherwise). Receiving is unchanged: what an unverified
//! user sends is read, and shown as unverified.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::MlsError;
use super::identity::IdentityPublicKey;

/// What this client knows of one user's identity key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pin {
    pub key: IdentityPublicKey,
    /// The owner compared safety numbers for this key.
    pub verified: bool,
}

/// How far a checked key is trusted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trust {
    /// First seen now, pinned.
    New,
    /// The pinned key, not compared yet.
    Unverified,
    /// The pinned key, compared.
    Verified,
}

/// Whom this client encrypts to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FirstContact {
    /// Any user whose identity key checks out against the pin, a new user's key pinned on first
    /// sight (as most messengers do).
    #[default]
    TrustOnFirstUse,
    /// Only users whose safety number was confirmed: a user first met, or met again under a
    /// changed key, is [`MlsError::Unverified`] until then.
    VerifiedOnly,
}

/// The pins of every user this client has met, kept in the keystore.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrustStore {
    pins: BTreeMap<Uuid, Pin>,
    #[serde(default)]
    first_contact: FirstContact,
}

impl TrustStore {
    /// Checks `key` for `user_id`, pinning it when the user is new.
    pub fn check(&mut self, user_id: Uuid, key: &IdentityPublicKey) -> Result<Trust, MlsError> {
        match self.pins.get(&user_id) {
            None => {
                self.pins.insert(user_id, Pin { key: *key, verified: false });
                Ok(Trust::New)
            }
            Some(pin) if pin.key == *key => Ok(if pin.verified { Trust::Verified } else { Trust::Unverified }),
            Some(_) => Err(MlsError::IdentityChanged { user_id }),
        }
    }

    /// Whether this client may add or send to `user_id`'s devices, as far as its identity key goes
    /// (the key itself is checked against the pin by [`Self::check`]): always under
    /// [`FirstContact::TrustOnFirstUse`]; under [`FirstContact::VerifiedOnly`] only once its
    /// safety number was confirmed. Pins nothing.
    pub fn admit(&self, user_id: Uuid) -> Result<(), MlsError> {
        match (self.first_contact, self.pins.get(&user_id)) {
            (FirstContact::TrustOnFirstUse, _) | (FirstContact::VerifiedOnly, Some(Pin { verified: true, .. })) => {
                Ok(())
            }
            (FirstContact::VerifiedOnly, _) => Err(MlsError::Unverified { user_id }),
        }
    }

    pub fn first_contact(&self) -> FirstContact {
        self.first_contact
    }

    pub fn set_first_contact(&mut self, policy: FirstContact) {
        self.first_contact = policy;
    }

    /// The pin of a user, if any.
    pub fn pin(&self, user_id: Uuid) -> Option<&Pin> {
        self.pins.get(&user_id)
    }

    /// Records that safety numbers were compared for `key`, which must be the pinned key.
    pub fn mark_verified(&mut self, user_id: Uuid, key: &IdentityPublicKey) -> Result<(), MlsError> {
        match self.pins.get_mut(&user_id) {
            Some(pin) if pin.key == *key => {
                pin.verified = true;
                Ok(())
            }
            Some(_) => Err(MlsError::IdentityChanged { user_id }),
            None => Err(MlsError::UnknownIdentity { user_id }),
        }
    }

    /// Replaces a user's pinned key after its owner was warned of the change; unverified again.
    pub fn accept_change(&mut self, user_id: Uuid, key: &IdentityPublicKey) {
        self.pins.insert(user_id, Pin { key: *key, verified: false });
    }
}
