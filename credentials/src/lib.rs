//! The credentials that more than one Conclave program must agree on, defined once.
//!
//! The operator and the data plane never call each other: they meet in PostgreSQL and in
//! Kubernetes Secrets. Wherever one writes a credential the other reads, both must compute the
//! same bytes, so the scheme lives here and not in either program:
//!
//! * [`seal`]: secrets the data plane must use again (webhook signing secrets, TOTP seeds) are
//!   stored sealed with ChaCha20-Poly1305 under the data plane's 32-byte at-rest key. The operator
//!   seals webhook secrets and checks them for drift; the data plane seals TOTP seeds and opens
//!   both. A sealed value is bound to its column and row by a context such as
//!   [`seal::webhook_context`], so it does not open anywhere else.
//! * [`token`]: opaque tokens handed to people and software (refresh tokens, invitations, bot
//!   tokens, …) are a prefix naming their kind and 32 random bytes in base64url. The database stores only their [`token::digest`] (SHA-256 of the whole string):
//!   the operator writes the digests of the bot tokens it generates, the data plane looks
//!   presented tokens up by theirs.
//! * [`webhook_secret`]: webhook signing secrets in the Standard Webhooks format
//!   (`whsec_<base64>`), generated or checked by the operator, used to sign by the data plane.
//!
//! Everything here is pure apart from the operating system's randomness and reading the key
//! file, and no error text ever carries a key, a token or a plaintext. Changing any byte these
//! functions produce breaks values already stored; the tests pin them with fixed vectors.

pub mod seal;
pub mod token;
pub mod webhook_secret;

/// The operating system's random number generator failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the operating system's random number generator failed")]
pub struct NoRandomness;

/// `N` bytes from the operating system's random number generator.
pub fn random_bytes<const N: usize>() -> Result<[u8; N], NoRandomness> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).map_err(|_| NoRandomness)?;
    Ok(bytes)
}
