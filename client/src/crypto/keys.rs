use std::fmt;

use conclave_protocol::limits;
use uuid::Uuid;
use zeroize::Zeroizing;

use super::{CryptoError, random::random_bytes};

/// The 32-byte symmetric key of one epoch of one conversation: in protocol v2 the epoch's
/// reaction key, exported from MLS (`crate::mls::REACTION_KEY_LABEL`).
///
/// It knows which conversation and epoch (`generation`) it belongs to, so it cannot be used by
/// mistake for another: sealing binds them into the associated data, opening refuses a reaction
/// that names other ones. Zeroized on drop; `Debug` does not print the secret.
#[derive(Clone)]
pub struct ConversationKey {
    conversation_id: Uuid,
    generation: u32,
    secret: Zeroizing<[u8; 32]>,
}

impl ConversationKey {
    /// A new random key (tests).
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
