//! Chunked file encryption for attachments (`docs/protocol.md`, "Attachments (client
//! encryption)").
//!
//! A file is encrypted under a fresh random 32-byte [`FileKey`], in chunks of [`CHUNK_SIZE`]
//! plaintext bytes. Chunk `i` is sealed with ChaCha20-Poly1305, nonce `0x00000000 || u64be(i)`,
//! associated data `"conclave/v1/attachment" || 0x00 || u64be(i) || final` (`final` is 1 on the
//! last chunk only, so a blob cut at a chunk boundary fails to open). The blob is the
//! concatenation of the sealed chunks; an empty file is one sealed empty final chunk.
//!
//! The functions here work on one chunk at a time, so callers stream files of any size.

use std::fmt;

use chacha20poly1305::aead::{Aead as _, Payload};
use chacha20poly1305::{ChaCha20Poly1305, KeyInit as _};
use zeroize::Zeroizing;

use super::{CryptoError, random::random_bytes};

/// Plaintext bytes per chunk (64 KiB); every chunk but the last holds exactly this many.
pub const CHUNK_SIZE: usize = 64 * 1024;
/// The Poly1305 tag added to every chunk.
pub const CHUNK_OVERHEAD: usize = 16;
/// A sealed full chunk.
pub const SEALED_CHUNK_SIZE: usize = CHUNK_SIZE + CHUNK_OVERHEAD;
/// The label that starts every chunk's associated data.
pub const ATTACHMENT_AAD_LABEL: &[u8] = b"conclave/v1/attachment";

/// The key of one file. Zeroized on drop; `Debug` does not print it.
#[derive(Clone, PartialEq, Eq)]
pub struct FileKey(Zeroizing<[u8; 32]>);

impl FileKey {
    /// A fresh random key (one per file, never reused).
    pub fn generate() -> Result<Self, CryptoError> {
        Ok(Self(random_bytes::<32>()?))
    }

    /// A key received in a message's content.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// The raw key, to put in the (encrypted) message content.
    pub fn expose_secret(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for FileKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FileKey(<redacted>)")
    }
}

/// How many chunks a plaintext of `plaintext_len` bytes makes (at least one).
pub fn chunk_count(plaintext_len: u64) -> u64 {
    plaintext_len.div_ceil(CHUNK_SIZE as u64).max(1)
}

/// The size of the blob a plaintext of `plaintext_len` bytes encrypts to.
pub fn blob_len(plaintext_len: u64) -> u64 {
    plaintext_len + chunk_count(plaintext_len) * CHUNK_OVERHEAD as u64
}

/// The size of the plaintext inside a blob of `blob_len` bytes, or `None` when no plaintext
/// encrypts to that size (a blob cut inside a chunk's tag, say).
pub fn plaintext_len(blob_len: u64) -> Option<u64> {
    let sealed = SEALED_CHUNK_SIZE as u64;
    let full = blob_len / sealed;
    let rest = blob_len % sealed;
    let plain = if rest == 0 {
        if full == 0 {
            return None;
        }
        full * CHUNK_SIZE as u64
    } else if rest >= CHUNK_OVERHEAD as u64 {
        full * CHUNK_SIZE as u64 + rest - CHUNK_OVERHEAD as u64
    } else {
        return None;
    };
    (blob_len_checked(plain) == Some(blob_len)).then_some(plain)
}

fn blob_len_checked(plain: u64) -> Option<u64> {
    plain.checked_add(chunk_count(plain).checked_mul(CHUNK_OVERHEAD as u64)?)
}

/// `0x00000000 || u64be(index)`.
pub fn chunk_nonce(index: u64) -> [u8; 12] {
    let mut nonce = [0u8; 12];
    nonce[4..].copy_from_slice(&index.to_be_bytes());
    nonce
}

/// `"conclave/v1/attachment" || 0x00 || u64be(index) || final` (32 bytes).
pub fn chunk_aad(index: u64, is_final: bool) -> Vec<u8> {
    let mut aad = Vec::with_capacity(ATTACHMENT_AAD_LABEL.len() + 10);
    aad.extend_from_slice(ATTACHMENT_AAD_LABEL);
    aad.push(0);
    aad.extend_from_slice(&index.to_be_bytes());
    aad.push(u8::from(is_final));
    aad
}

/// Seals chunk `index` (at most [`CHUNK_SIZE`] bytes; exactly that many unless it is the final
/// one).
pub fn seal_chunk(key: &FileKey, index: u64, is_final: bool, plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
    if plaintext.len() > CHUNK_SIZE || (!is_final && plaintext.len() != CHUNK_SIZE) {
        return Err(CryptoError::TooLarge { len: plaintext.len(), max: CHUNK_SIZE });
    }
    let cipher = ChaCha20Poly1305::new(key.expose_secret().into());
    let aad = chunk_aad(index, is_final);
    cipher
        .encrypt(&chunk_nonce(index).into(), Payload { msg: plaintext, aad: &aad })
        .map_err(|_| CryptoError::TooLarge { len: plaintext.len(), max: CHUNK_SIZE })
}

/// Opens chunk `index` of a blob; fails with [`CryptoError::ChunkDecryptionFailed`] when the
/// chunk was altered, moved, or is not where the blob ends although sealed as final (or the
/// reverse: the blob was truncated or extended).
pub fn open_chunk(key: &FileKey, index: u64, is_final: bool, sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    if sealed.len() < CHUNK_OVERHEAD || sealed.len() > SEALED_CHUNK_SIZE {
        return Err(CryptoError::ChunkDecryptionFailed { index });
    }
    let cipher = ChaCha20Poly1305::new(key.expose_secret().into());
    let aad = chunk_aad(index, is_final);
    cipher
        .decrypt(&chunk_nonce(index).into(), Payload { msg: sealed, aad: &aad })
        .map(Zeroizing::new)
        .map_err(|_| CryptoError::ChunkDecryptionFailed { index })
}

/// Encrypts a whole file in memory (for tests and small files; the SDK streams).
pub fn encrypt_file(key: &FileKey, plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let count = chunk_count(plaintext.len() as u64);
    let mut blob = Vec::with_capacity(blob_len(plaintext.len() as u64) as usize);
    let mut chunks = plaintext.chunks(CHUNK_SIZE);
    for index in 0..count {
        let chunk = chunks.next().unwrap_or(&[]);
        blob.extend_from_slice(&seal_chunk(key, index, index + 1 == count, chunk)?);
    }
    Ok(blob)
}

/// Decrypts a whole blob in memory (for tests and small files; the SDK streams).
pub fn decrypt_file(key: &FileKey, blob: &[u8]) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    let plain_len = plaintext_len(blob.len() as u64).ok_or(CryptoError::MalformedAttachment)?;
    let count = chunk_count(plain_len);
    let mut plaintext = Zeroizing::new(Vec::with_capacity(plain_len as usize));
    for (index, sealed) in (0..count).zip(blob.chunks(SEALED_CHUNK_SIZE)) {
        plaintext.extend_from_slice(&open_chunk(key, index, index + 1 == count, sealed)?);
    }
    Ok(plaintext)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 31 % 251) as u8).collect()
    }

    #[test]
    fn sizes_round_trip_at_chunk_boundaries() {
        for len in [0u64, 1, 65_535, 65_536, 65_537, 3 * 65_536, 3 * 65_536 + 5] {
            let blob = blob_len(len);
            assert_eq!(plaintext_len(blob), Some(len), "{len}");
        }
        assert_eq!(blob_len(0), 16);
        assert_eq!(blob_len(65_536), 65_552);
        assert_eq!(blob_len(65_537), 65_569);
        assert_eq!(plaintext_len(0), None);
        assert_eq!(plaintext_len(15), None);
        assert_eq!(plaintext_len(65_552 + 3), None);
    }

    #[test]
    fn nonce_and_aad_are_the_documented_bytes() {
        assert_eq!(chunk_nonce(0x0102), [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2]);
        let aad = chunk_aad(1, true);
        assert_eq!(aad.len(), 32);
        assert_eq!(&aad[..22], b"conclave/v1/attachment");
        assert_eq!(&aad[22..], &[0, 0, 0, 0, 0, 0, 0, 0, 1, 1]);
    }

    #[test]
    fn files_round_trip_and_every_alteration_is_detected() {
        let key = FileKey::generate().expect("key");
        for len in [0, 10, CHUNK_SIZE, 2 * CHUNK_SIZE + 100] {
            let plain = pattern(len);
            let blob = encrypt_file(&key, &plain).expect("encrypt");
            assert_eq!(blob.len() as u64, blob_len(len as u64));
            assert_eq!(decrypt_file(&key, &blob).expect("decrypt").as_slice(), plain.as_slice());
        }
        let plain = pattern(3 * CHUNK_SIZE);
        let blob = encrypt_file(&key, &plain).expect("encrypt");
        // A flipped bit.
        let mut flipped = blob.clone();
        flipped[SEALED_CHUNK_SIZE + 7] ^= 1;
        assert_eq!(decrypt_file(&key, &flipped), Err(CryptoError::ChunkDecryptionFailed { index: 1 }));
        // Truncated at a chunk boundary: the new last chunk was not sealed as final.
        let truncated = &blob[..2 * SEALED_CHUNK_SIZE];
        assert_eq!(decrypt_file(&key, truncated), Err(CryptoError::ChunkDecryptionFailed { index: 1 }));
        // Truncated inside a chunk.
        assert!(decrypt_file(&key, &blob[..blob.len() - 1]).is_err());
        // Chunks swapped.
        let mut swapped = blob[SEALED_CHUNK_SIZE..2 * SEALED_CHUNK_SIZE].to_vec();
        swapped.extend_from_slice(&blob[..SEALED_CHUNK_SIZE]);
        swapped.extend_from_slice(&blob[2 * SEALED_CHUNK_SIZE..]);
        assert_eq!(decrypt_file(&key, &swapped), Err(CryptoError::ChunkDecryptionFailed { index: 0 }));
        // Another key.
        let other = FileKey::generate().expect("key");
        assert!(decrypt_file(&other, &blob).is_err());
        assert_eq!(format!("{key:?}"), "FileKey(<redacted>)");
    }
}
