//! End-to-end encryption, version 1 of the protocol (`docs/protocol.md`).
//!
//! The model, in the order a conversation uses it:
//!
//! 1. Each device has [`DeviceKeys`]: an X25519 key to receive conversation keys and an Ed25519
//!    key to sign. At registration it publishes both public keys with a
//!    [binding signature](DeviceKeys::binding_signature) that the server checks.
//! 2. A conversation has one [`ConversationKey`] per *generation* (32 random bytes). Whoever
//!    creates a generation [wraps](wrap_for_device) it for every member device with HPKE; each
//!    device [unwraps](unwrap_key) its own copy.
//! 3. A message is [sealed](seal_message) with ChaCha20-Poly1305 under the conversation key, its
//!    associated data binding conversation, generation, sender device and client message id, and
//!    signed by the sender device. [`open_message`] checks the signature before decrypting.
//! 4. A reaction is sealed the same way (without a signature: the schema has none) and carries a
//!    keyed [`value_tag`](reaction_value_tag) so the server can keep one reaction per user, value
//!    and message without reading it.
//! 5. An [attachment] is encrypted in 64 KiB chunks under a fresh per-file [`FileKey`], which
//!    travels inside the (encrypted) message that lists the attachment.
//!
//! When a member leaves or a device is revoked, the next message uses a new generation wrapped
//! only for the remaining devices; the server refuses sends until that generation exists.
//!
//! Secrets are zeroized on drop and never printed by `Debug`. Randomness comes from the operating
//! system (`getrandom`).

pub mod attachment;
mod device;
mod error;
mod keys;
mod login;
mod message;
mod random;
mod reaction;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod vectors;

pub use attachment::FileKey;
pub use device::{DeviceKeys, DevicePublicKeys, verify_device_binding};
pub use error::CryptoError;
pub use keys::{ConversationKey, Wrap, unwrap_key, wrap_for_device};
pub use message::{MessageHeader, SealedMessage, open_message, seal_message, verify_message_signature};
pub use reaction::{ReactionHeader, SealedReaction, open_reaction, reaction_value_tag, seal_reaction};

/// The HPKE suite of RFC 9180 the protocol uses: DHKEM(X25519, HKDF-SHA256), HKDF-SHA256,
/// ChaCha20-Poly1305 (ids 0x0020, 0x0001, 0x0003).
pub(crate) mod suite {
    pub(crate) type Kem = hpke::kem::X25519HkdfSha256;
    pub(crate) type Kdf = hpke::kdf::HkdfSha256;
    pub(crate) type Aead = hpke::aead::ChaCha20Poly1305;
}
