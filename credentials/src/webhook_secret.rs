//! Webhook signing secrets in the format of the Standard Webhooks specification
//! (<https://www.standardwebhooks.com>): `whsec_` followed by the key bytes in standard base64
//! (with padding). Every verifier library of that ecosystem takes the string as it is, strips the
//! prefix and HMACs with the decoded bytes, so the data plane must sign with the same bytes.

use crate::NoRandomness;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

/// The prefix of a signing secret.
pub const PREFIX: &str = "whsec_";
/// How many random bytes a generated secret carries.
pub const GENERATED_LEN: usize = 32;
/// The key lengths the specification allows (24 to 64 bytes).
pub const KEY_LEN: std::ops::RangeInclusive<usize> = 24..=64;

/// A signing secret that is not `whsec_` and 24 to 64 bytes in standard base64. Carries no part
/// of the secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a webhook signing secret must be \"whsec_\" followed by 24 to 64 bytes in standard base64")]
pub struct InvalidSecret;

/// A new secret: `whsec_` and 32 random bytes.
pub fn generate() -> Result<String, NoRandomness> {
    Ok(encode(&crate::random_bytes::<GENERATED_LEN>()?))
}

/// The secret string for `key`.
pub fn encode(key: &[u8]) -> String {
    format!("{PREFIX}{}", STANDARD.encode(key))
}

/// The HMAC key a secret stands for.
pub fn key(secret: &str) -> Result<Vec<u8>, InvalidSecret> {
    let encoded = secret.strip_prefix(PREFIX).ok_or(InvalidSecret)?;
    let key = STANDARD.decode(encoded).map_err(|_| InvalidSecret)?;
    if KEY_LEN.contains(&key.len()) { Ok(key) } else { Err(InvalidSecret) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_secret_decodes_to_its_32_random_bytes() {
        let a = generate().expect("secret");
        assert!(a.starts_with("whsec_"));
        assert_eq!(key(&a).expect("valid").len(), 32);
        assert_ne!(a, generate().expect("secret"));
    }

    #[test]
    fn the_encoding_is_standard_base64_with_padding() {
        assert_eq!(encode(&[0xfb; 32]), format!("whsec_{}", "+/v7".repeat(10) + "+/s="));
        // The specification's own example secret.
        assert_eq!(key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").expect("valid").len(), 24);
    }

    #[test]
    fn malformed_or_short_secrets_are_refused() {
        for bad in
            ["", "whsec_", "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_c2hvcnQ=", "whsec_not base64!!", "whsec_first"]
        {
            assert_eq!(key(bad), Err(InvalidSecret), "{bad:?}");
        }
        assert_eq!(key(&encode(&[1; 65])), Err(InvalidSecret));
        assert!(key(&encode(&[1; 64])).is_ok());
    }
}
