//! The identity chain: a user's identity key signs each of their devices' MLS credentials.
//!
//! Every leaf of a conversation's MLS group carries a `basic` credential whose identity is a
//! [`DeviceCredential`] (133 bytes, layout below). A client accepts a leaf only when the
//! credential names the user and device it claims, its identity signature verifies over the
//! leaf's own signature key, and the identity key is the one this client has pinned for that
//! user ([`super::trust`]). So the server, which can list any key it likes, cannot put a device
//! into someone's account that the account's identity key did not sign.
//!
//! Layout of [`DeviceCredential::encode`] (all fixed-size, no length prefixes):
//!
//! | bytes | field |
//! |---|---|
//! | 0..4 | magic `CNC2` |
//! | 4 | version, `1` |
//! | 5..21 | user id (UUID, 16 bytes big-endian as in RFC 9562) |
//! | 21..37 | device id (UUID) |
//! | 37..69 | the user's identity public key (raw Ed25519) |
//! | 69..133 | Ed25519 signature by the identity key over [`device_signing_input`] |

use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use std::fmt;
use uuid::Uuid;
use zeroize::Zeroizing;

use super::MlsError;
use crate::crypto::CryptoError;

/// The first bytes of every device credential.
pub const CREDENTIAL_MAGIC: &[u8; 4] = b"CNC2";
/// The credential layout's version byte.
pub const CREDENTIAL_VERSION: u8 = 1;
/// The length of an encoded [`DeviceCredential`].
pub const CREDENTIAL_LEN: usize = 4 + 1 + 16 + 16 + 32 + 64;
/// Domain separation of the identity signature.
pub const DEVICE_SIGNING_LABEL: &[u8] = b"conclave/v2/device-credential";

/// What the identity key signs for a device: `label || 0x00 || user_id || device_id ||
/// leaf_signature_key` (the leaf's raw Ed25519 MLS signature key, 32 bytes).
pub fn device_signing_input(user_id: Uuid, device_id: Uuid, leaf_signature_key: &[u8; 32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(DEVICE_SIGNING_LABEL.len() + 1 + 16 + 16 + 32);
    out.extend_from_slice(DEVICE_SIGNING_LABEL);
    out.push(0);
    out.extend_from_slice(user_id.as_bytes());
    out.extend_from_slice(device_id.as_bytes());
    out.extend_from_slice(leaf_signature_key);
    out
}

/// A user's identity signing key (Ed25519). Created on the user's first device, carried to later
/// devices by a device that has it; never sent to the server.
pub struct IdentityKey(SigningKey);

/// A user's identity public key (raw Ed25519, 32 bytes).
#[derive(Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct IdentityPublicKey(pub [u8; 32]);

impl IdentityKey {
    /// A fresh identity key from the operating system's random number generator.
    pub fn generate() -> Result<Self, MlsError> {
        let mut seed = Zeroizing::new([0u8; 32]);
        getrandom::fill(seed.as_mut()).map_err(|_| MlsError::Crypto(CryptoError::Randomness))?;
        Ok(Self(SigningKey::from_bytes(&seed)))
    }

    /// Rebuilds an identity key from its 32-byte Ed25519 seed.
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        Self(SigningKey::from_bytes(seed))
    }

    /// The seed, for the keystore.
    pub fn seed(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.0.to_bytes())
    }

    pub fn public(&self) -> IdentityPublicKey {
        IdentityPublicKey(self.0.verifying_key().to_bytes())
    }

    /// Signs the credential of one of this user's devices, whose MLS leaves will be signed by
    /// `leaf_signature_key`.
    pub fn certify(&self, user_id: Uuid, device_id: Uuid, leaf_signature_key: &[u8; 32]) -> DeviceCredential {
        let signature = self.0.sign(&device_signing_input(user_id, device_id, leaf_signature_key)).to_bytes();
        DeviceCredential { user_id, device_id, identity_key: self.public(), signature }
    }
}

impl fmt::Debug for IdentityKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdentityKey").field("public", &self.public()).field("secret", &"<redacted>").finish()
    }
}

impl fmt::Debug for IdentityPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IdentityPublicKey({})", conclave_protocol::b64::encode(self.0))
    }
}

/// The identity of one MLS leaf: which user's device it is, and the user's signature over it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct DeviceCredential {
    pub user_id: Uuid,
    pub device_id: Uuid,
    pub identity_key: IdentityPublicKey,
    pub signature: [u8; 64],
}

impl DeviceCredential {
    /// The 133-byte encoding (see the module documentation), the `identity` of an MLS basic
    /// credential.
    pub fn encode(&self) -> [u8; CREDENTIAL_LEN] {
        let mut out = [0u8; CREDENTIAL_LEN];
        out[0..4].copy_from_slice(CREDENTIAL_MAGIC);
        out[4] = CREDENTIAL_VERSION;
        out[5..21].copy_from_slice(self.user_id.as_bytes());
        out[21..37].copy_from_slice(self.device_id.as_bytes());
        out[37..69].copy_from_slice(&self.identity_key.0);
        out[69..133].copy_from_slice(&self.signature);
        out
    }

    /// Parses an encoded credential. Only the layout is checked here; [`Self::verify`] checks the
    /// signature.
    pub fn decode(bytes: &[u8]) -> Result<Self, MlsError> {
        if bytes.len() != CREDENTIAL_LEN || &bytes[0..4] != CREDENTIAL_MAGIC || bytes[4] != CREDENTIAL_VERSION {
            return Err(MlsError::MalformedCredential);
        }
        let uuid = |range: std::ops::Range<usize>| {
            let mut id = [0u8; 16];
            id.copy_from_slice(&bytes[range]);
            Uuid::from_bytes(id)
        };
        let mut identity_key = [0u8; 32];
        identity_key.copy_from_slice(&bytes[37..69]);
        let mut signature = [0u8; 64];
        signature.copy_from_slice(&bytes[69..133]);
        Ok(Self {
            user_id: uuid(5..21),
            device_id: uuid(21..37),
            identity_key: IdentityPublicKey(identity_key),
            signature,
        })
    }

    /// Checks the identity signature over this credential and the leaf's signature key (strict
    /// Ed25519: one valid signature per message and key).
    pub fn verify(&self, leaf_signature_key: &[u8]) -> Result<(), MlsError> {
        let leaf: [u8; 32] = leaf_signature_key.try_into().map_err(|_| MlsError::MalformedCredential)?;
        let key = VerifyingKey::from_bytes(&self.identity_key.0).map_err(|_| MlsError::MalformedCredential)?;
        key.verify_strict(
            &device_signing_input(self.user_id, self.device_id, &leaf),
            &Signature::from_bytes(&self.signature),
        )
        .map_err(|_| MlsError::BadIdentitySignature { user_id: self.user_id, device_id: self.device_id })
    }
}
