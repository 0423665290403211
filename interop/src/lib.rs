//! An independent Conclave client, written from `docs/protocol.md` and `docs/protocol-v2.md` with
//! AWS's `mls-rs` (and its RustCrypto provider) instead of the SDK's openmls: the bar for
//! the protocol document is that such a client joins a conversation and exchanges messages with
//! the SDK. `tests/interop.rs` proves it against the real data plane and the real SDK.
//!
//! Nothing here calls the SDK (`conclave-client`): the device credential ([`credential`]), the
//! content layer ([`content`]), the reaction layer ([`reaction`]) and the identity chain checks
//! ([`chain`]) are this crate's own, each checked against the committed test vectors
//! (`docs/test-vectors/`). HTTP uses `reqwest` and the JSON body types of `conclave-protocol`.

pub mod chain;
pub mod content;
pub mod credential;
pub mod device;
pub mod http;
pub mod reaction;

pub use device::{Independent, MlsGroup};
pub use http::{Api, At};

/// The committed test vectors (`docs/test-vectors/`), as this crate's unit tests read them.
#[cfg(test)]
mod vectors {
    /// The JSON of `docs/test-vectors/<name>`.
    pub fn load(name: &str) -> serde_json::Value {
        let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/test-vectors").join(name);
        serde_json::from_str(&std::fs::read_to_string(file).expect("vectors")).expect("json")
    }

    /// The bytes a vector's lowercase hex string spells.
    pub fn unhex(s: &str) -> Vec<u8> {
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex")).collect()
    }
}
