use std::fmt;

use conclave_protocol::{layout, limits};
use hpke::rand_core::{CryptoRng, UnwrapErr};
use hpke::{Deserializable as _, OpModeR, OpModeS, Serializable as _};
use uuid::Uuid;
use zeroize::Zeroizing;

use super::device::to_array;
use super::suite::{Aead, Kdf, Kem};
use super::{CryptoError, DeviceKeys, random::random_bytes};

/// The 32-byte symmetric key of one generation of one conversation.
///
/// It knows which conversation and generation it belongs to, so it cannot be used by mistake for
/// another: sealing binds them into the associated data, opening refuses a message that names
/// other ones. Zeroized on drop; `Debug` does not print the secret.
#[derive(Clone)]
pub struct ConversationKey {
    conversation_id: Uuid,
    generation: u32,
    secret: Zeroizing<[u8; 32]>,
}

impl ConversationKey {
    /// A new random key, for a conversation's first generation or the next one after a rotation.
    pub fn generate(conversation_id: Uuid, generation: u32) -> Result<Self, CryptoError> {
        check_generation(generation)?;
        Ok(Self { conversation_id, generation, secret: random_bytes::<32>()? })
    }

    /// A key from its stored bytes (for the keystore and test vectors).
    pub fn from_bytes(conversation_id: Uuid, generation: u32, secret: &[u8; 32]) -> Result<Self, CryptoError> {
        check_generation(generation)?;
        Ok(Self { conversation_id, generation, secret: Zeroizing::new(*secret) })
    }

    /// The conversation this key belongs to.
    pub fn conversation_id(&self) -> Uuid {
        self.conversation_id
    }

    /// The generation of this key (1, 2, ...).
    pub fn generation(&self) -> u32 {
        self.generation
    }

    /// The raw key. Only for persisting it; never log it.
    pub fn expose_secret(&self) -> &[u8; 32] {
        &self.secret
    }

    pub(crate) fn check_names(&self, conversation_id: Uuid, generation: u32) -> Result<(), CryptoError> {
        if conversation_id != self.conversation_id {
            return Err(CryptoError::WrongConversation);
        }
        if generation != self.generation {
            return Err(CryptoError::WrongGeneration { key: self.generation, message: generation });
        }
        Ok(())
    }
}

impl fmt::Debug for ConversationKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConversationKey")
            .field("conversation_id", &self.conversation_id)
            .field("generation", &self.generation)
            .field("secret", &"<redacted>")
            .finish()
    }
}

pub(crate) fn check_generation(generation: u32) -> Result<(), CryptoError> {
    if limits::is_valid_generation(generation) { Ok(()) } else { Err(CryptoError::InvalidGeneration(generation)) }
}

/// A conversation key wrapped for one device: the HPKE encapsulated key and the sealed key.
/// Stored by the server as `member_key_wraps.encapsulated_key` and `wrapped_key`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Wrap {
    /// HPKE `enc`: the sender's ephemeral X25519 public key.
    pub encapsulated_key: [u8; 32],
    /// The 32-byte conversation key sealed by HPKE, followed by its 16-byte tag.
    pub wrapped_key: [u8; 48],
}

/// Wraps `key` for the device whose X25519 public key is `recipient_x25519_public`: HPKE base
/// mode, single shot, `info` = [`layout::key_wrap_info`], empty `aad`.
///
/// Panics only if the operating system's random number generator fails (as `hpke` does).
pub fn wrap_for_device(key: &ConversationKey, recipient_x25519_public: &[u8; 32]) -> Result<Wrap, CryptoError> {
    wrap_with_rng(key, recipient_x25519_public, &mut UnwrapErr(getrandom::SysRng))
}

/// [`wrap_for_device`] with the ephemeral key drawn from `rng`: HPKE derives the ephemeral key
/// pair from the first 32 bytes it draws (`DeriveKeyPair(ikmE)`), which the test vectors fix.
pub(crate) fn wrap_with_rng(
    key: &ConversationKey,
    recipient_x25519_public: &[u8; 32],
    rng: &mut impl CryptoRng,
) -> Result<Wrap, CryptoError> {
    let recipient = <Kem as hpke::Kem>::PublicKey::from_bytes(recipient_x25519_public)
        .map_err(|_| CryptoError::InvalidPublicKey)?;
    let info = layout::key_wrap_info(key.conversation_id, key.generation);
    let (encapsulated_key, wrapped_key) = hpke::single_shot_seal_with_rng::<Aead, Kdf, Kem>(
        &OpModeS::Base,
        &recipient,
        &info,
        key.expose_secret(),
        layout::KEY_WRAP_AAD,
        rng,
    )
    .map_err(|e| match e {
        // A small-order recipient key makes the Diffie-Hellman output zero, which HPKE refuses.
        hpke::HpkeError::EncapError => CryptoError::InvalidPublicKey,
        _ => CryptoError::WrapFailed,
    })?;
    if wrapped_key.len() != limits::WRAPPED_KEY_LEN {
        return Err(CryptoError::WrapFailed);
    }
    Ok(Wrap { encapsulated_key: to_array(&encapsulated_key.to_bytes()), wrapped_key: to_array(&wrapped_key) })
}

/// Opens a wrap made for `recipient`, for the given conversation and generation.
///
/// Fails with [`CryptoError::UnwrapFailed`] if the wrap was made for another device (a removed
/// device cannot open the wraps of a generation made after its removal), another conversation or
/// generation, or was tampered with.
pub fn unwrap_key(
    wrap: &Wrap,
    conversation_id: Uuid,
    generation: u32,
    recipient: &DeviceKeys,
) -> Result<ConversationKey, CryptoError> {
    check_generation(generation)?;
    let encapsulated_key =
        <Kem as hpke::Kem>::EncappedKey::from_bytes(&wrap.encapsulated_key).map_err(|_| CryptoError::UnwrapFailed)?;
    let info = layout::key_wrap_info(conversation_id, generation);
    let secret = Zeroizing::new(
        hpke::single_shot_open::<Aead, Kdf, Kem>(
            &OpModeR::Base,
            recipient.x25519_secret(),
            &encapsulated_key,
            &info,
            &wrap.wrapped_key,
            layout::KEY_WRAP_AAD,
        )
        .map_err(|_| CryptoError::UnwrapFailed)?,
    );
    let secret: &[u8; 32] = secret.as_slice().try_into().map_err(|_| CryptoError::UnwrapFailed)?;
    ConversationKey::from_bytes(conversation_id, generation, secret)
}
