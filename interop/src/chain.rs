//! The identity chain as an mls-rs [`IdentityProvider`]: what `docs/protocol-v2.md` "Device
//! credential" says a client accepts of a leaf, checked by mls-rs on every leaf it meets (the
//! leaves of a Welcome's tree, an added key package, a committer's new leaf), and what it accepts
//! as the group's external sender ("MLS profile": the delivery service).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use mls_rs::ExtensionList;
use mls_rs::identity::{CredentialType, SigningIdentity};
use mls_rs::time::MlsTime;
use mls_rs_core::error::IntoAnyError;
use mls_rs_core::identity::{IdentityProvider, MemberValidationContext};
use uuid::Uuid;

use crate::credential::{CredentialError, DeviceCredential};

/// The basic credential identity of the delivery service as an external sender.
pub const DELIVERY_SERVICE_IDENTITY: &[u8] = b"conclave/v2/delivery-service";

/// Why a leaf or an external sender is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChainError {
    NotBasic,
    Credential(CredentialError),
    /// The identity key is not the one pinned for this user.
    IdentityChanged {
        user_id: Uuid,
    },
    /// The user is not a member of the conversation as the server lists it.
    NotAMember {
        user_id: Uuid,
        device_id: Uuid,
    },
    /// The device is not an active device of a member (revoked, or unknown to the server), or
    /// the server lists another Ed25519 key for it.
    NotAnActiveDevice {
        user_id: Uuid,
        device_id: Uuid,
    },
    /// An external sender that is not the delivery service under its published key.
    NotTheDeliveryService,
}

impl std::fmt::Display for ChainError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self:?}")
    }
}

impl std::error::Error for ChainError {}

impl IntoAnyError for ChainError {
    fn into_dyn_error(self) -> Result<Box<dyn std::error::Error + Send + Sync>, Self> {
        Ok(Box::new(self))
    }
}

/// What the server lists of a conversation: its members, and their active devices with the
/// Ed25519 key each registered.
#[derive(Debug, Clone, Default)]
pub struct Roster {
    pub members: BTreeSet<Uuid>,
    pub devices: BTreeMap<Uuid, [u8; 32]>,
}

#[derive(Default)]
struct State {
    /// The identity key pinned for each user: the first one seen.
    pins: HashMap<Uuid, [u8; 32]>,
    /// Until set, leaves are checked for their signature and pin only.
    roster: Option<Roster>,
    /// The delivery service's removal keys (`GET /v1/mls/delivery-service`).
    delivery_service: Vec<[u8; 32]>,
    /// Every refusal, for a test to inspect.
    refused: Vec<ChainError>,
    /// Every external sender key accepted.
    external_senders: Vec<[u8; 32]>,
}

/// The chain's state, shared between the mls-rs client (which clones its provider) and the
/// application.
#[derive(Clone, Default)]
pub struct Chain(Arc<Mutex<State>>);

impl Chain {
    fn state(&self) -> MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Pins `identity_key` for `user_id` when nothing is pinned yet; `false` when another is.
    pub fn pin(&self, user_id: Uuid, identity_key: [u8; 32]) -> bool {
        *self.state().pins.entry(user_id).or_insert(identity_key) == identity_key
    }

    pub fn pinned(&self, user_id: Uuid) -> Option<[u8; 32]> {
        self.state().pins.get(&user_id).copied()
    }

    pub fn set_roster(&self, roster: Roster) {
        self.state().roster = Some(roster);
    }

    pub fn set_delivery_service(&self, keys: Vec<[u8; 32]>) {
        self.state().delivery_service = keys;
    }

    /// The external sender keys accepted so far (mls-rs asks when it joins a group, and when a
    /// commit changes the group context's extensions).
    pub fn external_senders_accepted(&self) -> Vec<[u8; 32]> {
        self.state().external_senders.clone()
    }

    /// The key under which `identity` is the delivery service, when it is: a `basic` credential
    /// whose identity is [`DELIVERY_SERVICE_IDENTITY`], and one of its published removal keys
    /// (`removal_key` or `previous_removal_key`) as signature key.
    pub fn delivery_service_key(&self, identity: &SigningIdentity) -> Option<[u8; 32]> {
        let is_service =
            identity.credential.as_basic().is_some_and(|basic| basic.identifier() == DELIVERY_SERVICE_IDENTITY);
        let key = identity.signature_key.as_bytes();
        self.state().delivery_service.iter().find(|known| is_service && &known[..] == key).copied()
    }

    /// The refusals so far.
    pub fn refused(&self) -> Vec<ChainError> {
        self.state().refused.clone()
    }

    /// The device a leaf's credential names, unverified (for leaves already in the group).
    pub fn leaf(identity: &SigningIdentity) -> Option<DeviceCredential> {
        DeviceCredential::decode(identity.credential.as_basic()?.identifier()).ok()
    }

    /// Every check of a leaf, in the document's order: the credential parses, its signature
    /// verifies over the leaf's own signature key, the user is a member, the device is an active
    /// device of theirs with this key, and the identity key is the pinned one (pinned if first).
    pub fn check(&self, identity: &SigningIdentity) -> Result<DeviceCredential, ChainError> {
        let result = self.check_inner(identity);
        if let Err(error) = &result {
            self.state().refused.push(error.clone());
        }
        result
    }

    fn check_inner(&self, identity: &SigningIdentity) -> Result<DeviceCredential, ChainError> {
        let basic = identity.credential.as_basic().ok_or(ChainError::NotBasic)?;
        let leaf = DeviceCredential::decode(basic.identifier()).map_err(ChainError::Credential)?;
        let leaf_key = identity.signature_key.as_bytes();
        leaf.verify(leaf_key).map_err(ChainError::Credential)?;
        let mut state = self.state();
        if let Some(roster) = &state.roster {
            if !roster.members.contains(&leaf.user_id) {
                return Err(ChainError::NotAMember { user_id: leaf.user_id, device_id: leaf.device_id });
            }
            if roster.devices.get(&leaf.device_id).map(|k| &k[..]) != Some(leaf_key) {
                return Err(ChainError::NotAnActiveDevice { user_id: leaf.user_id, device_id: leaf.device_id });
            }
        }
        // Last: a leaf refused for who it is must not pin its identity key.
        let pinned = *state.pins.entry(leaf.user_id).or_insert(leaf.identity_key);
        if pinned != leaf.identity_key {
            return Err(ChainError::IdentityChanged { user_id: leaf.user_id });
        }
        Ok(leaf)
    }
}

impl IdentityProvider for Chain {
    type Error = ChainError;

    fn validate_member(
        &self,
        signing_identity: &SigningIdentity,
        _timestamp: Option<MlsTime>,
        _context: MemberValidationContext<'_>,
    ) -> Result<(), Self::Error> {
        self.check(signing_identity).map(|_| ())
    }

    fn validate_external_sender(
        &self,
        signing_identity: &SigningIdentity,
        _timestamp: Option<MlsTime>,
        _extensions: Option<&ExtensionList>,
    ) -> Result<(), Self::Error> {
        if let Some(key) = self.delivery_service_key(signing_identity) {
            self.state().external_senders.push(key);
            return Ok(());
        }
        self.state().refused.push(ChainError::NotTheDeliveryService);
        Err(ChainError::NotTheDeliveryService)
    }

    /// A member's identity in the group: user id and device id (32 bytes), so that one device has
    /// at most one leaf.
    fn identity(
        &self,
        signing_identity: &SigningIdentity,
        _extensions: &ExtensionList,
    ) -> Result<Vec<u8>, Self::Error> {
        let leaf = Self::leaf(signing_identity).ok_or(ChainError::Credential(CredentialError::Malformed))?;
        Ok([leaf.user_id.as_bytes().as_slice(), leaf.device_id.as_bytes()].concat())
    }

    /// An external commit may replace only the same device's leaf.
    fn valid_successor(
        &self,
        predecessor: &SigningIdentity,
        successor: &SigningIdentity,
        _extensions: &ExtensionList,
    ) -> Result<bool, Self::Error> {
        let (Some(before), Some(after)) = (Self::leaf(predecessor), Self::leaf(successor)) else { return Ok(false) };
        Ok((before.user_id, before.device_id) == (after.user_id, after.device_id))
    }

    fn supported_types(&self) -> Vec<CredentialType> {
        vec![CredentialType::BASIC]
    }
}
