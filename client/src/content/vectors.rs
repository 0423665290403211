//! `docs/test-vectors/protocol-v2-content.json`: the content layer, the plaintext of an MLS
//! application message (`docs/protocol-v2.md`, "Content layer").
//!
//! `written` holds contents and the exact bytes this SDK writes for each; `read` holds plaintexts
//! (some from other writers: reordered, padded, newer or broken) and what a reader must make of
//! each; `attachments` holds files encrypted under the key their `file` content carries. The file
//! is made by [`the_committed_content_vectors_are_what_the_sdk_writes_and_reads`] and checked on
//! every run (`crate::test_vectors`).

use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use uuid::Uuid;

use super::{Content, ContentError, FileContent};
use crate::crypto::FileKey;
use crate::crypto::attachment::{self, CHUNK_SIZE};
use crate::test_vectors::{check_committed, fixed, fixed_id};

/// A content as the vectors show it: byte strings in hex, as in every vector file.
fn shown(content: &Content) -> Value {
    match content {
        Content::Text { body } => json!({ "type": "text", "body": body }),
        Content::File(file) => json!({
            "type": "file",
            "attachment_id": file.attachment_id,
            "name": file.name,
            "media_type": file.media_type,
            "size": file.size,
            "key": hex::encode(file.key.expose_secret()),
            "sha256": hex::encode(file.sha256),
        }),
        Content::Unsupported { kind } => json!({ "type": kind, "outcome": "unsupported" }),
        Content::UnsupportedVersion { version } => json!({ "v": version, "outcome": "unsupported_version" }),
    }
}

fn outcome(read: Result<Content, ContentError>) -> Value {
    match read {
        Ok(content @ (Content::Text { .. } | Content::File(_))) => {
            json!({ "outcome": "content", "content": shown(&content) })
        }
        Ok(Content::Unsupported { kind }) => json!({ "outcome": "unsupported", "type": kind }),
        Ok(Content::UnsupportedVersion { version }) => json!({ "outcome": "unsupported_version", "v": version }),
        Err(ContentError::Malformed(_)) => json!({ "outcome": "malformed" }),
        Err(other) => panic!("a reader only reports malformed content: {other}"),
    }
}

/// A file's bytes for the vectors: byte `i` is `i mod 251`.
fn file_bytes(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

/// A file encrypted under its key, chunk by chunk, and the `file` content that carries the key.
fn attachment(name: &str, len: usize) -> (Value, Content) {
    let key = FileKey::from_bytes(fixed(&format!("{name} file key")));
    let plaintext = file_bytes(len);
    let blob = attachment::encrypt_file(&key, &plaintext).expect("encrypt");
    let count = attachment::chunk_count(len as u64);
    let mut offset = 0;
    let chunks: Vec<Value> = (0..count)
        .map(|index| {
            let is_final = index + 1 == count;
            let sealed_len = if is_final { blob.len() - offset } else { CHUNK_SIZE + 16 };
            let sealed = &blob[offset..offset + sealed_len];
            offset += sealed_len;
            let mut chunk = json!({
                "index": index,
                "final": is_final,
                "nonce": hex::encode(attachment::chunk_nonce(index)),
                "aad": hex::encode(attachment::chunk_aad(index, is_final)),
                "sealed_len": sealed_len,
                "sealed_sha256": hex::encode(Sha256::digest(sealed)),
            });
            if sealed_len <= 64 {
                chunk["sealed"] = json!(hex::encode(sealed));
            }
            chunk
        })
        .collect();
    let sha256: [u8; 32] = Sha256::digest(&blob).into();
    let content = Content::File(FileContent {
        attachment_id: fixed_id(&format!("{name} attachment")),
        name: format!("{name}.bin"),
        media_type: "application/octet-stream".into(),
        size: len as u64,
        key: key.clone(),
        sha256,
    });
    let vector = json!({
        "name": name,
        "key": hex::encode(key.expose_secret()),
        "plaintext_len": len,
        "plaintext_hex": if len <= 64 { json!(hex::encode(&plaintext)) } else { Value::Null },
        "blob_len": blob.len(),
        "blob_sha256": hex::encode(sha256),
        "chunks": chunks,
    });
    (vector, content)
}

fn vectors() -> Value {
    let (small, small_file) = attachment("a 13-byte file", 13);
    let (empty, empty_file) = attachment("an empty file", 0);
    let (two_chunks, two_chunk_file) = attachment("a file of two chunks", CHUNK_SIZE + 1);
    let with_pdf = Content::File(FileContent {
        attachment_id: Uuid::parse_str("0193a3c4-5e6f-7a80-9b1c-2d3e4f50f11e").expect("uuid"),
        name: "report Q3 — final.pdf".into(),
        media_type: "application/pdf".into(),
        size: 3_158_001,
        key: FileKey::from_bytes(fixed("report key")),
        sha256: fixed("report blob sha256"),
    });
    let written: Vec<Value> = [
        ("a text", Content::text("Lunch at noon?")),
        ("an empty text", Content::text("")),
        ("a text with what JSON escapes", Content::text("she said \"hi\"\\ then\nleft\t\u{1}\u{7f}/")),
        ("a text beyond ASCII", Content::text("héllo 👋 مرحبا 日本")),
        ("a file", with_pdf),
        ("the 13-byte file of `attachments`", small_file),
        ("the empty file of `attachments`", empty_file),
        ("the file of two chunks of `attachments`", two_chunk_file),
    ]
    .into_iter()
    .map(|(name, content)| {
        let bytes = content.encode().expect("encode");
        let text = std::str::from_utf8(&bytes).expect("UTF-8");
        assert_eq!(Content::decode(&bytes).as_ref(), Ok(&content), "{name}: reads back");
        json!({ "name": name, "content": shown(&content), "plaintext": text, "plaintext_hex": hex::encode(&*bytes) })
    })
    .collect();
    let key = conclave_protocol::b64::encode(fixed::<32>("read key"));
    let sha = conclave_protocol::b64::encode(fixed::<32>("read sha256"));
    let short_key = conclave_protocol::b64::encode([7u8; 31]);
    let file = |extra: &str| {
        format!(
            r#"{{"v":1,"type":"file","attachment_id":"0193a3c4-5e6f-7a80-9b1c-2d3e4f50f11e","name":"a.txt","size":5{extra}}}"#
        )
    };
    let read: Vec<Value> = [
        ("fields in another order, with whitespace", r#"{ "body" : "x", "type" : "text", "v" : 1 }"#.to_owned()),
        ("an unknown field (padding) is ignored", r#"{"v":1,"type":"text","body":"hi","pad":"        "}"#.to_owned()),
        ("an unknown type is shown as unsupported", r#"{"v":1,"type":"poll","question":"lunch?"}"#.to_owned()),
        ("another format version is unsupported", r#"{"v":2,"type":"text","body":"x"}"#.to_owned()),
        ("another format version is not read any further", r#"{"v":2,"body":7}"#.to_owned()),
        ("null is an absent field", r#"{"v":1,"type":"text","body":"x","media_type":null}"#.to_owned()),
        ("a file without media_type is application/octet-stream", file(&format!(r#","key":"{key}","sha256":"{sha}""#))),
        (
            "a file with every field",
            file(&format!(r#","media_type":"text/plain","key":"{key}","sha256":"{sha}","caption":"ignored""#)),
        ),
        ("not JSON", "hello".to_owned()),
        ("not an object", r#"["v",1]"#.to_owned()),
        ("an array of the fields in order is not an object", r#"[1,"text","hi"]"#.to_owned()),
        ("no v", r#"{"type":"text","body":"x"}"#.to_owned()),
        ("v is not an integer", r#"{"v":"1","type":"text","body":"x"}"#.to_owned()),
        ("no type", r#"{"v":1,"body":"x"}"#.to_owned()),
        ("a text without body", r#"{"v":1,"type":"text"}"#.to_owned()),
        ("a text whose body is null", r#"{"v":1,"type":"text","body":null}"#.to_owned()),
        (
            "a known field of the wrong type, even one its type does not use",
            r#"{"v":1,"type":"text","body":"x","size":"big"}"#.to_owned(),
        ),
        ("v is negative", r#"{"v":-1,"type":"text","body":"x"}"#.to_owned()),
        ("v is not an integer number", r#"{"v":1.0,"type":"text","body":"x"}"#.to_owned()),
        ("an unknown type with a known field of the wrong type", r#"{"v":1,"type":"poll","name":3}"#.to_owned()),
        ("a file without key", file(&format!(r#","sha256":"{sha}""#))),
        ("a file whose key is 31 bytes", file(&format!(r#","key":"{short_key}","sha256":"{sha}""#))),
        ("a file whose key is padded base64", file(&format!(r#","key":"{key}=","sha256":"{sha}""#))),
        ("a file without attachment_id", r#"{"v":1,"type":"file","name":"a","size":1}"#.to_owned()),
        (
            "a file whose attachment_id is not a UUID",
            file(&format!(r#","key":"{key}","sha256":"{sha}""#)).replace("f11e\"", "f11g\""),
        ),
        (
            "a file whose size is negative",
            file(&format!(r#","key":"{key}","sha256":"{sha}""#)).replace(r#""size":5"#, r#""size":-5"#),
        ),
    ]
    .into_iter()
    .map(|(name, plaintext)| {
        let mut vector = outcome(Content::decode(plaintext.as_bytes()));
        vector["name"] = json!(name);
        vector["plaintext"] = json!(plaintext);
        vector
    })
    .collect();
    json!({
        "description": "Conclave protocol v2, the content layer: the plaintext of an MLS application message that \
                        carries a message (docs/protocol-v2.md, \"Content layer\"). `written`: contents and the exact \
                        bytes a writer produces (`plaintext`, also as `plaintext_hex`). `read`: plaintexts and what a \
                        reader makes of each (`content`, `unsupported`, `unsupported_version` or `malformed`). \
                        `attachments`: files (byte i is i mod 251) encrypted under the key of the `file` content that \
                        lists them (docs/protocol.md, \"Attachments\"). Byte strings are lowercase hex.",
        "content_version": super::CONTENT_VERSION,
        "written": written,
        "read": read,
        "attachments": [small, empty, two_chunks],
    })
}

#[test]
fn the_committed_content_vectors_are_what_the_sdk_writes_and_reads() {
    let made = vectors();
    let committed: Value = serde_json::from_str(&check_committed("protocol-v2-content.json", &made)).expect("json");
    // Read back as an independent client would: every written plaintext decodes to its content,
    // and every file's blob, rebuilt from the rule, has the size and digest its content names.
    for vector in committed["written"].as_array().expect("written") {
        let bytes = hex::decode(vector["plaintext_hex"].as_str().expect("hex")).expect("hex");
        assert_eq!(vector["plaintext"].as_str().map(str::as_bytes), Some(&bytes[..]));
        assert_eq!(shown(&Content::decode(&bytes).expect("decodes")), vector["content"]);
    }
    for vector in committed["attachments"].as_array().expect("attachments") {
        let key: [u8; 32] = hex::decode(vector["key"].as_str().expect("key")).expect("hex").try_into().expect("32");
        let len = vector["plaintext_len"].as_u64().expect("len") as usize;
        let blob = attachment::encrypt_file(&FileKey::from_bytes(key), &file_bytes(len)).expect("encrypt");
        assert_eq!(hex::encode(Sha256::digest(&blob)), vector["blob_sha256"]);
        assert_eq!(&*attachment::decrypt_file(&FileKey::from_bytes(key), &blob).expect("opens"), &file_bytes(len)[..]);
    }
    let doc = include_str!("../../../docs/protocol-v2.md");
    let first = made["written"][0]["plaintext"].as_str().expect("plaintext");
    assert!(doc.contains(first), "docs/protocol-v2.md shows the first written plaintext verbatim");
}
