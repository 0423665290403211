//! The `conclave` command line: accounts, devices, organizations and end-to-end-encrypted
//! conversations, for people and scripts.
//!
//! [`run`] executes one parsed command, writing to `out` and asking for passwords through a
//! [`Prompt`], so the integration tests drive the very code the binary runs. Passwords come from
//! `CONCLAVE_PASSWORD` or a no-echo terminal prompt, never from a flag (flags end up in shell
//! history and `ps`). Tokens and keys are never printed.

mod account;
mod calls;
mod chat;
mod identity;
mod notifications;
mod organizations;
mod output;
mod privacy;
mod resolve;
mod rich;

use std::io::{IsTerminal as _, Write};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context as _, Result, bail};
use clap::{Parser, Subcommand, ValueEnum};

use crate::api::{Client, TokenSink};
use crate::messenger::Messenger;
use crate::store::{Profile, Session};

/// The server used when neither `--server` nor a saved session names one.
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:8080";

/// Conclave: end-to-end-encrypted messaging from the command line.
#[derive(Debug, Parser)]
#[command(name = "conclave", version, about = "Conclave: end-to-end-encrypted messaging from the command line")]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command takes.
#[derive(Debug, clap::Args)]
pub struct Global {
    /// The data plane's URL (plain http:// only for now). Defaults to the signed-in profile's
    /// server, else http://127.0.0.1:8080.
    #[arg(long, global = true, env = "CONCLAVE_SERVER")]
    pub server: Option<String>,
    /// The profile: one signed-in account and device, kept in its own directory.
    #[arg(long, global = true, env = "CONCLAVE_PROFILE", default_value = "default")]
    pub profile: String,
    /// A directory to keep the profiles in, each as DIR/profiles/NAME; without it a profile
    /// lives in ~/.config/conclave/NAME.
    #[arg(long, global = true, env = "CONCLAVE_HOME")]
    pub home: Option<PathBuf>,
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    pub json: bool,
}

/// A conversation kind, as the command line spells it.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Kind {
    /// Two people.
    Direct,
    /// Invited members.
    Group,
    /// Named, joinable in its workspace.
    Channel,
}

/// `conclave trust`'s argument.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum TrustPolicy {
    /// Write only to people whose safety number was confirmed.
    VerifiedOnly,
    /// Trust a key when first seen (the default).
    FirstUse,
}

/// What to do.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create an account (the password is read from CONCLAVE_PASSWORD or prompted).
    Register {
        #[arg(long)]
        email: String,
        #[arg(long)]
        display_name: String,
    },
    /// Confirm your email address with the token you were sent.
    Confirm { token: String },
    /// Sign in; the first sign-in of a profile creates this device's keys and registers it.
    Login {
        #[arg(long)]
        email: String,
        /// The device's name (first sign-in only).
        #[arg(long)]
        device_name: Option<String>,
        /// A TOTP code, when two-factor sign-in is enabled.
        #[arg(long)]
        totp: Option<String>,
        /// A one-time recovery code instead of a TOTP code.
        #[arg(long)]
        recovery_code: Option<String>,
    },
    /// End this session (the device and its keys stay, for the next sign-in).
    Logout,
    /// Show the signed-in account and device.
    Whoami,
    /// List your devices, or revoke one.
    Devices {
        #[command(subcommand)]
        action: Option<DevicesAction>,
    },
    /// This device's identity key: made on your first device, received from another of yours on
    /// later ones (the signing in tells you how); `replace` starts a new one.
    Identity {
        #[command(subcommand)]
        action: Option<IdentityAction>,
    },
    /// Show the safety number you share with someone, to compare with theirs; `--confirm` once equal.
    Verify {
        #[arg(long)]
        org: String,
        /// Their email or user id.
        member: String,
        /// You compared the numbers and they are equal: mark the key verified.
        #[arg(long, conflicts_with = "accept_change")]
        confirm: bool,
        /// Their identity key changed and you made sure why: accept the new key (unverified).
        #[arg(long)]
        accept_change: bool,
    },
    /// Whom this device writes to: `verified-only` (people whose safety number you confirmed with
    /// `verify --confirm`) or `first-use` (anyone, their key pinned when first seen; the default).
    /// Without an argument, shows which.
    Trust { policy: Option<TrustPolicy> },
    /// List your organizations.
    Orgs,
    /// List an organization's workspaces.
    Workspaces {
        #[arg(long)]
        org: String,
    },
    /// Join a workspace.
    Join {
        #[arg(long)]
        org: String,
        #[arg(long)]
        workspace: String,
    },
    /// Join an organization with an invitation token (give --org as an id if you are not in it yet).
    AcceptInvitation {
        #[arg(long)]
        org: String,
        #[arg(long)]
        token: String,
    },
    /// List your conversations in an organization.
    Conversations {
        #[command(subcommand)]
        action: Option<ConversationsAction>,
        #[arg(long)]
        org: Option<String>,
    },
    /// Create a conversation.
    CreateConversation {
        #[arg(long)]
        org: String,
        #[arg(long)]
        workspace: String,
        #[arg(long, value_enum)]
        kind: Kind,
        /// A channel's name.
        #[arg(long)]
        name: Option<String>,
        /// A member to add (email, or user id): repeat for several.
        #[arg(long = "member")]
        members: Vec<String>,
    },
    /// Add a member to a conversation.
    Invite {
        #[arg(long)]
        org: String,
        #[arg(long)]
        conversation: String,
        /// The member's email or user id.
        #[arg(long)]
        member: String,
    },
    /// Remove a member from a conversation (the next message removes their devices from the group).
    RemoveMember {
        #[arg(long)]
        org: String,
        #[arg(long)]
        conversation: String,
        /// The member's email or user id.
        #[arg(long)]
        member: String,
    },
    /// Send an end-to-end-encrypted text message, or a file (--file), encrypted before upload.
    Send {
        #[arg(long)]
        org: String,
        #[arg(long)]
        conversation: String,
        /// A file to send instead of a text.
        #[arg(long, conflicts_with = "text")]
        file: Option<PathBuf>,
        #[arg(required_unless_present = "file")]
        text: Option<String>,
    },
    /// Download, verify and decrypt the file a message carries.
    Download {
        #[arg(long)]
        org: String,
        #[arg(long)]
        conversation: String,
        /// The message: its id, or its number in the conversation (`#12` or `12`).
        #[arg(long)]
        message: String,
        /// Where to write it (a file, or a directory); default: the sender's file name here.
        #[arg(long)]
        output: Option<PathBuf>,
    },
    /// React to a message (end-to-end encrypted), or take a reaction back with --remove.
    React {
        #[arg(long)]
        org: String,
        #[arg(long)]
        conversation: String,
        /// The message: its id, or its number in the conversation (`#12` or `12`).
        #[arg(long)]
        message: String,
        /// The emoji (or short text).
        emoji: String,
        #[arg(long)]
        remove: bool,
    },
    /// Pin a message, or unpin it with --remove.
    Pin {
        #[arg(long)]
        org: String,
        #[arg(long)]
        conversation: String,
        /// The message: its id, or its number in the conversation (`#12` or `12`).
        #[arg(long)]
        message: String,
        #[arg(long)]
        remove: bool,
    },
    /// List a conversation's pinned messages.
    Pins {
        #[arg(long)]
        org: String,
        #[arg(long)]
        conversation: String,
    },
    /// Show a conversation's latest messages, decrypted, and its calls between them.
    History {
        #[arg(long)]
        org: String,
        #[arg(long)]
        conversation: String,
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Your profile (show, set), or a member's by exact email.
    Profile {
        #[command(subcommand)]
        action: Option<notifications::ProfileAction>,
    },
    /// Notification preferences, overrides and unread counts.
    Notifications {
        #[command(subcommand)]
        action: Option<notifications::NotificationsAction>,
    },
    /// Your privacy requests: ask for an export or an erasure, download an export, read it.
    Privacy {
        #[command(subcommand)]
        action: Option<privacy::PrivacyAction>,
    },
    /// Place a call in a conversation (or answer one with --answer) and talk over its data
    /// channel: typed lines are sent, received ones printed; end of input or Ctrl-C hangs up.
    Call {
        #[arg(long)]
        org: String,
        /// The conversation to call (to answer: any of yours by default).
        conversation: Option<String>,
        #[arg(long, value_enum, default_value = "audio")]
        kind: calls::Kind,
        /// Answer a call that rings (or the next one) instead of placing one.
        #[arg(long)]
        answer: bool,
        /// Send this line once connected, instead of reading standard input (repeatable).
        #[arg(long = "send")]
        send: Vec<String>,
        /// Hang up after this many lines received.
        #[arg(long)]
        count: Option<usize>,
        /// Connect through the deployment's TURN relay only (no direct path).
        #[arg(long)]
        relay_only: bool,
        /// Seconds to ring (or to wait for a call to answer).
        #[arg(long, default_value_t = 60)]
        wait: u64,
    },
    /// Print messages as they arrive, decrypted (and mark them delivered and read), incoming
    /// calls, and how each call ended.
    Listen {
        #[arg(long)]
        org: String,
        /// Only these conversations (repeatable); all of yours by default.
        #[arg(long = "conversation")]
        conversations: Vec<String>,
        /// Stop after this many messages.
        #[arg(long)]
        count: Option<usize>,
    },
}

/// `conclave devices ...`
#[derive(Debug, Subcommand)]
pub enum DevicesAction {
    /// List your devices (the default).
    List,
    /// Revoke a device: its sessions end, and each of its conversations removes it from the group.
    Revoke { id: uuid::Uuid },
    /// Send your identity key, sealed, to your new device whose link code you enter here.
    Link { code: String },
}

/// `conclave identity ...`
#[derive(Debug, Subcommand)]
pub enum IdentityAction {
    /// Show (and complete) this device's identity key (the default).
    Show,
    /// Start a new identity key, when every device holding the old one is lost. Everyone you talk
    /// to is warned that your key changed.
    Replace,
}

/// `conclave conversations ...`
#[derive(Debug, Subcommand)]
pub enum ConversationsAction {
    /// List your conversations (the default).
    List {
        #[arg(long)]
        org: String,
    },
}

/// Where passwords come from.
pub trait Prompt {
    /// Asks for a password (`confirm`: ask twice and compare, for a new one).
    fn password(&mut self, prompt: &str, confirm: bool) -> Result<String>;
}

/// `CONCLAVE_PASSWORD`, else a no-echo prompt on the terminal.
pub struct Terminal;

impl Prompt for Terminal {
    fn password(&mut self, prompt: &str, confirm: bool) -> Result<String> {
        if let Ok(password) = std::env::var("CONCLAVE_PASSWORD")
            && !password.is_empty()
        {
            return Ok(password);
        }
        if !std::io::stdin().is_terminal() {
            bail!("no password: set CONCLAVE_PASSWORD, or run this on a terminal to be asked for it");
        }
        let password = rpassword::prompt_password(prompt).context("reading the password")?;
        if confirm && rpassword::prompt_password("Repeat the password: ").context("reading the password")? != password {
            bail!("the two passwords differ");
        }
        Ok(password)
    }
}

/// What a command runs with.
pub struct Context<'a> {
    global: &'a Global,
    profile: Profile,
    out: &'a mut dyn Write,
    prompt: &'a mut dyn Prompt,
}

/// Runs one command.
pub async fn run(cli: Cli, out: &mut dyn Write, prompt: &mut dyn Prompt) -> Result<()> {
    let dir = match &cli.global.home {
        Some(home) => {
            Profile::default_dir(&cli.global.profile)?; // validates the name
            home.join("profiles").join(&cli.global.profile)
        }
        None => Profile::default_dir(&cli.global.profile)?,
    };
    let profile = Profile::open(dir)?;
    let mut ctx = Context { global: &cli.global, profile, out, prompt };
    match cli.command {
        Command::Register { email, display_name } => account::register(&mut ctx, &email, &display_name).await,
        Command::Confirm { token } => account::confirm(&mut ctx, &token).await,
        Command::Login { email, device_name, totp, recovery_code } => {
            account::login(&mut ctx, email, device_name, totp, recovery_code).await
        }
        Command::Logout => account::logout(&mut ctx).await,
        Command::Whoami => account::whoami(&mut ctx).await,
        Command::Devices { action: None | Some(DevicesAction::List) } => account::devices(&mut ctx).await,
        Command::Devices { action: Some(DevicesAction::Revoke { id }) } => account::revoke(&mut ctx, id).await,
        Command::Devices { action: Some(DevicesAction::Link { code }) } => identity::link(&mut ctx, &code).await,
        Command::Identity { action: None | Some(IdentityAction::Show) } => identity::show(&mut ctx).await,
        Command::Identity { action: Some(IdentityAction::Replace) } => identity::replace(&mut ctx).await,
        Command::Verify { org, member, confirm, accept_change } => {
            let action = match (confirm, accept_change) {
                (true, _) => identity::Verify::Confirm,
                (_, true) => identity::Verify::AcceptChange,
                _ => identity::Verify::Show,
            };
            identity::verify(&mut ctx, &org, &member, action).await
        }
        Command::Trust { policy } => identity::trust(&mut ctx, policy).await,
        Command::Orgs => organizations::list(&mut ctx).await,
        Command::Workspaces { org } => organizations::workspaces(&mut ctx, &org).await,
        Command::Join { org, workspace } => organizations::join(&mut ctx, &org, &workspace).await,
        Command::AcceptInvitation { org, token } => organizations::accept(&mut ctx, &org, &token).await,
        Command::Conversations { action: Some(ConversationsAction::List { org }), .. }
        | Command::Conversations { action: None, org: Some(org) } => chat::list(&mut ctx, &org).await,
        Command::Conversations { action: None, org: None } => bail!("which organization? pass --org"),
        Command::CreateConversation { org, workspace, kind, name, members } => {
            chat::create(&mut ctx, &org, &workspace, kind, name, &members).await
        }
        Command::Invite { org, conversation, member } => chat::invite(&mut ctx, &org, &conversation, &member).await,
        Command::RemoveMember { org, conversation, member } => {
            chat::remove_member(&mut ctx, &org, &conversation, &member).await
        }
        Command::Send { org, conversation, file: Some(file), .. } => {
            rich::send_file(&mut ctx, &org, &conversation, &file).await
        }
        Command::Send { org, conversation, file: None, text } => {
            chat::send(&mut ctx, &org, &conversation, text.as_deref().unwrap_or_default()).await
        }
        Command::Download { org, conversation, message, output } => {
            rich::download(&mut ctx, &org, &conversation, &message, output).await
        }
        Command::React { org, conversation, message, emoji, remove } => {
            rich::react(&mut ctx, &org, &conversation, &message, &emoji, remove).await
        }
        Command::Pin { org, conversation, message, remove } => {
            rich::pin(&mut ctx, &org, &conversation, &message, remove).await
        }
        Command::Pins { org, conversation } => rich::pins(&mut ctx, &org, &conversation).await,
        Command::History { org, conversation, limit } => chat::history(&mut ctx, &org, &conversation, limit).await,
        Command::Call { org, conversation, kind, answer, send, count, relay_only, wait } => {
            let wait = std::time::Duration::from_secs(wait);
            // Boxed: a call's future (listener, peer connection) is large, and inlined it would
            // make every command's future as large (the tests' threads overflowed their stacks).
            let args = calls::CallArgs { org, conversation, kind, answer, send, count, relay_only, wait };
            Box::pin(calls::call(&mut ctx, args)).await
        }
        Command::Listen { org, conversations, count } => chat::listen(&mut ctx, &org, &conversations, count).await,
        Command::Profile { action } => notifications::profile(&mut ctx, action).await,
        Command::Notifications { action } => notifications::notifications(&mut ctx, action).await,
        Command::Privacy { action } => privacy::privacy(&mut ctx, action).await,
    }
}

impl Context<'_> {
    /// The server for a command that needs no session.
    fn server(&self) -> Result<String> {
        if let Some(server) = &self.global.server {
            return Ok(server.clone());
        }
        Ok(self.profile.load_session()?.map(|s| s.server).unwrap_or_else(|| DEFAULT_SERVER.to_owned()))
    }

    fn session(&self) -> Result<Session> {
        let session = self.profile.load_session()?.ok_or(crate::Error::NotSignedIn)?;
        if let Some(server) = &self.global.server
            && crate::api::normalize_server(server)? != session.server
        {
            bail!(
                "profile {:?} is signed in to {}, not {server}: sign out first, or use another --profile",
                self.global.profile,
                session.server
            );
        }
        Ok(session)
    }

    /// A client that sends the saved tokens and saves refreshed ones.
    fn client(&self) -> Result<(Session, Client)> {
        let session = self.session()?;
        let sink: Arc<dyn TokenSink> = Arc::new(self.profile.token_sink(session.clone()));
        let client = Client::with_session(&session.server, session.tokens.clone(), Some(sink))?;
        Ok((session, client))
    }

    /// The messaging engine of the signed-in device.
    fn messenger(&self) -> Result<(Session, Messenger)> {
        let (session, client) = self.client()?;
        let keystore = self.profile.load_keystore()?;
        let messenger = Messenger::new(client, keystore, session.user_id, session.device_id);
        Ok((session, messenger))
    }

    fn json(&self) -> bool {
        self.global.json
    }

    fn print_json<T: serde::Serialize>(&mut self, value: &T) -> Result<()> {
        serde_json::to_writer_pretty(&mut *self.out, value)?;
        writeln!(self.out)?;
        Ok(())
    }
}
