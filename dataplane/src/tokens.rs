//! Opaque secrets handed to clients (refresh tokens, email and reset tokens, codes) and the
//! digests the database keeps of them.
//!
//! A token is a type prefix and 32 random bytes in base64url, e.g. `cvr_...` for a refresh token,
//! and only SHA-256 of the whole string is stored: the format and the digest are shared with the
//! operator (which mints bot tokens) and defined once in [`conclave_credentials::token`]. What
//! this module adds is the data plane's policy for randomness: the operating system's generator
//! failing is not something a request can recover from.

use conclave_credentials::token::RANDOM_LEN;

pub use conclave_credentials::token::{Kind, digest, looks_like};

pub fn random_bytes<const N: usize>() -> [u8; N] {
    // The OS RNG failing is not something a request can recover from.
    #[allow(clippy::expect_used)]
    conclave_credentials::random_bytes().expect("the operating system's random number generator failed")
}

/// A new token of this kind.
pub fn generate(kind: Kind) -> String {
    conclave_credentials::token::encode(kind.prefix(), &random_bytes::<RANDOM_LEN>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_tokens_are_unique_and_recognisable() {
        let a = generate(Kind::Refresh);
        assert_ne!(a, generate(Kind::Refresh));
        assert!(looks_like(Kind::Refresh, &a));
        assert!(!looks_like(Kind::PasswordReset, &a));
    }
}
