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

/// A sealed message with everything needed to open it.
struct Sent {
    key: ConversationKey,
    sender: DeviceKeys,
    header: MessageHeader,
    sealed: SealedMessage,
}

fn sent(plaintext: &[u8]) -> Sent {
    let key = key(Uuid::new_v4(), 3);
    let sender = device();
    let header = MessageHeader {
        conversation_id: key.conversation_id(),
        generation: key.generation(),
        sender_device_id: Uuid::new_v4(),
        client_message_id: Uuid::new_v4(),
    };
    let sealed =
        seal_message(&key, &sender, header.sender_device_id, header.client_message_id, plaintext).expect("seal");
    Sent { key, sender, header, sealed }
}

impl Sent {
    fn open(&self) -> Result<Vec<u8>, CryptoError> {
        open_message(&self.key, &self.header, &self.sealed, &self.sender.public().ed25519).map(|p| p.to_vec())
    }
}

fn flip_first_bit(bytes: &mut [u8]) {
    bytes[0] ^= 0x01;
}

#[test]
fn a_device_binding_signature_verifies_against_its_public_keys() {
    let device = device();
    verify_device_binding(&device.public(), &device.binding_signature()).expect("valid binding");
}

#[test]
fn a_binding_signature_does_not_vouch_for_another_x25519_key() {
    let (device, other) = (device(), device());
    let mut public = device.public();
    public.x25519 = other.public().x25519;
    assert_eq!(verify_device_binding(&public, &device.binding_signature()), Err(CryptoError::BadSignature));
}

#[test]
fn a_wrapped_key_unwraps_to_the_same_key_for_its_recipient() {
    let (key, recipient) = (key(Uuid::new_v4(), 1), device());
    let wrap = wrap_for_device(&key, &recipient.public().x25519).expect("wrap");
    let unwrapped = unwrap_key(&wrap, key.conversation_id(), 1, &recipient).expect("unwrap");
    assert_eq!(unwrapped.expose_secret(), key.expose_secret());
    assert_eq!((unwrapped.conversation_id(), unwrapped.generation()), (key.conversation_id(), 1));
}

#[test]
fn a_wrap_opens_only_for_its_conversation_and_generation() {
    let (key, recipient) = (key(Uuid::new_v4(), 4), device());
    let wrap = wrap_for_device(&key, &recipient.public().x25519).expect("wrap");
    assert_eq!(unwrap_key(&wrap, Uuid::new_v4(), 4, &recipient).map(|_| ()), Err(CryptoError::UnwrapFailed));
    assert_eq!(unwrap_key(&wrap, key.conversation_id(), 5, &recipient).map(|_| ()), Err(CryptoError::UnwrapFailed));
}

#[test]
fn a_tampered_wrap_is_rejected() {
    let (key, recipient) = (key(Uuid::new_v4(), 1), device());
    let wrap = wrap_for_device(&key, &recipient.public().x25519).expect("wrap");
    let mut bad_enc = wrap;
    flip_first_bit(&mut bad_enc.encapsulated_key);
    let mut bad_key = wrap;
    bad_key.wrapped_key[47] ^= 0x80;
    for tampered in [bad_enc, bad_key] {
        assert_eq!(
            unwrap_key(&tampered, key.conversation_id(), 1, &recipient).map(|_| ()),
            Err(CryptoError::UnwrapFailed)
        );
    }
}

#[test]
fn wrapping_for_a_small_order_public_key_is_refused() {
    let key = key(Uuid::new_v4(), 1);
    assert_eq!(wrap_for_device(&key, &[0; 32]), Err(CryptoError::InvalidPublicKey));
}

#[test]
fn removed_device_cannot_unwrap_or_read_the_next_generation() {
    let conversation = Uuid::new_v4();
    let (alice, bob_laptop, bob_phone) = (device(), device(), device());
    let first = key(conversation, 1);
    let phone_wrap = wrap_for_device(&first, &bob_phone.public().x25519).expect("wrap");
    let phone_first = unwrap_key(&phone_wrap, conversation, 1, &bob_phone).expect("a member device reads gen 1");

    // Bob's phone is revoked: generation 2 is wrapped for the remaining devices only.
    let second = key(conversation, 2);
    let wraps: Vec<Wrap> =
        [&alice, &bob_laptop].iter().map(|d| wrap_for_device(&second, &d.public().x25519).expect("wrap")).collect();
    for wrap in &wraps {
        assert_eq!(unwrap_key(wrap, conversation, 2, &bob_phone).map(|_| ()), Err(CryptoError::UnwrapFailed));
    }
    let laptop_second = unwrap_key(&wraps[1], conversation, 2, &bob_laptop).expect("remaining device reads gen 2");
    assert_eq!(laptop_second.expose_secret(), second.expose_secret());

    // A message of generation 2 is out of the phone's reach, even by relabelling its old key.
    let header = MessageHeader {
        conversation_id: conversation,
        generation: 2,
        sender_device_id: Uuid::new_v4(),
        client_message_id: Uuid::new_v4(),
    };
    let sealed =
        seal_message(&second, &alice, header.sender_device_id, header.client_message_id, b"after").expect("seal");
    let ed25519 = alice.public().ed25519;
    assert_eq!(
        open_message(&phone_first, &header, &sealed, &ed25519).map(|_| ()),
        Err(CryptoError::WrongGeneration { key: 1, message: 2 })
    );
    let relabelled = ConversationKey::from_bytes(conversation, 2, phone_first.expose_secret()).expect("valid");
    assert_eq!(open_message(&relabelled, &header, &sealed, &ed25519).map(|_| ()), Err(CryptoError::DecryptionFailed));
    assert_eq!(&*open_message(&laptop_second, &header, &sealed, &ed25519).expect("open"), b"after");
}

#[test]
fn a_sealed_message_opens_to_its_plaintext() {
    let sent = sent("bonjour 👋".as_bytes());
    assert_eq!(sent.open().expect("open"), "bonjour 👋".as_bytes());
    verify_message_signature(&sent.header, &sent.sealed, &sent.sender.public().ed25519).expect("server-side check");
}

#[test]
fn tampered_ciphertext_is_rejected() {
    let mut sent = sent(b"hello");
    flip_first_bit(&mut sent.sealed.ciphertext);
    assert_eq!(sent.open(), Err(CryptoError::BadSignature));
}

#[test]
fn tampered_nonce_is_rejected() {
    let mut sent = sent(b"hello");
    flip_first_bit(&mut sent.sealed.nonce);
    assert_eq!(sent.open(), Err(CryptoError::BadSignature));
}

#[test]
fn tampered_signature_is_rejected() {
    let mut sent = sent(b"hello");
    flip_first_bit(&mut sent.sealed.signature);
    assert_eq!(sent.open(), Err(CryptoError::BadSignature));
}

#[test]
fn tampered_associated_data_is_rejected() {
    let mut replayed = sent(b"hello");
    replayed.header.client_message_id = Uuid::new_v4();
    assert_eq!(replayed.open(), Err(CryptoError::BadSignature));
    let mut misattributed = sent(b"hello");
    misattributed.header.sender_device_id = Uuid::new_v4();
    assert_eq!(misattributed.open(), Err(CryptoError::BadSignature));
}

#[test]
fn a_message_signed_by_another_device_is_rejected() {
    let sent = sent(b"hello");
    let impostor = device();
    assert_eq!(
        open_message(&sent.key, &sent.header, &sent.sealed, &impostor.public().ed25519).map(|_| ()),
        Err(CryptoError::BadSignature)
    );
}

#[test]
fn a_correctly_signed_message_under_another_key_fails_to_decrypt() {
    let sent = sent(b"hello");
    let other = key(sent.key.conversation_id(), sent.key.generation());
    assert_eq!(
        open_message(&other, &sent.header, &sent.sealed, &sent.sender.public().ed25519).map(|_| ()),
        Err(CryptoError::DecryptionFailed)
    );
}

#[test]
fn the_key_of_another_generation_or_conversation_is_refused_before_any_decryption() {
    let sent = sent(b"hello");
    let ed25519 = sent.sender.public().ed25519;
    let older = key(sent.key.conversation_id(), 2);
    assert_eq!(
        open_message(&older, &sent.header, &sent.sealed, &ed25519).map(|_| ()),
        Err(CryptoError::WrongGeneration { key: 2, message: 3 })
    );
    let elsewhere = key(Uuid::new_v4(), 3);
    assert_eq!(
        open_message(&elsewhere, &sent.header, &sent.sealed, &ed25519).map(|_| ()),
        Err(CryptoError::WrongConversation)
    );
}

#[test]
fn ciphertext_sizes_stay_within_the_server_limits() {
    assert_eq!(sent(b"").sealed.ciphertext.len(), limits::AEAD_TAG_LEN);
    let largest = vec![0x61; limits::MAX_MESSAGE_PLAINTEXT_LEN];
    assert_eq!(sent(&largest).sealed.ciphertext.len(), limits::MAX_MESSAGE_CIPHERTEXT_LEN);
    let key = key(Uuid::new_v4(), 1);
    let too_large = vec![0x61; limits::MAX_MESSAGE_PLAINTEXT_LEN + 1];
    assert_eq!(
        seal_message(&key, &device(), Uuid::new_v4(), Uuid::new_v4(), &too_large),
        Err(CryptoError::TooLarge { len: too_large.len(), max: limits::MAX_MESSAGE_PLAINTEXT_LEN })
    );
}

#[test]
fn every_message_gets_a_fresh_nonce() {
    assert_ne!(sent(b"same").sealed.nonce, sent(b"same").sealed.nonce);
}

#[test]
fn generation_zero_is_refused() {
    assert_eq!(ConversationKey::generate(Uuid::new_v4(), 0).map(|_| ()), Err(CryptoError::InvalidGeneration(0)));
    let recipient = device();
    let wrap = wrap_for_device(&key(Uuid::new_v4(), 1), &recipient.public().x25519).expect("wrap");
    assert_eq!(unwrap_key(&wrap, Uuid::new_v4(), 0, &recipient).map(|_| ()), Err(CryptoError::InvalidGeneration(0)));
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
    let (x25519, ed25519) = device.secret_bytes();
    let debug = format!("{device:?} {key:?}");
    for secret in [&*x25519, &*ed25519, key.expose_secret()] {
        assert!(!debug.contains(&format!("{secret:?}")), "{debug}");
        assert!(!debug.contains(&conclave_protocol::b64::encode(secret)), "{debug}");
    }
}
