use std::fmt;

use conclave_protocol::devices::{NewDevice, Platform};
use conclave_protocol::{b64, layout};
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use hpke::{Deserializable as _, Kem as _, Serializable as _};
use zeroize::Zeroizing;

use super::suite::Kem;
use super::{CryptoError, random::random_bytes};

type X25519SecretKey = <Kem as hpke::Kem>::PrivateKey;

/// A device's two key pairs: X25519 to receive conversation keys, Ed25519 to sign.
///
/// Both secrets are zeroized on drop (the underlying dalek types do it); `Debug` prints the public
/// keys only.
pub struct DeviceKeys {
    x25519_secret: X25519SecretKey,
    x25519_public: [u8; 32],
    ed25519: SigningKey,
}

/// A device's public keys as published at registration: raw 32-byte X25519 and Ed25519 keys.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct DevicePublicKeys {
    /// Raw X25519 public key (RFC 7748), the HPKE recipient key for key wraps.
    pub x25519: [u8; 32],
    /// Raw Ed25519 public key (RFC 8032), which verifies the device's signatures.
    pub ed25519: [u8; 32],
}

impl DeviceKeys {
    /// Fresh key pairs from the operating system's random number generator.
    pub fn generate() -> Result<Self, CryptoError> {
        let x25519 = random_bytes::<32>()?;
        let ed25519 = random_bytes::<32>()?;
        Ok(Self::from_secret_bytes(&x25519, &ed25519))
    }

    /// Rebuilds the keys from their 32-byte secrets: an X25519 private key (clamped on use, as
    /// RFC 7748 specifies) and an Ed25519 seed (RFC 8032's 32-byte private key).
    pub fn from_secret_bytes(x25519_secret: &[u8; 32], ed25519_secret: &[u8; 32]) -> Self {
        let x25519_secret = match X25519SecretKey::from_bytes(x25519_secret) {
            Ok(key) => key,
            // The only error is a length mismatch, and the length is fixed by the type.
            Err(_) => unreachable!("an X25519 private key is any 32 bytes"),
        };
        let x25519_public = to_array(&Kem::sk_to_pk(&x25519_secret).to_bytes());
        Self { x25519_secret, x25519_public, ed25519: SigningKey::from_bytes(ed25519_secret) }
    }

    /// The public keys to publish.
    pub fn public(&self) -> DevicePublicKeys {
        DevicePublicKeys { x25519: self.x25519_public, ed25519: self.ed25519.verifying_key().to_bytes() }
    }

    /// The Ed25519 signature over [`layout::device_binding_input`] that proves this device holds
    /// the Ed25519 key and binds the X25519 key to it. Sent with the public keys at registration
    /// (`key_signature`).
    pub fn binding_signature(&self) -> [u8; 64] {
        let public = self.public();
        self.sign(&layout::device_binding_input(&public.x25519, &public.ed25519))
    }

    /// These keys registered as a device called `name`: the body of `POST /v1/devices`, or the
    /// `device` of a login that registers it.
    pub fn registration(&self, name: &str, platform: Platform) -> NewDevice {
        let public = self.public();
        NewDevice {
            name: name.to_owned(),
            platform,
            x25519_public_key: public.x25519,
            ed25519_public_key: public.ed25519,
            key_signature: self.binding_signature(),
        }
    }

    /// The two secrets, for the keystore: the X25519 private key (clamped) and the Ed25519 seed.
    pub(crate) fn secret_bytes(&self) -> (Zeroizing<[u8; 32]>, Zeroizing<[u8; 32]>) {
        let x25519 = Zeroizing::new(to_array(&self.x25519_secret.to_bytes()));
        (x25519, Zeroizing::new(self.ed25519.to_bytes()))
    }

    pub(crate) fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.ed25519.sign(message).to_bytes()
    }
}

impl fmt::Debug for DeviceKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeviceKeys").field("public", &self.public()).field("secrets", &"<redacted>").finish()
    }
}

impl fmt::Debug for DevicePublicKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DevicePublicKeys")
            .field("x25519", &b64::encode(self.x25519))
            .field("ed25519", &b64::encode(self.ed25519))
            .finish()
    }
}

/// Checks a device's binding signature, as the server does at registration and as a client
/// should before trusting keys it fetched.
pub fn verify_device_binding(public: &DevicePublicKeys, signature: &[u8; 64]) -> Result<(), CryptoError> {
    verify(&public.ed25519, &layout::device_binding_input(&public.x25519, &public.ed25519), signature)
}

/// Ed25519 verification with the strict checks of `verify_strict` (no small-order keys or `R`,
/// canonical `S`), so one message has one valid signature per key.
pub(crate) fn verify(ed25519_public: &[u8; 32], message: &[u8], signature: &[u8; 64]) -> Result<(), CryptoError> {
    let key = VerifyingKey::from_bytes(ed25519_public).map_err(|_| CryptoError::InvalidPublicKey)?;
    key.verify_strict(message, &Signature::from_bytes(signature)).map_err(|_| CryptoError::BadSignature)
}

pub(crate) fn to_array<const N: usize>(bytes: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(bytes);
    out
}
