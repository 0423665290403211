use chacha20poly1305::aead::{Aead as _, Payload};
use chacha20poly1305::{ChaCha20Poly1305, KeyInit as _};
use conclave_protocol::{layout, limits};
use hkdf::Hkdf;
use hmac::{Hmac, Mac as _};
use sha2::Sha256;
use uuid::Uuid;
use zeroize::Zeroizing;

use super::{ConversationKey, CryptoError, random::random_bytes};

/// What a reaction is bound to: its AEAD associated data is [`layout::reaction_aad`] of these.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ReactionHeader {
    /// The conversation of the message reacted to.
    pub conversation_id: Uuid,
    /// The key generation the reaction was encrypted with (`message_reactions.key_generation`).
    pub generation: u32,
    /// The server's id of the message reacted to.
    pub message_id: Uuid,
    /// The user who reacted.
    pub reactor_user_id: Uuid,
}

impl ReactionHeader {
    /// The AEAD associated data, [`layout::reaction_aad`] of the four fields.
    pub fn aad(&self) -> Vec<u8> {
        layout::reaction_aad(self.conversation_id, self.generation, self.message_id, self.reactor_user_id)
    }
}

/// An encrypted reaction: the byte columns of `message_reactions`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SealedReaction {
    /// ChaCha20-Poly1305 nonce, random per reaction.
    pub nonce: [u8; 12],
    /// The reaction value (UTF-8) encrypted, followed by its 16-byte tag.
    pub ciphertext: Vec<u8>,
    /// [`reaction_value_tag`] of the value: equal for equal (message, user, value, generation).
    pub value_tag: [u8; 32],
}

/// The deduplication tag of a reaction value:
/// `HMAC-SHA256(HKDF-SHA256(salt = none, ikm = conversation key, info = "conclave/v1/reaction-tag",
/// L = 32), message_id || reactor_user_id || value)`.
pub fn reaction_value_tag(key: &ConversationKey, message_id: Uuid, reactor_user_id: Uuid, value: &str) -> [u8; 32] {
    tag_mac(key, message_id, reactor_user_id, value).finalize().into_bytes().into()
}

fn tag_mac(key: &ConversationKey, message_id: Uuid, reactor_user_id: Uuid, value: &str) -> Hmac<Sha256> {
    let tag_key = reaction_tag_key(key);
    let mut mac = <Hmac<Sha256>>::new_from_slice(tag_key.as_slice()).expect("HMAC accepts keys of any length");
    mac.update(&layout::reaction_tag_input(message_id, reactor_user_id, value.as_bytes()));
    mac
}

fn reaction_tag_key(key: &ConversationKey) -> Zeroizing<[u8; 32]> {
    let mut tag_key = Zeroizing::new([0u8; 32]);
    Hkdf::<Sha256>::new(None, key.expose_secret())
        .expand(layout::REACTION_TAG_KEY_INFO, tag_key.as_mut_slice())
        .expect("32 bytes are within HKDF-SHA256's output limit");
    tag_key
}

/// Encrypts a reaction `value` (an emoji, say) to message `message_id` by `reactor_user_id`,
/// under `key` (the conversation's current generation), with a random nonce.
pub fn seal_reaction(
    key: &ConversationKey,
    message_id: Uuid,
    reactor_user_id: Uuid,
    value: &str,
) -> Result<SealedReaction, CryptoError> {
    let nonce = random_bytes::<12>()?;
    seal_reaction_with_nonce(key, message_id, reactor_user_id, value, *nonce)
}

/// [`seal_reaction`] with a given nonce, for the test vectors.
pub(crate) fn seal_reaction_with_nonce(
    key: &ConversationKey,
    message_id: Uuid,
    reactor_user_id: Uuid,
    value: &str,
    nonce: [u8; 12],
) -> Result<SealedReaction, CryptoError> {
    if value.is_empty() {
        return Err(CryptoError::EmptyReaction);
    }
    if value.len() > limits::MAX_REACTION_VALUE_LEN {
        return Err(CryptoError::TooLarge { len: value.len(), max: limits::MAX_REACTION_VALUE_LEN });
    }
    let header = ReactionHeader {
        conversation_id: key.conversation_id(),
        generation: key.generation(),
        message_id,
        reactor_user_id,
    };
    let ciphertext = aead_seal(key, &nonce, value.as_bytes(), &header.aad())?;
    Ok(SealedReaction { nonce, ciphertext, value_tag: reaction_value_tag(key, message_id, reactor_user_id, value) })
}

/// Decrypts a reaction and checks that its `value_tag` is the tag of its value, so a member cannot
/// slip past the server's one-reaction-per-value rule with a made-up tag.
pub fn open_reaction(
    key: &ConversationKey,
    header: &ReactionHeader,
    sealed: &SealedReaction,
) -> Result<String, CryptoError> {
    key.check_names(header.conversation_id, header.generation)?;
    let plaintext = aead_open(key, &sealed.nonce, &sealed.ciphertext, &header.aad())?;
    let value = String::from_utf8(plaintext.to_vec()).map_err(|_| CryptoError::MalformedReaction)?;
    tag_mac(key, header.message_id, header.reactor_user_id, &value)
        .verify_slice(&sealed.value_tag)
        .map_err(|_| CryptoError::ValueTagMismatch)?;
    Ok(value)
}

/// ChaCha20-Poly1305 (RFC 8439) under the epoch's reaction key itself.
fn aead_seal(key: &ConversationKey, nonce: &[u8; 12], plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>, CryptoError> {
    ChaCha20Poly1305::new(key.expose_secret().into())
        .encrypt(nonce.into(), Payload { msg: plaintext, aad })
        // Only fails for inputs beyond 256 GiB, which the size checks exclude.
        .map_err(|_| CryptoError::TooLarge { len: plaintext.len(), max: limits::MAX_MESSAGE_PLAINTEXT_LEN })
}

fn aead_open(
    key: &ConversationKey,
    nonce: &[u8; 12],
    ciphertext: &[u8],
    aad: &[u8],
) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    ChaCha20Poly1305::new(key.expose_secret().into())
        .decrypt(nonce.into(), Payload { msg: ciphertext, aad })
        .map(Zeroizing::new)
        .map_err(|_| CryptoError::DecryptionFailed)
}
