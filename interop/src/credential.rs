//! The device credential (`docs/protocol-v2.md` "Device credential"): the `identity` of an MLS
//! `basic` credential, 133 bytes, by which a user's identity key certifies one device's leaf
//! signature key. Written from the document: no SDK code.

use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use uuid::Uuid;

/// `CNC2`.
pub const MAGIC: &[u8; 4] = b"CNC2";
/// The layout's version byte.
pub const VERSION: u8 = 1;
/// 4 + 1 + 16 + 16 + 32 + 64.
pub const LEN: usize = 133;
/// The label of the identity key's signature (followed by `0x00`).
pub const LABEL: &[u8] = b"conclave/v2/device-credential";

/// `"conclave/v2/device-credential" || 0x00 || user_id || device_id || leaf_signature_key`.
pub fn signed_bytes(user_id: Uuid, device_id: Uuid, leaf_signature_key: &[u8; 32]) -> Vec<u8> {
    let mut input = Vec::with_capacity(LABEL.len() + 1 + 16 + 16 + 32);
    input.extend_from_slice(LABEL);
    input.push(0);
    input.extend_from_slice(user_id.as_bytes());
    input.extend_from_slice(device_id.as_bytes());
    input.extend_from_slice(leaf_signature_key);
    input
}

/// A parsed device credential.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceCredential {
    pub user_id: Uuid,
    pub device_id: Uuid,
    pub identity_key: [u8; 32],
    pub signature: [u8; 64],
}

/// Why a credential is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CredentialError {
    /// Not 133 bytes, another magic or version, or a leaf key that is not 32 bytes.
    Malformed,
    /// The identity key's signature does not verify (strictly) over the leaf's signature key.
    BadSignature { user_id: Uuid, device_id: Uuid },
}

impl DeviceCredential {
    /// Signs a credential for `device_id` of `user_id`, whose leaves are signed by `leaf_key`.
    pub fn certify(identity: &SigningKey, user_id: Uuid, device_id: Uuid, leaf_key: &[u8; 32]) -> Self {
        let signature = identity.sign(&signed_bytes(user_id, device_id, leaf_key)).to_bytes();
        Self { user_id, device_id, identity_key: identity.verifying_key().to_bytes(), signature }
    }

    /// The 133 bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(LEN);
        out.extend_from_slice(MAGIC);
        out.push(VERSION);
        out.extend_from_slice(self.user_id.as_bytes());
        out.extend_from_slice(self.device_id.as_bytes());
        out.extend_from_slice(&self.identity_key);
        out.extend_from_slice(&self.signature);
        out
    }

    /// Parses the layout (the signature is checked by [`Self::verify`]).
    pub fn decode(bytes: &[u8]) -> Result<Self, CredentialError> {
        if bytes.len() != LEN || &bytes[0..4] != MAGIC || bytes[4] != VERSION {
            return Err(CredentialError::Malformed);
        }
        let uuid =
            |range: std::ops::Range<usize>| Uuid::from_slice(&bytes[range]).map_err(|_| CredentialError::Malformed);
        Ok(Self {
            user_id: uuid(5..21)?,
            device_id: uuid(21..37)?,
            identity_key: bytes[37..69].try_into().map_err(|_| CredentialError::Malformed)?,
            signature: bytes[69..133].try_into().map_err(|_| CredentialError::Malformed)?,
        })
    }

    /// Strict Ed25519 verification of the identity signature over `leaf_signature_key`.
    pub fn verify(&self, leaf_signature_key: &[u8]) -> Result<(), CredentialError> {
        let leaf: [u8; 32] = leaf_signature_key.try_into().map_err(|_| CredentialError::Malformed)?;
        let refused = CredentialError::BadSignature { user_id: self.user_id, device_id: self.device_id };
        let key = VerifyingKey::from_bytes(&self.identity_key).map_err(|_| refused.clone())?;
        key.verify_strict(&signed_bytes(self.user_id, self.device_id, &leaf), &Signature::from_bytes(&self.signature))
            .map_err(|_| refused)
    }
}

/// `device_key_input = "conclave/v2/device-key" || 0x00 || ed25519_public_key` (`protocol.md`
/// "Device registration"): what a new device signs to prove it holds its key.
pub fn device_key_input(public_key: &[u8; 32]) -> Vec<u8> {
    let mut input = b"conclave/v2/device-key\0".to_vec();
    input.extend_from_slice(public_key);
    input
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vectors::unhex as hex;

    /// `docs/test-vectors/protocol-v2-identity.json`: the same credential bytes, and it verifies.
    #[test]
    fn the_committed_identity_vector_is_what_this_client_writes() {
        let vector = crate::vectors::load("protocol-v2-identity.json");
        let text = |k: &str| vector[k].as_str().expect(k).to_owned();
        let seed: [u8; 32] = hex(&text("identity_seed")).try_into().expect("seed");
        let leaf_seed: [u8; 32] = hex(&text("leaf_seed")).try_into().expect("leaf seed");
        let identity = SigningKey::from_bytes(&seed);
        let leaf = SigningKey::from_bytes(&leaf_seed).verifying_key().to_bytes();
        assert_eq!(leaf.to_vec(), hex(&text("leaf_public")));
        let user_id: Uuid = text("user_id").parse().expect("uuid");
        let device_id: Uuid = text("device_id").parse().expect("uuid");
        let credential = DeviceCredential::certify(&identity, user_id, device_id, &leaf);
        assert_eq!(credential.encode(), hex(&text("credential")));
        let decoded = DeviceCredential::decode(&hex(&text("credential"))).expect("decode");
        assert_eq!(decoded, credential);
        decoded.verify(&leaf).expect("verifies over its leaf key");
        assert!(decoded.verify(&[7; 32]).is_err(), "and over no other");
    }
}
