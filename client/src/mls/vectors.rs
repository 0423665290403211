//! The committed vectors of protocol v2's own parts, `docs/test-vectors/protocol-v2-identity.json`,
//! made by `docs/test-vectors/protocol-v2-identity.py`: an implementation written from
//! docs/protocol.md with Python's `cryptography`, not from this code. The SDK must produce the
//! same bytes (Ed25519 is deterministic) and accept them.

use serde::Deserialize;
use uuid::Uuid;

use super::identity::{DeviceCredential, IdentityKey, IdentityPublicKey};
use super::safety;

const VECTORS: &str = include_str!("../../../docs/test-vectors/protocol-v2-identity.json");

#[derive(Deserialize)]
struct Vectors {
    identity_seed: String,
    identity_public: String,
    leaf_seed: String,
    leaf_public: String,
    user_id: Uuid,
    device_id: Uuid,
    credential: String,
    other_user_id: Uuid,
    other_identity_seed: String,
    fingerprint: String,
    other_fingerprint: String,
    safety_number: String,
}

fn bytes32(hex_text: &str) -> [u8; 32] {
    hex::decode(hex_text).expect("hex").try_into().expect("32 bytes")
}

#[test]
fn the_sdk_makes_and_accepts_the_independent_credential() {
    let v: Vectors = serde_json::from_str(VECTORS).expect("vectors");
    let identity = IdentityKey::from_seed(&bytes32(&v.identity_seed));
    assert_eq!(hex::encode(identity.public().0), v.identity_public);
    let leaf = ed25519_dalek::SigningKey::from_bytes(&bytes32(&v.leaf_seed)).verifying_key().to_bytes();
    assert_eq!(hex::encode(leaf), v.leaf_public);
    let made = identity.certify(v.user_id, v.device_id, &leaf);
    assert_eq!(hex::encode(made.encode()), v.credential);
    let parsed = DeviceCredential::decode(&hex::decode(&v.credential).expect("hex")).expect("decode");
    assert_eq!(parsed, made);
    parsed.verify(&leaf).expect("verifies");
}

#[test]
fn the_sdk_computes_the_independent_safety_number() {
    let v: Vectors = serde_json::from_str(VECTORS).expect("vectors");
    let mine = IdentityPublicKey(bytes32(&v.identity_public));
    let theirs = IdentityKey::from_seed(&bytes32(&v.other_identity_seed)).public();
    assert_eq!(safety::fingerprint(v.user_id, &mine), v.fingerprint);
    assert_eq!(safety::fingerprint(v.other_user_id, &theirs), v.other_fingerprint);
    assert_eq!(safety::safety_number((v.user_id, &mine), (v.other_user_id, &theirs)), v.safety_number);
    assert_eq!(safety::safety_number((v.other_user_id, &theirs), (v.user_id, &mine)), v.safety_number);
}
