//! Call setup through the data plane: N calls at once, each between a caller on one replica and
//! a callee on the other. Every round starts a call, the callee's socket sees it ring, the callee
//! accepts, the caller's socket sees it answered; then the measured part: the caller posts an SDP
//! offer as a signal, the callee's socket receives it, the callee posts the answer, the caller's
//! socket receives it (offer sent → answer received); both leave.
//!
//! The signals are framed like MLS application messages of the conversation's group in its
//! epoch (the server checks that framing) but not encrypted: the client's MLS cost is measured by
//! `conclave-bench mls`, this measures what the data plane and Redis add.

use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use conclave_protocol::calls::{CallKind, CallSignal};
use conclave_protocol::mls_wire;
use futures::StreamExt as _;
use hdrhistogram::Histogram;
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use uuid::Uuid;

use crate::messages::MLS_OVERHEAD;
use crate::provision::{Conversation, Member};
use crate::results::{CallFigures, Latency};
use crate::socket::{self, Socket};

/// How long one step may wait for its frame.
const STEP_TIMEOUT: Duration = Duration::from_secs(10);

pub struct Settings {
    /// Calls in flight at once (one conversation each).
    pub calls: usize,
    /// Calls placed one after the other in each conversation.
    pub rounds: usize,
    /// Bytes of each SDP (offer and answer), before MLS.
    pub sdp_bytes: usize,
    pub source_addresses: usize,
}

/// One conversation's caller and callee, with their sockets.
struct Pair<'a> {
    org: Uuid,
    conversation: &'a Conversation,
    caller: &'a Member,
    callee: &'a Member,
    caller_socket: Socket,
    callee_socket: Socket,
}

#[derive(Default)]
struct Tally {
    setup: Vec<u64>,
    ring: Vec<u64>,
    errors: u64,
}

/// `ports[i % ports.len()]` is member `i`'s replica (as `provision::login_all` spread them).
pub async fn run(
    org: Uuid,
    members: &[Member],
    conversations: &[Conversation],
    ports: &[u16],
    settings: &Settings,
) -> Result<CallFigures> {
    if conversations.len() < settings.calls {
        bail!("{} conversations for {} calls", conversations.len(), settings.calls);
    }
    let mut pairs = Vec::with_capacity(settings.calls);
    for (i, conversation) in conversations.iter().take(settings.calls).enumerate() {
        let [a, b] = conversation.members[..] else { bail!("a call's conversation has two members") };
        let connect = |member: usize, k: usize| {
            let port = ports[member % ports.len()];
            let source = socket::source_address(2 * i + k, settings.source_addresses);
            socket::connect(source, port, &members[member].access_token)
        };
        pairs.push(Pair {
            org,
            conversation,
            caller: &members[a],
            callee: &members[b],
            caller_socket: connect(a, 0).await?,
            callee_socket: connect(b, 1).await?,
        });
    }
    eprintln!("[bench] {} calls at once, {} rounds each", settings.calls, settings.rounds);
    let started = Instant::now();
    let tallies: Vec<Tally> = futures::stream::iter(pairs)
        .map(|mut pair| async move {
            let mut tally = Tally::default();
            for _ in 0..settings.rounds {
                if let Err(err) = round(&mut pair, settings.sdp_bytes, &mut tally).await {
                    tally.errors += 1;
                    eprintln!("[bench] a call failed: {err:#}");
                }
            }
            tally
        })
        .buffer_unordered(settings.calls)
        .collect()
        .await;
    let secs = started.elapsed().as_secs_f64();
    let mut setup = Histogram::<u64>::new(3)?;
    let mut ring = Histogram::<u64>::new(3)?;
    let mut errors = 0;
    for tally in &tallies {
        tally.setup.iter().try_for_each(|&v| setup.record(v))?;
        tally.ring.iter().try_for_each(|&v| ring.record(v))?;
        errors += tally.errors;
    }
    Ok(CallFigures {
        calls: settings.calls,
        rounds: settings.rounds,
        replicas: ports.len(),
        sdp_bytes: settings.sdp_bytes,
        setup: Latency::from_micros(&setup),
        ring: Latency::from_micros(&ring),
        calls_per_sec: setup.len() as f64 / secs,
        errors,
        secs,
    })
}

async fn round(pair: &mut Pair<'_>, sdp_bytes: usize, tally: &mut Tally) -> Result<()> {
    let (org, conversation) = (pair.org, pair.conversation.id);
    let rung = Instant::now();
    let call = pair.caller.client.start_call(org, conversation, CallKind::Audio).await?;
    wait_for(&mut pair.callee_socket, |f| f["type"] == "call_updated" && f["call"]["id"] == call.id.to_string())
        .await
        .context("the ring")?;
    tally.ring.push(micros(rung));
    pair.callee.client.accept_call(org, conversation, call.id).await?;
    let active = |f: &Value| {
        f["type"] == "call_updated" && f["call"]["id"] == call.id.to_string() && f["call"]["status"] == "active"
    };
    wait_for(&mut pair.caller_socket, active).await.context("the answer")?;

    let offered = Instant::now();
    let offer = signal(pair.conversation, pair.callee.device_id, sdp_bytes);
    pair.caller.client.send_call_signal(org, conversation, call.id, &offer).await?;
    let from = |device: Uuid| move |f: &Value| f["type"] == "call_signal" && f["from_device_id"] == device.to_string();
    wait_for(&mut pair.callee_socket, from(pair.caller.device_id)).await.context("the offer")?;
    let answer = signal(pair.conversation, pair.caller.device_id, sdp_bytes);
    pair.callee.client.send_call_signal(org, conversation, call.id, &answer).await?;
    wait_for(&mut pair.caller_socket, from(pair.callee.device_id)).await.context("the answer signal")?;
    tally.setup.push(micros(offered));

    pair.caller.client.leave_call(org, conversation, call.id).await?;
    pair.callee.client.leave_call(org, conversation, call.id).await?;
    Ok(())
}

fn micros(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_micros()).unwrap_or(u64::MAX).max(1)
}

/// A signal of `sdp_bytes` (plus what MLS adds) framed for the conversation's group and epoch.
fn signal(conversation: &Conversation, to_device_id: Uuid, sdp_bytes: usize) -> CallSignal {
    let body = vec![0x5c; sdp_bytes + MLS_OVERHEAD];
    CallSignal {
        to_device_id,
        key_generation: conversation.epoch,
        ciphertext: mls_wire::fake::private_message(
            conversation.id.as_bytes(),
            conversation.epoch as u64,
            mls_wire::content_type::APPLICATION,
            &body,
        ),
    }
}

/// Reads frames until one `wanted` accepts (others are dropped), within [`STEP_TIMEOUT`].
async fn wait_for(socket: &mut Socket, wanted: impl Fn(&Value) -> bool) -> Result<()> {
    tokio::time::timeout(STEP_TIMEOUT, async {
        while let Some(frame) = socket.next().await {
            if let WsMessage::Text(text) = frame? {
                let frame: Value = serde_json::from_str(&text)?;
                if wanted(&frame) {
                    return Ok(());
                }
            }
        }
        bail!("the socket closed")
    })
    .await
    .context("no frame within the step's timeout")?
}
