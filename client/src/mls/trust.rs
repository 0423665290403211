//! Which identity key this client believes each user has, and whether its owner compared safety
//! numbers.
//!
//! The first key seen for a user is pinned (trust on first use). A later, different key is never
//! accepted silently: every check against it fails with [`MlsError::IdentityChanged`] until the
//! person decides, having been warned ([`TrustStore::accept_change`]), typically because the other
//! user lost every device and started a new identity. Comparing safety numbers marks a pin as
//! verified; a changed key starts unverified again.

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

/// The pins of every user this client has met, kept in the keystore.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrustStore {
    pins: BTreeMap<Uuid, Pin>,
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
