//! Sealing secrets that the data plane must read back (webhook signing secrets, TOTP secrets).
//!
//! A value is sealed with ChaCha20-Poly1305 (RFC 8439) under the data plane's 32-byte at-rest
//! key, which the operator generates into the Secret `<dataplane>-at-rest-key` (key `key`, the 32
//! raw bytes). The sealed form is `nonce (12 random bytes) || ciphertext || tag (16 bytes)`, so a
//! sealed value is 28 bytes longer than its plaintext. The associated data names what is sealed
//! and for which row (for example [`webhook_context`]), so a sealed value copied into another
//! row or column does not open. Random 96-bit nonces are safe for far more values than Conclave will
//! ever seal under one key.
//!
//! This is the same scheme the data plane implements in `dataplane/src/sealing.rs` (which reads
//! the key as base64 from the file `CONCLAVE_AT_REST_KEY_FILE`); the context strings are
//! `"<what>:<row id>"`, such as `totp:<user id>` and [`webhook_context`].

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};

/// The context of `webhook_endpoints.signing_secret_sealed` for the endpoint `id`.
pub fn webhook_context(endpoint_id: impl std::fmt::Display) -> Vec<u8> {
    format!("webhook:{endpoint_id}").into_bytes()
}

/// The context of `totp_secrets.secret_sealed` for the user `id`.
pub fn totp_context(user_id: impl std::fmt::Display) -> Vec<u8> {
    format!("totp:{user_id}").into_bytes()
}

/// The length of an at-rest key.
pub const KEY_LEN: usize = 32;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;

/// Why sealing or opening failed. Deliberately says nothing about the key or the value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error("the at-rest key must be exactly 32 bytes")]
    KeyLength,
    #[error("no randomness available for a nonce")]
    Randomness,
    #[error("the sealed value is damaged, or was sealed with another key or context")]
    Open,
}

fn cipher(key: &[u8]) -> Result<ChaCha20Poly1305, SealError> {
    let key: [u8; KEY_LEN] = key.try_into().map_err(|_| SealError::KeyLength)?;
    Ok(ChaCha20Poly1305::new(&Key::from(key)))
}

/// Seals `plaintext` for `context` under `key`.
pub fn seal(key: &[u8], context: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, SealError> {
    let cipher = cipher(key)?;
    let mut nonce = [0u8; NONCE_LEN];
    getrandom::fill(&mut nonce).map_err(|_| SealError::Randomness)?;
    let ciphertext =
        cipher.encrypt(&Nonce::from(nonce), Payload { msg: plaintext, aad: context }).map_err(|_| SealError::Open)?;
    let mut sealed = Vec::with_capacity(NONCE_LEN + ciphertext.len());
    sealed.extend_from_slice(&nonce);
    sealed.extend_from_slice(&ciphertext);
    Ok(sealed)
}

/// Opens a value sealed by [`seal`] with the same key and context.
pub fn open(key: &[u8], context: &[u8], sealed: &[u8]) -> Result<Vec<u8>, SealError> {
    let cipher = cipher(key)?;
    if sealed.len() < NONCE_LEN + TAG_LEN {
        return Err(SealError::Open);
    }
    let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
    let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| SealError::Open)?;
    cipher.decrypt(&Nonce::from(nonce), Payload { msg: ciphertext, aad: context }).map_err(|_| SealError::Open)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: [u8; 32] = [7; 32];
    const WEBHOOK_SIGNING_SECRET: &[u8] = b"webhook:0190f0e0-0000-7000-8000-000000000001";
    const TOTP_SECRET: &[u8] = b"totp:0190f0e0-0000-7000-8000-000000000001";

    #[test]
    fn a_sealed_value_opens_with_the_same_key_and_context() {
        let sealed = seal(&KEY, WEBHOOK_SIGNING_SECRET, b"whsec-123").expect("seal");
        assert_eq!(sealed.len(), 12 + 9 + 16);
        assert_eq!(open(&KEY, WEBHOOK_SIGNING_SECRET, &sealed).expect("open"), b"whsec-123");
    }

    #[test]
    fn sealing_twice_gives_different_bytes() {
        let a = seal(&KEY, WEBHOOK_SIGNING_SECRET, b"same").expect("seal");
        let b = seal(&KEY, WEBHOOK_SIGNING_SECRET, b"same").expect("seal");
        assert_ne!(a, b);
    }

    #[test]
    fn another_key_another_context_or_a_flipped_bit_cannot_open_it() {
        let sealed = seal(&KEY, WEBHOOK_SIGNING_SECRET, b"secret").expect("seal");
        assert_eq!(open(&[8; 32], WEBHOOK_SIGNING_SECRET, &sealed), Err(SealError::Open));
        assert_eq!(open(&KEY, TOTP_SECRET, &sealed), Err(SealError::Open));
        let mut damaged = sealed.clone();
        let last = damaged.len() - 1;
        damaged[last] ^= 1;
        assert_eq!(open(&KEY, WEBHOOK_SIGNING_SECRET, &damaged), Err(SealError::Open));
        assert_eq!(open(&KEY, WEBHOOK_SIGNING_SECRET, &sealed[..20]), Err(SealError::Open));
    }

    #[test]
    fn contexts_name_the_column_and_the_row() {
        assert_eq!(webhook_context("abc"), b"webhook:abc");
        assert_eq!(totp_context("abc"), b"totp:abc");
    }

    #[test]
    fn a_key_of_the_wrong_length_is_refused() {
        assert_eq!(seal(&[1; 16], WEBHOOK_SIGNING_SECRET, b"x"), Err(SealError::KeyLength));
    }
}
