use chacha20poly1305::aead::{Aead as _, Payload};
use chacha20poly1305::{ChaCha20Poly1305, KeyInit as _};
use conclave_protocol::{layout, limits};
use uuid::Uuid;
use zeroize::Zeroizing;

use super::device::verify;
use super::{ConversationKey, CryptoError, DeviceKeys, random::random_bytes};

/// What a message is bound to, as the server reports it: its AEAD associated data is built from
/// these four fields ([`layout::message_aad`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MessageHeader {
    /// The conversation the message was sent to.
    pub conversation_id: Uuid,
    /// The key generation it was encrypted with (`messages.key_generation`).
    pub generation: u32,
    /// The device that sent it.
    pub sender_device_id: Uuid,
    /// The id the sender chose (`messages.client_message_id`).
    pub client_message_id: Uuid,
}

impl MessageHeader {
    /// The AEAD associated data, [`layout::message_aad`] of the four fields.
    pub fn aad(&self) -> Vec<u8> {
        layout::message_aad(self.conversation_id, self.generation, self.sender_device_id, self.client_message_id)
    }
}

/// An encrypted, signed message: the three byte columns of `messages`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SealedMessage {
    /// ChaCha20-Poly1305 nonce, random per message.
    pub nonce: [u8; 12],
    /// ChaCha20-Poly1305 ciphertext followed by its 16-byte tag.
    pub ciphertext: Vec<u8>,
    /// Ed25519 signature by the sender device over [`layout::message_signature_input`].
    pub signature: [u8; 64],
}

/// Encrypts and signs `plaintext` as `sender` (whose server-side id is `sender_device_id`), under
/// `key`, with a random nonce.
pub fn seal_message(
    key: &ConversationKey,
    sender: &DeviceKeys,
    sender_device_id: Uuid,
    client_message_id: Uuid,
    plaintext: &[u8],
) -> Result<SealedMessage, CryptoError> {
    let nonce = random_bytes::<12>()?;
    seal_message_with_nonce(key, sender, sender_device_id, client_message_id, plaintext, *nonce)
}

/// [`seal_message`] with a given nonce, for the test vectors. A nonce must never repeat under one
/// key, which is why this is not public.
pub(crate) fn seal_message_with_nonce(
    key: &ConversationKey,
    sender: &DeviceKeys,
    sender_device_id: Uuid,
    client_message_id: Uuid,
    plaintext: &[u8],
    nonce: [u8; 12],
) -> Result<SealedMessage, CryptoError> {
    if plaintext.len() > limits::MAX_MESSAGE_PLAINTEXT_LEN {
        return Err(CryptoError::TooLarge { len: plaintext.len(), max: limits::MAX_MESSAGE_PLAINTEXT_LEN });
    }
    let header = MessageHeader {
        conversation_id: key.conversation_id(),
        generation: key.generation(),
        sender_device_id,
        client_message_id,
    };
    let aad = header.aad();
    let ciphertext = aead_seal(key, &nonce, plaintext, &aad)?;
    let signature = sender.sign(&layout::message_signature_input(&aad, &nonce, &ciphertext));
    Ok(SealedMessage { nonce, ciphertext, signature })
}

/// Verifies a message's signature without decrypting it (what the server does on send).
pub fn verify_message_signature(
    header: &MessageHeader,
    sealed: &SealedMessage,
    sender_ed25519_public: &[u8; 32],
) -> Result<(), CryptoError> {
    let input = layout::message_signature_input(&header.aad(), &sealed.nonce, &sealed.ciphertext);
    verify(sender_ed25519_public, &input, &sealed.signature)
}

/// Checks that `key` is the one `header` names, verifies the sender's signature, then decrypts.
///
/// Errors, in the order they are checked: [`CryptoError::WrongConversation`] and
/// [`CryptoError::WrongGeneration`] (the caller picked the wrong key), [`CryptoError::BadSignature`]
/// (anything signed was changed: header, nonce, ciphertext or signature), then
/// [`CryptoError::DecryptionFailed`] (correctly signed, but not under this key).
pub fn open_message(
    key: &ConversationKey,
    header: &MessageHeader,
    sealed: &SealedMessage,
    sender_ed25519_public: &[u8; 32],
) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    key.check_names(header.conversation_id, header.generation)?;
    verify_message_signature(header, sealed, sender_ed25519_public)?;
    aead_open(key, &sealed.nonce, &sealed.ciphertext, &header.aad())
}

/// ChaCha20-Poly1305 (RFC 8439) under the conversation key itself.
pub(crate) fn aead_seal(
    key: &ConversationKey,
    nonce: &[u8; 12],
    plaintext: &[u8],
    aad: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    ChaCha20Poly1305::new(key.expose_secret().into())
        .encrypt(nonce.into(), Payload { msg: plaintext, aad })
        // Only fails for inputs beyond 256 GiB, which the size checks exclude.
        .map_err(|_| CryptoError::TooLarge { len: plaintext.len(), max: limits::MAX_MESSAGE_PLAINTEXT_LEN })
}

pub(crate) fn aead_open(
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
