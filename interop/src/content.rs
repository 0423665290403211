//! The content layer (`docs/protocol-v2.md` "Content layer"): the bytes of a message's MLS
//! `application_data`. Written from the document: no SDK code.

use base64::Engine as _;
use serde_json::Value;
use uuid::Uuid;

/// What a message says, as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content {
    Text {
        body: String,
    },
    File {
        attachment_id: Uuid,
        name: String,
        media_type: String,
        size: u64,
        key: [u8; 32],
        sha256: [u8; 32],
    },
    /// A `type` this reader does not know.
    Unsupported {
        kind: String,
    },
    /// A `v` other than 1.
    UnsupportedVersion {
        v: u64,
    },
}

/// A plaintext a reader refuses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Malformed;

/// A JSON string as the document's writer escapes it: `"` and `\`, the five short escapes, other
/// characters below U+0020 as `\u00XX` in lowercase hex, everything else raw UTF-8.
fn string(out: &mut String, text: &str) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\u{c}' => out.push_str("\\f"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// The exact plaintext of a text message: `{"v":1,"type":"text","body":…}`.
pub fn write_text(body: &str) -> Vec<u8> {
    let mut out = String::from("{\"v\":1,\"type\":\"text\",\"body\":");
    string(&mut out, body);
    out.push('}');
    out.into_bytes()
}

fn b64_32(value: &str) -> Result<[u8; 32], Malformed> {
    // Canonical base64url without padding: the engine refuses padding and non-canonical trailing bits.
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(value).map_err(|_| Malformed)?;
    bytes.try_into().map_err(|_| Malformed)
}

/// Reads a plaintext as the document's reader does, in its order.
pub fn read(plaintext: &[u8]) -> Result<Content, Malformed> {
    // 1. A JSON object with a non-negative integer `v`.
    let value: Value = serde_json::from_slice(plaintext).map_err(|_| Malformed)?;
    let Value::Object(object) = value else { return Err(Malformed) };
    let v = object.get("v").and_then(Value::as_u64).ok_or(Malformed)?;
    // 2. Another version is not read any further.
    if v != 1 {
        return Ok(Content::UnsupportedVersion { v });
    }
    // 3. `type` is a string; every field the format names has its type (null = absent).
    let field = |name: &str| object.get(name).filter(|v| !v.is_null());
    let text = |name: &str| -> Result<Option<&str>, Malformed> {
        field(name).map(|v| v.as_str().ok_or(Malformed)).transpose()
    };
    let kind = text("type")?.ok_or(Malformed)?;
    for name in ["body", "name", "media_type", "key", "sha256"] {
        text(name)?;
    }
    let attachment_id = text("attachment_id")?.map(|s| s.parse::<Uuid>().map_err(|_| Malformed)).transpose()?;
    let size = field("size").map(|v| v.as_u64().ok_or(Malformed)).transpose()?;
    // 4. Unknown types.
    match kind {
        "text" => Ok(Content::Text { body: text("body")?.ok_or(Malformed)?.to_owned() }),
        "file" => Ok(Content::File {
            attachment_id: attachment_id.ok_or(Malformed)?,
            name: text("name")?.ok_or(Malformed)?.to_owned(),
            media_type: text("media_type")?.unwrap_or("application/octet-stream").to_owned(),
            size: size.ok_or(Malformed)?,
            key: b64_32(text("key")?.ok_or(Malformed)?)?,
            sha256: b64_32(text("sha256")?.ok_or(Malformed)?)?,
        }),
        other => Ok(Content::Unsupported { kind: other.to_owned() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vectors() -> Value {
        crate::vectors::load("protocol-v2-content.json")
    }

    /// Every `text` of `written` is what this writer writes, byte for byte.
    #[test]
    fn the_committed_texts_are_what_this_client_writes() {
        let vectors = vectors();
        let mut texts = 0;
        for entry in vectors["written"].as_array().expect("written") {
            if entry["content"]["type"] == "text" {
                let body = entry["content"]["body"].as_str().expect("body");
                let written = write_text(body);
                assert_eq!(String::from_utf8(written).expect("utf-8"), entry["plaintext"].as_str().expect("plaintext"));
                texts += 1;
            }
        }
        assert!(texts >= 2, "{texts} texts");
    }

    /// Every entry of `read` (and of `written`) has the outcome the vectors give.
    #[test]
    fn the_committed_plaintexts_read_as_the_vectors_say() {
        let vectors = vectors();
        let mut entries: Vec<&Value> = vectors["read"].as_array().expect("read").iter().collect();
        entries.extend(vectors["written"].as_array().expect("written"));
        for entry in entries {
            let name = entry["name"].as_str().unwrap_or("?");
            let read = read(entry["plaintext"].as_str().expect("plaintext").as_bytes());
            match entry["outcome"].as_str().unwrap_or("content") {
                "malformed" => assert_eq!(read, Err(Malformed), "{name}"),
                "unsupported" => {
                    assert_eq!(
                        read,
                        Ok(Content::Unsupported { kind: entry["type"].as_str().expect("type").into() }),
                        "{name}"
                    )
                }
                "unsupported_version" => {
                    assert_eq!(read, Ok(Content::UnsupportedVersion { v: entry["v"].as_u64().expect("v") }), "{name}")
                }
                _ => {
                    let want = &entry["content"];
                    match read {
                        Ok(Content::Text { body }) => assert_eq!(want["body"], body.as_str(), "{name}"),
                        Ok(Content::File { attachment_id, name: file, media_type, size, key, sha256 }) => {
                            assert_eq!(want["attachment_id"], attachment_id.to_string().as_str(), "{name}");
                            assert_eq!(want["name"], file.as_str(), "{name}");
                            assert_eq!(want["media_type"], media_type.as_str(), "{name}");
                            assert_eq!(want["size"], size, "{name}");
                            assert_eq!(want["key"], hex(&key).as_str(), "{name}");
                            assert_eq!(want["sha256"], hex(&sha256).as_str(), "{name}");
                        }
                        other => panic!("{name}: {other:?}"),
                    }
                }
            }
        }
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }
}
