//! The committed test vectors, `docs/test-vectors/protocol-v1.json`.
//!
//! Every input is fixed (secret keys, ids, HPKE's ephemeral input keying material, nonces), so
//! every output is deterministic: Ed25519 signatures are deterministic, ChaCha20-Poly1305 with a
//! fixed nonce is, and HPKE is once its ephemeral key is. [`committed_vectors_match_the_implementation`]
//! regenerates the file in memory and compares it byte for byte; [`committed_vectors_open_and_verify`]
//! reads the file as an independent implementation would and checks every output through the
//! opening side. After an intentional protocol change, regenerate with:
//!
//! ```sh
//! cargo test -p conclave-client --lib -- --ignored regenerate_test_vectors
//! ```

use std::convert::Infallible;

use conclave_protocol::layout;
use hpke::rand_core::{TryCryptoRng, TryRng};
use hpke::{Kem as _, Serializable as _};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use uuid::Uuid;

use super::keys::wrap_with_rng;
use super::message::seal_message_with_nonce;
use super::reaction::seal_reaction_with_nonce;
use super::suite::Kem;
use super::*;

const PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/test-vectors/protocol-v1.json");

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Vectors {
    description: String,
    protocol_version: u32,
    device_binding: Vec<DeviceBindingVector>,
    key_wrap: Vec<KeyWrapVector>,
    message: Vec<MessageVector>,
    reaction: Vec<ReactionVector>,
    login_proof: Vec<LoginProofVector>,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct DeviceBindingVector {
    x25519_secret_key: String,
    x25519_public_key: String,
    ed25519_secret_key: String,
    ed25519_public_key: String,
    input: String,
    signature: String,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct KeyWrapVector {
    conversation_id: Uuid,
    generation: u32,
    conversation_key: String,
    recipient_x25519_secret_key: String,
    recipient_x25519_public_key: String,
    ikm_e: String,
    ephemeral_secret_key: String,
    info: String,
    aad: String,
    encapsulated_key: String,
    wrapped_key: String,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct MessageVector {
    conversation_id: Uuid,
    generation: u32,
    conversation_key: String,
    sender_device_id: Uuid,
    client_message_id: Uuid,
    sender_ed25519_secret_key: String,
    sender_ed25519_public_key: String,
    plaintext: String,
    aad: String,
    nonce: String,
    ciphertext: String,
    signature_input: String,
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
    DeviceKeys::from_secret_bytes(&fixed(&format!("{name} x25519")), &fixed(&format!("{name} ed25519")))
}

/// Hands HPKE a fixed `ikmE`, so the ephemeral key, and with it the whole wrap, is fixed.
struct FixedIkm(Vec<u8>);

impl TryRng for FixedIkm {
    type Error = Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        let mut bytes = [0; 4];
        self.try_fill_bytes(&mut bytes)?;
        Ok(u32::from_le_bytes(bytes))
    }

    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        let mut bytes = [0; 8];
        self.try_fill_bytes(&mut bytes)?;
        Ok(u64::from_le_bytes(bytes))
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        assert!(dst.len() <= self.0.len(), "HPKE asked for more than the fixed ikmE");
        dst.copy_from_slice(&self.0.drain(..dst.len()).collect::<Vec<_>>());
        Ok(())
    }
}

impl TryCryptoRng for FixedIkm {}

fn device_binding_vector(name: &str) -> DeviceBindingVector {
    let device = device(name);
    let public = device.public();
    let (x25519_secret, ed25519_secret) = device.secret_bytes();
    DeviceBindingVector {
        x25519_secret_key: hex::encode(*x25519_secret),
        x25519_public_key: hex::encode(public.x25519),
        ed25519_secret_key: hex::encode(*ed25519_secret),
        ed25519_public_key: hex::encode(public.ed25519),
        input: hex::encode(layout::device_binding_input(&public.x25519, &public.ed25519)),
        signature: hex::encode(device.binding_signature()),
    }
}

fn key_wrap_vector(name: &str, generation: u32) -> KeyWrapVector {
    let conversation_id = fixed_id(&format!("{name} conversation"));
    let key = ConversationKey::from_bytes(conversation_id, generation, &fixed(&format!("{name} key")))
        .expect("valid generation");
    let recipient = device(&format!("{name} recipient"));
    let ikm_e: [u8; 32] = fixed(&format!("{name} ikmE"));
    let (ephemeral_secret, _) = Kem::derive_keypair(&ikm_e);
    let wrap = wrap_with_rng(&key, &recipient.public().x25519, &mut FixedIkm(ikm_e.to_vec())).expect("wrap");
    KeyWrapVector {
        conversation_id,
        generation,
        conversation_key: hex::encode(key.expose_secret()),
        recipient_x25519_secret_key: hex::encode(*recipient.secret_bytes().0),
        recipient_x25519_public_key: hex::encode(recipient.public().x25519),
        ikm_e: hex::encode(ikm_e),
        ephemeral_secret_key: hex::encode(ephemeral_secret.to_bytes()),
        info: hex::encode(layout::key_wrap_info(conversation_id, generation)),
        aad: hex::encode(layout::KEY_WRAP_AAD),
        encapsulated_key: hex::encode(wrap.encapsulated_key),
        wrapped_key: hex::encode(wrap.wrapped_key),
    }
}

fn message_vector(name: &str, generation: u32, plaintext: &[u8]) -> MessageVector {
    let conversation_id = fixed_id(&format!("{name} conversation"));
    let key = ConversationKey::from_bytes(conversation_id, generation, &fixed(&format!("{name} key")))
        .expect("valid generation");
    let sender = device(&format!("{name} sender"));
    let (sender_device_id, client_message_id) =
        (fixed_id(&format!("{name} sender device")), fixed_id(&format!("{name} client message")));
    let nonce = fixed(&format!("{name} nonce"));
    let sealed =
        seal_message_with_nonce(&key, &sender, sender_device_id, client_message_id, plaintext, nonce).expect("seal");
    let aad = layout::message_aad(conversation_id, generation, sender_device_id, client_message_id);
    MessageVector {
        conversation_id,
        generation,
        conversation_key: hex::encode(key.expose_secret()),
        sender_device_id,
        client_message_id,
        sender_ed25519_secret_key: hex::encode(*sender.secret_bytes().1),
        sender_ed25519_public_key: hex::encode(sender.public().ed25519),
        plaintext: hex::encode(plaintext),
        aad: hex::encode(&aad),
        nonce: hex::encode(sealed.nonce),
        ciphertext: hex::encode(&sealed.ciphertext),
        signature_input: hex::encode(layout::message_signature_input(&aad, &sealed.nonce, &sealed.ciphertext)),
        signature: hex::encode(sealed.signature),
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
        ed25519_secret_key: hex::encode(*device.secret_bytes().1),
        ed25519_public_key: hex::encode(device.public().ed25519),
        email: email.to_owned(),
        device_id,
        unix_seconds,
        input: hex::encode(layout::login_proof_input(email, device_id, unix_seconds)),
        signature: hex::encode(device.login_proof(email, device_id, unix_seconds)),
    }
}

fn generate() -> Vectors {
    Vectors {
        description: "Conclave end-to-end encryption, protocol version 1: deterministic test vectors. Byte strings \
                      are lowercase hex, UUIDs are in their hyphenated text form, and `value` is the reaction as \
                      text. Layouts and algorithms: docs/protocol.md."
            .to_owned(),
        protocol_version: conclave_protocol::PROTOCOL_VERSION,
        device_binding: vec![device_binding_vector("alice"), device_binding_vector("bob")],
        key_wrap: vec![key_wrap_vector("wrap-1", 1), key_wrap_vector("wrap-2", 0x0102_0304)],
        message: vec![
            message_vector("message-1", 1, b""),
            message_vector("message-2", 7, "{\"text\":\"Bonjour à tous 👋\"}".as_bytes()),
        ],
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

    for v in &vectors.device_binding {
        let device = DeviceKeys::from_secret_bytes(&array(&v.x25519_secret_key), &array(&v.ed25519_secret_key));
        let public = device.public();
        assert_eq!(
            (hex::encode(public.x25519), hex::encode(public.ed25519)),
            (v.x25519_public_key.clone(), v.ed25519_public_key.clone())
        );
        assert_eq!(layout::device_binding_input(&public.x25519, &public.ed25519), bytes(&v.input));
        verify_device_binding(&public, &array(&v.signature)).expect("binding signature verifies");
    }

    for v in &vectors.key_wrap {
        let recipient = DeviceKeys::from_secret_bytes(&array(&v.recipient_x25519_secret_key), &[0; 32]);
        assert_eq!(hex::encode(recipient.public().x25519), v.recipient_x25519_public_key);
        assert_eq!(layout::key_wrap_info(v.conversation_id, v.generation), bytes(&v.info));
        let (_, ephemeral_public) = Kem::derive_keypair(&bytes(&v.ikm_e));
        assert_eq!(hex::encode(ephemeral_public.to_bytes()), v.encapsulated_key, "enc is pkE = DeriveKeyPair(ikmE)");
        let wrap = Wrap { encapsulated_key: array(&v.encapsulated_key), wrapped_key: array(&v.wrapped_key) };
        let key = unwrap_key(&wrap, v.conversation_id, v.generation, &recipient).expect("wrap opens");
        assert_eq!(hex::encode(key.expose_secret()), v.conversation_key);
    }

    for v in &vectors.message {
        let key = ConversationKey::from_bytes(v.conversation_id, v.generation, &array(&v.conversation_key))
            .expect("valid generation");
        let header = MessageHeader {
            conversation_id: v.conversation_id,
            generation: v.generation,
            sender_device_id: v.sender_device_id,
            client_message_id: v.client_message_id,
        };
        assert_eq!(header.aad(), bytes(&v.aad));
        assert_eq!(
            layout::message_signature_input(&header.aad(), &bytes(&v.nonce), &bytes(&v.ciphertext)),
            bytes(&v.signature_input)
        );
        let sender = DeviceKeys::from_secret_bytes(&[0; 32], &array(&v.sender_ed25519_secret_key));
        assert_eq!(hex::encode(sender.public().ed25519), v.sender_ed25519_public_key);
        let sealed =
            SealedMessage { nonce: array(&v.nonce), ciphertext: bytes(&v.ciphertext), signature: array(&v.signature) };
        let plaintext = open_message(&key, &header, &sealed, &array(&v.sender_ed25519_public_key)).expect("opens");
        assert_eq!(hex::encode(&*plaintext), v.plaintext);
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
        let device = DeviceKeys::from_secret_bytes(&[0; 32], &array(&v.ed25519_secret_key));
        assert_eq!(hex::encode(device.public().ed25519), v.ed25519_public_key);
        let input = layout::login_proof_input(&v.email, v.device_id, v.unix_seconds);
        assert_eq!(input, bytes(&v.input));
        super::device::verify(&array(&v.ed25519_public_key), &input, &array(&v.signature)).expect("proof verifies");
    }
}
