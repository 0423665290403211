//! The message content format: what the plaintext of a message is, the `application_data` of its
//! MLS application message (`docs/protocol-v2.md`, "Content layer"; test vectors in
//! `docs/test-vectors/protocol-v2-content.json`, made by `vectors.rs`).
//!
//! A small versioned JSON object, UTF-8, encrypted as the message plaintext:
//!
//! ```json
//! {"v":1,"type":"text","body":"hello"}
//! {"v":1,"type":"file","attachment_id":"…","name":"a.pdf","media_type":"application/pdf",
//!  "size":1234,"key":"<b64url>","sha256":"<b64url>"}
//! ```
//!
//! Readers ignore fields they do not know (so padding or metadata can be added within version 1)
//! and show a placeholder for a `type` they do not know; a `v` other than 1 is a format they
//! cannot read.

use conclave_protocol::limits::MAX_MESSAGE_PLAINTEXT_LEN;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;
use zeroize::Zeroizing;

use crate::crypto::FileKey;

/// The content format version this client writes and reads.
pub const CONTENT_VERSION: u64 = 1;

/// What a message says, once decrypted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Content {
    /// Plain text (UTF-8; its encoding must fit the protocol's plaintext limit).
    Text {
        /// The text.
        body: String,
    },
    /// An encrypted file: the attachment to download and what is needed to decrypt and check it.
    File(FileContent),
    /// A version-1 content type this client does not know (sent by a newer client).
    Unsupported {
        /// The `type` found.
        kind: String,
    },
    /// Content in a format version this client cannot read.
    UnsupportedVersion {
        /// The `v` found.
        version: u64,
    },
}

/// A file message (`"type":"file"`). The file key is never serialized by `Serialize` (history
/// printed as JSON does not leak it) and never printed by `Debug`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileContent {
    /// The uploaded (encrypted) blob.
    pub attachment_id: Uuid,
    /// The file's name as the sender gave it (a bare name: readers must not trust it as a path).
    pub name: String,
    /// Its media type, e.g. `image/png` (`application/octet-stream` when unknown).
    pub media_type: String,
    /// The plaintext size in bytes.
    pub size: u64,
    /// The per-file key the blob is encrypted under.
    #[serde(skip_serializing)]
    pub key: FileKey,
    /// SHA-256 of the blob (the ciphertext), checked before decrypting.
    #[serde(serialize_with = "conclave_protocol::b64::serialize")]
    pub sha256: [u8; 32],
}

/// Why content could not be encoded or decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ContentError {
    /// The encoded content exceeds the protocol's plaintext limit (262 128 bytes).
    #[error("the message is {len} bytes once encoded; the limit is {MAX_MESSAGE_PLAINTEXT_LEN}")]
    TooLong {
        /// The encoded length in bytes.
        len: usize,
    },
    /// Only text and the known types can be sent.
    #[error("this content type cannot be sent")]
    NotSendable,
    /// The decrypted plaintext is not a version-1 content object.
    #[error("the decrypted content is malformed: {0}")]
    Malformed(String),
}

#[derive(Serialize)]
struct WireOut<'a> {
    v: u64,
    #[serde(rename = "type")]
    kind: &'a str,
    body: &'a str,
}

#[derive(Serialize)]
struct FileWireOut<'a> {
    v: u64,
    #[serde(rename = "type")]
    kind: &'a str,
    attachment_id: Uuid,
    name: &'a str,
    media_type: &'a str,
    size: u64,
    key: String,
    sha256: String,
}

#[derive(Deserialize)]
struct WireIn {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    body: Option<String>,
    #[serde(default)]
    attachment_id: Option<Uuid>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    size: Option<u64>,
    #[serde(default)]
    key: Option<String>,
    #[serde(default)]
    sha256: Option<String>,
}

fn b64_32(field: &str, text: Option<String>) -> Result<[u8; 32], ContentError> {
    let missing = || ContentError::Malformed(format!("a file has no valid `{field}`"));
    let text = Zeroizing::new(text.ok_or_else(missing)?);
    let bytes = Zeroizing::new(conclave_protocol::b64::decode(text.as_bytes()).map_err(|_| missing())?);
    bytes.as_slice().try_into().map_err(|_| missing())
}

impl Content {
    /// A text message.
    pub fn text(body: impl Into<String>) -> Self {
        Self::Text { body: body.into() }
    }

    /// The plaintext to encrypt (zeroized when dropped).
    pub fn encode(&self) -> Result<Zeroizing<Vec<u8>>, ContentError> {
        match self {
            Self::Text { body } => {
                let bytes = Zeroizing::new(
                    serde_json::to_vec(&WireOut { v: CONTENT_VERSION, kind: "text", body })
                        .map_err(|e| ContentError::Malformed(e.to_string()))?,
                );
                if bytes.len() > MAX_MESSAGE_PLAINTEXT_LEN {
                    return Err(ContentError::TooLong { len: bytes.len() });
                }
                Ok(bytes)
            }
            Self::File(file) => {
                let wire = FileWireOut {
                    v: CONTENT_VERSION,
                    kind: "file",
                    attachment_id: file.attachment_id,
                    name: &file.name,
                    media_type: &file.media_type,
                    size: file.size,
                    key: conclave_protocol::b64::encode(file.key.expose_secret()),
                    sha256: conclave_protocol::b64::encode(file.sha256),
                };
                let bytes =
                    Zeroizing::new(serde_json::to_vec(&wire).map_err(|e| ContentError::Malformed(e.to_string()))?);
                drop(Zeroizing::new(wire.key));
                if bytes.len() > MAX_MESSAGE_PLAINTEXT_LEN {
                    return Err(ContentError::TooLong { len: bytes.len() });
                }
                Ok(bytes)
            }
            Self::Unsupported { .. } | Self::UnsupportedVersion { .. } => Err(ContentError::NotSendable),
        }
    }

    /// Reads a decrypted plaintext.
    pub fn decode(plaintext: &[u8]) -> Result<Self, ContentError> {
        let value: Value = serde_json::from_slice(plaintext).map_err(|e| ContentError::Malformed(e.to_string()))?;
        // An object (serde would read a struct from an array of its fields in order too) whose
        // `v` is a version number; another version is not read any further.
        let version = value
            .as_object()
            .ok_or_else(|| ContentError::Malformed("the content is not a JSON object".into()))?
            .get("v")
            .and_then(Value::as_u64)
            .ok_or_else(|| ContentError::Malformed("`v` is not a version number".into()))?;
        if version != CONTENT_VERSION {
            return Ok(Self::UnsupportedVersion { version });
        }
        let wire: WireIn = serde_json::from_value(value).map_err(|e| ContentError::Malformed(e.to_string()))?;
        match wire.kind.as_str() {
            "text" => {
                let body = wire.body.ok_or_else(|| ContentError::Malformed("a text has no `body`".into()))?;
                Ok(Self::Text { body })
            }
            "file" => {
                let malformed = |field: &str| ContentError::Malformed(format!("a file has no `{field}`"));
                Ok(Self::File(FileContent {
                    attachment_id: wire.attachment_id.ok_or_else(|| malformed("attachment_id"))?,
                    name: wire.name.ok_or_else(|| malformed("name"))?,
                    media_type: wire.media_type.unwrap_or_else(|| "application/octet-stream".to_owned()),
                    size: wire.size.ok_or_else(|| malformed("size"))?,
                    key: FileKey::from_bytes(b64_32("key", wire.key)?),
                    sha256: b64_32("sha256", wire.sha256)?,
                }))
            }
            _ => Ok(Self::Unsupported { kind: wire.kind }),
        }
    }

    /// The text to show a person.
    pub fn display(&self) -> String {
        match self {
            Self::Text { body } => body.clone(),
            Self::File(file) => format!("[file {:?}, {}, {} bytes]", file.name, file.media_type, file.size),
            Self::Unsupported { kind } => format!("[unsupported content type {kind:?}]"),
            Self::UnsupportedVersion { version } => format!("[content format version {version} is not supported]"),
        }
    }
}

#[cfg(test)]
mod vectors;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_encoded_as_the_documented_json() {
        let bytes = Content::text("héllo \"you\"").encode().expect("encode");
        assert_eq!(std::str::from_utf8(&bytes).expect("utf-8"), r#"{"v":1,"type":"text","body":"héllo \"you\""}"#);
        assert_eq!(Content::decode(&bytes).expect("decode"), Content::text("héllo \"you\""));
    }

    #[test]
    fn unknown_fields_are_ignored_and_unknown_types_are_shown_as_unsupported() {
        let padded = br#"{"v":1,"type":"text","body":"hi","pad":"          "}"#;
        assert_eq!(Content::decode(padded).expect("decode"), Content::text("hi"));
        let poll = br#"{"v":1,"type":"poll","question":"lunch?"}"#;
        let content = Content::decode(poll).expect("decode");
        assert_eq!(content, Content::Unsupported { kind: "poll".into() });
        assert_eq!(content.display(), "[unsupported content type \"poll\"]");
        assert_eq!(
            Content::decode(br#"{"v":2,"type":"text","body":"x"}"#).expect("decode"),
            Content::UnsupportedVersion { version: 2 }
        );
    }

    #[test]
    fn a_file_is_encoded_as_the_documented_json_and_its_key_is_never_printed() {
        let file = FileContent {
            attachment_id: Uuid::from_u128(1),
            name: "a.txt".into(),
            media_type: "text/plain".into(),
            size: 5,
            key: FileKey::from_bytes([7; 32]),
            sha256: [9; 32],
        };
        let content = Content::File(file);
        let bytes = content.encode().expect("encode");
        let key = conclave_protocol::b64::encode([7u8; 32]);
        let sha = conclave_protocol::b64::encode([9u8; 32]);
        assert_eq!(
            std::str::from_utf8(&bytes).expect("utf-8"),
            format!(
                r#"{{"v":1,"type":"file","attachment_id":"00000000-0000-0000-0000-000000000001","name":"a.txt","media_type":"text/plain","size":5,"key":"{key}","sha256":"{sha}"}}"#
            )
        );
        assert_eq!(Content::decode(&bytes).expect("decode"), content);
        assert!(!serde_json::to_string(&content).expect("json").contains(&key));
        assert!(!format!("{content:?}").contains("[7, 7"));
        assert!(content.display().contains("a.txt"));
        let no_key = br#"{"v":1,"type":"file","attachment_id":"00000000-0000-0000-0000-000000000001","name":"a","size":1,"sha256":"x"}"#;
        assert!(matches!(Content::decode(no_key), Err(ContentError::Malformed(_))));
    }

    #[test]
    fn malformed_content_is_an_error() {
        for bad in [
            &b"hello"[..],
            br#"{"type":"text","body":"x"}"#,
            br#"{"v":"1","type":"text"}"#,
            br#"{"v":1,"type":"text"}"#,
        ] {
            assert!(
                matches!(Content::decode(bad), Err(ContentError::Malformed(_))),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn content_beyond_the_plaintext_limit_is_refused() {
        let overhead = r#"{"v":1,"type":"text","body":""}"#.len();
        let largest = "x".repeat(MAX_MESSAGE_PLAINTEXT_LEN - overhead);
        assert_eq!(Content::text(largest.clone()).encode().expect("fits").len(), MAX_MESSAGE_PLAINTEXT_LEN);
        let one_more = largest + "x";
        assert_eq!(Content::text(one_more).encode(), Err(ContentError::TooLong { len: MAX_MESSAGE_PLAINTEXT_LEN + 1 }));
        // Escapes count: a control character is six bytes once encoded.
        let escaped = "\u{1}".repeat(MAX_MESSAGE_PLAINTEXT_LEN / 6);
        assert!(matches!(Content::text(escaped).encode(), Err(ContentError::TooLong { .. })));
        assert!(Content::Unsupported { kind: "poll".into() }.encode().is_err());
    }
}
