//! Behaviour of the public API: round trips, and the specific error for each kind of tampering.

use conclave_protocol::limits;
use uuid::Uuid;

use super::*;

fn device() -> DeviceKeys {
    DeviceKeys::generate().expect("system randomness")
}

fn key(conversation_id: Uuid, generation: u32) -> ConversationKey {
    ConversationKey::generate(conversation_id, generation).expect("system randomness")
}

fn flip_first_bit(bytes: &mut [u8]) {
    bytes[0] ^= 0x01;
}

#[test]
fn a_device_key_proof_verifies_against_its_key_only() {
    let (device, other) = (device(), device());
    verify_device_key(&device.public(), &device.key_signature()).expect("valid proof");
    assert_eq!(verify_device_key(&other.public(), &device.key_signature()), Err(CryptoError::BadSignature));
    // A signature by the key over anything else (here a sign-in proof) is not a proof of it.
    let login = device.login_proof("a@example.org", Uuid::nil(), 1);
    assert_eq!(verify_device_key(&device.public(), &login), Err(CryptoError::BadSignature));
}

#[test]
fn generation_zero_is_refused() {
    assert_eq!(ConversationKey::generate(Uuid::new_v4(), 0).map(|_| ()), Err(CryptoError::InvalidGeneration(0)));
    assert_eq!(
        ConversationKey::from_bytes(Uuid::new_v4(), 0, &[1; 32]).map(|_| ()),
        Err(CryptoError::InvalidGeneration(0))
    );
}

fn reaction_header(key: &ConversationKey) -> ReactionHeader {
    ReactionHeader {
        conversation_id: key.conversation_id(),
        generation: key.generation(),
        message_id: Uuid::new_v4(),
        reactor_user_id: Uuid::new_v4(),
    }
}

#[test]
fn a_sealed_reaction_opens_to_its_value() {
    let key = key(Uuid::new_v4(), 1);
    let header = reaction_header(&key);
    let sealed = seal_reaction(&key, header.message_id, header.reactor_user_id, "👍").expect("seal");
    assert_eq!(open_reaction(&key, &header, &sealed).expect("open"), "👍");
    assert_eq!(sealed.value_tag, reaction_value_tag(&key, header.message_id, header.reactor_user_id, "👍"));
}

#[test]
fn the_value_tag_is_equal_only_for_the_same_message_user_value_and_key() {
    let key = key(Uuid::new_v4(), 1);
    let (message, user) = (Uuid::new_v4(), Uuid::new_v4());
    let tag = reaction_value_tag(&key, message, user, "👍");
    let again = seal_reaction(&key, message, user, "👍").expect("seal");
    assert_eq!(again.value_tag, tag, "the server sees a duplicate");
    assert_ne!(reaction_value_tag(&key, message, user, "👎"), tag);
    assert_ne!(reaction_value_tag(&key, Uuid::new_v4(), user, "👍"), tag);
    assert_ne!(reaction_value_tag(&key, message, Uuid::new_v4(), "👍"), tag);
    let next = ConversationKey::generate(key.conversation_id(), 2).expect("randomness");
    assert_ne!(reaction_value_tag(&next, message, user, "👍"), tag);
}

#[test]
fn a_tampered_or_moved_reaction_is_rejected() {
    let key = key(Uuid::new_v4(), 1);
    let header = reaction_header(&key);
    let sealed = seal_reaction(&key, header.message_id, header.reactor_user_id, "🎉").expect("seal");

    let mut tampered = sealed.clone();
    flip_first_bit(&mut tampered.ciphertext);
    assert_eq!(open_reaction(&key, &header, &tampered), Err(CryptoError::DecryptionFailed));

    let moved = ReactionHeader { message_id: Uuid::new_v4(), ..header };
    assert_eq!(open_reaction(&key, &moved, &sealed), Err(CryptoError::DecryptionFailed));
    let misattributed = ReactionHeader { reactor_user_id: Uuid::new_v4(), ..header };
    assert_eq!(open_reaction(&key, &misattributed, &sealed), Err(CryptoError::DecryptionFailed));

    let mut forged_tag = sealed;
    flip_first_bit(&mut forged_tag.value_tag);
    assert_eq!(open_reaction(&key, &header, &forged_tag), Err(CryptoError::ValueTagMismatch));
}

#[test]
fn empty_or_oversized_reactions_are_refused() {
    let key = key(Uuid::new_v4(), 1);
    let (message, user) = (Uuid::new_v4(), Uuid::new_v4());
    assert_eq!(seal_reaction(&key, message, user, ""), Err(CryptoError::EmptyReaction));
    let largest = "a".repeat(limits::MAX_REACTION_VALUE_LEN);
    let sealed = seal_reaction(&key, message, user, &largest).expect("largest value fits");
    assert_eq!(sealed.ciphertext.len(), limits::MAX_REACTION_CIPHERTEXT_LEN);
    assert!(matches!(seal_reaction(&key, message, user, &format!("{largest}a")), Err(CryptoError::TooLarge { .. })));
}

#[test]
fn debug_output_of_keys_shows_no_secret() {
    let device = device();
    let key = key(Uuid::new_v4(), 1);
    let seed = device.seed();
    let debug = format!("{device:?} {key:?}");
    for secret in [&*seed, key.expose_secret()] {
        assert!(!debug.contains(&format!("{secret:?}")), "{debug}");
        assert!(!debug.contains(&conclave_protocol::b64::encode(secret)), "{debug}");
    }
}
