//! `conclave call`: place a call (or answer one with `--answer`) and talk over its data channel.
//!
//! The media of a call is the browser's job; the CLI opens the same peer connection a browser
//! would (sealed offer and answer, ICE on a host candidate and the deployment's TURN relay, DTLS)
//! and carries lines of text over its data channel: typed lines are sent, received ones printed;
//! end of input or Ctrl-C hangs up. `--send` and `--count` make it scriptable.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use clap::ValueEnum;
use conclave_protocol::calls::{Call, CallKind, CallStatus, ParticipantState};
use tokio::io::AsyncBufReadExt as _;
use tokio::sync::mpsc;
use uuid::Uuid;

use super::{Context, resolve};
use crate::api::Error;
use crate::calls::peer::{Peer, PeerOptions};
use crate::calls::signal::Signal;
use crate::messenger::{CallChange, ListenEvent, ListenerOptions, Messenger, ReceivedSignal};

/// How long the offer/answer and the connection may take once the call is answered.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest a CLI call lasts.
const MAX_CALL: Duration = Duration::from_secs(12 * 3600);

/// `--kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Kind {
    Audio,
    Video,
    Screen,
}

impl From<Kind> for CallKind {
    fn from(kind: Kind) -> Self {
        match kind {
            Kind::Audio => Self::Audio,
            Kind::Video => Self::Video,
            Kind::Screen => Self::Screen,
        }
    }
}

/// What `conclave call` was asked.
#[derive(Debug)]
pub(super) struct CallArgs {
    pub org: String,
    pub conversation: Option<String>,
    pub kind: Kind,
    pub answer: bool,
    pub send: Vec<String>,
    pub count: Option<usize>,
    pub relay_only: bool,
    pub wait: Duration,
}

/// The listener's events, read by a task of their own so a call can wait on them, on the data
/// channel and on standard input at once.
struct Events {
    rx: mpsc::Receiver<ListenEvent>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Events {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Events {
    async fn start(messenger: &Messenger, org: Uuid, conversations: &[Uuid]) -> Result<Self> {
        let options = ListenerOptions { mark_delivered: false, ..ListenerOptions::default() };
        let mut listener = messenger.listen(org, conversations, options).await?;
        let (tx, rx) = mpsc::channel(64);
        let task = tokio::spawn(async move {
            while let Ok(event) = listener.next().await {
                if tx.send(event).await.is_err() {
                    break;
                }
            }
        });
        Ok(Self { rx, task })
    }

    /// The first event `pick` takes, within `within`.
    async fn wait<T>(&mut self, within: Duration, mut pick: impl FnMut(ListenEvent) -> Option<T>) -> Option<T> {
        tokio::time::timeout(within, async {
            while let Some(event) = self.rx.recv().await {
                if let Some(found) = pick(event) {
                    return Some(found);
                }
            }
            None
        })
        .await
        .ok()
        .flatten()
    }
}

pub(super) async fn call(ctx: &mut Context<'_>, args: CallArgs) -> Result<()> {
    let (_, messenger) = ctx.messenger()?;
    let client = messenger.client().clone();
    let org = resolve::organization(&client, &args.org).await?;
    let conversations = match &args.conversation {
        Some(given) => vec![resolve::conversation(&client, org, given).await?],
        None if args.answer => Vec::new(),
        None => bail!("which conversation? `conclave call --org ORG CONVERSATION`"),
    };
    let options = peer_options(&messenger, args.relay_only).await?;
    let mut events = Events::start(&messenger, org, &conversations).await?;
    let (call, peer) = if args.answer {
        answer(ctx, &messenger, org, &conversations, &mut events, &options, args.wait).await?
    } else {
        place(ctx, &messenger, org, conversations[0], args.kind.into(), &mut events, &options, args.wait).await?
    };
    let _beats = messenger.heartbeat(org, call.conversation_id, call.id);
    let talked = talk(ctx, peer, &mut events, call.id, &args.send, args.count).await;
    match messenger.hang_up(org, call.conversation_id, call.id).await {
        Ok(_) => {}
        // The other side ended it first: nothing to hang up.
        Err(Error::Api(err)) if err.status.as_u16() == 409 => {}
        Err(err) => return Err(err.into()),
    }
    writeln!(ctx.out, "Hung up.")?;
    talked
}

/// Which candidates: a host candidate on the address this machine reaches the data plane from
/// (unless `--relay-only`), and the deployment's TURN relay when it has one.
async fn peer_options(messenger: &Messenger, relay_only: bool) -> Result<PeerOptions> {
    let turn = match messenger.client().turn_credentials().await {
        Ok(turn) => Some(turn),
        Err(Error::Api(err)) if err.is("turn_not_configured") && !relay_only => None,
        Err(err) => return Err(anyhow::Error::from(err).context("--relay-only needs the deployment's TURN server")),
    };
    Ok(PeerOptions { bind: local_address(messenger.client().server()).await?, host_candidate: !relay_only, turn })
}

/// The local address the system routes to the server from (a UDP `connect` sends nothing).
async fn local_address(server: &str) -> Result<IpAddr> {
    let url = reqwest::Url::parse(server).context("the server URL")?;
    let host = url.host_str().context("the server URL names no host")?;
    let port = url.port_or_known_default().unwrap_or(80);
    let target: SocketAddr = tokio::net::lookup_host((host, port))
        .await?
        .find(SocketAddr::is_ipv4)
        .context("the server has no IPv4 address")?;
    let probe = tokio::net::UdpSocket::bind(("0.0.0.0", 0)).await?;
    probe.connect(target).await?;
    Ok(probe.local_addr()?.ip())
}

#[allow(clippy::too_many_arguments)]
async fn place(
    ctx: &mut Context<'_>,
    messenger: &Messenger,
    org: Uuid,
    conversation: Uuid,
    kind: CallKind,
    events: &mut Events,
    options: &PeerOptions,
    wait: Duration,
) -> Result<(Call, Peer)> {
    let call = messenger.start_call(org, conversation, kind).await?;
    writeln!(ctx.out, "Calling… (call {})", call.id)?;
    ctx.out.flush()?;
    let outcome = events
        .wait(wait, |event| match event {
            ListenEvent::CallUpdated { call: update, change } if update.id == call.id => match change {
                CallChange::InCall => Some(Ok(update)),
                CallChange::Ended { reason } => Some(Err(format!("the call ended ({reason:?})"))),
                _ => None,
            },
            _ => None,
        })
        .await;
    let answered = match outcome {
        Some(Ok(answered)) => answered,
        Some(Err(why)) => bail!("{why}"),
        None => {
            let _ = messenger.hang_up(org, conversation, call.id).await;
            bail!("nobody answered within {} s", wait.as_secs());
        }
    };
    let me = messenger.device_id();
    let callee = answered
        .participants
        .iter()
        .find(|p| p.state == ParticipantState::Joined && p.device_id.is_some_and(|d| d != me))
        .and_then(|p| p.device_id)
        .context("the call was answered, but no device of the callee is in it")?;
    let mut peer = Peer::new(options).await?;
    let offer = peer.offer()?;
    messenger.send_signal(org, conversation, call.id, callee, Signal::Offer { sdp: offer }).await?;
    let answer = events
        .wait(CONNECT_TIMEOUT, |event| match event {
            ListenEvent::CallSignal(ReceivedSignal {
                call_id, from_device_id, signal: Signal::Answer { sdp }, ..
            }) if call_id == call.id && from_device_id == callee => Some(sdp),
            _ => None,
        })
        .await
        .context("no answer to the offer")?;
    peer.accept_answer(&answer).await?;
    connected(ctx, &mut peer).await?;
    Ok((answered, peer))
}

async fn answer(
    ctx: &mut Context<'_>,
    messenger: &Messenger,
    org: Uuid,
    conversations: &[Uuid],
    events: &mut Events,
    options: &PeerOptions,
    wait: Duration,
) -> Result<(Call, Peer)> {
    let (user, device) = (messenger.user_id(), messenger.device_id());
    let ringing = |call: &Call| {
        call.status != CallStatus::Ended && crate::messenger::classify(call, user, device) == CallChange::Ringing
    };
    // A call that rang before this command started, else the next one.
    let mut found = None;
    for conversation in conversations {
        found = messenger.calls(org, *conversation).await?.into_iter().find(|call| ringing(call));
        if found.is_some() {
            break;
        }
    }
    let call = match found {
        Some(call) => call,
        None => events
            .wait(wait, |event| match event {
                ListenEvent::CallUpdated { call, change: CallChange::Ringing } => Some(call),
                _ => None,
            })
            .await
            .with_context(|| format!("no call rang within {} s", wait.as_secs()))?,
    };
    let call = messenger.accept_call(org, call.conversation_id, call.id).await?;
    writeln!(ctx.out, "Answered (call {}).", call.id)?;
    ctx.out.flush()?;
    let offer = events
        .wait(CONNECT_TIMEOUT, |event| match event {
            ListenEvent::CallSignal(signal @ ReceivedSignal { signal: Signal::Offer { .. }, .. })
                if signal.call_id == call.id =>
            {
                Some(signal)
            }
            _ => None,
        })
        .await
        .context("the caller sent no offer")?;
    let Signal::Offer { sdp } = &offer.signal else { bail!("not an offer") };
    let mut peer = Peer::new(options).await?;
    let answer = peer.answer(sdp).await?;
    messenger
        .send_signal(org, call.conversation_id, call.id, offer.from_device_id, Signal::Answer { sdp: answer })
        .await?;
    connected(ctx, &mut peer).await?;
    Ok((call, peer))
}

async fn connected(ctx: &mut Context<'_>, peer: &mut Peer) -> Result<()> {
    peer.wait_open(CONNECT_TIMEOUT).await.context("the peer connection did not open")?;
    let path = if peer.traffic().sent_relayed > 0 { "through the TURN relay" } else { "directly" };
    writeln!(ctx.out, "Connected {path}; DTLS fingerprint {}", peer.local_fingerprint())?;
    ctx.out.flush()?;
    Ok(())
}

/// Sends `lines` (or standard input's, when none are given) and prints what arrives, until end
/// of input, Ctrl-C, `count` lines received, or the call ends.
async fn talk(
    ctx: &mut Context<'_>,
    mut peer: Peer,
    events: &mut Events,
    call_id: Uuid,
    lines: &[String],
    count: Option<usize>,
) -> Result<()> {
    for line in lines {
        peer.send(line.as_bytes())?;
    }
    let mut stdin = (lines.is_empty()).then(|| tokio::io::BufReader::new(tokio::io::stdin()).lines());
    let deadline = tokio::time::Instant::now() + MAX_CALL;
    let mut received = 0;
    while count.is_none_or(|count| received < count) && tokio::time::Instant::now() < deadline {
        tokio::select! {
            line = async { stdin.as_mut()?.next_line().await.transpose() }, if stdin.is_some() => match line {
                Some(Ok(line)) => peer.send(line.as_bytes())?,
                // End of input: hang up.
                _ => break,
            },
            data = peer.recv(Duration::from_secs(1)) => match data {
                Ok(bytes) => {
                    received += 1;
                    writeln!(ctx.out, "< {}", String::from_utf8_lossy(&bytes))?;
                    ctx.out.flush()?;
                }
                Err(Error::Timeout(_)) => {}
                Err(_) if peer.is_closed() => {
                    writeln!(ctx.out, "The other side closed the connection.")?;
                    break;
                }
                Err(err) => return Err(anyhow::Error::from(err).context("the call's connection")),
            },
            event = events.rx.recv() => match event {
                Some(ListenEvent::CallUpdated { call, change: CallChange::Ended { .. } | CallChange::Left })
                    if call.id == call_id => {
                    writeln!(ctx.out, "The call ended.")?;
                    break;
                }
                Some(_) => {}
                None => bail!("the connection to the server ended"),
            },
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    // Let the last lines leave before the connection closes.
    peer.flush(Duration::from_millis(300)).await?;
    peer.close();
    Ok(())
}
