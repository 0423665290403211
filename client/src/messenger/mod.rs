//! The messaging engine: end-to-end encryption (protocol v2, MLS) applied to the API.
//!
//! [`Messenger`] holds a signed-in [`Client`] and the device's [`Keystore`] (its keys, its MLS
//! state and the plaintexts it decrypted), and does what a client must do around each call:
//!
//! - **Sending** ([`Messenger::send_text`]): bring the conversation's MLS group up to date
//!   ([`crate::mls::Device::sync_group`]: created, joined from a Welcome, rejoined, caught up,
//!   members' devices added and removed as the server lists them), encrypt the
//!   [content](crate::content) as an MLS application message in the current epoch, post it. When
//!   the server answers that the epoch moved on (`stale_generation`) or that a commit is due
//!   (`rotation_required`: a member left, a device was revoked) the group is synced again and the
//!   message encrypted again, with the same `client_message_id` (so a retry is never stored twice).
//!   The plaintext is kept: MLS cannot decrypt a device's own messages.
//! - **Reading** ([`Messenger::history`], [`Messenger::open`]): each message is decrypted once, in
//!   sequence order, the group taking the commits up to the message's epoch first; the plaintext is
//!   kept in the keystore and read from there afterwards. MLS authenticates the sender's leaf, whose
//!   credential the user's identity key signed; a message the server attributes to another device
//!   is shown as [`Body::CannotVerify`]. What this device cannot decrypt (sent before it joined, or
//!   in epochs it skipped by rejoining) is shown as [`Body::MissingKey`]: messages may be missing.
//! - **Reactions and pins** ([`Messenger::react`], [`Messenger::unreact`],
//!   [`Messenger::reactions`], [`Messenger::pin`]): reactions are sealed under the epoch's reaction
//!   key (exported from MLS), whose tag lets the server de-duplicate them.
//! - **Files** ([`Messenger::send_file`], [`Messenger::download`]): chunked encryption under a
//!   per-file key carried inside an MLS application message; see `files.rs`.
//! - **Calls** ([`Messenger::start_call`], [`Messenger::accept_call`], [`Messenger::hang_up`],
//!   [`Messenger::heartbeat`], [`Messenger::send_signal`], [`Messenger::open_signal`]): the
//!   lifecycle, and signalling sealed with MLS for one device; see `calls.rs`.
//! - **Listening** ([`Messenger::listen`]): the WebSocket, see [`Listener`].

mod calls;
mod export;
mod files;
mod identity;
mod keypackages;
mod listen;
mod rich;
mod timeline;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use chrono::{DateTime, Utc};
use conclave_protocol::api::{EditMessage, Member, Message, SendMessage, UpdateReceipts};
use openmls::group::MlsGroup;
use serde::Serialize;
use sha2::{Digest as _, Sha256};
use uuid::Uuid;

pub use calls::{CallChange, CallHeartbeat, HEARTBEAT_INTERVAL, ReceivedSignal, RelayedSignal, classify};
pub use export::ReadableExport;
pub use files::{DownloadedFile, media_type_for};
pub use identity::{IdentityState, SafetyCheck};
pub use keypackages::{KEY_PACKAGE_LOW_WATER, KEY_PACKAGE_TARGET};
pub use listen::{ListenEvent, Listener, ListenerOptions};
pub use rich::{ReactionValue, ReceivedReaction};
pub use timeline::{
    CallDirection, CallEvent, CallOutcome, MAX_TIMELINE_PAGE, TimelineCursor, TimelineItem, TimelinePage,
};

use crate::api::{Client, Error, MessageQuery, Result};
use crate::content::Content;
use crate::crypto::{ConversationKey, CryptoError};
use crate::keystore::{Keystore, Received};
use crate::mls::{
    DeliveryError, Device, GroupAddress, Incoming, Membership, MlsError, Opened, PAST_EPOCHS, Roster, TrustStore,
};

/// How many times a send is encrypted again after the server reports a concurrent change (another
/// device's commit moved the epoch on, the member set changed) before giving up.
const MAX_ATTEMPTS: usize = 4;

/// When a device refreshes its own leaf in a conversation (an MLS self-update: fresh keys for its
/// leaf and path, so that a device whose keys were stolen is healed out of the group's secrets,
/// RFC 9420 section 16.6): before sending, once it has sent `after_messages` messages in the
/// current epoch, or the current epoch is older than `max_age` since it first sent in it. Any
/// commit (another device's, a membership change) starts a new epoch and so resets both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpdatePolicy {
    /// Messages sent in one epoch before the next send updates first.
    pub after_messages: u32,
    /// How long this device sends in one epoch before the next send updates first.
    pub max_age: std::time::Duration,
}

impl Default for UpdatePolicy {
    /// After 1,000 messages or a week.
    fn default() -> Self {
        Self { after_messages: 1_000, max_age: std::time::Duration::from_secs(7 * 24 * 3600) }
    }
}

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
    /// The device that sent it (MLS authenticates it as the sender's leaf).
    pub sender_device_id: Option<Uuid>,
    /// The sender's id for the message (stable across edits).
    pub client_message_id: Uuid,
    /// The MLS epoch it is encrypted in.
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
    /// Decrypted (its sender authenticated by MLS).
    Content {
        /// The content.
        content: Content,
    },
    /// Deleted by its sender: the place in the sequence stays, the content is gone.
    Deleted,
    /// The server attributes the message to another device than the one MLS says sent it.
    CannotVerify,
    /// This device cannot decrypt it: it was not in the group in that epoch (it joined later, was
    /// removed before, or rejoined after losing its state), the epoch's secrets are gone, or it is
    /// this device's own message whose plaintext it no longer holds. Messages may be missing.
    MissingKey {
        /// The epoch.
        generation: i32,
    },
    /// MLS refused it (forged, tampered with, not an application message), or the content is
    /// malformed.
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
            Self::CannotVerify => "[cannot verify the sender]".into(),
            Self::MissingKey { generation } => {
                format!("[messages may be missing: this device cannot read epoch {generation}]")
            }
            Self::Rejected { reason } => format!("[rejected: {reason}]"),
        }
    }

    /// The text, when the message is a decrypted text.
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
    /// This device's MLS side, built on first use (`keypackages.rs`). Locked before the keystore
    /// whenever both are.
    mls: Mutex<Option<Arc<crate::mls::Device>>>,
    /// Held by whoever uses a group (MLS state is a ratchet: two uses at once would each advance
    /// their own copy).
    groups: tokio::sync::Mutex<()>,
    policy: Mutex<UpdatePolicy>,
    /// Conversations whose group this device rejoined (its state lost or unusable), with the
    /// epoch it rejoined at, until a listener announces them ([`Messenger::take_rejoins`]).
    rejoins: Mutex<Vec<(Uuid, u64)>>,
    /// The latest state of the live calls this device saw (`calls.rs`), to check signal senders.
    calls: Mutex<HashMap<Uuid, conclave_protocol::calls::Call>>,
    user_id: Uuid,
    device_id: Uuid,
}

/// What one batch of openings shares: each conversation's group, loaded once, and the server's
/// roster to check commits against.
#[derive(Default)]
struct Opening {
    groups: HashMap<Uuid, Option<MlsGroup>>,
    rosters: HashMap<Uuid, Roster>,
    /// The users with leaves in each conversation's group, by epoch ([`leaves_roster`]).
    leaves: HashMap<(Uuid, u64), Roster>,
}

/// Whether a sealed payload is a new message or an edit of one.
enum Submit {
    Send { reply_to_id: Option<Uuid>, attachment_ids: Vec<Uuid> },
    Edit { message_id: Uuid },
}

impl Messenger {
    /// The engine for the device `device_id` of `user_id`, whose secrets are in `keystore`.
    pub fn new(client: Client, keystore: Keystore, user_id: Uuid, device_id: Uuid) -> Self {
        Self {
            inner: Arc::new(Inner {
                client,
                keystore: Mutex::new(keystore),
                mls: Mutex::new(None),
                groups: tokio::sync::Mutex::new(()),
                policy: Mutex::new(UpdatePolicy::default()),
                rejoins: Mutex::new(Vec::new()),
                calls: Mutex::new(HashMap::new()),
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

    /// Sets when this device refreshes its own leaf ([`UpdatePolicy`]; the default otherwise).
    pub fn set_update_policy(&self, policy: UpdatePolicy) {
        *self.inner.policy.lock().unwrap_or_else(|p| p.into_inner()) = policy;
    }

    /// Runs `f` on the keystore (held locked; do not block in it).
    pub fn with_keystore<R>(&self, f: impl FnOnce(&mut Keystore) -> R) -> R {
        f(&mut self.keystore())
    }

    fn keystore(&self) -> MutexGuard<'_, Keystore> {
        // A panic while holding the lock leaves a keystore that is still consistent in memory.
        self.inner.keystore.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
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
        let at = address(org, conversation_id);
        let _turn = self.inner.groups.lock().await;
        let device = self.mls()?;
        let mut last_error = None;
        for _ in 0..MAX_ATTEMPTS {
            // Not saved yet: the save after encrypting keeps this sync too (a crash before it
            // only means syncing again).
            let mut group = self.synced_group(&device, at).await?;
            self.update_when_due(&device, at, &mut group).await?;
            self.with_keystore(|k| device.admit_members(&group, k.trust()))?;
            let key_generation = generation_i32(group.epoch().as_u64())?;
            let ciphertext = device.encrypt(&mut group, &plaintext);
            // The sender's ratchet moved: saved before the message leaves, so that no key is ever
            // used twice, even after a crash.
            self.keep_state(&device, None)?;
            let ciphertext = ciphertext?;
            let result = match &submit {
                Submit::Send { reply_to_id, attachment_ids } => {
                    let body = SendMessage {
                        client_message_id,
                        key_generation,
                        ciphertext,
                        reply_to_id: *reply_to_id,
                        attachment_ids: attachment_ids.clone(),
                    };
                    self.inner.client.send_message(org, conversation_id, &body).await
                }
                Submit::Edit { message_id } => {
                    let body = EditMessage { key_generation, ciphertext };
                    self.inner.client.edit_message(org, conversation_id, *message_id, &body).await
                }
            };
            match result {
                Ok(message) => {
                    self.keep_sent(&message, &plaintext, group.epoch().as_u64())?;
                    return Ok(message);
                }
                Err(err) if epoch_moved(&err) => {
                    // The server says the conversation is past this epoch: the next sync must get
                    // there, or this device stops sending in it.
                    if let Some(listed) = err.current_key_generation().and_then(|g| u64::try_from(g).ok()) {
                        device.saw_epoch(&group, listed);
                    }
                    last_error = Some(err);
                }
                Err(err) => return Err(err),
            }
        }
        Err(last_error.unwrap_or_else(|| Error::Protocol("the message could not be sent".into())))
    }

    /// The conversation's group, brought to the current epoch with exactly the members' active
    /// devices in it. The caller holds `groups`.
    async fn current_group(&self, device: &Device, at: GroupAddress) -> Result<MlsGroup> {
        let synced = self.synced_group(device, at).await;
        self.keystore().save()?;
        synced
    }

    /// [`Self::current_group`], with what the sync changed put in the keystore but not written:
    /// for a caller that saves right after.
    async fn synced_group(&self, device: &Device, at: GroupAddress) -> Result<MlsGroup> {
        let mut trust = self.with_keystore(|k| k.trust().clone());
        let synced = device.sync_group(&self.inner.client, at, &mut trust).await;
        self.stage_state(device, Some(trust))?;
        let (group, opened) = synced?;
        self.note_opened(at.conversation_id, &group, opened);
        Ok(group)
    }

    /// Remembers a rejoin, for the listener to announce: messages of the epochs skipped are
    /// missing on this device.
    fn note_opened(&self, conversation_id: Uuid, group: &MlsGroup, opened: Opened) {
        if opened == Opened::Rejoined {
            let mut rejoins = self.inner.rejoins.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            rejoins.push((conversation_id, group.epoch().as_u64()));
        }
    }

    /// The rejoins of the conversations `wanted` keeps, taken (the others stay for another
    /// listener): each conversation and the epoch this device rejoined it at.
    pub(crate) fn take_rejoins(&self, wanted: impl Fn(&Uuid) -> bool) -> Vec<(Uuid, u64)> {
        let mut rejoins = self.inner.rejoins.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let (taken, kept) = rejoins.drain(..).partition(|(conversation_id, _)| wanted(conversation_id));
        *rejoins = kept;
        taken
    }

    /// Saves, in one keystore write, the MLS state, the reaction keys of the epochs entered, the
    /// identity keys pinned on the way (`trust`), and the plaintexts kept since the last save.
    fn keep_state(&self, device: &Device, trust: Option<TrustStore>) -> Result<()> {
        self.stage_state(device, trust)?;
        self.keystore().save()?;
        Ok(())
    }

    /// [`Self::keep_state`] without the write.
    fn stage_state(&self, device: &Device, trust: Option<TrustStore>) -> Result<()> {
        let snapshot = device.snapshot();
        let entered = device.take_epoch_keys();
        self.with_keystore(|keystore| -> Result<()> {
            if let Some(trust) = trust {
                *keystore.trust_mut() = trust;
            }
            for key in entered {
                // Epoch 0 has no messages (the server's epochs start at 1).
                if let Ok(epoch @ 1..) = u32::try_from(key.epoch) {
                    keystore.insert_key(ConversationKey::from_bytes(key.conversation_id, epoch, &key.secret)?);
                }
            }
            keystore.set_mls_state(snapshot);
            Ok(())
        })
    }

    /// Refreshes this device's leaf first when the [`UpdatePolicy`] says it is due. Another
    /// device's commit winning the epoch meanwhile does as well: the group is caught up instead.
    async fn update_when_due(&self, device: &Device, at: GroupAddress, group: &mut MlsGroup) -> Result<()> {
        let policy = *self.inner.policy.lock().unwrap_or_else(|p| p.into_inner());
        let epoch = group.epoch().as_u64();
        let due = self.keystore().sending(at.conversation_id).is_some_and(|sending| {
            let age = Utc::now().timestamp().saturating_sub(sending.since);
            sending.epoch == epoch
                && (sending.sent >= policy.after_messages
                    || u64::try_from(age).is_ok_and(|age| age >= policy.max_age.as_secs()))
        });
        if !due {
            return Ok(());
        }
        let outgoing = device.self_update(group)?;
        let pushed = device.push(&self.inner.client, at, group, outgoing).await;
        self.keep_state(device, None)?;
        match pushed {
            Ok(_) => Ok(()),
            Err(DeliveryError::Rebase { .. }) => {
                *group = self.current_group(device, at).await?;
                Ok(())
            }
            Err(error) => Err(error.into()),
        }
    }

    /// Keeps the plaintext of a message this device sent (it cannot decrypt its own), and counts
    /// it for the [`UpdatePolicy`].
    fn keep_sent(&self, message: &Message, plaintext: &[u8], epoch: u64) -> Result<()> {
        let Some(ciphertext) = message.ciphertext.as_deref() else { return Ok(()) };
        self.with_keystore(|keystore| {
            keystore.count_sent(message.conversation_id, epoch, Utc::now().timestamp());
            keystore.keep_received(Received {
                message_id: message.id,
                conversation_id: message.conversation_id,
                seq: message.seq,
                sender_device_id: self.inner.device_id,
                digest: digest(ciphertext),
                plaintext: plaintext.to_vec(),
            });
            keystore.save()
        })?;
        Ok(())
    }

    /// The reaction key of the conversation's current epoch (the group synced first).
    async fn sending_key(&self, org: Uuid, conversation_id: Uuid) -> Result<ConversationKey> {
        let _turn = self.inner.groups.lock().await;
        let device = self.mls()?;
        let group = self.current_group(&device, address(org, conversation_id)).await?;
        let key = device.epoch_key(&group)?;
        let epoch = u32::try_from(key.epoch).map_err(|_| CryptoError::InvalidGeneration(u32::MAX))?;
        Ok(ConversationKey::from_bytes(conversation_id, epoch, &key.secret)?)
    }

    /// Makes sure the conversation moved to a new epoch now (for example right after removing a
    /// member): the commit the membership calls for, or else a self-update (fresh keys for this
    /// device's leaf). Returns the new epoch.
    pub async fn rotate(&self, org: Uuid, conversation_id: Uuid) -> Result<u32> {
        let at = address(org, conversation_id);
        let _turn = self.inner.groups.lock().await;
        let device = self.mls()?;
        let before = self.inner.client.conversation(org, conversation_id).await?.current_key_generation;
        let mut group = self.current_group(&device, at).await?;
        if i64::try_from(group.epoch().as_u64()).ok() == Some(i64::from(before)) {
            let outgoing = device.self_update(&mut group)?;
            let pushed = device.push(&self.inner.client, at, &mut group, outgoing).await;
            self.keep_state(&device, None)?;
            pushed?;
        }
        u32::try_from(group.epoch().as_u64()).map_err(|_| Error::Crypto(CryptoError::InvalidGeneration(u32::MAX)))
    }

    /// The reaction key of an epoch, as this device kept it when it entered the epoch; when it
    /// has not entered it yet, the group is joined or taken up to it first.
    async fn key_for(
        &self,
        org: Uuid,
        conversation_id: Uuid,
        generation: u32,
        opening: &mut Opening,
    ) -> Result<ConversationKey> {
        let kept = |this: &Self| this.keystore().key(conversation_id, generation).cloned();
        if let Some(key) = kept(self) {
            return Ok(key);
        }
        let _turn = self.inner.groups.lock().await;
        let device = self.mls()?;
        let at = address(org, conversation_id);
        let mut trust = self.with_keystore(|k| k.trust().clone());
        let entered = async {
            if self.load_group(&device, at, opening, &mut trust).await? {
                let current = opening.groups.get(&conversation_id).and_then(Option::as_ref).map(|g| g.epoch().as_u64());
                if current.is_some_and(|epoch| epoch < u64::from(generation)) {
                    self.follow(&device, at, u64::from(generation), opening, &mut trust).await?;
                }
            }
            Ok::<_, Error>(())
        }
        .await;
        self.keep_state(&device, Some(trust))?;
        entered?;
        kept(self).ok_or(Error::MissingKey { conversation_id, generation })
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

    /// Opens messages (in the order given), decrypting in sequence order what this device has not
    /// decrypted before.
    async fn open_all(&self, org: Uuid, messages: &[Message]) -> Result<Vec<ReceivedMessage>> {
        let _turn = self.inner.groups.lock().await;
        let device = self.mls()?;
        let mut order: Vec<usize> = (0..messages.len()).collect();
        order.sort_by_key(|&i| (messages[i].conversation_id, messages[i].seq));
        let mut opening = Opening::default();
        let mut trust = self.with_keystore(|k| k.trust().clone());
        let mut bodies: Vec<Option<Body>> = vec![None; messages.len()];
        let mut result = Ok(());
        for i in order {
            match self.body(&device, org, &messages[i], &mut opening, &mut trust).await {
                Ok(body) => bodies[i] = Some(body),
                Err(err) => {
                    result = Err(err);
                    break;
                }
            }
        }
        // Whatever was decrypted is kept with the state that decrypted it, even when a later
        // message could not be fetched.
        self.keep_state(&device, Some(trust))?;
        result?;
        Ok(messages
            .iter()
            .zip(bodies)
            .map(|(message, body)| {
                received(message, body.unwrap_or(Body::MissingKey { generation: message.key_generation }))
            })
            .collect())
    }

    /// Opens one message (from the API or a frame). Errors are only for failures to reach the
    /// server; a message that cannot be read is returned with a [`Body`] that says why.
    pub async fn open(&self, org: Uuid, message: &Message) -> Result<ReceivedMessage> {
        let mut opened = self.open_all(org, std::slice::from_ref(message)).await?;
        opened.pop().ok_or_else(|| Error::Protocol("no message opened".into()))
    }

    async fn body(
        &self,
        device: &Device,
        org: Uuid,
        message: &Message,
        opening: &mut Opening,
        trust: &mut TrustStore,
    ) -> Result<Body> {
        let Some(ciphertext) = message.ciphertext.as_deref().filter(|_| message.deleted_at.is_none()) else {
            // Deleted by its sender: this device's copy goes too.
            self.with_keystore(|keystore| keystore.forget_received(message.id));
            return Ok(Body::Deleted);
        };
        let digest = digest(ciphertext);
        if let Some(kept) = self.keystore().received(message.id, &digest) {
            // Decrypted before: shown only under the sender MLS authenticated then.
            if message.sender_device_id != Some(kept.sender_device_id) {
                return Ok(Body::CannotVerify);
            }
            return Ok(decoded(&kept.plaintext));
        }
        let missing = Body::MissingKey { generation: message.key_generation };
        if message.sender_device_id == Some(self.inner.device_id) {
            // MLS does not decrypt a device's own messages, and this one's plaintext is gone.
            return Ok(missing);
        }
        let Ok(epoch) = u64::try_from(message.key_generation) else {
            return Ok(Body::Rejected { reason: format!("invalid epoch {}", message.key_generation) });
        };
        let at = address(org, message.conversation_id);
        if !self.load_group(device, at, opening, trust).await? {
            return Ok(missing);
        }
        // A message of a later epoch: the group takes the commits up to it first.
        let behind = opening.groups.get(&at.conversation_id).and_then(Option::as_ref).map(|g| g.epoch().as_u64());
        if behind.is_some_and(|current| current < epoch) && !self.follow(device, at, epoch, opening, trust).await? {
            return Ok(missing);
        }
        let Some(Some(group)) = opening.groups.get_mut(&at.conversation_id) else { return Ok(missing) };
        if epoch.saturating_add(PAST_EPOCHS as u64) < group.epoch().as_u64() {
            return Ok(missing);
        }
        let roster =
            opening.leaves.entry((at.conversation_id, group.epoch().as_u64())).or_insert_with(|| leaves_roster(group));
        Ok(match device.process(group, ciphertext, roster, trust) {
            Ok(Incoming::Application { sender, plaintext, .. }) => {
                let attributed = message.sender_device_id == Some(sender.device_id)
                    && message.sender_user_id == Some(sender.user_id);
                let body = if attributed { decoded(&plaintext) } else { Body::CannotVerify };
                // Kept either way: the message key is spent, and a true attribution must still
                // show it.
                self.with_keystore(|keystore| {
                    keystore.keep_received(Received {
                        message_id: message.id,
                        conversation_id: message.conversation_id,
                        seq: message.seq,
                        sender_device_id: sender.device_id,
                        digest,
                        plaintext,
                    })
                });
                body
            }
            Ok(_) => Body::Rejected { reason: "not an application message".into() },
            Err(MlsError::CannotDecrypt | MlsError::WrongEpoch { .. } | MlsError::NotInGroup) => missing,
            Err(err) => Body::Rejected { reason: err.to_string() },
        })
    }

    /// Loads the conversation's group into `opening` once: from this device's storage as it is
    /// (it follows the epochs of the messages read), else joined or rejoined at the current epoch.
    /// `false` when this device has no group and cannot have one (no longer a member).
    async fn load_group(
        &self,
        device: &Device,
        at: GroupAddress,
        opening: &mut Opening,
        trust: &mut TrustStore,
    ) -> Result<bool> {
        if let Some(group) = opening.groups.get(&at.conversation_id) {
            return Ok(group.is_some());
        }
        let group = match device.load(at.conversation_id)? {
            Some(group) => Some(group),
            None => match Membership::fetch(&self.inner.client, at).await {
                Ok(membership) => match device.open_group(&self.inner.client, at, &membership, trust).await {
                    Ok((group, opened)) => {
                        self.note_opened(at.conversation_id, &group, opened);
                        Some(group)
                    }
                    Err(DeliveryError::Mls(_)) => None,
                    Err(DeliveryError::Api(err)) if gone(&err) => None,
                    Err(err) => return Err(err.into()),
                },
                Err(DeliveryError::Api(err)) if gone(&err) => None,
                Err(err) => return Err(err.into()),
            },
        };
        let loaded = group.is_some();
        opening.groups.insert(at.conversation_id, group);
        Ok(loaded)
    }

    /// Takes the commits up to `epoch`. When this device's state cannot follow them (corrupt, or
    /// refused), it rejoins at the current epoch: the messages of the epochs between are missing.
    async fn follow(
        &self,
        device: &Device,
        at: GroupAddress,
        epoch: u64,
        opening: &mut Opening,
        trust: &mut TrustStore,
    ) -> Result<bool> {
        let client = &self.inner.client;
        let Some(Some(group)) = opening.groups.get_mut(&at.conversation_id) else { return Ok(false) };
        let roster = match opening.rosters.get(&at.conversation_id) {
            Some(roster) => roster.clone(),
            None => match Membership::fetch(client, at).await {
                Ok(membership) => {
                    let roster = membership.roster(Some(group));
                    opening.rosters.insert(at.conversation_id, roster.clone());
                    roster
                }
                Err(DeliveryError::Api(err)) if gone(&err) => return Ok(false),
                Err(err) => return Err(err.into()),
            },
        };
        match device.catch_up_to(client, at, group, &roster, trust, epoch).await {
            Ok(_) => Ok(true),
            Err(DeliveryError::Api(err)) if gone(&err) => Ok(false),
            Err(DeliveryError::Mls(_)) => {
                device.forget(group)?;
                opening.groups.remove(&at.conversation_id);
                self.load_group(device, at, opening, trust).await?;
                Ok(false)
            }
            Err(err) => Err(err.into()),
        }
    }

    /// Drops this device's copies of what the server no longer holds: a message its sender
    /// deleted (`message_id`), or a conversation's messages below `before_seq` (retention).
    /// The listener calls it on `message_deleted` and `history_removed`; returns how many copies
    /// went.
    pub fn forget_removed(
        &self,
        conversation_id: Uuid,
        message_id: Option<Uuid>,
        before_seq: Option<i64>,
    ) -> Result<usize> {
        self.with_keystore(|keystore| {
            let mut gone = message_id.is_some_and(|id| keystore.forget_received(id)) as usize;
            if let Some(before_seq) = before_seq {
                gone += keystore.forget_received_before(conversation_id, before_seq);
            }
            if gone > 0 {
                keystore.save()?;
            }
            Ok(gone)
        })
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

    /// Leaves a conversation and forgets its group, keys and plaintexts.
    pub async fn leave(&self, org: Uuid, conversation_id: Uuid) -> Result<()> {
        self.inner.client.remove_member(org, conversation_id, self.inner.user_id).await?;
        let _turn = self.inner.groups.lock().await;
        let device = self.mls()?;
        if let Some(mut group) = device.load(conversation_id)? {
            device.forget(&mut group)?;
        }
        self.keep_state(&device, None)?;
        let mut keystore = self.keystore();
        keystore.forget_conversation(conversation_id);
        keystore.save()?;
        Ok(())
    }

    /// Opens a WebSocket listener for an organization's conversations (all of the caller's, or
    /// only `conversations`), starting after each conversation's newest message.
    pub async fn listen(&self, org: Uuid, conversations: &[Uuid], options: ListenerOptions) -> Result<Listener> {
        Listener::start(self.clone(), org, conversations, None, options).await
    }

    /// Opens a WebSocket listener for all of the caller's conversations in an organization that
    /// resumes after `cursors` (those of a listener that stopped: [`Listener::cursors`]), so that
    /// nothing sent in between is missed; conversations without a cursor start after their newest
    /// message.
    pub async fn listen_from(
        &self,
        org: Uuid,
        cursors: &std::collections::BTreeMap<Uuid, i64>,
        options: ListenerOptions,
    ) -> Result<Listener> {
        Listener::start(self.clone(), org, &[], Some(cursors), options).await
    }
}

fn generation_i32(epoch: u64) -> Result<i32> {
    i32::try_from(epoch).map_err(|_| Error::Protocol(format!("epoch {epoch} is beyond 2^31 - 1")))
}

fn address(organization_id: Uuid, conversation_id: Uuid) -> GroupAddress {
    GroupAddress { organization_id, conversation_id }
}

/// The server answered that the epoch moved on: sync the group and encrypt again.
fn epoch_moved(error: &Error) -> bool {
    error.is_api("rotation_required") || error.is_api("stale_generation") || error.is_api("unknown_generation")
}

/// The conversation is closed to this device (it left, or was removed).
fn gone(error: &Error) -> bool {
    matches!(error, Error::Api(err) if err.status.as_u16() == 404 || err.status.as_u16() == 403)
}

fn digest(ciphertext: &[u8]) -> [u8; 32] {
    Sha256::digest(ciphertext).into()
}

fn decoded(plaintext: &[u8]) -> Body {
    match Content::decode(plaintext) {
        Ok(content) => Body::Content { content },
        Err(err) => Body::Rejected { reason: err.to_string() },
    }
}

fn received(message: &Message, body: Body) -> ReceivedMessage {
    ReceivedMessage {
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
    }
}

/// The roster an application message's sender is checked against: the users with leaves in the
/// group in the message's epoch (each leaf was checked against the identity chain and the roster
/// of its day when it entered; a member removed since still sent what they sent while in).
fn leaves_roster(group: &MlsGroup) -> Roster {
    Roster {
        members: Device::leaves(group).into_iter().map(|leaf| leaf.user_id).collect(),
        revoked: Default::default(),
    }
}
