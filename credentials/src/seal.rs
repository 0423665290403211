//! Sealing secrets that the data plane must read back (webhook signing secrets, TOTP seeds).
//!
//! A value is sealed with ChaCha20-Poly1305 (RFC 8439) under the data plane's 32-byte at-rest
//! key, which the operator generates into the Secret `<dataplane>-at-rest-key` (key `key`) as
//! base64 text, the form [`SealingKey::from_file`] reads from `CONCLAVE_AT_REST_KEY_FILE`. The
//! database never sees the key.
//!
//! The sealed form is `nonce (12 random bytes) || ciphertext || tag (16 bytes)`, so a sealed
//! value is [`OVERHEAD`] bytes longer than its plaintext. The associated data (the *context*)
//! names what is sealed and for which row, `"<what>:<row id>"`: [`webhook_context`] for
//! `webhook_endpoints.signing_secret_sealed`, [`totp_context`] for `totp_secrets.secret_sealed`.
//! A sealed value copied into another row or column therefore does not open. Random 96-bit
//! nonces are safe for far more values than Conclave will ever seal under one key.
//!
//! The operator holds the key as bytes read from the Secret and uses [`seal()`] and [`open()`];
//! the data plane loads a [`SealingKey`] once at start-up.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use std::fmt;
use std::path::{Path, PathBuf};

/// The length of an at-rest key.
pub const KEY_LEN: usize = 32;
/// The length of the random nonce a sealed value starts with.
pub const NONCE_LEN: usize = 12;
/// The length of the authentication tag a sealed value ends with.
pub const TAG_LEN: usize = 16;
/// How much longer a sealed value is than its plaintext.
pub const OVERHEAD: usize = NONCE_LEN + TAG_LEN;

/// The context of `webhook_endpoints.signing_secret_sealed` for the endpoint `endpoint_id`.
pub fn webhook_context(endpoint_id: impl fmt::Display) -> Vec<u8> {
    format!("webhook:{endpoint_id}").into_bytes()
}

/// The context of `totp_secrets.secret_sealed` for the user `user_id`.
pub fn totp_context(user_id: impl fmt::Display) -> Vec<u8> {
    format!("totp:{user_id}").into_bytes()
}

/// Why sealing or opening failed. Deliberately says nothing about the key or the value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error("the at-rest key must be exactly 32 bytes")]
    KeyLength,
    #[error("no randomness available for a nonce")]
    Randomness,
    #[error("the value is too long to seal")]
    TooLong,
    #[error("the sealed value is damaged, or was sealed with another key or context")]
    Open,
}

/// Why the at-rest key could not be read. Names the file, never its content.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("reading the at-rest key {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the at-rest key is not base64")]
    NotBase64,
    #[error("the at-rest key must be 32 bytes")]
    Length,
}

/// An at-rest key, ready to seal and open.
#[derive(Clone)]
pub struct SealingKey(ChaCha20Poly1305);

impl fmt::Debug for SealingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SealingKey(..)")
    }
}

impl SealingKey {
    pub fn from_bytes(bytes: &[u8; KEY_LEN]) -> Self {
        Self(ChaCha20Poly1305::new(&Key::from(*bytes)))
    }

    /// A key from bytes of unchecked length (as read from a Secret).
    pub fn from_slice(bytes: &[u8]) -> Result<Self, SealError> {
        let bytes: &[u8; KEY_LEN] = bytes.try_into().map_err(|_| SealError::KeyLength)?;
        Ok(Self::from_bytes(bytes))
    }

    /// A key from its text form: the 32 bytes in standard base64, surrounding whitespace
    /// ignored (as a Kubernetes Secret mounts it).
    pub fn from_text(text: &str) -> Result<Self, KeyFileError> {
        let bytes = STANDARD.decode(text.trim()).map_err(|_| KeyFileError::NotBase64)?;
        Self::from_slice(&bytes).map_err(|_| KeyFileError::Length)
    }

    /// Reads a file holding the key in its text form ([`SealingKey::from_text`]).
    pub fn from_file(path: &Path) -> Result<Self, KeyFileError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| KeyFileError::Read { path: path.to_owned(), source })?;
        Self::from_text(&text)
    }

    /// Seals `plaintext` for `context` under a fresh random nonce.
    pub fn seal(&self, context: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, SealError> {
        let nonce = crate::random_bytes::<NONCE_LEN>().map_err(|_| SealError::Randomness)?;
        self.seal_with_nonce(nonce, context, plaintext)
    }

    /// [`SealingKey::seal`] with a nonce the caller drew, for a caller with its own policy for
    /// randomness (and for test vectors). The nonce must be random: one that repeats under a key
    /// reveals both plaintexts.
    pub fn seal_with_nonce(
        &self,
        nonce: [u8; NONCE_LEN],
        context: &[u8],
        plaintext: &[u8],
    ) -> Result<Vec<u8>, SealError> {
        // Encryption fails only for a plaintext over 256 GiB.
        let ciphertext = self
            .0
            .encrypt(&Nonce::from(nonce), Payload { msg: plaintext, aad: context })
            .map_err(|_| SealError::TooLong)?;
        let mut sealed = Vec::with_capacity(NONCE_LEN + ciphertext.len());
        sealed.extend_from_slice(&nonce);
        sealed.extend_from_slice(&ciphertext);
        Ok(sealed)
    }

    /// Opens a value sealed under this key for the same context.
    pub fn open(&self, context: &[u8], sealed: &[u8]) -> Result<Vec<u8>, SealError> {
        let Some((nonce, ciphertext)) = sealed.split_first_chunk::<NONCE_LEN>() else {
            return Err(SealError::Open);
        };
        if ciphertext.len() < TAG_LEN {
            return Err(SealError::Open);
        }
        self.0.decrypt(&Nonce::from(*nonce), Payload { msg: ciphertext, aad: context }).map_err(|_| SealError::Open)
    }
}

/// Seals `plaintext` for `context` under `key` (32 bytes).
pub fn seal(key: &[u8], context: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, SealError> {
    SealingKey::from_slice(key)?.seal(context, plaintext)
}

/// Opens a value sealed by [`seal()`] (or [`SealingKey::seal`]) with the same key and context.
pub fn open(key: &[u8], context: &[u8], sealed: &[u8]) -> Result<Vec<u8>, SealError> {
    SealingKey::from_slice(key)?.open(context, sealed)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: [u8; 32] = [7; 32];
    const WEBHOOK: &[u8] = b"webhook:0190f0e0-0000-7000-8000-000000000001";
    const TOTP: &[u8] = b"totp:0190f0e0-0000-7000-8000-000000000001";

    /// Computed independently (Python `cryptography`'s ChaCha20Poly1305), so that a change to the
    /// layout or the cipher, which would strand every value already stored, cannot pass.
    const VECTOR_NONCE: [u8; 12] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11];
    const VECTOR_SEALED: &str = "000102030405060708090a0b5b1d82460fc4ca54761b71a6da270c6c8f00873ab66868ea2a5d0fb0e5";

    #[test]
    fn the_sealed_layout_matches_the_fixed_vector() {
        let sealed =
            SealingKey::from_bytes(&KEY).seal_with_nonce(VECTOR_NONCE, WEBHOOK, b"whsec_example").expect("seal");
        assert_eq!(hex::encode(&sealed), VECTOR_SEALED);
        let stored = hex::decode(VECTOR_SEALED).expect("hex");
        assert_eq!(open(&KEY, WEBHOOK, &stored).expect("open"), b"whsec_example");
    }

    #[test]
    fn a_sealed_value_opens_with_the_same_key_and_context() {
        let sealed = seal(&KEY, WEBHOOK, b"whsec-123").expect("seal");
        assert_eq!(sealed.len(), 9 + OVERHEAD);
        assert_eq!(open(&KEY, WEBHOOK, &sealed).expect("open"), b"whsec-123");
        assert_eq!(SealingKey::from_bytes(&KEY).open(WEBHOOK, &sealed).expect("open"), b"whsec-123");
    }

    #[test]
    fn sealing_twice_gives_different_bytes() {
        let a = seal(&KEY, WEBHOOK, b"same").expect("seal");
        let b = seal(&KEY, WEBHOOK, b"same").expect("seal");
        assert_ne!(a, b, "a fresh nonce every time");
    }

    #[test]
    fn another_key_another_context_or_a_flipped_bit_cannot_open_it() {
        let sealed = seal(&KEY, WEBHOOK, b"secret").expect("seal");
        assert_eq!(open(&[8; 32], WEBHOOK, &sealed), Err(SealError::Open));
        assert_eq!(open(&KEY, TOTP, &sealed), Err(SealError::Open));
        let mut damaged = sealed.clone();
        let last = damaged.len() - 1;
        damaged[last] ^= 1;
        assert_eq!(open(&KEY, WEBHOOK, &damaged), Err(SealError::Open));
        assert_eq!(open(&KEY, WEBHOOK, &sealed[..20]), Err(SealError::Open));
        assert_eq!(open(&KEY, WEBHOOK, &sealed[..5]), Err(SealError::Open));
    }

    #[test]
    fn an_empty_plaintext_seals_to_nonce_and_tag() {
        let sealed = seal(&KEY, TOTP, b"").expect("seal");
        assert_eq!(sealed.len(), OVERHEAD);
        assert_eq!(open(&KEY, TOTP, &sealed).expect("open"), b"");
    }

    #[test]
    fn contexts_name_the_column_and_the_row() {
        assert_eq!(webhook_context("abc"), b"webhook:abc");
        assert_eq!(totp_context("abc"), b"totp:abc");
        assert_eq!(webhook_context("0190f0e0-0000-7000-8000-000000000001"), WEBHOOK);
    }

    #[test]
    fn a_key_of_the_wrong_length_is_refused() {
        assert_eq!(seal(&[1; 16], WEBHOOK, b"x"), Err(SealError::KeyLength));
        assert_eq!(open(&[1; 33], WEBHOOK, b"x"), Err(SealError::KeyLength));
    }

    #[test]
    fn the_key_text_is_standard_base64_of_32_bytes() {
        // base64 of 32 bytes of 42, with the newline a mounted Secret may end with.
        let key = SealingKey::from_text("KioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKio=\n").expect("key");
        let sealed = seal(&[42; 32], TOTP, b"seed").expect("seal");
        assert_eq!(key.open(TOTP, &sealed).expect("open"), b"seed");
        assert!(matches!(SealingKey::from_text("not base64!"), Err(KeyFileError::NotBase64)));
        assert!(matches!(SealingKey::from_text("KioqKioqKioqKioqKioqKg=="), Err(KeyFileError::Length)));
    }

    #[test]
    fn a_missing_key_file_is_named_and_its_errors_carry_no_key() {
        let missing = std::env::temp_dir().join("conclave-credentials-no-such-key");
        let error = SealingKey::from_file(&missing).expect_err("missing");
        assert!(error.to_string().contains("conclave-credentials-no-such-key"), "{error}");
        assert_eq!(format!("{:?}", SealingKey::from_bytes(&KEY)), "SealingKey(..)");
    }
}
