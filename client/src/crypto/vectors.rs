//! The committed test vectors of the cryptography around MLS.
//!
//! - `docs/test-vectors/protocol-v1.json`: the device-key layouts: the device's proof of
//!   possession of its key at registration (version 2), the sign-in proof (version 1, kept) and a
//!   bot's session proof (version 2).
//!   [`committed_vectors_match_the_implementation`] regenerates the file in memory and compares it
//!   byte for byte; [`committed_vectors_open_and_verify`] reads the file as an independent
//!   implementation would and verifies every signature. After an intentional protocol change,
//!   regenerate it with `cargo test -p conclave-client --lib -- --ignored regenerate_test_vectors`.
//! - `docs/test-vectors/protocol-v2-reaction.json`: the reaction layer, from an epoch's MLS
//!   exporter secret to the reaction key, the sealed reaction and its tag
//!   ([`the_committed_reaction_vectors_are_what_the_sdk_seals_and_opens`]; `crate::test_vectors`
//!   says how to rewrite it).
//!
//! Every input is fixed (secret keys, ids, nonces), so every output is deterministic: Ed25519
//! signatures are deterministic, and ChaCha20-Poly1305 with a fixed nonce is.

use conclave_protocol::layout;
use hkdf::Hkdf;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use uuid::Uuid;

use super::reaction::seal_reaction_with_nonce;
use super::*;
use crate::mls::REACTION_KEY_LABEL;
use crate::test_vectors::{check_committed, fixed, fixed_id};

const PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/test-vectors/protocol-v1.json");

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Vectors {
    description: String,
    protocol_version: u32,
    device_key: Vec<DeviceKeyVector>,
    login_proof: Vec<LoginProofVector>,
    bot_session_proof: Vec<BotSessionProofVector>,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct DeviceKeyVector {
    ed25519_secret_key: String,
    ed25519_public_key: String,
    input: String,
    signature: String,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct LoginProofVector {
    ed25519_secret_key: String,
    ed25519_public_key: String,
    email: String,
    device_id: Uuid,
    unix_seconds: u64,
    input: String,
    signature: String,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct BotSessionProofVector {
    ed25519_secret_key: String,
    ed25519_public_key: String,
    device_id: Uuid,
    unix_seconds: u64,
    input: String,
    signature: String,
}

fn device(name: &str) -> DeviceKeys {
    DeviceKeys::from_seed(&fixed(&format!("{name} ed25519")))
}

fn device_key_vector(name: &str) -> DeviceKeyVector {
    let device = device(name);
    DeviceKeyVector {
        ed25519_secret_key: hex::encode(*device.seed()),
        ed25519_public_key: hex::encode(device.public()),
        input: hex::encode(layout::device_key_input(&device.public())),
        signature: hex::encode(device.key_signature()),
    }
}

fn login_proof_vector(name: &str, email: &str, unix_seconds: u64) -> LoginProofVector {
    let device = device(name);
    let device_id = fixed_id(&format!("{name} device"));
    LoginProofVector {
        ed25519_secret_key: hex::encode(*device.seed()),
        ed25519_public_key: hex::encode(device.public()),
        email: email.to_owned(),
        device_id,
        unix_seconds,
        input: hex::encode(layout::login_proof_input(email, device_id, unix_seconds)),
        signature: hex::encode(device.login_proof(email, device_id, unix_seconds)),
    }
}

fn bot_session_proof_vector(name: &str, unix_seconds: u64) -> BotSessionProofVector {
    let device = device(name);
    let device_id = fixed_id(&format!("{name} device"));
    BotSessionProofVector {
        ed25519_secret_key: hex::encode(*device.seed()),
        ed25519_public_key: hex::encode(device.public()),
        device_id,
        unix_seconds,
        input: hex::encode(layout::bot_session_proof_input(device_id, unix_seconds)),
        signature: hex::encode(device.bot_session_signature(device_id, unix_seconds)),
    }
}

fn generate() -> Vectors {
    Vectors {
        description: "Conclave, the device-key layouts around MLS: the device's proof of possession of its key \
                      (version 2), the sign-in proof (version 1, kept) and a bot's session proof (version 2): deterministic test vectors. Byte strings \
                      are lowercase hex, UUIDs are in their hyphenated text form. Layouts and algorithms: \
                      docs/protocol.md. The reaction layer's vectors are in protocol-v2-reaction.json."
            .to_owned(),
        protocol_version: conclave_protocol::PROTOCOL_VERSION,
        device_key: vec![device_key_vector("alice"), device_key_vector("bob")],
        login_proof: vec![
            login_proof_vector("login-1", "alice@example.org", 1_764_763_200),
            login_proof_vector("login-2", "bob.o'neil+work@mail.example.co.uk", 4_102_444_800),
        ],
        bot_session_proof: vec![bot_session_proof_vector("bot-1", 1_764_763_200)],
    }
}

fn render(vectors: &Vectors) -> String {
    let mut json = serde_json::to_string_pretty(vectors).expect("vectors serialize");
    json.push('\n');
    json
}

fn committed() -> String {
    std::fs::read_to_string(PATH).expect("docs/test-vectors/protocol-v1.json is committed")
}

fn bytes(hex: &str) -> Vec<u8> {
    hex::decode(hex).expect("vectors hold hex")
}

fn array<const N: usize>(hex: &str) -> [u8; N] {
    bytes(hex).try_into().expect("a field of the expected length")
}

#[test]
#[ignore = "rewrites docs/test-vectors/protocol-v1.json; run only after an intentional protocol change"]
fn regenerate_test_vectors() {
    std::fs::write(PATH, render(&generate())).expect("write the vectors");
}

#[test]
fn committed_vectors_match_the_implementation() {
    // Compared as text, byte for byte: any change in a layout, an algorithm or an encoding fails.
    assert!(render(&generate()) == committed(), "the implementation no longer produces {PATH}; see vectors.rs");
}

#[test]
fn committed_vectors_open_and_verify() {
    let vectors: Vectors = serde_json::from_str(&committed()).expect("vectors parse");
    assert_eq!(vectors.protocol_version, 1);

    for v in &vectors.device_key {
        let public = DeviceKeys::from_seed(&array(&v.ed25519_secret_key)).public();
        assert_eq!(hex::encode(public), v.ed25519_public_key);
        assert_eq!(layout::device_key_input(&public), bytes(&v.input));
        verify_device_key(&public, &array(&v.signature)).expect("the proof verifies");
    }

    for v in &vectors.login_proof {
        let device = DeviceKeys::from_seed(&array(&v.ed25519_secret_key));
        assert_eq!(hex::encode(device.public()), v.ed25519_public_key);
        let input = layout::login_proof_input(&v.email, v.device_id, v.unix_seconds);
        assert_eq!(input, bytes(&v.input));
        super::device::verify(&array(&v.ed25519_public_key), &input, &array(&v.signature)).expect("proof verifies");
    }

    for v in &vectors.bot_session_proof {
        let device = DeviceKeys::from_seed(&array(&v.ed25519_secret_key));
        assert_eq!(hex::encode(device.public()), v.ed25519_public_key);
        let input = layout::bot_session_proof_input(v.device_id, v.unix_seconds);
        assert_eq!(input, bytes(&v.input));
        super::device::verify(&array(&v.ed25519_public_key), &input, &array(&v.signature)).expect("proof verifies");
    }
}

/// RFC 9420's variable-length vector prefix (section 2.1.2): the length as a QUIC varint.
fn mls_vector(bytes: &[u8]) -> Vec<u8> {
    let len = bytes.len();
    let mut out = match len {
        0..=63 => vec![len as u8],
        64..=16_383 => ((len as u16) | 0x4000).to_be_bytes().to_vec(),
        _ => ((len as u32) | 0x8000_0000).to_be_bytes().to_vec(),
    };
    out.extend_from_slice(bytes);
    out
}

/// The `KDFLabel` of RFC 9420 section 8: `uint16 length || opaque label<V> = "MLS 1.0 " + label
/// || opaque context<V>`, the `info` of `ExpandWithLabel`.
fn kdf_label(label: &str, context: &[u8], length: u16) -> Vec<u8> {
    let mut info = length.to_be_bytes().to_vec();
    info.extend(mls_vector(format!("MLS 1.0 {label}").as_bytes()));
    info.extend(mls_vector(context));
    info
}

fn expand_with_label(secret: &[u8], label: &str, context: &[u8], length: u16) -> Vec<u8> {
    let mut out = vec![0u8; usize::from(length)];
    Hkdf::<Sha256>::from_prk(secret)
        .expect("a 32-byte secret")
        .expand(&kdf_label(label, context, length), &mut out)
        .expect("within HKDF-SHA256's output limit");
    out
}

/// `MLS-Exporter(label, context, length)` of RFC 9420 section 8.5 for suite 0x0003 (SHA-256),
/// written from the RFC, for the vectors: the SDK's reaction keys come from openmls's
/// `export_secret`, which derives them the same way (openmls 0.9, `schedule::ExporterSecret::
/// derive_exported_secret`). Returns the `DeriveSecret` output and the exported secret.
fn mls_exporter(exporter_secret: &[u8], label: &str, context: &[u8], length: u16) -> (Vec<u8>, Vec<u8>) {
    // DeriveSecret(exporter_secret, label) = ExpandWithLabel(exporter_secret, label, "", Nh)
    let derived = expand_with_label(exporter_secret, label, b"", 32);
    let exported = expand_with_label(&derived, "exported", &Sha256::digest(context), length);
    (derived, exported)
}

fn reaction_vector(name: &str, epoch: u32, value: &str) -> Value {
    let conversation_id = fixed_id(&format!("{name} conversation"));
    let exporter_secret: [u8; 32] = fixed(&format!("{name} exporter secret"));
    let (derived, reaction_key) = mls_exporter(&exporter_secret, REACTION_KEY_LABEL, b"", 32);
    let key = ConversationKey::from_bytes(conversation_id, epoch, &reaction_key.try_into().expect("32 bytes"))
        .expect("a valid epoch");
    let (message_id, reactor_user_id) = (fixed_id(&format!("{name} message")), fixed_id(&format!("{name} reactor")));
    let sealed = seal_reaction_with_nonce(&key, message_id, reactor_user_id, value, fixed(&format!("{name} nonce")))
        .expect("seal");
    let mut tag_key = [0u8; 32];
    Hkdf::<Sha256>::new(None, key.expose_secret())
        .expand(layout::REACTION_TAG_KEY_INFO, &mut tag_key)
        .expect("32 bytes of HKDF output");
    json!({
        "conversation_id": conversation_id,
        "epoch": epoch,
        "exporter_secret": hex::encode(exporter_secret),
        "derive_secret_info": hex::encode(kdf_label(REACTION_KEY_LABEL, b"", 32)),
        "derived_secret": hex::encode(derived),
        "export_info": hex::encode(kdf_label("exported", &Sha256::digest(b""), 32)),
        "reaction_key": hex::encode(key.expose_secret()),
        "message_id": message_id,
        "reactor_user_id": reactor_user_id,
        "value": value,
        "value_hex": hex::encode(value),
        "tag_key": hex::encode(tag_key),
        "tag_input": hex::encode(layout::reaction_tag_input(message_id, reactor_user_id, value.as_bytes())),
        "value_tag": hex::encode(sealed.value_tag),
        "aad": hex::encode(layout::reaction_aad(conversation_id, epoch, message_id, reactor_user_id)),
        "nonce": hex::encode(sealed.nonce),
        "ciphertext": hex::encode(&sealed.ciphertext),
    })
}

fn reaction_vectors() -> Value {
    json!({
        "description": "Conclave protocol v2, the reaction layer (docs/protocol-v2.md, \"Reactions\"): from an epoch's \
                        MLS exporter_secret (RFC 9420 section 8) to its reaction key, MLS-Exporter(\"conclave/v2 \
                        reaction key\", \"\", 32), with the intermediate DeriveSecret output and both KDFLabel \
                        `info`s; then the reaction sealed under it (ChaCha20-Poly1305 with `aad`) and its value_tag \
                        (HMAC-SHA256 under `tag_key` = HKDF-SHA256(salt none, reaction_key, \"conclave/v1/reaction-tag\")). \
                        `epoch` is the reaction's key_generation. Byte strings are lowercase hex; `value` is the \
                        reaction as text (`value_hex` its UTF-8).",
        "exporter_label": REACTION_KEY_LABEL,
        "reactions": [
            reaction_vector("reaction-1", 1, "👍"),
            reaction_vector("reaction-2", 2, "🎉 party"),
            reaction_vector("reaction-3", 4_000_000, "a"),
        ],
    })
}

#[test]
fn the_committed_reaction_vectors_are_what_the_sdk_seals_and_opens() {
    let committed: Value =
        serde_json::from_str(&check_committed("protocol-v2-reaction.json", &reaction_vectors())).expect("json");
    // Opened through the SDK from the file alone, as a receiving device does, and refused once
    // moved to another message, user or epoch, or with another tag.
    for v in committed["reactions"].as_array().expect("reactions") {
        let field = |name: &str| v[name].as_str().expect(name).to_owned();
        let id = |name: &str| Uuid::parse_str(&field(name)).expect("uuid");
        let epoch = u32::try_from(v["epoch"].as_u64().expect("epoch")).expect("u32");
        let key =
            ConversationKey::from_bytes(id("conversation_id"), epoch, &array(&field("reaction_key"))).expect("key");
        let header = ReactionHeader {
            conversation_id: id("conversation_id"),
            generation: epoch,
            message_id: id("message_id"),
            reactor_user_id: id("reactor_user_id"),
        };
        let sealed = SealedReaction {
            nonce: array(&field("nonce")),
            ciphertext: bytes(&field("ciphertext")),
            value_tag: array(&field("value_tag")),
        };
        assert_eq!(open_reaction(&key, &header, &sealed).expect("opens"), field("value"));
        let other = Uuid::from_u128(7);
        for moved in
            [ReactionHeader { message_id: other, ..header }, ReactionHeader { reactor_user_id: other, ..header }]
        {
            assert_eq!(open_reaction(&key, &moved, &sealed), Err(CryptoError::DecryptionFailed));
        }
        let next_epoch =
            ConversationKey::from_bytes(header.conversation_id, epoch + 1, key.expose_secret()).expect("key");
        let in_next_epoch = ReactionHeader { generation: epoch + 1, ..header };
        assert_eq!(open_reaction(&next_epoch, &in_next_epoch, &sealed), Err(CryptoError::DecryptionFailed));
        let forged_tag = SealedReaction { value_tag: [0; 32], ..sealed };
        assert_eq!(open_reaction(&key, &header, &forged_tag), Err(CryptoError::ValueTagMismatch));
    }
}
