//! The WebSocket listener: live messages, decrypted, with reconnection and resume.
//!
//! The listener keeps, per conversation it follows, the sequence number of the last message it
//! delivered to the caller. Every connection starts with `ClientFrame::Resume` carrying those
//! cursors, so the server first replays what was missed (from PostgreSQL, in order) and then
//! sends live frames. A message at or below a cursor is a duplicate and is dropped; a message
//! beyond `cursor + 1` reveals a gap (a lost live publish), which is filled from the HTTP API
//! before the message is delivered. Either way the caller sees each message once, in order.
//!
//! The socket is opened with `?organization_id=`, so the server sends only the listener's
//! organization; a conversation the caller joins later is picked up when it first appears.
//!
//! Close codes (`conclave_protocol::events::close`): `4001` (device revoked, session ended)
//! stops the listener with [`Error::SessionEnded`]; anything else (`1001` going away, `4008` slow
//! consumer, `4009` timeout, a broken connection) reconnects after an exponential backoff and
//! resumes. An expired access token at the handshake is refreshed once. Frame types this client
//! does not know are ignored.
//!
//! A connection can also die without a word: its route vanished (the pod it reached was
//! deleted, a NAT entry expired), so no close frame and no reset ever arrive. Two deadlines turn
//! that silence into a reconnection: opening a connection (TCP, the WebSocket handshake, the
//! resume frame) must finish within `connect_timeout`, and once open the server must not stay
//! silent: after `ping_interval` without a frame of any kind the listener pings, and a ping with
//! no frame in answer within `pong_timeout` ends the connection.
//!
//! The server keeps a healthy connection alive itself: its heartbeat, every 20 s, pings each client
//! it has not heard from since its previous pass (so after 20-40 s of silence), all of a
//! replica's sockets in one pass, which the SDK answers (a WebSocket pong). So the listener's
//! ping (after 45 s without a frame by default, longer than the server's longest gap of about
//! 40 s) seldom goes out, mostly when the server has gone quiet: an idle socket costs the server one
//! batched ping and one pong every 40 s instead of a ping of the client's own every 20 s, the
//! wake-ups that were most of an idle replica's CPU (`docs/benchmarks.md`, "Idle connections").

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::time::Duration;

use conclave_protocol::api::{Member, Message};
use conclave_protocol::events::{ClientFrame, ServerFrame, close};
use conclave_protocol::rich::{Pin, Presence};
use futures::{SinkExt as _, StreamExt as _};
use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, HeaderValue};
use tokio::net::TcpStream;
use tokio::time::{Instant, Interval, MissedTickBehavior};
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::{self, Message as WsMessage};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use uuid::Uuid;

use conclave_protocol::calls::Call;

use super::{CallChange, Messenger, ReceivedMessage, ReceivedReaction, ReceivedSignal, RelayedSignal, classify};
use crate::api::{Error, Result};
use crate::calls::signal::SignalError;

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

const INITIAL_BACKOFF: Duration = Duration::from_millis(250);
/// The most missed messages fetched at once to fill a gap.
const GAP_PAGE: u32 = 200;

/// How a listener behaves.
#[derive(Debug, Clone)]
pub struct ListenerOptions {
    /// Post `delivered_seq` for each message received.
    pub mark_delivered: bool,
    /// Also post `read_seq` (for a client that shows every message as it arrives, like the CLI).
    pub mark_read: bool,
    /// How long the server may stay silent (no frame of any kind, its own pings included) before
    /// the listener pings it. The server pings a client it has not heard from since its previous
    /// heartbeat pass (20-40 s), so a value above that gap leaves keeping the connection alive to
    /// the server.
    pub ping_interval: Duration,
    /// How long a ping may go without any frame in answer before the connection is given up.
    pub pong_timeout: Duration,
    /// The longest wait between reconnection attempts.
    pub max_backoff: Duration,
    /// The longest a connection may take to open (TCP, WebSocket handshake, resume frame).
    pub connect_timeout: Duration,
}

impl Default for ListenerOptions {
    fn default() -> Self {
        Self {
            mark_delivered: true,
            mark_read: false,
            ping_interval: Duration::from_secs(45),
            pong_timeout: Duration::from_secs(15),
            max_backoff: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
        }
    }
}

/// What a listener reports.
#[derive(Debug, Clone, PartialEq)]
pub enum ListenEvent {
    /// A new message, opened.
    Message(ReceivedMessage),
    /// A message was edited; its new content, opened.
    Edited(ReceivedMessage),
    /// A message was deleted.
    Deleted {
        /// The conversation.
        conversation_id: Uuid,
        /// The message.
        message_id: Uuid,
        /// Its sequence number.
        seq: i64,
    },
    /// Someone joined a conversation.
    MemberAdded {
        /// The conversation.
        conversation_id: Uuid,
        /// The new member.
        user_id: Uuid,
    },
    /// Someone left or was removed.
    MemberRemoved {
        /// The conversation.
        conversation_id: Uuid,
        /// The member.
        user_id: Uuid,
    },
    /// A new key generation exists (the listener fetches it when a message needs it).
    KeyRotated {
        /// The conversation.
        conversation_id: Uuid,
        /// The new generation.
        generation: i32,
    },
    /// The next sender must rotate the key (the SDK does it on send).
    RotationRequired {
        /// The conversation.
        conversation_id: Uuid,
    },
    /// Retention removed the conversation's messages below `before_seq` on the server; the
    /// application should delete its local copies too.
    HistoryRemoved {
        /// The conversation.
        conversation_id: Uuid,
        /// Messages below this sequence number were removed.
        before_seq: i64,
    },
    /// A member's delivered or read cursor moved.
    Receipt {
        /// The conversation.
        conversation_id: Uuid,
        /// The member and their cursors.
        member: Member,
    },
    /// The server replayed everything missed since the cursors; live frames follow.
    Resumed,
    /// The connection was lost; the listener reconnects after `retry_in`.
    Disconnected {
        /// Why.
        reason: String,
        /// When the next attempt is made.
        retry_in: Duration,
    },
    /// The server refused a frame.
    ServerError {
        /// Its code.
        code: String,
        /// Its message.
        message: String,
    },
    /// A member reacted to a message (opened).
    ReactionAdded(ReceivedReaction),
    /// A member took a reaction back.
    ReactionRemoved {
        /// The conversation.
        conversation_id: Uuid,
        /// The message.
        message_id: Uuid,
        /// The member.
        user_id: Uuid,
        /// The removed reaction's tag.
        value_tag: [u8; 32],
        /// Its value, when this listener saw the reaction added (tags are opaque otherwise).
        value: Option<String>,
    },
    /// A message was pinned.
    Pinned(Pin),
    /// A message was unpinned.
    Unpinned {
        /// The conversation.
        conversation_id: Uuid,
        /// The message.
        message_id: Uuid,
    },
    /// A member is typing (for a few seconds).
    Typing {
        /// The conversation.
        conversation_id: Uuid,
        /// The member.
        user_id: Uuid,
    },
    /// A member of a followed conversation is now online, idle or offline.
    Presence(Presence),
    /// This device lost (or could not follow) its state of the conversation's group and rejoined
    /// it at `epoch`: what was sent in the epochs it skipped cannot be read here (those messages
    /// open as [`super::Body::MissingKey`]), so the application should say that messages may be
    /// missing. Comes before the events of the frame that made the device rejoin.
    MessagesMayBeMissing {
        /// The conversation.
        conversation_id: Uuid,
        /// The epoch this device rejoined at.
        epoch: u64,
    },
    /// A call of a followed conversation started or changed: the whole call, and what it means
    /// to this device (ring, stop ringing, answered elsewhere, ended...).
    CallUpdated {
        /// The call as the server has it now.
        call: Call,
        /// What that means here.
        change: CallChange,
    },
    /// A signal for this device in a call, opened and checked (MLS sender, addressee, call).
    CallSignal(ReceivedSignal),
    /// A signal that was refused (altered, misattributed, for another device or call, or from a
    /// device not in the call): dropped, reported so a UI can tell.
    CallSignalRejected {
        /// The call it was relayed in.
        call_id: Uuid,
        /// The device the server attributed it to.
        from_device_id: Uuid,
        /// Why it was refused.
        error: SignalError,
    },
}

/// A live subscription to an organization's conversations. Call [`Listener::next`] in a loop.
pub struct Listener {
    messenger: Messenger,
    org: Uuid,
    /// Only these conversations, when given.
    only: Option<HashSet<Uuid>>,
    /// The conversations followed, and the last sequence number delivered in each.
    cursors: BTreeMap<Uuid, i64>,
    /// Conversations seen on the socket that are not followed (another organization's).
    ignored: HashSet<Uuid>,
    socket: Option<Socket>,
    pending: VecDeque<ListenEvent>,
    /// The values of the reactions seen added, by (message, user, tag), to name removed ones.
    reaction_values: HashMap<(Uuid, Uuid, [u8; 32]), String>,
    backoff: Duration,
    reconnect_at: Option<Instant>,
    ping: Interval,
    /// A ping was sent and nothing has been heard from the server since.
    unanswered_ping: bool,
    options: ListenerOptions,
}

enum Step {
    Frame(Option<std::result::Result<WsMessage, tungstenite::Error>>),
    Ping,
}

impl Listener {
    /// A listener of `org` (only `conversations`, when not empty), starting after each
    /// conversation's newest message, or after the cursor `from` names for it (a listener that
    /// resumes where another one stopped).
    pub(super) async fn start(
        messenger: Messenger,
        org: Uuid,
        conversations: &[Uuid],
        from: Option<&BTreeMap<Uuid, i64>>,
        options: ListenerOptions,
    ) -> Result<Self> {
        let mine = messenger.client().conversations(org).await?;
        let only = (!conversations.is_empty()).then(|| conversations.iter().copied().collect::<HashSet<_>>());
        let mut cursors = BTreeMap::new();
        for conversation in &mine {
            if only.as_ref().is_none_or(|only| only.contains(&conversation.id)) {
                let resumed = from.and_then(|from| from.get(&conversation.id)).copied();
                cursors.insert(conversation.id, resumed.unwrap_or(conversation.last_seq));
            }
        }
        if let Some(missing) = conversations.iter().find(|id| !cursors.contains_key(id)) {
            return Err(Error::Protocol(format!("conversation {missing} is not one of yours in this organization")));
        }
        let mut ping = tokio::time::interval_at(Instant::now() + options.ping_interval, options.ping_interval);
        ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut listener = Self {
            messenger,
            org,
            only,
            cursors,
            ignored: HashSet::new(),
            socket: None,
            pending: VecDeque::new(),
            reaction_values: HashMap::new(),
            backoff: INITIAL_BACKOFF,
            reconnect_at: None,
            ping,
            unanswered_ping: false,
            options,
        };
        // The first connection fails loudly (a wrong URL, a revoked session); later ones retry.
        listener.connect().await?;
        Ok(listener)
    }

    /// The conversations followed and the last sequence number delivered in each.
    pub fn cursors(&self) -> &BTreeMap<Uuid, i64> {
        &self.cursors
    }

    /// The next event. Reconnects by itself; fails only when the session has ended (or the
    /// server cannot be used at all).
    pub async fn next(&mut self) -> Result<ListenEvent> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Ok(event);
            }
            let Some(socket) = self.socket.as_mut() else {
                if let Some(at) = self.reconnect_at.take() {
                    tokio::time::sleep_until(at).await;
                }
                match self.connect().await {
                    Ok(()) => {}
                    Err(err) if is_fatal(&err) => return Err(err),
                    Err(err) => self.disconnected(err.chain()),
                }
                continue;
            };
            let step = tokio::select! {
                frame = socket.next() => Step::Frame(frame),
                _ = self.ping.tick() => Step::Ping,
            };
            if matches!(step, Step::Frame(Some(Ok(_)))) {
                // Heard from: the silence that a ping would break starts again.
                self.unanswered_ping = false;
                self.ping.reset_after(self.options.ping_interval);
            }
            match step {
                Step::Ping if self.unanswered_ping => {
                    let silence = self.options.ping_interval + self.options.pong_timeout;
                    self.disconnected(format!("the server was not heard from for {silence:?}, not even a pong"));
                }
                Step::Ping => {
                    let ping = frame_text(&ClientFrame::Ping)?;
                    match socket.send(WsMessage::text(ping)).await {
                        Ok(()) => {
                            self.unanswered_ping = true;
                            self.ping.reset_after(self.options.pong_timeout);
                        }
                        Err(err) => self.disconnected(err.to_string()),
                    }
                }
                Step::Frame(Some(Ok(WsMessage::Text(text)))) => {
                    let before = self.pending.len();
                    self.on_text(text.as_str()).await?;
                    self.announce_rejoins(before);
                }
                Step::Frame(Some(Ok(WsMessage::Close(frame)))) => {
                    let code = frame.as_ref().map(|frame| u16::from(frame.code));
                    if code == Some(close::REVOKED) {
                        self.socket = None;
                        return Err(Error::SessionEnded(
                            "the server closed the connection: device or session revoked".into(),
                        ));
                    }
                    let reason = match frame {
                        Some(frame) => {
                            format!("closed by the server (code {}: {})", u16::from(frame.code), frame.reason)
                        }
                        None => "closed by the server".to_owned(),
                    };
                    self.disconnected(reason);
                }
                Step::Frame(Some(Ok(_))) => {}
                Step::Frame(Some(Err(err))) => self.disconnected(err.to_string()),
                Step::Frame(None) => self.disconnected("the connection closed".to_owned()),
            }
        }
    }

    /// Queues, at `at` (before the events the rejoin came with), a
    /// [`ListenEvent::MessagesMayBeMissing`] for each followed conversation this device rejoined.
    fn announce_rejoins(&mut self, at: usize) {
        let rejoins = self.messenger.take_rejoins(|conversation_id| self.cursors.contains_key(conversation_id));
        for (offset, (conversation_id, epoch)) in rejoins.into_iter().enumerate() {
            self.pending.insert(at + offset, ListenEvent::MessagesMayBeMissing { conversation_id, epoch });
        }
    }

    /// Closes the connection politely.
    pub async fn close(mut self) {
        if let Some(mut socket) = self.socket.take() {
            let _ = socket.close(None).await;
        }
    }

    fn disconnected(&mut self, reason: String) {
        self.socket = None;
        let retry_in = self.backoff;
        self.backoff = (self.backoff * 2).min(self.options.max_backoff);
        self.reconnect_at = Some(Instant::now() + retry_in);
        self.pending.push_back(ListenEvent::Disconnected { reason, retry_in });
    }

    async fn connect(&mut self) -> Result<()> {
        let limit = self.options.connect_timeout;
        let resume = frame_text(&ClientFrame::Resume { cursors: self.cursors.clone() })?;
        let socket =
            tokio::time::timeout(limit, self.open_and_resume(resume)).await.map_err(|_| Error::Timeout(limit))??;
        self.socket = Some(socket);
        self.ping.reset();
        self.unanswered_ping = false;
        Ok(())
    }

    /// Opens a socket (refreshing the access token once if the server refuses it) and sends the
    /// resume frame on it.
    async fn open_and_resume(&self, resume: String) -> Result<Socket> {
        let client = self.messenger.client().clone();
        let token = client.access_token().await?;
        let mut socket = match open_socket(client.server(), self.org, &token).await {
            Err(Error::WebSocket(err)) if is_unauthorized(&err) => {
                let token = client.refresh_after(Some(&token)).await?;
                match open_socket(client.server(), self.org, &token).await {
                    Err(Error::WebSocket(err)) if is_unauthorized(&err) => {
                        return Err(Error::SessionEnded("the server refused the access token".into()));
                    }
                    other => other?,
                }
            }
            other => other?,
        };
        socket.send(WsMessage::text(resume)).await?;
        Ok(socket)
    }

    async fn on_text(&mut self, text: &str) -> Result<()> {
        // Frame types added after this client was written are ignored, as the protocol asks.
        let Ok(frame) = serde_json::from_str::<ServerFrame>(text) else { return Ok(()) };
        match frame {
            ServerFrame::Ready { .. } => self.backoff = INITIAL_BACKOFF,
            ServerFrame::Resumed { .. } => self.pending.push_back(ListenEvent::Resumed),
            ServerFrame::MessageCreated { message } => self.on_message(message).await?,
            ServerFrame::MessageEdited { message } => {
                if self.follows(message.conversation_id, None).await? {
                    let opened = self.messenger.open(self.org, &message).await?;
                    self.pending.push_back(ListenEvent::Edited(opened));
                }
            }
            ServerFrame::MessageDeleted { conversation_id, message_id, seq } => {
                if self.follows(conversation_id, None).await? {
                    self.messenger.forget_removed(conversation_id, Some(message_id), None)?;
                    self.pending.push_back(ListenEvent::Deleted { conversation_id, message_id, seq });
                }
            }
            ServerFrame::ReceiptUpdated { conversation_id, member } => {
                if self.follows(conversation_id, None).await? {
                    self.pending.push_back(ListenEvent::Receipt { conversation_id, member });
                }
            }
            ServerFrame::MemberAdded { conversation_id, user_id } => {
                if self.follows(conversation_id, None).await? {
                    self.pending.push_back(ListenEvent::MemberAdded { conversation_id, user_id });
                }
            }
            ServerFrame::MemberRemoved { conversation_id, user_id } => {
                if self.follows(conversation_id, None).await? {
                    self.pending.push_back(ListenEvent::MemberRemoved { conversation_id, user_id });
                    if user_id == self.messenger.user_id() {
                        self.cursors.remove(&conversation_id);
                    }
                }
            }
            ServerFrame::KeyRotated { conversation_id, generation } => {
                if self.follows(conversation_id, None).await? {
                    self.pending.push_back(ListenEvent::KeyRotated { conversation_id, generation });
                }
            }
            ServerFrame::RotationRequired { conversation_id } => {
                if self.follows(conversation_id, None).await? {
                    self.pending.push_back(ListenEvent::RotationRequired { conversation_id });
                }
            }
            ServerFrame::HistoryRemoved { conversation_id, before_seq } => {
                if self.follows(conversation_id, None).await? {
                    self.messenger.forget_removed(conversation_id, None, Some(before_seq))?;
                    self.pending.push_back(ListenEvent::HistoryRemoved { conversation_id, before_seq });
                }
            }
            ServerFrame::Error { code, message } => self.pending.push_back(ListenEvent::ServerError { code, message }),
            ServerFrame::Pong => {}
            ServerFrame::ReactionAdded { reaction } => {
                if self.follows(reaction.conversation_id, None).await? {
                    let opened = self.messenger.open_reaction(self.org, &reaction).await?;
                    if let Some(value) = opened.value() {
                        let key = (opened.message_id, opened.user_id, opened.value_tag);
                        self.reaction_values.insert(key, value.to_owned());
                    }
                    self.pending.push_back(ListenEvent::ReactionAdded(opened));
                }
            }
            ServerFrame::ReactionRemoved { conversation_id, message_id, user_id, value_tag } => {
                if self.follows(conversation_id, None).await? {
                    let value = self.reaction_values.remove(&(message_id, user_id, value_tag));
                    let event = ListenEvent::ReactionRemoved { conversation_id, message_id, user_id, value_tag, value };
                    self.pending.push_back(event);
                }
            }
            ServerFrame::MessagePinned { pin } => {
                if self.follows(pin.conversation_id, None).await? {
                    self.pending.push_back(ListenEvent::Pinned(pin));
                }
            }
            ServerFrame::MessageUnpinned { conversation_id, message_id } => {
                if self.follows(conversation_id, None).await? {
                    self.pending.push_back(ListenEvent::Unpinned { conversation_id, message_id });
                }
            }
            ServerFrame::Typing { conversation_id, user_id, .. } => {
                if user_id != self.messenger.user_id() && self.follows(conversation_id, None).await? {
                    self.pending.push_back(ListenEvent::Typing { conversation_id, user_id });
                }
            }
            ServerFrame::Presence { conversation_id, presence } => {
                if presence.user_id != self.messenger.user_id() && self.follows(conversation_id, None).await? {
                    self.pending.push_back(ListenEvent::Presence(presence));
                }
            }
            // Notifications: the CLI reads profiles and unread counts through the API.
            ServerFrame::ProfileUpdated { .. } | ServerFrame::UnreadChanged { .. } => {}
            ServerFrame::CallUpdated { call } => {
                if self.follows(call.conversation_id, None).await? {
                    let call = self.messenger.note_call(call);
                    let change = classify(&call, self.messenger.user_id(), self.messenger.device_id());
                    self.pending.push_back(ListenEvent::CallUpdated { call, change });
                }
            }
            ServerFrame::CallSignal {
                conversation_id,
                call_id,
                from_user_id,
                from_device_id,
                key_generation,
                ciphertext,
            } => {
                if self.follows(conversation_id, None).await? {
                    let relayed = RelayedSignal {
                        conversation_id,
                        call_id,
                        from_user_id,
                        from_device_id,
                        key_generation,
                        ciphertext: &ciphertext,
                    };
                    let event = match self.messenger.open_signal(self.org, relayed).await {
                        Ok(signal) => ListenEvent::CallSignal(signal),
                        Err(Error::Signal(error)) => ListenEvent::CallSignalRejected { call_id, from_device_id, error },
                        Err(err) => return Err(err),
                    };
                    self.pending.push_back(event);
                }
            }
        }
        Ok(())
    }

    /// Whether a conversation is followed. A conversation not seen before (one the caller was
    /// added to after the listener started) is looked up once in the organization.
    async fn follows(&mut self, conversation_id: Uuid, first_seq: Option<i64>) -> Result<bool> {
        if self.cursors.contains_key(&conversation_id) {
            return Ok(true);
        }
        if self.only.is_some() || self.ignored.contains(&conversation_id) {
            return Ok(false);
        }
        match self.messenger.client().conversation(self.org, conversation_id).await {
            Ok(conversation) => {
                let cursor = first_seq.map_or(conversation.last_seq, |seq| seq - 1);
                self.cursors.insert(conversation_id, cursor);
                Ok(true)
            }
            Err(Error::Api(err)) if err.status == StatusCode::NOT_FOUND || err.status == StatusCode::FORBIDDEN => {
                self.ignored.insert(conversation_id);
                Ok(false)
            }
            Err(err) => Err(err),
        }
    }

    async fn on_message(&mut self, message: Message) -> Result<()> {
        let conversation_id = message.conversation_id;
        if !self.follows(conversation_id, Some(message.seq)).await? {
            return Ok(());
        }
        let cursor = self.cursors.get(&conversation_id).copied().unwrap_or(0);
        if message.seq <= cursor {
            return Ok(());
        }
        if message.seq > cursor + 1 {
            self.fill_gap(conversation_id, cursor, message.seq).await?;
        }
        let opened = self.messenger.open(self.org, &message).await?;
        self.deliver(opened).await;
        Ok(())
    }

    /// Fetches the messages between `cursor` and `before` that the socket did not bring.
    async fn fill_gap(&mut self, conversation_id: Uuid, mut cursor: i64, before: i64) -> Result<()> {
        while cursor + 1 < before {
            let limit = u32::try_from(before - cursor - 1).unwrap_or(GAP_PAGE).min(GAP_PAGE);
            let (missed, _) = self.messenger.messages_after(self.org, conversation_id, cursor, limit).await?;
            let Some(last) = missed.last().map(|m| m.seq) else { break };
            for message in missed.into_iter().filter(|m| m.seq < before) {
                self.deliver(message).await;
            }
            cursor = last;
        }
        Ok(())
    }

    async fn deliver(&mut self, message: ReceivedMessage) {
        let (conversation_id, seq) = (message.conversation_id, message.seq);
        self.cursors.insert(conversation_id, seq);
        self.pending.push_back(ListenEvent::Message(message));
        let delivered = self.options.mark_delivered || self.options.mark_read;
        if delivered {
            let read = self.options.mark_read.then_some(seq);
            // Receipts are best effort: a failure must not stop the stream of messages.
            let _ = self.messenger.mark(self.org, conversation_id, Some(seq), read).await;
        }
    }
}

fn frame_text(frame: &ClientFrame) -> Result<String> {
    serde_json::to_string(frame).map_err(|e| Error::Protocol(e.to_string()))
}

/// `http://host/prefix` → `ws://host/prefix/v1/ws?organization_id=...`: the server then sends
/// only that organization's conversations.
fn socket_url(server: &str, org: Uuid) -> String {
    let rest = server.strip_prefix("http://").unwrap_or(server);
    format!("ws://{rest}/v1/ws?organization_id={org}")
}

async fn open_socket(server: &str, org: Uuid, token: &str) -> Result<Socket> {
    let mut request = socket_url(server, org).into_client_request()?;
    let mut value = HeaderValue::from_str(&format!("Bearer {token}"))
        .map_err(|_| Error::Protocol("the access token is not a valid header value".into()))?;
    value.set_sensitive(true);
    request.headers_mut().insert(AUTHORIZATION, value);
    let (socket, _) = tokio_tungstenite::connect_async(request).await?;
    Ok(socket)
}

fn is_unauthorized(err: &tungstenite::Error) -> bool {
    matches!(err, tungstenite::Error::Http(response) if response.status() == StatusCode::UNAUTHORIZED)
}

fn is_fatal(err: &Error) -> bool {
    match err {
        Error::SessionEnded(_) | Error::NotSignedIn | Error::InvalidServerUrl { .. } => true,
        Error::Api(err) => err.status == StatusCode::UNAUTHORIZED || err.status == StatusCode::FORBIDDEN,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_socket_url_follows_the_server_url() {
        let org = Uuid::nil();
        assert_eq!(
            socket_url("http://127.0.0.1:8080", org),
            "ws://127.0.0.1:8080/v1/ws?organization_id=00000000-0000-0000-0000-000000000000"
        );
        assert!(
            socket_url("http://chat.example.org/conclave", org).starts_with("ws://chat.example.org/conclave/v1/ws?")
        );
    }
}
