//! The symmetric and device-key cryptography around MLS (`docs/protocol.md`, version 1 parts that
//! version 2 keeps):
//!
//! - Each device has [`DeviceKeys`]: one Ed25519 key, which signs its sign-in proofs and its MLS
//!   leaves, published at registration with a [proof of possession](DeviceKeys::key_signature)
//!   that the server checks.
//! - A reaction is sealed with ChaCha20-Poly1305 under its epoch's [`ConversationKey`] (exported
//!   from MLS) and carries a keyed [`value_tag`](reaction_value_tag) so the server can keep one
//!   reaction per user, value and message without reading it.
//! - An [attachment] is encrypted in 64 KiB chunks under a fresh per-file [`FileKey`], which
//!   travels inside the (MLS-encrypted) message that lists the attachment.
//!
//! Messages themselves are MLS application messages (`crate::mls`). Secrets are zeroized on drop
//! and never printed by `Debug`. Randomness comes from the operating system (`getrandom`).

pub mod attachment;
mod device;
mod error;
mod keys;
mod login;
mod random;
mod reaction;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod vectors;

pub use attachment::FileKey;
pub use device::{DeviceKeys, verify_device_key};
pub use error::CryptoError;
pub use keys::ConversationKey;
pub use reaction::{ReactionHeader, SealedReaction, open_reaction, reaction_value_tag, seal_reaction};

/// The HPKE suite of RFC 9180 that carries an identity key to a new device (`crate::mls::transfer`):
/// DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, ChaCha20-Poly1305 (ids 0x0020, 0x0001, 0x0003).
pub(crate) mod suite {
    pub(crate) type Kem = hpke::kem::X25519HkdfSha256;
    pub(crate) type Kdf = hpke::kdf::HkdfSha256;
    pub(crate) type Aead = hpke::aead::ChaCha20Poly1305;
}
