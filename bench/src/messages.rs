//! `messages`: N clients, each with a device, a session and a WebSocket, in conversations of a
//! given size; they send sealed messages through the SDK at a target rate or as fast as they
//! can, and every member socket times the delivery.
//!
//! Latency is send→deliver: from just before the send request (after sealing) to the moment a
//! member's socket reads the `message_created` frame, for every member socket (the sender's own
//! included, as the product delivers it there too). Frames are matched by `client_message_id`;
//! one in `--verify-every` is opened with the SDK (signature verified, decrypted, content
//! decoded) so the path is end to end without the tool's crypto dominating a small machine.

use crate::provision::{Conversation, Member};
use crate::results::{Latency, MessageFigures, Resources};
use crate::socket::{self, Socket};
use crate::system::{self, Watch};
use anyhow::Result;
use conclave_client::content::Content;
use conclave_client::crypto::{MessageHeader, SealedMessage, open_message, seal_message};
use conclave_protocol::api::SendMessage;
use conclave_protocol::events::ServerFrame;
use futures::StreamExt as _;
use hdrhistogram::Histogram;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message as WsMessage;
use uuid::Uuid;

#[derive(Debug, Clone)]
pub struct Load {
    /// Messages per second in all; `None` is as fast as possible.
    pub rate: Option<f64>,
    /// Closed-loop senders (`--max`), or the most sends in flight (`--rate`).
    pub concurrency: usize,
    pub warmup: Duration,
    pub duration: Duration,
    pub drain: Duration,
    pub plaintext_bytes: usize,
    pub verify_every: u64,
}

struct Pending {
    sent_at: Instant,
    remaining: u32,
    measured: bool,
}

pub fn histogram() -> Histogram<u64> {
    // 1 µs to 60 s, three significant digits.
    #[allow(clippy::expect_used)]
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("constant histogram bounds are valid")
}

/// What senders and receivers share.
struct Shared {
    organization_id: Uuid,
    pending: Mutex<HashMap<Uuid, Pending>>,
    latency: Mutex<Histogram<u64>>,
    interval_latency: Mutex<Histogram<u64>>,
    send_latency: Mutex<Histogram<u64>>,
    measuring: AtomicBool,
    stop: AtomicBool,
    sent: AtomicU64,
    sent_measured: AtomicU64,
    delivered: AtomicU64,
    delivered_measured: AtomicU64,
    verified: AtomicU64,
    errors: Mutex<BTreeMap<String, u64>>,
    /// Device id → Ed25519 public key, to verify sampled deliveries.
    signers: HashMap<Uuid, [u8; 32]>,
    padding: String,
    verify_every: u64,
}

impl Shared {
    fn error(&self, kind: impl Into<String>) {
        let mut errors = self.errors.lock().unwrap_or_else(|p| p.into_inner());
        *errors.entry(kind.into()).or_insert(0) += 1;
    }

    fn error_count(&self) -> u64 {
        self.errors.lock().unwrap_or_else(|p| p.into_inner()).values().sum()
    }
}

fn record(histogram: &Mutex<Histogram<u64>>, micros: u64) {
    let _ = histogram.lock().unwrap_or_else(|p| p.into_inner()).record(micros.max(1));
}

/// Reads one member's socket until it closes or the run ends.
async fn receive(mut ws: Socket, key: conclave_client::crypto::ConversationKey, shared: Arc<Shared>) {
    let mut seen = 0u64;
    while let Some(frame) = ws.next().await {
        let text = match frame {
            Ok(WsMessage::Text(text)) => text,
            Ok(WsMessage::Close(_)) | Err(_) => break,
            Ok(_) => continue,
        };
        let Some(id) = socket::client_message_id(&text) else { continue };
        let now = Instant::now();
        let measured = {
            let mut pending = shared.pending.lock().unwrap_or_else(|p| p.into_inner());
            match pending.get_mut(&id) {
                Some(entry) => {
                    let micros = now.duration_since(entry.sent_at).as_micros() as u64;
                    let measured = entry.measured;
                    entry.remaining = entry.remaining.saturating_sub(1);
                    if entry.remaining == 0 {
                        pending.remove(&id);
                    }
                    drop(pending);
                    if measured {
                        record(&shared.latency, micros);
                    }
                    record(&shared.interval_latency, micros);
                    measured
                }
                None => {
                    drop(pending);
                    shared.error("delivery of an unknown or duplicate message");
                    false
                }
            }
        };
        shared.delivered.fetch_add(1, Ordering::Relaxed);
        if measured && shared.measuring.load(Ordering::Relaxed) {
            shared.delivered_measured.fetch_add(1, Ordering::Relaxed);
        }
        seen += 1;
        if shared.verify_every > 0 && seen % shared.verify_every == 1 % shared.verify_every {
            match verify(&text, &key, &shared.signers) {
                Ok(()) => {
                    shared.verified.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => shared.error(format!("a delivery did not open: {e}")),
            }
        }
    }
    if !shared.stop.load(Ordering::Relaxed) {
        shared.error("a socket closed during the run");
    }
}

/// Opens a delivered frame as a client would: signature, decryption, content.
fn verify(text: &str, key: &conclave_client::crypto::ConversationKey, signers: &HashMap<Uuid, [u8; 32]>) -> Result<()> {
    let ServerFrame::MessageCreated { message } = serde_json::from_str(text)? else {
        anyhow::bail!("not a message_created frame");
    };
    let sender = message.sender_device_id.ok_or_else(|| anyhow::anyhow!("no sender device"))?;
    let public = signers.get(&sender).ok_or_else(|| anyhow::anyhow!("unknown sender device"))?;
    let header = MessageHeader {
        conversation_id: message.conversation_id,
        generation: u32::try_from(message.key_generation)?,
        sender_device_id: sender,
        client_message_id: message.client_message_id,
    };
    let sealed = SealedMessage {
        nonce: message.nonce.ok_or_else(|| anyhow::anyhow!("no nonce"))?,
        ciphertext: message.ciphertext.ok_or_else(|| anyhow::anyhow!("no ciphertext"))?,
        signature: message.signature.ok_or_else(|| anyhow::anyhow!("no signature"))?,
    };
    let plaintext = open_message(key, &header, &sealed, public)?;
    match Content::decode(&plaintext)? {
        Content::Text { body } if body.starts_with("bench ") => Ok(()),
        other => anyhow::bail!("unexpected content {other:?}"),
    }
}

/// Seals and sends one message as `member` to `conversation`, through the SDK.
async fn send_one(member: &Member, conversation: &Conversation, shared: &Shared) {
    let client_message_id = Uuid::new_v4();
    let content = Content::text(format!("bench {}", shared.padding));
    let sealed = content.encode().map_err(anyhow::Error::from).and_then(|plain| {
        Ok(seal_message(&conversation.key, &member.keys, member.device_id, client_message_id, &plain)?)
    });
    let sealed = match sealed {
        Ok(sealed) => sealed,
        Err(e) => return shared.error(format!("sealing: {e}")),
    };
    // Through JSON so fields the protocol adds later (with defaults) keep this compiling.
    let body: SendMessage = match serde_json::from_value(serde_json::json!({
        "client_message_id": client_message_id,
        "key_generation": conversation.key.generation(),
        "nonce": conclave_protocol::b64::encode(sealed.nonce),
        "ciphertext": conclave_protocol::b64::encode(&sealed.ciphertext),
        "signature": conclave_protocol::b64::encode(sealed.signature),
    })) {
        Ok(body) => body,
        Err(e) => return shared.error(format!("encoding: {e}")),
    };
    let measured = shared.measuring.load(Ordering::Relaxed);
    let sent_at = Instant::now();
    shared
        .pending
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(client_message_id, Pending { sent_at, remaining: conversation.members.len() as u32, measured });
    match member.client.send_message(shared.organization_id, conversation.id, &body).await {
        Ok(_) => {
            let micros = sent_at.elapsed().as_micros() as u64;
            if measured {
                record(&shared.send_latency, micros);
                shared.sent_measured.fetch_add(1, Ordering::Relaxed);
            }
            shared.sent.fetch_add(1, Ordering::Relaxed);
        }
        Err(e) => {
            shared.pending.lock().unwrap_or_else(|p| p.into_inner()).remove(&client_message_id);
            let kind = match &e {
                conclave_client::Error::Api(api) => format!("send: HTTP {} {}", api.status.as_u16(), api.code),
                other => format!("send: {}", other.to_string().chars().take(80).collect::<String>()),
            };
            shared.error(kind);
        }
    }
}

pub struct Setup<'a> {
    pub organization_id: Uuid,
    pub members: Vec<Member>,
    pub conversations: Vec<Conversation>,
    pub ports: Vec<u16>,
    pub source_addresses: usize,
    pub watch: &'a Watch,
    pub replicas: usize,
    pub clients: usize,
    pub conversation_size: usize,
}

pub async fn run(setup: Setup<'_>, load: Load) -> Result<MessageFigures> {
    let Setup {
        organization_id,
        members,
        conversations,
        ports,
        source_addresses,
        watch,
        replicas,
        clients,
        conversation_size,
    } = setup;
    let members = Arc::new(members);
    let conversations = Arc::new(conversations);
    let mut conversation_of = vec![usize::MAX; members.len()];
    for (c, conversation) in conversations.iter().enumerate() {
        for &m in &conversation.members {
            conversation_of[m] = c;
        }
    }
    let senders: Arc<Vec<usize>> = Arc::new((0..members.len()).filter(|m| conversation_of[*m] != usize::MAX).collect());
    let conversation_of = Arc::new(conversation_of);
    let shared = Arc::new(Shared {
        organization_id,
        pending: Mutex::new(HashMap::new()),
        latency: Mutex::new(histogram()),
        interval_latency: Mutex::new(histogram()),
        send_latency: Mutex::new(histogram()),
        measuring: AtomicBool::new(false),
        stop: AtomicBool::new(false),
        sent: AtomicU64::new(0),
        sent_measured: AtomicU64::new(0),
        delivered: AtomicU64::new(0),
        delivered_measured: AtomicU64::new(0),
        verified: AtomicU64::new(0),
        errors: Mutex::new(BTreeMap::new()),
        signers: members.iter().map(|m| (m.device_id, m.keys.public().ed25519)).collect(),
        padding: "x".repeat(load.plaintext_bytes.saturating_sub(40)),
        verify_every: load.verify_every,
    });

    // Every member's socket, on the replica it logged in to, from spread source addresses.
    eprintln!("[bench] connecting {} sockets", senders.len());
    let connected: Vec<Result<(usize, Socket)>> = futures::stream::iter(senders.iter().copied())
        .map(|m| {
            let member = &members[m];
            let port = ports[m % ports.len()];
            async move {
                Ok((m, socket::connect(socket::source_address(m, source_addresses), port, &member.access_token).await?))
            }
        })
        .buffer_unordered(64)
        .collect()
        .await;
    let mut receivers = Vec::new();
    for result in connected {
        let (m, ws) = result?;
        let key = conversations[conversation_of[m]].key.clone();
        receivers.push(tokio::spawn(receive(ws, key, shared.clone())));
    }

    let started = Instant::now();
    let progress = tokio::spawn(progress(shared.clone(), watch.clone(), started));
    let mut tasks = Vec::new();
    match load.rate {
        None => {
            for worker in 0..load.concurrency {
                let (members, conversations, senders, conversation_of, shared) =
                    (members.clone(), conversations.clone(), senders.clone(), conversation_of.clone(), shared.clone());
                tasks.push(tokio::spawn(async move {
                    let mut next = worker;
                    while !shared.stop.load(Ordering::Relaxed) {
                        let m = senders[next % senders.len()];
                        send_one(&members[m], &conversations[conversation_of[m]], &shared).await;
                        next += load.concurrency;
                    }
                }));
            }
        }
        Some(rate) => {
            let (members, conversations, senders, conversation_of, shared) =
                (members.clone(), conversations.clone(), senders.clone(), conversation_of.clone(), shared.clone());
            let in_flight = Arc::new(tokio::sync::Semaphore::new(load.concurrency));
            tasks.push(tokio::spawn(async move {
                let begin = Instant::now();
                let mut issued = 0u64;
                let mut ticker = tokio::time::interval(Duration::from_millis(1));
                while !shared.stop.load(Ordering::Relaxed) {
                    ticker.tick().await;
                    let due = (begin.elapsed().as_secs_f64() * rate) as u64;
                    while issued < due {
                        let m = senders[issued as usize % senders.len()];
                        issued += 1;
                        let Ok(permit) = in_flight.clone().try_acquire_owned() else {
                            shared.error("not sent: too many sends in flight (the server fell behind the rate)");
                            continue;
                        };
                        let (members, conversations, conversation_of, shared) =
                            (members.clone(), conversations.clone(), conversation_of.clone(), shared.clone());
                        tokio::spawn(async move {
                            send_one(&members[m], &conversations[conversation_of[m]], &shared).await;
                            drop(permit);
                        });
                    }
                }
                // Wait for the sends in flight.
                let _ = in_flight.acquire_many(load.concurrency as u32).await;
            }));
        }
    }

    tokio::time::sleep(load.warmup).await;
    let http = reqwest::Client::new();
    let batches_before = batch_counters(&http, &ports).await;
    let before = watch.sample();
    shared.measuring.store(true, Ordering::Relaxed);
    let window_start = Instant::now();
    tokio::time::sleep(load.duration).await;
    shared.measuring.store(false, Ordering::Relaxed);
    let window = window_start.elapsed().as_secs_f64();
    let after = watch.sample();
    let batches_after = batch_counters(&http, &ports).await;
    let rss = watch.dataplane_rss_mib();
    shared.stop.store(true, Ordering::Relaxed);
    for task in tasks {
        let _ = task.await;
    }
    // Drain: deliveries of measured messages still on their way.
    let drain_until = Instant::now() + load.drain;
    let missing = loop {
        let missing: u64 = shared
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .filter(|p| p.measured)
            .map(|p| u64::from(p.remaining))
            .sum();
        if missing == 0 || Instant::now() > drain_until {
            break missing;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    progress.abort();
    for receiver in receivers {
        receiver.abort();
    }
    let [dataplane, postgres, redis, tool, machine] = watch.cpu_between(&before, &after);
    let sent = shared.sent_measured.load(Ordering::Relaxed);
    let delivered = shared.delivered_measured.load(Ordering::Relaxed);
    let errors = shared.errors.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let error_kinds: Vec<(String, u64)> = errors.into_iter().collect();
    let latency = Latency::from_micros(&shared.latency.lock().unwrap_or_else(|p| p.into_inner()));
    let send_latency = Latency::from_micros(&shared.send_latency.lock().unwrap_or_else(|p| p.into_inner()));
    Ok(MessageFigures {
        clients,
        conversation_size,
        conversations: conversations.len(),
        target_rate: load.rate,
        concurrency: load.concurrency,
        replicas,
        duration_secs: window,
        plaintext_bytes: load.plaintext_bytes,
        messages_sent: sent,
        messages_per_sec: sent as f64 / window,
        deliveries: delivered,
        deliveries_per_sec: delivered as f64 / window,
        missing_deliveries: missing,
        verified_deliveries: shared.verified.load(Ordering::Relaxed),
        latency,
        send_latency,
        errors: error_kinds.iter().map(|(_, n)| n).sum(),
        error_kinds,
        resources: Resources {
            dataplane_cpu_percent: dataplane,
            dataplane_rss_mib: rss,
            postgres_cpu_percent: postgres,
            redis_cpu_percent: redis,
            tool_cpu_percent: tool,
            machine_cpu_percent: machine,
        },
        messages_per_batch: match (batches_before, batches_after) {
            (Some((b0, m0)), Some((b1, m1))) if b1 > b0 => Some((m1 - m0) as f64 / (b1 - b0) as f64),
            _ => None,
        },
        baseline: None,
    })
}

/// The data planes' send batches and the sends in them so far (summed over replicas), from
/// their `/metrics`; `None` when one cannot be read.
async fn batch_counters(http: &reqwest::Client, ports: &[u16]) -> Option<(u64, u64)> {
    let (mut batches, mut sends) = (0, 0);
    for port in ports {
        let text = system::scrape_metrics(http, *port).await.ok()?;
        batches += system::metric_sum(&text, "conclave_dataplane_send_batches_total")? as u64;
        sends += system::metric_sum(&text, "conclave_dataplane_send_batch_messages_total")? as u64;
    }
    Some((batches, sends))
}

/// One line a second: rates, latency of the last second, errors, the data plane's CPU and RSS.
async fn progress(shared: Arc<Shared>, watch: Watch, started: Instant) {
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    ticker.tick().await;
    let mut last = watch.sample();
    let (mut sent, mut delivered) = (0, 0);
    loop {
        ticker.tick().await;
        let now = watch.sample();
        let [cpu, pg, ..] = watch.cpu_between(&last, &now);
        last = now;
        let (s, d) = (shared.sent.load(Ordering::Relaxed), shared.delivered.load(Ordering::Relaxed));
        let p99 = {
            let mut h = shared.interval_latency.lock().unwrap_or_else(|p| p.into_inner());
            let p99 = if h.is_empty() { 0.0 } else { h.value_at_quantile(0.99) as f64 / 1000.0 };
            h.reset();
            p99
        };
        let phase = if shared.measuring.load(Ordering::Relaxed) {
            "measuring"
        } else if shared.stop.load(Ordering::Relaxed) {
            "draining"
        } else {
            "warm-up"
        };
        eprintln!(
            "[bench] {:>4.0}s {phase:<9} sent {:>6}/s delivered {:>7}/s p99 {:>7.2} ms errors {} | data plane CPU {:>4.0} % RSS {:>5.0} MiB | postgres CPU {:>4.0} %",
            started.elapsed().as_secs_f64(),
            s - sent,
            d - delivered,
            p99,
            shared.error_count(),
            cpu,
            watch.dataplane_rss_mib(),
            pg
        );
        (sent, delivered) = (s, d);
    }
}
