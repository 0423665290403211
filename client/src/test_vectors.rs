//! What the committed test vectors in `docs/test-vectors/` share: fixed inputs, and the check that
//! a file is exactly what the SDK writes today.
//!
//! A vector file is made by a test from fixed inputs, so it is deterministic; the test compares it
//! with the committed file and fails on any difference. After an intentional change of format,
//! `CONCLAVE_WRITE_VECTORS=1 cargo test -p conclave-client --lib` rewrites the files.

use sha2::{Digest as _, Sha256};
use uuid::Uuid;

/// Fixed input bytes, different for every name: the first `N` bytes of SHA-256("conclave test
/// vector " || name). The files record the bytes themselves, so nobody needs this derivation.
pub(crate) fn fixed<const N: usize>(name: &str) -> [u8; N] {
    let digest = Sha256::digest(format!("conclave test vector {name}"));
    let mut out = [0u8; N];
    out.copy_from_slice(&digest[..N]);
    out
}

/// A fixed UUID (version 4 bits set) for `name`.
pub(crate) fn fixed_id(name: &str) -> Uuid {
    uuid::Builder::from_random_bytes(fixed(name)).into_uuid()
}

/// Fails unless `docs/test-vectors/<file>` is `made` (pretty JSON and a final newline), byte for
/// byte; with `CONCLAVE_WRITE_VECTORS` set, writes it first. Returns the committed text.
pub(crate) fn check_committed(file: &str, made: &serde_json::Value) -> String {
    let path = format!("{}/../docs/test-vectors/{file}", env!("CARGO_MANIFEST_DIR"));
    let made = serde_json::to_string_pretty(made).expect("vectors serialize") + "\n";
    if std::env::var_os("CONCLAVE_WRITE_VECTORS").is_some() {
        std::fs::write(&path, &made).expect("write the vectors");
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    assert!(
        committed == made,
        "the SDK no longer writes {path}: after an intentional change, CONCLAVE_WRITE_VECTORS=1 rewrites it"
    );
    committed
}
