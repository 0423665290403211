//! Opaque secrets handed to clients (refresh tokens, email and reset tokens, codes) and the
//! digests the database keeps of them.
//!
//! A token is a type prefix and 32 random bytes in base64url, e.g. `cvr_...` for a refresh token:
//! the prefix lets secret scanners recognise a leaked token, and says what it is in a support
//! ticket without revealing it. Only SHA-256 of the whole string is stored.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

#[derive(Debug, Clone, Copy)]
pub enum Kind {
    Refresh,
    EmailConfirmation,
    PasswordReset,
    /// An invitation into an organization, emailed to the invitee.
    Invitation,
    /// A contact invitation code, shared out of band.
    ContactCode,
    /// A link to join one conversation.
    ConversationInvite,
}

impl Kind {
    fn prefix(self) -> &'static str {
        match self {
            Self::Refresh => "cvr_",
            Self::EmailConfirmation => "cve_",
            Self::PasswordReset => "cvp_",
            Self::ConversationInvite => "cvj_",
            Self::Invitation => "cvi_",
            Self::ContactCode => "cvc_",
        }
    }
}

pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    // The OS RNG failing is not something a request can recover from.
    #[allow(clippy::expect_used)]
    getrandom::fill(&mut bytes).expect("the operating system's random number generator failed");
    bytes
}

/// A new token of this kind.
pub fn generate(kind: Kind) -> String {
    format!("{}{}", kind.prefix(), URL_SAFE_NO_PAD.encode(random_bytes::<32>()))
}

/// What the database stores for a token.
pub fn digest(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// Whether a presented string has the shape of this kind of token (cheap rejection of garbage
/// before any database work).
pub fn looks_like(kind: Kind, token: &str) -> bool {
    token.strip_prefix(kind.prefix()).is_some_and(|rest| rest.len() == 43 && URL_SAFE_NO_PAD.decode(rest).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_unique_prefixed_and_recognisable() {
        let a = generate(Kind::Refresh);
        let b = generate(Kind::Refresh);
        assert_ne!(a, b);
        assert!(a.starts_with("cvr_"));
        assert!(looks_like(Kind::Refresh, &a));
        assert!(!looks_like(Kind::PasswordReset, &a));
        assert!(!looks_like(Kind::Refresh, "cvr_short"));
    }

    #[test]
    fn the_digest_is_sha256_of_the_whole_token() {
        assert_eq!(digest("abc").len(), 32);
        assert_ne!(digest("cvr_a"), digest("cve_a"));
    }
}
