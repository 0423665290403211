//! Secrets the server must be able to use again (TOTP seeds, webhook signing secrets) are
//! sealed at rest with ChaCha20-Poly1305 under a 32-byte key the database never sees.
//!
//! Layout of a sealed value: 12-byte random nonce, then the ciphertext with its 16-byte tag. The
//! associated data names what is sealed and for whom (`"totp:" || user id`), so a sealed value
//! copied into another row does not open.

use anyhow::{Context, bail};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use std::path::Path;

pub struct SealingKey(ChaCha20Poly1305);

impl SealingKey {
    pub fn from_bytes(bytes: &[u8; 32]) -> Self {
        Self(ChaCha20Poly1305::new(&Key::from(*bytes)))
    }

    /// Reads a file holding the key as base64 (as a Kubernetes Secret mounts it).
    pub fn from_file(path: &Path) -> anyhow::Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading the at-rest key {}", path.display()))?;
        let bytes = STANDARD.decode(text.trim()).context("the at-rest key is not base64")?;
        let Ok(bytes) = <[u8; 32]>::try_from(bytes.as_slice()) else {
            bail!("the at-rest key must be 32 bytes");
        };
        Ok(Self::from_bytes(&bytes))
    }

    pub fn ephemeral() -> Self {
        Self::from_bytes(&crate::tokens::random_bytes::<32>())
    }

    pub fn seal(&self, context: &[u8], plaintext: &[u8]) -> Vec<u8> {
        let nonce = crate::tokens::random_bytes::<12>();
        let mut out = nonce.to_vec();
        // Encryption with a fresh nonce and an in-memory buffer cannot fail.
        if let Ok(ciphertext) = self.0.encrypt(&Nonce::from(nonce), Payload { msg: plaintext, aad: context }) {
            out.extend_from_slice(&ciphertext);
        }
        out
    }

    pub fn open(&self, context: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
        if sealed.len() < 12 + 16 {
            return None;
        }
        let (nonce, ciphertext) = sealed.split_at(12);
        let nonce: [u8; 12] = nonce.try_into().ok()?;
        self.0.decrypt(&Nonce::from(nonce), Payload { msg: ciphertext, aad: context }).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_with_the_same_key_and_context() {
        let key = SealingKey::ephemeral();
        let sealed = key.seal(b"totp:alice", b"seed");
        assert_eq!(sealed.len(), 12 + 4 + 16);
        assert_eq!(key.open(b"totp:alice", &sealed).as_deref(), Some(&b"seed"[..]));
        assert_eq!(key.open(b"totp:bob", &sealed), None);
        assert_eq!(SealingKey::ephemeral().open(b"totp:alice", &sealed), None);
        assert_ne!(key.seal(b"totp:alice", b"seed"), sealed, "a fresh nonce every time");
    }
}
