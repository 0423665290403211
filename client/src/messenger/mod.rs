//! The messaging engine: end-to-end encryption applied to the API.
//!
//! [`Messenger`] holds a signed-in [`Client`], the device's [`Keystore`] and a
//! [`DeviceDirectory`] of device public keys, and does what a client must do around each call:
//!
//! - **Sending** ([`Messenger::send_text`]): encode the [content](crate::content), take the key
//!   of the conversation's current generation (from the keystore, or by fetching and unwrapping
//!   this device's wraps), seal and sign, post. When the conversation has no key yet, when the
//!   server answers `409 rotation_required` (a member left, a device was revoked) or when this
//!   device holds no wrap of the current generation, it *rotates*: fetches the member devices,
//!   makes a fresh key for generation *n + 1*, wraps it for exactly those devices, uploads it
//!   (refetching and retrying on `wrap_set_mismatch` or a concurrent rotation), keeps the key,
//!   and sends again with the same `client_message_id` (so a retry is never stored twice).
//! - **Reading** ([`Messenger::history`], [`Messenger::open`]): each message's signature is
//!   checked with its sender device's Ed25519 key before decryption. Keys come from the device
//!   directory, refreshed from the conversation's devices (and, for one's own devices, from
//!   `GET /v1/devices`, which lists revoked ones too); a sender device that cannot be found is
//!   shown as [`Body::CannotVerify`], never as unverified text.
//! - **Reactions and pins** ([`Messenger::react`], [`Messenger::unreact`],
//!   [`Messenger::reactions`], [`Messenger::pin`]): reactions are sealed under the current key
//!   and opened (tag checked) like messages.
//! - **Files** ([`Messenger::send_file`], [`Messenger::download`]): chunked encryption under a
//!   per-file key, streamed both ways; see `files.rs`.
//! - **Listening** ([`Messenger::listen`]): the WebSocket, see [`Listener`].

mod directory;
mod files;
mod identity;
mod keypackages;
mod listen;
mod rich;

use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard};

use chrono::{DateTime, Utc};
use conclave_protocol::api::{
    Conversation, DeviceWrap, EditMessage, KeyWrap, Member, MemberDevice, Message, SendMessage, UpdateReceipts,
    UploadGeneration,
};
use serde::Serialize;
use uuid::Uuid;

pub use directory::DeviceDirectory;
pub use files::{DownloadedFile, media_type_for};
pub use identity::{IdentityState, SafetyCheck};
pub use keypackages::{KEY_PACKAGE_LOW_WATER, KEY_PACKAGE_TARGET};
pub use listen::{ListenEvent, Listener, ListenerOptions};
pub use rich::{ReactionValue, ReceivedReaction};

use crate::api::{Client, Error, MessageQuery, Result};
use crate::content::Content;
use crate::crypto::{
    ConversationKey, CryptoError, MessageHeader, SealedMessage, Wrap, open_message, seal_message, unwrap_key,
    wrap_for_device,
};
use crate::keystore::Keystore;

/// How many times a send or a rotation is retried after the server reports a concurrent change
/// (another member rotated, the member set changed) before giving up.
const MAX_ATTEMPTS: usize = 4;

/// A decrypted (or undecryptable) message, with the fields the server stores in clear.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReceivedMessage {
    /// The server's message id.
    pub id: Uuid,
    /// The conversation.
    pub conversation_id: Uuid,
    /// Its position in the conversation (1, 2, ...).
    pub seq: i64,
    /// The sender's account (as the server attributes it).
    pub sender_user_id: Option<Uuid>,
    /// The device that signed it.
    pub sender_device_id: Option<Uuid>,
    /// The sender's id for the message (stable across edits).
    pub client_message_id: Uuid,
    /// The key generation it is encrypted with.
    pub key_generation: i32,
    /// The message it replies to.
    pub reply_to_id: Option<Uuid>,
    /// When the server stored it.
    pub created_at: DateTime<Utc>,
    /// When it was last edited.
    pub edited_at: Option<DateTime<Utc>>,
    /// What it says, or why it cannot be read.
    pub body: Body,
}

/// The readable part of a message.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Body {
    /// Verified and decrypted.
    Content {
        /// The content.
        content: Content,
    },
    /// Deleted by its sender: the place in the sequence stays, the content is gone.
    Deleted,
    /// The sender device's signing key is unknown to this client, so the message is not shown.
    CannotVerify,
    /// This device never received the key of the message's generation (it joined later, or was
    /// removed before the message was sent).
    MissingKey {
        /// The generation.
        generation: i32,
    },
    /// The signature does not verify, the decryption failed, or the content is malformed.
    Rejected {
        /// Why.
        reason: String,
    },
}

impl Body {
    /// What to show a person.
    pub fn display(&self) -> String {
        match self {
            Self::Content { content } => content.display(),
            Self::Deleted => "[deleted]".into(),
            Self::CannotVerify => "[cannot verify]".into(),
            Self::MissingKey { generation } => format!("[no key for generation {generation}]"),
            Self::Rejected { reason } => format!("[rejected: {reason}]"),
        }
    }

    /// The text, when the message is a verified text.
    pub fn text(&self) -> Option<&str> {
        match self {
            Self::Content { content: Content::Text { body } } => Some(body),
            _ => None,
        }
    }
}

/// The messaging engine for one signed-in device. Cheap to clone (clones share state).
#[derive(Clone)]
pub struct Messenger {
    inner: Arc<Inner>,
}

struct Inner {
    client: Client,
    keystore: Mutex<Keystore>,
    directory: Mutex<DeviceDirectory>,
    /// This device's MLS side, built on first use (`keypackages.rs`). Locked before the keystore
    /// whenever both are.
    mls: Mutex<Option<Arc<crate::mls::Device>>>,
    user_id: Uuid,
    device_id: Uuid,
}

/// What one batch of openings already fetched, so a page of messages costs one refresh at most.
#[derive(Default)]
struct Opening {
    keys_synced: HashSet<Uuid>,
    devices_refreshed: HashSet<Uuid>,
    own_devices_fetched: bool,
}

/// Whether a sealed payload is a new message or an edit of one.
enum Submit {
    Send { reply_to_id: Option<Uuid>, attachment_ids: Vec<Uuid> },
    Edit { message_id: Uuid },
}

impl Messenger {
    /// The engine for the device `device_id` of `user_id`, whose secrets are in `keystore`.
    pub fn new(client: Client, keystore: Keystore, directory: DeviceDirectory, user_id: Uuid, device_id: Uuid) -> Self {
        Self {
            inner: Arc::new(Inner {
                client,
                keystore: Mutex::new(keystore),
                directory: Mutex::new(directory),
                mls: Mutex::new(None),
                user_id,
                device_id,
            }),
        }
    }

    /// The API client.
    pub fn client(&self) -> &Client {
        &self.inner.client
    }

    /// The signed-in account.
    pub fn user_id(&self) -> Uuid {
        self.inner.user_id
    }

    /// This device.
    pub fn device_id(&self) -> Uuid {
        self.inner.device_id
    }

    /// Runs `f` on the keystore (held locked; do not block in it).
    pub fn with_keystore<R>(&self, f: impl FnOnce(&mut Keystore) -> R) -> R {
        f(&mut self.keystore())
    }

    fn keystore(&self) -> MutexGuard<'_, Keystore> {
        // A panic while holding the lock leaves a keystore that is still consistent in memory.
        self.inner.keystore.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn directory(&self) -> MutexGuard<'_, DeviceDirectory> {
        self.inner.directory.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Encrypts and sends a text message.
    pub async fn send_text(&self, org: Uuid, conversation: Uuid, text: &str) -> Result<Message> {
        self.send(org, conversation, &Content::text(text), None).await
    }

    /// Encrypts and sends `content`, rotating the conversation key first when needed.
    pub async fn send(
        &self,
        org: Uuid,
        conversation: Uuid,
        content: &Content,
        reply_to_id: Option<Uuid>,
    ) -> Result<Message> {
        let client_message_id = Uuid::now_v7();
        let submit = Submit::Send { reply_to_id, attachment_ids: Vec::new() };
        self.submit(org, conversation, content, client_message_id, submit).await
    }

    /// Replaces the text of one of this device's messages (same client message id, current key).
    pub async fn edit_text(&self, org: Uuid, original: &Message, text: &str) -> Result<Message> {
        let submit = Submit::Edit { message_id: original.id };
        self.submit(org, original.conversation_id, &Content::text(text), original.client_message_id, submit).await
    }

    async fn submit(
        &self,
        org: Uuid,
        conversation_id: Uuid,
        content: &Content,
        client_message_id: Uuid,
        submit: Submit,
    ) -> Result<Message> {
        let plaintext = content.encode().map_err(|e| Error::Content(e.to_string()))?;
        let mut conversation = self.inner.client.conversation(org, conversation_id).await?;
        let mut last_error = None;
        for _ in 0..MAX_ATTEMPTS {
            let key = self.sending_key(org, &conversation).await?;
            let sealed = {
                let keystore = self.keystore();
                seal_message(&key, keystore.device(), self.inner.device_id, client_message_id, &plaintext)?
            };
            let key_generation = generation_i32(key.generation())?;
            let result = match &submit {
                Submit::Send { reply_to_id, attachment_ids } => {
                    let body = SendMessage {
                        client_message_id,
                        key_generation,
                        nonce: sealed.nonce,
                        ciphertext: sealed.ciphertext,
                        signature: sealed.signature,
                        reply_to_id: *reply_to_id,
                        attachment_ids: attachment_ids.clone(),
                    };
                    self.inner.client.send_message(org, conversation_id, &body).await
                }
                Submit::Edit { message_id } => {
                    let body = EditMessage {
                        key_generation,
                        nonce: sealed.nonce,
                        ciphertext: sealed.ciphertext,
                        signature: sealed.signature,
                    };
                    self.inner.client.edit_message(org, conversation_id, *message_id, &body).await
                }
            };
            match result {
                Ok(message) => return Ok(message),
                Err(err) if err.is_api("rotation_required") => {
                    conversation = self.inner.client.conversation(org, conversation_id).await?;
                    // Whatever the copy says, the server wants a new generation now.
                    conversation.rotation_required = true;
                    last_error = Some(err);
                }
                Err(err) if err.is_api("stale_generation") || err.is_api("unknown_generation") => {
                    conversation = self.inner.client.conversation(org, conversation_id).await?;
                    last_error = Some(err);
                }
                Err(err) => return Err(err),
            }
        }
        Err(last_error.unwrap_or_else(|| Error::Protocol("the message could not be sent".into())))
    }

    /// The key to seal with: the current generation's, or a new generation when the conversation
    /// has none, must rotate, or never gave this device the current one.
    async fn sending_key(&self, org: Uuid, conversation: &Conversation) -> Result<ConversationKey> {
        let current = generation_u32(conversation.current_key_generation)?;
        if current == 0 || conversation.rotation_required {
            return self.rotate_from(org, conversation.id, current).await;
        }
        match self.key_for(org, conversation.id, current, &mut Opening::default()).await {
            Ok(key) => Ok(key),
            Err(Error::MissingKey { .. }) => self.rotate_from(org, conversation.id, current).await,
            Err(err) => Err(err),
        }
    }

    /// Creates, wraps and uploads the next generation of a conversation's key now (for example
    /// right after removing a member); returns the new generation.
    pub async fn rotate(&self, org: Uuid, conversation_id: Uuid) -> Result<u32> {
        let conversation = self.inner.client.conversation(org, conversation_id).await?;
        let current = generation_u32(conversation.current_key_generation)?;
        Ok(self.rotate_from(org, conversation_id, current).await?.generation())
    }

    async fn rotate_from(&self, org: Uuid, conversation_id: Uuid, current: u32) -> Result<ConversationKey> {
        let client = &self.inner.client;
        let mut generation = current.checked_add(1).ok_or(CryptoError::InvalidGeneration(current))?;
        let mut last_error = None;
        for _ in 0..MAX_ATTEMPTS {
            let devices = client.conversation_devices(org, conversation_id).await?;
            self.directory().remember(&devices)?;
            let key = ConversationKey::generate(conversation_id, generation)?;
            let wraps = devices
                .iter()
                .map(|device| {
                    let wrap = wrap_for_device(&key, &device.x25519_public_key)?;
                    Ok(KeyWrap {
                        device_id: device.device_id,
                        encapsulated_key: wrap.encapsulated_key,
                        wrapped_key: wrap.wrapped_key,
                    })
                })
                .collect::<Result<Vec<_>, CryptoError>>()?;
            let upload = UploadGeneration { generation: generation_i32(generation)?, wraps };
            match client.upload_generation(org, conversation_id, &upload).await {
                Ok(()) => {
                    let mut keystore = self.keystore();
                    keystore.insert_key(key.clone());
                    keystore.save()?;
                    return Ok(key);
                }
                // The member devices changed between the listing and the upload: list again.
                Err(err) if err.is_api("wrap_set_mismatch") => last_error = Some(err),
                // Someone else uploaded a generation first: use theirs if it is final.
                Err(err) if err.is_api("stale_generation") => {
                    let conversation = client.conversation(org, conversation_id).await?;
                    let now = generation_u32(conversation.current_key_generation)?;
                    if !conversation.rotation_required && now > 0 {
                        match self.key_for(org, conversation_id, now, &mut Opening::default()).await {
                            Ok(key) => return Ok(key),
                            Err(Error::MissingKey { .. }) => {}
                            Err(other) => return Err(other),
                        }
                    }
                    generation = now.checked_add(1).ok_or(CryptoError::InvalidGeneration(now))?;
                    last_error = Some(err);
                }
                Err(err) => return Err(err),
            }
        }
        Err(last_error.unwrap_or_else(|| Error::Protocol("the key rotation did not converge".into())))
    }

    /// The key of a generation: from the keystore, else from this device's wraps on the server.
    async fn key_for(
        &self,
        org: Uuid,
        conversation_id: Uuid,
        generation: u32,
        opening: &mut Opening,
    ) -> Result<ConversationKey> {
        if let Some(key) = self.keystore().key(conversation_id, generation) {
            return Ok(key.clone());
        }
        if opening.keys_synced.insert(conversation_id) {
            let wraps = self.inner.client.key_wraps(org, conversation_id).await?;
            self.store_wraps(conversation_id, &wraps)?;
        }
        self.keystore()
            .key(conversation_id, generation)
            .cloned()
            .ok_or(Error::MissingKey { conversation_id, generation })
    }

    /// Unwraps and keeps the wraps this device does not hold the key of yet.
    fn store_wraps(&self, conversation_id: Uuid, wraps: &[DeviceWrap]) -> Result<()> {
        let mut keystore = self.keystore();
        let mut added = false;
        for wrap in wraps {
            let generation = generation_u32(wrap.generation)?;
            if generation == 0 || keystore.key(conversation_id, generation).is_some() {
                continue;
            }
            let sealed = Wrap { encapsulated_key: wrap.encapsulated_key, wrapped_key: wrap.wrapped_key };
            // A wrap that does not open is not for this device's key (or was tampered with): the
            // messages of that generation will show as missing their key.
            if let Ok(key) = unwrap_key(&sealed, conversation_id, generation, keystore.device()) {
                keystore.insert_key(key);
                added = true;
            }
        }
        if added {
            keystore.save()?;
        }
        Ok(())
    }

    /// The newest `limit` messages of a conversation, oldest first, opened.
    pub async fn history(&self, org: Uuid, conversation_id: Uuid, limit: u32) -> Result<Vec<ReceivedMessage>> {
        let conversation = self.inner.client.conversation(org, conversation_id).await?;
        let query = MessageQuery::Before { before_seq: conversation.last_seq.saturating_add(1), limit };
        let mut page = self.inner.client.messages(org, conversation_id, query).await?.messages;
        page.sort_by_key(|message| message.seq);
        self.open_all(org, &page).await
    }

    /// Messages after `after_seq`, oldest first, opened; and whether more follow.
    pub async fn messages_after(
        &self,
        org: Uuid,
        conversation_id: Uuid,
        after_seq: i64,
        limit: u32,
    ) -> Result<(Vec<ReceivedMessage>, bool)> {
        let page = self.inner.client.messages(org, conversation_id, MessageQuery::After { after_seq, limit }).await?;
        Ok((self.open_all(org, &page.messages).await?, page.has_more))
    }

    async fn open_all(&self, org: Uuid, messages: &[Message]) -> Result<Vec<ReceivedMessage>> {
        let mut opening = Opening::default();
        let mut opened = Vec::with_capacity(messages.len());
        for message in messages {
            opened.push(self.open_with(org, message, &mut opening).await?);
        }
        Ok(opened)
    }

    /// Verifies and decrypts one message. Errors are only for failures to reach the server;
    /// a message that cannot be read is returned with a [`Body`] that says why.
    pub async fn open(&self, org: Uuid, message: &Message) -> Result<ReceivedMessage> {
        self.open_with(org, message, &mut Opening::default()).await
    }

    async fn open_with(&self, org: Uuid, message: &Message, opening: &mut Opening) -> Result<ReceivedMessage> {
        let body = self.body(org, message, opening).await?;
        Ok(ReceivedMessage {
            id: message.id,
            conversation_id: message.conversation_id,
            seq: message.seq,
            sender_user_id: message.sender_user_id,
            sender_device_id: message.sender_device_id,
            client_message_id: message.client_message_id,
            key_generation: message.key_generation,
            reply_to_id: message.reply_to_id,
            created_at: message.created_at,
            edited_at: message.edited_at,
            body,
        })
    }

    async fn body(&self, org: Uuid, message: &Message, opening: &mut Opening) -> Result<Body> {
        let (Some(nonce), Some(ciphertext), Some(signature)) = (message.nonce, &message.ciphertext, message.signature)
        else {
            return Ok(Body::Deleted);
        };
        if message.deleted_at.is_some() {
            return Ok(Body::Deleted);
        }
        let Some(sender_device_id) = message.sender_device_id else { return Ok(Body::CannotVerify) };
        let Ok(generation) = u32::try_from(message.key_generation) else {
            return Ok(Body::Rejected { reason: format!("invalid key generation {}", message.key_generation) });
        };
        let Some(sender_key) =
            self.sender_key(org, message.conversation_id, message.sender_user_id, sender_device_id, opening).await?
        else {
            return Ok(Body::CannotVerify);
        };
        let key = match self.key_for(org, message.conversation_id, generation, opening).await {
            Ok(key) => key,
            Err(Error::MissingKey { .. }) => return Ok(Body::MissingKey { generation: message.key_generation }),
            // No longer a member: the keys this device holds still open what it was sent.
            Err(Error::Api(err)) if err.status.as_u16() == 404 || err.status.as_u16() == 403 => {
                return Ok(Body::MissingKey { generation: message.key_generation });
            }
            Err(err) => return Err(err),
        };
        let header = MessageHeader {
            conversation_id: message.conversation_id,
            generation,
            sender_device_id,
            client_message_id: message.client_message_id,
        };
        let sealed = SealedMessage { nonce, ciphertext: ciphertext.clone(), signature };
        Ok(match open_message(&key, &header, &sealed, &sender_key) {
            Ok(plaintext) => match Content::decode(&plaintext) {
                Ok(content) => Body::Content { content },
                Err(err) => Body::Rejected { reason: err.to_string() },
            },
            Err(err) => Body::Rejected { reason: err.to_string() },
        })
    }

    /// The Ed25519 key of a sender device: this device's own, the directory's, or refreshed from
    /// the server once per batch.
    async fn sender_key(
        &self,
        org: Uuid,
        conversation_id: Uuid,
        sender_user_id: Option<Uuid>,
        device_id: Uuid,
        opening: &mut Opening,
    ) -> Result<Option<[u8; 32]>> {
        if device_id == self.inner.device_id {
            return Ok(Some(self.keystore().device().public().ed25519));
        }
        let known = |this: &Self| this.directory().get(device_id).map(|d| d.ed25519_public_key);
        if let Some(key) = known(self) {
            return Ok(Some(key));
        }
        if opening.devices_refreshed.insert(conversation_id) {
            match self.inner.client.conversation_devices(org, conversation_id).await {
                Ok(devices) => self.directory().remember(&devices)?,
                // After leaving, the list is closed to this client: rely on what it knew.
                Err(Error::Api(_)) => {}
                Err(err) => return Err(err),
            }
            if let Some(key) = known(self) {
                return Ok(Some(key));
            }
        }
        if sender_user_id == Some(self.inner.user_id) && !opening.own_devices_fetched {
            opening.own_devices_fetched = true;
            let own: Vec<MemberDevice> = self
                .inner
                .client
                .devices()
                .await?
                .into_iter()
                .map(|d| MemberDevice {
                    user_id: self.inner.user_id,
                    device_id: d.id,
                    x25519_public_key: d.x25519_public_key,
                    ed25519_public_key: d.ed25519_public_key,
                    credential: d.credential,
                })
                .collect();
            self.directory().remember(&own)?;
            return Ok(known(self));
        }
        Ok(None)
    }

    /// Moves this member's delivered and read cursors of a conversation forward.
    pub async fn mark(
        &self,
        org: Uuid,
        conversation_id: Uuid,
        delivered_seq: Option<i64>,
        read_seq: Option<i64>,
    ) -> Result<Member> {
        self.inner.client.update_receipts(org, conversation_id, &UpdateReceipts { delivered_seq, read_seq }).await
    }

    /// Leaves a conversation and forgets its keys.
    pub async fn leave(&self, org: Uuid, conversation_id: Uuid) -> Result<()> {
        self.inner.client.remove_member(org, conversation_id, self.inner.user_id).await?;
        let mut keystore = self.keystore();
        keystore.forget_conversation(conversation_id);
        keystore.save()?;
        Ok(())
    }

    /// Opens a WebSocket listener for an organization's conversations (all of the caller's, or
    /// only `conversations`), starting after each conversation's newest message.
    pub async fn listen(&self, org: Uuid, conversations: &[Uuid], options: ListenerOptions) -> Result<Listener> {
        Listener::start(self.clone(), org, conversations, options).await
    }
}

fn generation_u32(generation: i32) -> Result<u32> {
    u32::try_from(generation).map_err(|_| Error::Protocol(format!("negative key generation {generation}")))
}

fn generation_i32(generation: u32) -> Result<i32> {
    i32::try_from(generation).map_err(|_| Error::Crypto(CryptoError::InvalidGeneration(generation)))
}
