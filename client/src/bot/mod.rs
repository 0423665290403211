//! A small framework for bots: a bot is a member device like any other (see `docs/bots.md`).
//!
//! ```no_run
//! # async fn example() -> conclave_client::api::Result<()> {
//! use conclave_client::bot::{Bot, BotToken};
//! let bot = Bot::builder("http://127.0.0.1:8080", BotToken::File("/var/run/secrets/bot/token".into()))
//!     .state_dir("/var/lib/reminder-bot")
//!     .connect()
//!     .await?;
//! bot.run(async { let _ = tokio::signal::ctrl_c().await; }, |ctx| async move {
//!     match ctx.command.as_ref().map(|c| c.name.as_str()) {
//!         Some("ping") => { ctx.reply("pong").await?; }
//!         Some(_) => { ctx.react("❓").await?; }
//!         None => {}
//!     }
//!     Ok(())
//! })
//! .await
//! # }
//! ```
//!
//! [`BotBuilder::connect`] loads (or creates) the bot's keystore in its state directory: the
//! device keys are generated here, by the bot process, and never leave it. It opens a session
//! with the bot token (`POST /v1/bot/sessions`: on the device registered before, or registering
//! this one), makes sure the bot's account has its identity key and publishes key packages, so
//! that members can add the bot to conversations and their commits welcome its device.
//!
//! [`Bot::run`] listens (the SDK's [`Listener`](crate::messenger::Listener): reconnection with
//! backoff, resume from cursors, gaps filled) and calls the handler once per message from
//! someone else, in order, with a [`Context`] to reply or react with. When the session ends (the
//! token that opened it was rotated and its overlap is over, the bot was disabled and enabled
//! again), the bot reads its token again (a [`BotToken::File`] is the mounted Secret, which the
//! kubelet updates after a rotation) and opens a new session on the same device, then resumes
//! listening where it stopped (a message whose handling the end of the session interrupted is
//! handled again). It stops when `shutdown` completes, or after [`MAX_REOPENINGS`] sessions in a
//! row ended before a message was handled.
//!
//! A bot needs the `messages:read` scope (without it the server gives it no key material) and
//! `conversations:read` (the listener lists its conversations); replying needs `messages:write`,
//! reacting `reactions:write`.

mod command;

pub use command::Command;

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;

use conclave_protocol::api::Message;
use conclave_protocol::bots::BotSessionRequest;
use conclave_protocol::devices::Platform;
use uuid::Uuid;

use crate::api::{Client, Error, Result};
use crate::content::Content;
use crate::crypto::DeviceKeys;
use crate::keystore::Keystore;
use crate::messenger::{ListenEvent, ListenerOptions, Messenger, ReceivedMessage};

/// Sessions in a row that may end before a message is handled before [`Bot::run`] gives up.
pub const MAX_REOPENINGS: u32 = 5;

/// Where the bot token comes from. `Debug` never prints it.
#[derive(Clone)]
pub enum BotToken {
    /// The token itself.
    Value(String),
    /// A file holding it (the `token` key of the bot's Secret, mounted): read again for every
    /// session, so a rotated Secret is picked up.
    File(PathBuf),
}

impl std::fmt::Debug for BotToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Value(_) => f.write_str("BotToken::Value(<redacted>)"),
            Self::File(path) => f.debug_tuple("BotToken::File").field(path).finish(),
        }
    }
}

impl BotToken {
    fn read(&self) -> Result<String> {
        match self {
            Self::Value(token) => Ok(token.clone()),
            Self::File(path) => std::fs::read_to_string(path)
                .map(|text| text.trim().to_owned())
                .map_err(|e| Error::Protocol(format!("reading the bot token from {}: {e}", path.display()))),
        }
    }
}

/// Builds a [`Bot`]: [`Bot::builder`].
#[derive(Debug, Clone)]
pub struct BotBuilder {
    server: String,
    token: BotToken,
    state_dir: Option<PathBuf>,
    device_name: String,
    options: ListenerOptions,
}

impl BotBuilder {
    /// Where the bot keeps its keystore (device keys, identity key, MLS state). Keep it across
    /// restarts (a volume): a bot that loses it comes back as a new device that its
    /// conversations must add again. Default: `./conclave-bot`.
    pub fn state_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.state_dir = Some(dir.into());
        self
    }

    /// The name of the bot's device, as members see it in their device lists.
    pub fn device_name(mut self, name: impl Into<String>) -> Self {
        self.device_name = name.into();
        self
    }

    /// How the listener reconnects (see [`ListenerOptions`]).
    pub fn listener_options(mut self, options: ListenerOptions) -> Self {
        self.options = options;
        self
    }

    /// Opens the bot's session on its device and makes it ready to be added to conversations.
    pub async fn connect(self) -> Result<Bot> {
        let dir = self.state_dir.clone().unwrap_or_else(|| PathBuf::from("conclave-bot"));
        std::fs::create_dir_all(&dir)
            .map_err(|e| Error::Protocol(format!("creating the state directory {}: {e}", dir.display())))?;
        let path = dir.join("keystore.json");
        let exists = path.try_exists().map_err(|e| Error::Protocol(format!("{}: {e}", path.display())))?;
        let mut keystore =
            if exists { Keystore::load(&path)? } else { Keystore::create(&path, DeviceKeys::generate()?)? };
        let client = Client::new(&self.server)?;
        let request = match keystore.device_id() {
            Some(device_id) => BotSessionRequest::on_device(device_id, keystore.device().bot_session_proof(device_id)),
            None => BotSessionRequest::new_device(keystore.device().registration(&self.device_name, Platform::Bot)),
        };
        let pair = client.open_bot_session(&self.token.read()?, &request).await?;
        keystore.set_device_id(pair.device_id);
        keystore.save()?;
        let organization_id = match client.organizations().await?.as_slice() {
            [only] => only.id,
            other => return Err(Error::Protocol(format!("a bot belongs to one organization, not {}", other.len()))),
        };
        let messenger = Messenger::new(client, keystore, pair.user_id, pair.device_id);
        messenger.ensure_identity().await?;
        Ok(Bot { messenger, organization_id, token: self.token, options: self.options })
    }
}

/// A connected bot: [`Bot::builder`], then [`Bot::run`].
pub struct Bot {
    messenger: Messenger,
    organization_id: Uuid,
    token: BotToken,
    options: ListenerOptions,
}

impl Bot {
    /// A bot of the data plane at `server` (`http://host:port`) with this token.
    pub fn builder(server: impl Into<String>, token: BotToken) -> BotBuilder {
        BotBuilder {
            server: server.into(),
            token,
            state_dir: None,
            device_name: "bot".to_owned(),
            options: ListenerOptions::default(),
        }
    }

    /// The messaging engine, for what the handler's [`Context`] does not offer.
    pub fn messenger(&self) -> &Messenger {
        &self.messenger
    }

    /// The bot's account.
    pub fn user_id(&self) -> Uuid {
        self.messenger.user_id()
    }

    /// The bot's device.
    pub fn device_id(&self) -> Uuid {
        self.messenger.device_id()
    }

    /// The organization the bot belongs to.
    pub fn organization_id(&self) -> Uuid {
        self.organization_id
    }

    /// Opens a new session on the bot's device with the token as it reads now.
    async fn reopen(&self) -> Result<()> {
        let device_id = self.device_id();
        let proof = self.messenger.with_keystore(|keystore| keystore.device().bot_session_proof(device_id));
        let request = BotSessionRequest::on_device(device_id, proof);
        self.messenger.client().open_bot_session(&self.token.read()?, &request).await.map(drop)
    }

    /// Calls `handler` for every message from someone else in the bot's conversations, one at a
    /// time in order, until `shutdown` completes (see the module's documentation). When the
    /// handler fails, the bot goes on with the next message; when its failure says the session
    /// ended, the bot opens a new one first.
    pub async fn run<F, Fut>(self, shutdown: impl Future<Output = ()>, mut handler: F) -> Result<()>
    where
        F: FnMut(Context) -> Fut,
        Fut: Future<Output = Result<()>>,
    {
        tokio::pin!(shutdown);
        let mut cursors: BTreeMap<Uuid, i64> = BTreeMap::new();
        let mut reopenings = 0;
        loop {
            let mut listener =
                match self.messenger.listen_from(self.organization_id, &cursors, self.options.clone()).await {
                    Ok(listener) => Some(listener),
                    Err(err) if session_ended(&err) => None,
                    Err(err) => return Err(err),
                };
            while let Some(current) = listener.as_mut() {
                let event = tokio::select! {
                    () = &mut shutdown => {
                        if let Some(listener) = listener.take() {
                            listener.close().await;
                        }
                        return Ok(());
                    }
                    event = current.next() => event,
                };
                match event {
                    Ok(ListenEvent::Message(message)) => {
                        cursors = current.cursors().clone();
                        if message.sender_device_id == Some(self.device_id())
                            || message.sender_user_id == Some(self.user_id())
                        {
                            continue;
                        }
                        let (conversation, seq) = (message.conversation_id, message.seq);
                        let context = Context::new(self.messenger.clone(), self.organization_id, message);
                        match handler(context).await {
                            Err(err) if session_ended(&err) => {
                                // Handled again on the new session: the resumed listener replays it.
                                cursors.insert(conversation, seq - 1);
                                listener = None;
                            }
                            // A handler's other failures are its own: on to the next message.
                            _ => reopenings = 0,
                        }
                    }
                    Ok(_) => cursors = current.cursors().clone(),
                    Err(err) if session_ended(&err) => listener = None,
                    Err(err) => return Err(err),
                }
            }
            reopenings += 1;
            if reopenings > MAX_REOPENINGS {
                return Err(Error::SessionEnded(format!("{MAX_REOPENINGS} sessions in a row ended at once")));
            }
            self.reopen().await?;
        }
    }
}

/// Whether the session is over (a new one must be opened with the bot token).
fn session_ended(err: &Error) -> bool {
    match err {
        Error::SessionEnded(_) => true,
        Error::Api(err) => err.is("session_revoked"),
        _ => false,
    }
}

/// One message for the handler, with what it takes to answer it.
#[derive(Clone)]
pub struct Context {
    messenger: Messenger,
    organization_id: Uuid,
    /// The message, decrypted.
    pub message: ReceivedMessage,
    /// The command it holds, when its text is one (`/name args`).
    pub command: Option<Command>,
}

impl Context {
    fn new(messenger: Messenger, organization_id: Uuid, message: ReceivedMessage) -> Self {
        let command = message.body.text().and_then(Command::parse);
        Self { messenger, organization_id, message, command }
    }

    /// The message's text, when it is a decrypted text.
    pub fn text(&self) -> Option<&str> {
        self.message.body.text()
    }

    /// Sends `text` to the message's conversation, as a reply to it.
    pub async fn reply(&self, text: &str) -> Result<Message> {
        let conversation = self.message.conversation_id;
        self.messenger.send(self.organization_id, conversation, &Content::text(text), Some(self.message.id)).await
    }

    /// Sends `text` to the message's conversation.
    pub async fn say(&self, text: &str) -> Result<Message> {
        self.messenger.send_text(self.organization_id, self.message.conversation_id, text).await
    }

    /// Reacts to the message with `value` (an emoji), sealed like any member's reaction.
    pub async fn react(&self, value: &str) -> Result<()> {
        let message = &self.message;
        self.messenger.react(self.organization_id, message.conversation_id, message.id, value).await.map(drop)
    }

    /// The messaging engine.
    pub fn messenger(&self) -> &Messenger {
        &self.messenger
    }
}
