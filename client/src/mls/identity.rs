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

use conclave_protocol::identity::CredentialFields;
pub use conclave_protocol::identity::{
    CREDENTIAL_LEN, CREDENTIAL_MAGIC, CREDENTIAL_VERSION, DEVICE_SIGNING_LABEL, device_signing_input,
};

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
        CredentialFields {
            user_id: self.user_id,
            device_id: self.device_id,
            identity_key: self.identity_key.0,
            signature: self.signature,
        }
        .encode()
    }

    /// Parses an encoded credential. Only the layout is checked here; [`Self::verify`] checks the
    /// signature.
    pub fn decode(bytes: &[u8]) -> Result<Self, MlsError> {
        let fields = CredentialFields::decode(bytes).ok_or(MlsError::MalformedCredential)?;
        Ok(Self {
            user_id: fields.user_id,
            device_id: fields.device_id,
            identity_key: IdentityPublicKey(fields.identity_key),
            signature: fields.signature,
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
