//! Byte fields in JSON: base64url without padding (RFC 4648 §5), strict on input.
//!
//! Use it on every byte field of a request or response body:
//!
//! ```
//! #[derive(serde::Serialize, serde::Deserialize)]
//! struct DeviceKeys {
//!     #[serde(with = "conclave_protocol::b64")]
//!     ed25519_public_key: [u8; 32],
//!     #[serde(with = "conclave_protocol::b64")]
//!     ciphertext: Vec<u8>,
//!     #[serde(with = "conclave_protocol::b64::option", default)]
//!     reply_signature: Option<[u8; 64]>,
//! }
//! ```
//!
//! Fixed-size arrays reject any other decoded length, so a 31-byte key is a deserialization error
//! at the boundary rather than a database constraint violation later. Decoding refuses padding,
//! the standard alphabet (`+`, `/`) and non-canonical trailing bits, so every byte string has
//! exactly one accepted encoding.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serializer};

pub use base64::DecodeError;

/// Encodes bytes as base64url without padding.
pub fn encode(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Decodes base64url without padding; anything else is an error.
pub fn decode(text: impl AsRef<[u8]>) -> Result<Vec<u8>, DecodeError> {
    URL_SAFE_NO_PAD.decode(text)
}

/// Serializes any byte container as a base64url string.
pub fn serialize<S: Serializer>(bytes: impl AsRef<[u8]>, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&encode(bytes))
}

/// Deserializes a base64url string into `Vec<u8>` or a fixed-size `[u8; N]` (length checked).
pub fn deserialize<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<Vec<u8>>,
{
    let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
    let bytes = decode(text.as_bytes()).map_err(|e| D::Error::custom(format!("invalid base64url: {e}")))?;
    let len = bytes.len();
    T::try_from(bytes).map_err(|_| D::Error::custom(format!("unexpected length: {len} bytes")))
}

/// The same encoding for optional fields: `null` (or an absent field, with `#[serde(default)]`)
/// is `None`.
pub mod option {
    use super::*;

    /// Serializes `Some(bytes)` as a base64url string and `None` as `null`.
    pub fn serialize<S: Serializer, B: AsRef<[u8]>>(bytes: &Option<B>, serializer: S) -> Result<S::Ok, S::Error> {
        match bytes {
            Some(bytes) => super::serialize(bytes, serializer),
            None => serializer.serialize_none(),
        }
    }

    /// Deserializes `null` as `None` and a base64url string as `Some`.
    pub fn deserialize<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
    where
        D: Deserializer<'de>,
        T: TryFrom<Vec<u8>>,
    {
        #[derive(Deserialize)]
        struct Wrapper<T: TryFrom<Vec<u8>>>(#[serde(deserialize_with = "super::deserialize")] T);

        Ok(Option::<Wrapper<T>>::deserialize(deserializer)?.map(|Wrapper(bytes)| bytes))
    }
}

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Sample {
        #[serde(with = "super")]
        key: [u8; 4],
        #[serde(with = "super")]
        blob: Vec<u8>,
        #[serde(with = "super::option", default)]
        maybe: Option<[u8; 2]>,
    }

    #[test]
    fn byte_fields_round_trip_as_unpadded_base64url() {
        let sample = Sample { key: [0xfb, 0xff, 0xbf, 0x00], blob: vec![0xfa], maybe: Some([1, 2]) };
        let json = serde_json::to_string(&sample).expect("serializable");
        assert_eq!(json, r#"{"key":"-_-_AA","blob":"-g","maybe":"AQI"}"#);
        assert_eq!(serde_json::from_str::<Sample>(&json).expect("round trip"), sample);
    }

    #[test]
    fn absent_or_null_optional_bytes_are_none() {
        let absent: Sample = serde_json::from_str(r#"{"key":"AAAAAA","blob":""}"#).expect("absent is None");
        assert_eq!(absent.maybe, None);
        let null: Sample = serde_json::from_str(r#"{"key":"AAAAAA","blob":"","maybe":null}"#).expect("null is None");
        assert_eq!(null.maybe, None);
        assert_eq!(serde_json::to_string(&null).expect("serializable"), r#"{"key":"AAAAAA","blob":"","maybe":null}"#);
    }

    #[test]
    fn a_wrong_length_for_a_fixed_size_field_is_rejected() {
        let err = serde_json::from_str::<Sample>(r#"{"key":"AAAA","blob":""}"#).expect_err("3 bytes for [u8; 4]");
        assert!(err.to_string().contains("unexpected length: 3 bytes"), "{err}");
    }

    #[test]
    fn padding_and_the_standard_alphabet_are_rejected() {
        assert!(super::decode("AQI=").is_err());
        assert!(super::decode("+/8").is_err());
        assert!(super::decode("AQJ").is_err(), "non-canonical trailing bits");
        assert_eq!(super::decode("AQI").expect("canonical"), vec![1, 2]);
    }
}
