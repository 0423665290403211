//! Generating credentials, and the digests the database keeps of them.
//!
//! The tokens the operator mints (bot tokens, webhook signing secrets, the placeholder token of
//! an owner invitation) and their digests are the data plane's too, so their format is defined
//! once in [`conclave_credentials::token`] and re-exported here: a prefix naming the kind
//! (`cbot_`, `whsec_`, `cvi_`) and 32 random bytes in base64url; the database stores SHA-256 of
//! the whole token string. The keys only the operator generates (the JWT signing key, the VAPID
//! key) are made here.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use conclave_credentials::token::Kind;

pub use conclave_credentials::NoRandomness;
pub use conclave_credentials::token::{BOT_TOKEN_PREFIX, digest, with_prefix as token};

/// The prefix of the invitation token the operator stores for an owner it invites (the data
/// plane's prefix for invitations: it mints the token it emails in its place).
pub const INVITATION_PREFIX: &str = Kind::Invitation.prefix();

/// `len` random bytes.
pub fn random_bytes(len: usize) -> Result<Vec<u8>, NoRandomness> {
    let mut bytes = vec![0u8; len];
    getrandom::fill(&mut bytes).map_err(|_| NoRandomness)?;
    Ok(bytes)
}

/// A new Ed25519 private key as a PKCS#8 PEM document (RFC 8410), the form JWT libraries read
/// (`EncodingKey::from_ed_pem` in `jsonwebtoken`). The data plane derives the public key.
pub fn ed25519_pkcs8_pem() -> Result<String, NoRandomness> {
    // SEQUENCE { INTEGER 0, SEQUENCE { OID 1.3.101.112 }, OCTET STRING { OCTET STRING (32) } }
    const PREFIX: [u8; 16] =
        [0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20];
    let mut der = PREFIX.to_vec();
    der.extend(random_bytes(32)?);
    Ok(format!("-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n", STANDARD.encode(der)))
}

/// The order of the P-256 group, big-endian.
const P256_ORDER: [u8; 32] = [
    0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xbc, 0xe6, 0xfa,
    0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63, 0x25, 0x51,
];

/// A new VAPID (RFC 8292) private key: a P-256 scalar in `[1, n)`, 32 bytes big-endian,
/// base64url without padding (the form web-push libraries take). The data plane derives the
/// public key it hands to browsers.
pub fn vapid_private_key() -> Result<String, NoRandomness> {
    loop {
        let scalar = random_bytes(32)?;
        if scalar.as_slice() < P256_ORDER.as_slice() && scalar.iter().any(|b| *b != 0) {
            return Ok(URL_SAFE_NO_PAD.encode(scalar));
        }
    }
}

/// A short, stable key id for a key: the first 8 bytes of its digest in hex.
pub fn key_id(material: &str) -> String {
    hex::encode(&digest(material)[..8])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_operator_mints_tokens_the_data_plane_recognises() {
        let bot = token(BOT_TOKEN_PREFIX).expect("token");
        assert!(conclave_credentials::token::looks_like(Kind::Bot, &bot));
        let invitation = token(INVITATION_PREFIX).expect("token");
        assert!(conclave_credentials::token::looks_like(Kind::Invitation, &invitation));
    }

    #[test]
    fn an_ed25519_key_is_a_48_byte_pkcs8_document() {
        let pem = ed25519_pkcs8_pem().expect("key");
        let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        let der = STANDARD.decode(body).expect("base64");
        assert_eq!(der.len(), 48);
        assert_eq!(
            &der[..16],
            &[0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20]
        );
    }

    #[test]
    fn a_vapid_key_is_a_valid_p256_scalar() {
        let key = URL_SAFE_NO_PAD.decode(vapid_private_key().expect("key")).expect("base64url");
        assert_eq!(key.len(), 32);
        assert!(key.as_slice() < P256_ORDER.as_slice());
    }
}
