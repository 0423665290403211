//! Reactions (encrypted, `docs/protocol-v2.md` "Reactions") and pins.

use chrono::{DateTime, Utc};
use conclave_protocol::rich::{AddReaction, Pin, Reaction};
use serde::Serialize;
use uuid::Uuid;

use super::{MAX_ATTEMPTS, Messenger, Opening, generation_i32};
use crate::api::{Error, Result};
use crate::crypto::{ReactionHeader, SealedReaction, open_reaction, seal_reaction};

/// A reaction, opened (or why it could not be).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReceivedReaction {
    /// The server's id of the reaction.
    pub id: Uuid,
    /// The conversation.
    pub conversation_id: Uuid,
    /// The message reacted to.
    pub message_id: Uuid,
    /// Who reacted (as the server attributes it; the AAD binds it).
    pub user_id: Uuid,
    /// The generation it is encrypted with.
    pub key_generation: i32,
    /// Its deduplication tag (what [`Messenger::unreact`] deletes by).
    #[serde(with = "conclave_protocol::b64")]
    pub value_tag: [u8; 32],
    /// When it was stored.
    pub created_at: DateTime<Utc>,
    /// The value, or why it cannot be read.
    pub value: ReactionValue,
}

/// The readable part of a reaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum ReactionValue {
    /// Decrypted, its tag checked.
    Opened {
        /// The emoji or short text.
        value: String,
    },
    /// This device holds no key of the reaction's generation.
    MissingKey {
        /// The generation.
        generation: i32,
    },
    /// Decryption failed or the tag does not match the value.
    Rejected {
        /// Why.
        reason: String,
    },
}

impl ReceivedReaction {
    /// The value, when it could be opened.
    pub fn value(&self) -> Option<&str> {
        match &self.value {
            ReactionValue::Opened { value } => Some(value),
            _ => None,
        }
    }

    /// What to show a person.
    pub fn display(&self) -> String {
        match &self.value {
            ReactionValue::Opened { value } => value.clone(),
            ReactionValue::MissingKey { generation } => format!("[this device cannot read epoch {generation}]"),
            ReactionValue::Rejected { reason } => format!("[rejected: {reason}]"),
        }
    }
}

impl Messenger {
    /// Reacts to message `message_id` with `value` (an emoji or a short text; send emoji in NFC),
    /// sealed under the current epoch's reaction key (the group synced first).
    /// Reacting twice with the same value answers `409 reaction_exists`.
    pub async fn react(&self, org: Uuid, conversation_id: Uuid, message_id: Uuid, value: &str) -> Result<Reaction> {
        let client = &self.inner.client;
        let mut last_error = None;
        for _ in 0..MAX_ATTEMPTS {
            let key = self.sending_key(org, conversation_id).await?;
            let sealed = seal_reaction(&key, message_id, self.inner.user_id, value)?;
            let body = AddReaction {
                key_generation: generation_i32(u64::from(key.generation()))?,
                nonce: sealed.nonce,
                ciphertext: sealed.ciphertext,
                value_tag: sealed.value_tag,
            };
            match client.add_reaction(org, conversation_id, message_id, &body).await {
                Ok(reaction) => return Ok(reaction),
                Err(err) if super::epoch_moved(&err) => last_error = Some(err),
                Err(err) => return Err(err),
            }
        }
        Err(last_error.unwrap_or_else(|| Error::Protocol("the reaction could not be sent".into())))
    }

    /// Takes back this user's reactions with `value` on a message (under whichever generation
    /// they were made); returns how many were removed (0 when there was none).
    pub async fn unreact(&self, org: Uuid, conversation_id: Uuid, message_id: Uuid, value: &str) -> Result<usize> {
        let mine: Vec<ReceivedReaction> = self
            .reactions(org, conversation_id, message_id)
            .await?
            .into_iter()
            .filter(|r| r.user_id == self.inner.user_id && r.value() == Some(value))
            .collect();
        for reaction in &mine {
            self.inner.client.remove_reaction(org, conversation_id, message_id, &reaction.value_tag).await?;
        }
        Ok(mine.len())
    }

    /// A message's reactions, oldest first, opened.
    pub async fn reactions(&self, org: Uuid, conversation_id: Uuid, message_id: Uuid) -> Result<Vec<ReceivedReaction>> {
        let reactions = self.inner.client.reactions(org, conversation_id, message_id).await?;
        let mut opening = Opening::default();
        let mut opened = Vec::with_capacity(reactions.len());
        for reaction in &reactions {
            opened.push(self.open_reaction_with(org, reaction, &mut opening).await?);
        }
        Ok(opened)
    }

    /// Opens one reaction (from the API or a `reaction_added` frame). Errors are only for
    /// failures to reach the server.
    pub async fn open_reaction(&self, org: Uuid, reaction: &Reaction) -> Result<ReceivedReaction> {
        self.open_reaction_with(org, reaction, &mut Opening::default()).await
    }

    async fn open_reaction_with(
        &self,
        org: Uuid,
        reaction: &Reaction,
        opening: &mut Opening,
    ) -> Result<ReceivedReaction> {
        let value = match u32::try_from(reaction.key_generation) {
            Err(_) => ReactionValue::Rejected { reason: format!("invalid key generation {}", reaction.key_generation) },
            Ok(generation) => match self.key_for(org, reaction.conversation_id, generation, opening).await {
                Ok(key) => {
                    let header = ReactionHeader {
                        conversation_id: reaction.conversation_id,
                        generation,
                        message_id: reaction.message_id,
                        reactor_user_id: reaction.user_id,
                    };
                    let sealed = SealedReaction {
                        nonce: reaction.nonce,
                        ciphertext: reaction.ciphertext.clone(),
                        value_tag: reaction.value_tag,
                    };
                    match open_reaction(&key, &header, &sealed) {
                        Ok(value) => ReactionValue::Opened { value },
                        Err(err) => ReactionValue::Rejected { reason: err.to_string() },
                    }
                }
                Err(Error::MissingKey { .. }) => ReactionValue::MissingKey { generation: reaction.key_generation },
                Err(Error::Api(err)) if err.status.as_u16() == 404 || err.status.as_u16() == 403 => {
                    ReactionValue::MissingKey { generation: reaction.key_generation }
                }
                Err(err) => return Err(err),
            },
        };
        Ok(ReceivedReaction {
            id: reaction.id,
            conversation_id: reaction.conversation_id,
            message_id: reaction.message_id,
            user_id: reaction.user_id,
            key_generation: reaction.key_generation,
            value_tag: reaction.value_tag,
            created_at: reaction.created_at,
            value,
        })
    }

    /// Pins a message of a conversation.
    pub async fn pin(&self, org: Uuid, conversation_id: Uuid, message_id: Uuid) -> Result<Pin> {
        self.inner.client.pin(org, conversation_id, message_id).await
    }

    /// Unpins a message.
    pub async fn unpin(&self, org: Uuid, conversation_id: Uuid, message_id: Uuid) -> Result<()> {
        self.inner.client.unpin(org, conversation_id, message_id).await
    }

    /// A conversation's pinned messages.
    pub async fn pins(&self, org: Uuid, conversation_id: Uuid) -> Result<Vec<Pin>> {
        self.inner.client.pins(org, conversation_id).await
    }
}
