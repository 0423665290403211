use std::fmt;

use conclave_protocol::devices::{NewDevice, Platform};
use conclave_protocol::{b64, layout};
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use zeroize::Zeroizing;

use super::{CryptoError, random::random_bytes};

/// A device's key pair: Ed25519, which signs its registration, its sign-in proofs and its MLS
/// leaves (protocol v2 has no other device key: version 1's X25519 key is gone with its key
/// wraps).
///
/// The secret is zeroized on drop (the dalek type does it); `Debug` prints the public key only.
pub struct DeviceKeys {
    ed25519: SigningKey,
}

impl DeviceKeys {
    /// A fresh key pair from the operating system's random number generator.
    pub fn generate() -> Result<Self, CryptoError> {
        Ok(Self::from_seed(&*random_bytes::<32>()?))
    }

    /// Rebuilds the key pair from its Ed25519 seed (RFC 8032's 32-byte private key).
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        Self { ed25519: SigningKey::from_bytes(seed) }
    }

    /// The raw Ed25519 public key to publish (`ed25519_public_key`).
    pub fn public(&self) -> [u8; 32] {
        self.ed25519.verifying_key().to_bytes()
    }

    /// The Ed25519 signature over [`layout::device_key_input`] that proves this device holds its
    /// key, sent with the public key at registration (`key_signature`).
    pub fn key_signature(&self) -> [u8; 64] {
        self.sign(&layout::device_key_input(&self.public()))
    }

    /// This key registered as a device called `name`: the body of `POST /v1/devices`, or the
    /// `device` of a login that registers it.
    pub fn registration(&self, name: &str, platform: Platform) -> NewDevice {
        NewDevice {
            name: name.to_owned(),
            platform,
            ed25519_public_key: self.public(),
            key_signature: self.key_signature(),
        }
    }

    /// The secret, for the keystore and the MLS leaf: the Ed25519 seed.
    pub(crate) fn seed(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.ed25519.to_bytes())
    }

    pub(crate) fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.ed25519.sign(message).to_bytes()
    }
}

impl fmt::Debug for DeviceKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeviceKeys")
            .field("ed25519", &b64::encode(self.public()))
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// Checks a device's proof of possession of its key, as the server does at registration.
pub fn verify_device_key(ed25519_public: &[u8; 32], signature: &[u8; 64]) -> Result<(), CryptoError> {
    verify(ed25519_public, &layout::device_key_input(ed25519_public), signature)
}

/// Ed25519 verification with the strict checks of `verify_strict` (no small-order keys or `R`,
/// canonical `S`), so one message has one valid signature per key.
pub(crate) fn verify(ed25519_public: &[u8; 32], message: &[u8], signature: &[u8; 64]) -> Result<(), CryptoError> {
    let key = VerifyingKey::from_bytes(ed25519_public).map_err(|_| CryptoError::InvalidPublicKey)?;
    key.verify_strict(message, &Signature::from_bytes(signature)).map_err(|_| CryptoError::BadSignature)
}
