//! Sizes fixed by the protocol. The database enforces the same numbers (see the migrations), so a
//! client that respects them never sees a constraint violation.

/// Length of a raw Ed25519 public key (RFC 8032).
pub const ED25519_PUBLIC_KEY_LEN: usize = 32;
/// Length of an Ed25519 signature (RFC 8032).
pub const ED25519_SIGNATURE_LEN: usize = 64;
/// Length of a conversation key (one per generation).
pub const CONVERSATION_KEY_LEN: usize = 32;
/// Length of the HPKE encapsulated key (`enc`) for DHKEM(X25519, HKDF-SHA256).
pub const ENCAPSULATED_KEY_LEN: usize = 32;
/// Length of a wrapped conversation key: the 32-byte key sealed with a 16-byte tag.
pub const WRAPPED_KEY_LEN: usize = CONVERSATION_KEY_LEN + AEAD_TAG_LEN;
/// Length of a ChaCha20-Poly1305 nonce.
pub const NONCE_LEN: usize = 12;
/// Length of a ChaCha20-Poly1305 authentication tag.
pub const AEAD_TAG_LEN: usize = 16;
/// Largest message ciphertext the server stores (tag included).
pub const MAX_MESSAGE_CIPHERTEXT_LEN: usize = 262_144;
/// Largest message plaintext that fits in [`MAX_MESSAGE_CIPHERTEXT_LEN`].
pub const MAX_MESSAGE_PLAINTEXT_LEN: usize = MAX_MESSAGE_CIPHERTEXT_LEN - AEAD_TAG_LEN;
/// Largest reaction ciphertext the server stores (tag included).
pub const MAX_REACTION_CIPHERTEXT_LEN: usize = 1024;
/// Largest reaction value (UTF-8 bytes) that fits in [`MAX_REACTION_CIPHERTEXT_LEN`].
pub const MAX_REACTION_VALUE_LEN: usize = MAX_REACTION_CIPHERTEXT_LEN - AEAD_TAG_LEN;
/// Length of a reaction's `value_tag` (HMAC-SHA256 output).
pub const VALUE_TAG_LEN: usize = 32;
/// The first key generation of a conversation. Generation 0 means "no key yet" on the server.
pub const FIRST_GENERATION: u32 = 1;
/// The largest key generation: the database stores generations as a signed 32-bit integer.
pub const MAX_GENERATION: u32 = i32::MAX as u32;

/// Whether `generation` can name a key: `1..=MAX_GENERATION`.
pub fn is_valid_generation(generation: u32) -> bool {
    (FIRST_GENERATION..=MAX_GENERATION).contains(&generation)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_match_the_database_constraints() {
        assert_eq!(WRAPPED_KEY_LEN, 48);
        assert_eq!(MAX_MESSAGE_PLAINTEXT_LEN, 262_128);
        assert_eq!(MAX_REACTION_VALUE_LEN, 1008);
    }

    #[test]
    fn generation_zero_and_values_beyond_i32_are_invalid() {
        assert!(!is_valid_generation(0));
        assert!(is_valid_generation(1));
        assert!(is_valid_generation(i32::MAX as u32));
        assert!(!is_valid_generation(i32::MAX as u32 + 1));
    }
}
