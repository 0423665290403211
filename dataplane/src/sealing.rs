//! Secrets the server must be able to use again (TOTP seeds, webhook signing secrets) are
//! sealed at rest with ChaCha20-Poly1305 under a 32-byte key the database never sees.
//!
//! The scheme (layout, contexts, key file) is shared with the operator, which seals webhook
//! signing secrets, and defined once in [`conclave_credentials::seal`]: a sealed value is a 12-byte
//! random nonce, then the ciphertext with its 16-byte tag, and its associated data names what is
//! sealed and for whom ([`totp_context`], [`webhook_context`]), so a sealed value copied into
//! another row does not open. This wrapper adds the data plane's policy: the nonce comes from
//! the data plane's token generator (`tokens::random_bytes`), so sealing does not fail, and a value that does not open is
//! `None`.

use conclave_credentials::seal::{self, KEY_LEN, KeyFileError, NONCE_LEN};
use std::path::Path;

pub use conclave_credentials::seal::{totp_context, webhook_context};

pub struct SealingKey(seal::SealingKey);

impl SealingKey {
    pub fn from_bytes(bytes: &[u8; KEY_LEN]) -> Self {
        Self(seal::SealingKey::from_bytes(bytes))
    }

    /// Reads a file holding the key as base64 (as a Kubernetes Secret mounts it).
    pub fn from_file(path: &Path) -> Result<Self, KeyFileError> {
        seal::SealingKey::from_file(path).map(Self)
    }

    pub fn ephemeral() -> Self {
        Self::from_bytes(&crate::tokens::random_bytes::<KEY_LEN>())
    }

    pub fn seal(&self, context: &[u8], plaintext: &[u8]) -> Vec<u8> {
        // Only a plaintext over 256 GiB fails to seal; the data plane seals a few dozen bytes.
        self.0.seal_with_nonce(crate::tokens::random_bytes::<NONCE_LEN>(), context, plaintext).unwrap_or_default()
    }

    pub fn open(&self, context: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
        self.0.open(context, sealed).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use uuid::Uuid;

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

    #[test]
    fn a_secret_the_operator_sealed_opens_here_and_a_seed_sealed_here_opens_for_the_operator() {
        // The operator writes the key into the DataPlane's Secret as base64 text, which is
        // mounted as the key file; it seals with the raw bytes it decodes from that Secret.
        let key = [5u8; KEY_LEN];
        let path = std::env::temp_dir().join(format!("conclave-at-rest-{}", Uuid::new_v4().simple()));
        std::fs::write(&path, base64::engine::general_purpose::STANDARD.encode(key) + "\n").expect("key file");
        let ours = SealingKey::from_file(&path);
        let _ = std::fs::remove_file(&path);
        let ours = ours.expect("the operator's key file reads");
        let endpoint = Uuid::now_v7();
        let by_operator = seal::seal(&key, &webhook_context(endpoint), b"whsec_abc").expect("seal");
        assert_eq!(ours.open(&webhook_context(endpoint), &by_operator).as_deref(), Some(&b"whsec_abc"[..]));
        assert_eq!(ours.open(&webhook_context(Uuid::nil()), &by_operator), None);
        let user = Uuid::now_v7();
        let by_us = ours.seal(&totp_context(user), b"seed");
        assert_eq!(seal::open(&key, &totp_context(user), &by_us).expect("open"), b"seed");
    }
}
