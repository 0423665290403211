//! The committed test vectors, `docs/test-vectors/protocol-v1.json`.
//!
//! The device-key layouts around MLS: the device's proof of possession of its key at registration
//! (version 2), and what version 2 kept of version 1: sign-in proof, reaction sealing and tag (under the key MLS exports for an epoch). Every input is fixed (secret keys,
//! ids, nonces), so every output is deterministic: Ed25519 signatures are deterministic, and
//! ChaCha20-Poly1305 with a fixed nonce is. [`committed_vectors_match_the_implementation`]
//! regenerates the file in memory and compares it byte for byte; [`committed_vectors_open_and_verify`]
//! reads the file as an independent implementation would and checks every output through the
//! opening side. After an intentional protocol change, regenerate with:
//!
//! ```sh
//! cargo test -p conclave-client --lib -- --ignored regenerate_test_vectors
//! ```

use conclave_protocol::layout;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use uuid::Uuid;

use super::reaction::seal_reaction_with_nonce;
use super::*;

const PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/test-vectors/protocol-v1.json");

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Vectors {
    description: String,
    protocol_version: u32,
    device_key: Vec<DeviceKeyVector>,
    reaction: Vec<ReactionVector>,
    login_proof: Vec<LoginProofVector>,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct DeviceKeyVector {
    ed25519_secret_key: String,
    ed25519_public_key: String,
    input: String,
    signature: String,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct ReactionVector {
    conversation_id: Uuid,
    generation: u32,
    conversation_key: String,
    message_id: Uuid,
    reactor_user_id: Uuid,
    value: String,
    tag_key: String,
    tag_input: String,
    value_tag: String,
    aad: String,
    nonce: String,
    ciphertext: String,
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

/// Fixed input bytes, different for every name: the first `N` bytes of SHA-256("conclave test
/// vector " || name). The file records the bytes themselves, so nobody needs this derivation.
fn fixed<const N: usize>(name: &str) -> [u8; N] {
    let digest = Sha256::digest(format!("conclave test vector {name}"));
    let mut out = [0u8; N];
    out.copy_from_slice(&digest[..N]);
    out
}

fn fixed_id(name: &str) -> Uuid {
    uuid::Builder::from_random_bytes(fixed(name)).into_uuid()
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

fn reaction_vector(name: &str, generation: u32, value: &str) -> ReactionVector {
    let conversation_id = fixed_id(&format!("{name} conversation"));
    let key = ConversationKey::from_bytes(conversation_id, generation, &fixed(&format!("{name} key")))
        .expect("valid generation");
    let (message_id, reactor_user_id) = (fixed_id(&format!("{name} message")), fixed_id(&format!("{name} reactor")));
    let nonce = fixed(&format!("{name} nonce"));
    let sealed = seal_reaction_with_nonce(&key, message_id, reactor_user_id, value, nonce).expect("seal");
    let mut tag_key = [0u8; 32];
    hkdf::Hkdf::<Sha256>::new(None, key.expose_secret())
        .expand(layout::REACTION_TAG_KEY_INFO, &mut tag_key)
        .expect("32 bytes of HKDF output");
    ReactionVector {
        conversation_id,
        generation,
        conversation_key: hex::encode(key.expose_secret()),
        message_id,
        reactor_user_id,
        value: value.to_owned(),
        tag_key: hex::encode(tag_key),
        tag_input: hex::encode(layout::reaction_tag_input(message_id, reactor_user_id, value.as_bytes())),
        value_tag: hex::encode(sealed.value_tag),
        aad: hex::encode(layout::reaction_aad(conversation_id, generation, message_id, reactor_user_id)),
        nonce: hex::encode(sealed.nonce),
        ciphertext: hex::encode(&sealed.ciphertext),
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

fn generate() -> Vectors {
    Vectors {
        description: "Conclave, the device-key layouts around MLS (the device's proof of possession of its key, \
                      version 2) and the layouts of protocol version 1 that version 2 keeps: deterministic test \
                      vectors. Byte strings are lowercase hex, UUIDs are in their hyphenated text form, and `value` \
                      is the reaction as text. Layouts and algorithms: docs/protocol.md; in version 2 a reaction's \
                      `conversation_key` is the epoch's MLS-exported reaction key (docs/protocol-v2.md)."
            .to_owned(),
        protocol_version: conclave_protocol::PROTOCOL_VERSION,
        device_key: vec![device_key_vector("alice"), device_key_vector("bob")],
        reaction: vec![reaction_vector("reaction-1", 1, "👍"), reaction_vector("reaction-2", 2, "🎉 party")],
        login_proof: vec![
            login_proof_vector("login-1", "alice@example.org", 1_764_763_200),
            login_proof_vector("login-2", "bob.o'neil+work@mail.example.co.uk", 4_102_444_800),
        ],
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

    for v in &vectors.reaction {
        let key = ConversationKey::from_bytes(v.conversation_id, v.generation, &array(&v.conversation_key))
            .expect("valid generation");
        let header = ReactionHeader {
            conversation_id: v.conversation_id,
            generation: v.generation,
            message_id: v.message_id,
            reactor_user_id: v.reactor_user_id,
        };
        assert_eq!(header.aad(), bytes(&v.aad));
        assert_eq!(
            layout::reaction_tag_input(v.message_id, v.reactor_user_id, v.value.as_bytes()),
            bytes(&v.tag_input)
        );
        let sealed =
            SealedReaction { nonce: array(&v.nonce), ciphertext: bytes(&v.ciphertext), value_tag: array(&v.value_tag) };
        assert_eq!(open_reaction(&key, &header, &sealed).expect("opens"), v.value);
    }

    for v in &vectors.login_proof {
        let device = DeviceKeys::from_seed(&array(&v.ed25519_secret_key));
        assert_eq!(hex::encode(device.public()), v.ed25519_public_key);
        let input = layout::login_proof_input(&v.email, v.device_id, v.unix_seconds);
        assert_eq!(input, bytes(&v.input));
        super::device::verify(&array(&v.ed25519_public_key), &input, &array(&v.signature)).expect("proof verifies");
    }
}
