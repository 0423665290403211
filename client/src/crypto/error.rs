use thiserror::Error;

/// Why a cryptographic operation failed. Variants are specific so that a caller (and a test) can
/// tell a forged message from a missing key; none of them carries secret material.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CryptoError {
    /// An Ed25519 signature does not verify: the signed bytes were changed, or another key signed.
    #[error("the signature does not verify")]
    BadSignature,
    /// AEAD decryption failed: wrong key, or tampered nonce, ciphertext or associated data.
    #[error("decryption failed: wrong key or tampered ciphertext")]
    DecryptionFailed,
    /// An HPKE key wrap could not be opened: it was made for another device, conversation or
    /// generation, or it was tampered with.
    #[error("the key wrap cannot be opened by this device")]
    UnwrapFailed,
    /// The key given is for another generation than the message or reaction names.
    #[error("the key is for generation {key}, but the message names generation {message}")]
    WrongGeneration {
        /// The generation of the key that was given.
        key: u32,
        /// The generation the message or reaction names.
        message: u32,
    },
    /// The key given belongs to another conversation than the message or reaction names.
    #[error("the key belongs to another conversation")]
    WrongConversation,
    /// Generations run from 1 to 2^31 - 1.
    #[error("key generation {0} is outside 1..=2147483647")]
    InvalidGeneration(u32),
    /// A public key is not usable (for example a small-order point).
    #[error("invalid public key")]
    InvalidPublicKey,
    /// The plaintext does not fit the server's size limit once encrypted.
    #[error("{len} bytes exceed the limit of {max} bytes")]
    TooLarge {
        /// The plaintext length.
        len: usize,
        /// The largest accepted plaintext length.
        max: usize,
    },
    /// A reaction value must be at least one byte of UTF-8.
    #[error("a reaction value cannot be empty")]
    EmptyReaction,
    /// A reaction decrypted, but its plaintext is not UTF-8.
    #[error("the decrypted reaction is not UTF-8")]
    MalformedReaction,
    /// A reaction decrypted, but its `value_tag` is not the tag of its value.
    #[error("the reaction's value tag does not match its value")]
    ValueTagMismatch,
    /// A chunk of an attachment failed to decrypt: the blob was altered, its chunks reordered,
    /// or it was truncated or extended (the last chunk is sealed as final).
    #[error("attachment chunk {index} failed to decrypt: the file was tampered with or truncated")]
    ChunkDecryptionFailed {
        /// The chunk's index, from 0.
        index: u64,
    },
    /// An attachment blob's size is not the size of any encrypted file (cut inside a chunk).
    #[error("the attachment is malformed: its size is not that of an encrypted file (truncated?)")]
    MalformedAttachment,
    /// HPKE failed to seal (should not happen with a valid public key).
    #[error("the key wrap could not be made")]
    WrapFailed,
    /// The operating system's random number generator failed.
    #[error("the system random number generator failed")]
    Randomness,
}
