//! `messages`: N clients, each with a device, a session and a WebSocket, in conversations of a
//! given size; they send sealed messages through the SDK at a target rate or as fast as they
//! can, and every member socket times the delivery.
//!
//! Every send is a real MLS application message: each conversation's group is made in this
//! process with the SDK before the run (`mls::conversation_groups`), and each sender seals its
//! messages with openmls ahead of the measured window (`mls::Sealer`), so that the tool's
//! cryptography does not take the cores the data plane is measured on; one sealed during the run
//! when those run out is counted and printed.
//!
//! Latency is send→deliver: from just before the send request (after sealing) to the moment a
//! member's socket reads the `message_created` frame, for every member socket (the sender's own
//! included, as the product delivers it there too). Frames are matched by `client_message_id`;
//! one in `--verify-every` of another member's is opened with the SDK (decrypted, its sender's
//! leaf checked, the content compared with what was sealed) so the path is end to end.

use crate::mls::Sealer;
use crate::provision::{Conversation, Member};
use crate::results::{MessageFigures, Resources};
use crate::socket::{self, Socket};
use crate::system::{self, Watch};
use crate::tally::Tally;
use anyhow::Result;
use conclave_protocol::api::SendMessage;
use conclave_protocol::events::ServerFrame;
use conclave_protocol::mls_wire;
use futures::StreamExt as _;
use hdrhistogram::Histogram;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
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

pub fn histogram() -> Histogram<u64> {
    // 1 µs to 60 s, three significant digits.
    #[allow(clippy::expect_used)]
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("constant histogram bounds are valid")
}

/// What senders and receivers share.
struct Shared {
    organization_id: Uuid,
    tally: Arc<Tally>,
    verified: AtomicU64,
    /// The encoded content every message seals.
    content: Vec<u8>,
    verify_every: u64,
}

/// Reads one member's socket until it closes or the run ends.
async fn receive(mut ws: Socket, shared: Arc<Shared>, sealer: Arc<Sealer>) {
    let own = sealer.device_id();
    let mut seen = 0u64;
    while let Some(frame) = ws.next().await {
        let text = match frame {
            Ok(WsMessage::Text(text)) => text,
            Ok(WsMessage::Close(_)) | Err(_) => break,
            Ok(_) => continue,
        };
        let Some(id) = socket::client_message_id(&text) else { continue };
        shared.tally.delivered(id, Instant::now());
        seen += 1;
        if shared.verify_every > 0 && seen % shared.verify_every == 1 % shared.verify_every {
            match verify(&text, &sealer, own, &shared.content) {
                Ok(()) => {
                    shared.verified.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => shared.tally.error(format!("a delivery did not open: {e}")),
            }
        }
    }
    if !shared.tally.stop.load(Ordering::Relaxed) {
        shared.tally.error("a socket closed during the run");
    }
}

/// Checks a delivered frame: an MLS application message of the conversation's group, in the
/// epoch the message names, which this member's SDK opens (decrypts, its sender's leaf checked)
/// to the content sealed, from the device the server names. A member's own messages are checked
/// for their framing only (MLS does not decrypt a device's own).
fn verify(text: &str, sealer: &Sealer, own: Uuid, content: &[u8]) -> Result<()> {
    let ServerFrame::MessageCreated { message } = serde_json::from_str(text)? else {
        anyhow::bail!("not a message_created frame");
    };
    let ciphertext = message.ciphertext.ok_or_else(|| anyhow::anyhow!("no ciphertext"))?;
    let framed = mls_wire::framing(&ciphertext)?;
    if framed.group_id != message.conversation_id.as_bytes()
        || i64::try_from(framed.epoch).ok() != Some(i64::from(message.key_generation))
        || framed.content_type != mls_wire::content_type::APPLICATION
    {
        anyhow::bail!("the frame's MLS framing does not match the message");
    }
    if message.sender_device_id == Some(own) {
        return Ok(());
    }
    let (sender, plaintext) = sealer.open(&ciphertext)?;
    if Some(sender) != message.sender_device_id || plaintext != content {
        anyhow::bail!("the message opened to another sender or content than was sent");
    }
    Ok(())
}

/// What a member's client sends for `plaintext_len` bytes of content: an MLS application message
/// framed for the conversation's group and epoch (checked by the server), whose encrypted part has
/// the size openmls gives that content ([`MLS_OVERHEAD`] more) and ends with the client message id
/// so that a delivery can be matched to its send.
pub fn send_body(conversation: &Conversation, client_message_id: Uuid, plaintext_len: usize) -> SendMessage {
    let mut body = vec![0x5c; plaintext_len + MLS_OVERHEAD - 16];
    body.extend_from_slice(client_message_id.as_bytes());
    SendMessage {
        client_message_id,
        key_generation: conversation.epoch,
        ciphertext: mls_wire::fake::private_message(
            conversation.id.as_bytes(),
            conversation.epoch as u64,
            mls_wire::content_type::APPLICATION,
            &body,
        ),
        reply_to_id: None,
        attachment_ids: Vec::new(),
    }
}

/// Bytes an MLS `PrivateMessage` adds to its content after the clear-text framing (the encrypted
/// sender data, the AEAD tags, the signature inside and the padding), as measured on openmls with
/// protocol v2's suite: see `conclave-bench mls`.
pub const MLS_OVERHEAD: usize = 112;

/// The clear-text framing in front of it for a conversation's group: version, wire format, the
/// 16-byte group id with its length, the epoch, the content type.
pub const MLS_FRAMING: usize = 2 + 2 + 1 + 16 + 8 + 1;

/// Sends one message as `member` to `conversation`, through the SDK's API client: the next one its
/// sealer holds.
async fn send_one(member: &Member, sealer: &Sealer, conversation: &Conversation, shared: &Shared) {
    let client_message_id = Uuid::new_v4();
    let ciphertext = match sealer.next(&shared.content) {
        Ok(ciphertext) => ciphertext,
        Err(e) => return shared.tally.error(format!("sealing: {e}")),
    };
    let body = SendMessage {
        client_message_id,
        key_generation: conversation.epoch,
        ciphertext,
        reply_to_id: None,
        attachment_ids: Vec::new(),
    };
    let sending = shared.tally.sending(client_message_id, conversation.members.len() as u32);
    match member.client.send_message(shared.organization_id, conversation.id, &body).await {
        Ok(_) => shared.tally.sent(sending),
        Err(e) => {
            let kind = match &e {
                conclave_client::Error::Api(api) => format!("send: HTTP {} {}", api.status.as_u16(), api.code),
                other => format!("send: {}", other.to_string().chars().take(80).collect::<String>()),
            };
            shared.tally.failed(sending, kind);
        }
    }
}

/// What a sending task needs, cheap to clone: senders take turns over all conversation members.
#[derive(Clone)]
struct Turns {
    members: Arc<Vec<Member>>,
    conversations: Arc<Vec<Conversation>>,
    senders: Arc<Vec<usize>>,
    conversation_of: Arc<Vec<usize>>,
    sealers: Arc<Vec<Option<Arc<Sealer>>>>,
    shared: Arc<Shared>,
}

impl Turns {
    /// The `turn`-th send of the run.
    async fn send(&self, turn: usize) {
        let m = self.senders[turn % self.senders.len()];
        if let Some(sealer) = &self.sealers[m] {
            send_one(&self.members[m], sealer, &self.conversations[self.conversation_of[m]], &self.shared).await;
        }
    }
}

pub struct Setup<'a> {
    pub organization_id: Uuid,
    pub members: Vec<Member>,
    pub conversations: Vec<Conversation>,
    /// Each conversation member's MLS group and sealer, by member index.
    pub sealers: Vec<Option<Arc<Sealer>>>,
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
        sealers,
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
    let tally = Arc::new(Tally::new());
    let shared = Arc::new(Shared {
        organization_id,
        tally: tally.clone(),
        verified: AtomicU64::new(0),
        content: crate::mls::bench_content(load.plaintext_bytes)?,
        verify_every: load.verify_every,
    });
    let sealers: Arc<Vec<Option<Arc<Sealer>>>> = Arc::new(sealers);
    seal_ahead(&sealers, &senders, &load, &shared.content).await?;

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
        let sealer = sealers[m].clone().ok_or_else(|| anyhow::anyhow!("member {m} has no group"))?;
        receivers.push(tokio::spawn(receive(ws, shared.clone(), sealer)));
    }

    let started = Instant::now();
    let progress = tokio::spawn(tally.clone().progress(watch.clone(), started, "data plane"));
    let mut tasks = Vec::new();
    let turns = Turns {
        members: members.clone(),
        conversations: conversations.clone(),
        senders: senders.clone(),
        conversation_of: conversation_of.clone(),
        sealers: sealers.clone(),
        shared: shared.clone(),
    };
    match load.rate {
        None => {
            for worker in 0..load.concurrency {
                let turns = turns.clone();
                tasks.push(tokio::spawn(async move {
                    let mut next = worker;
                    while !turns.shared.tally.stop.load(Ordering::Relaxed) {
                        turns.send(next).await;
                        next += load.concurrency;
                    }
                }));
            }
        }
        Some(rate) => {
            let tally = tally.clone();
            let in_flight = Arc::new(tokio::sync::Semaphore::new(load.concurrency));
            tasks.push(tokio::spawn(async move {
                let begin = Instant::now();
                let mut issued = 0u64;
                let mut ticker = tokio::time::interval(Duration::from_millis(1));
                while !tally.stop.load(Ordering::Relaxed) {
                    ticker.tick().await;
                    let due = (begin.elapsed().as_secs_f64() * rate) as u64;
                    while issued < due {
                        let turn = issued as usize;
                        issued += 1;
                        let Ok(permit) = in_flight.clone().try_acquire_owned() else {
                            tally.error("not sent: too many sends in flight (the server fell behind the rate)");
                            continue;
                        };
                        let turns = turns.clone();
                        tokio::spawn(async move {
                            turns.send(turn).await;
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
    let measured = tally.window(watch, load.duration).await;
    let batches_after = batch_counters(&http, &ports).await;
    let missing = tally.finish(tasks, load.drain).await;
    progress.abort();
    for receiver in receivers {
        receiver.abort();
    }
    let sealed_late: u64 = sealers.iter().flatten().map(|s| s.sealed_late.load(Ordering::Relaxed)).sum();
    if sealed_late > 0 {
        eprintln!("[bench] {sealed_late} messages were sealed during the run (the ones sealed ahead ran out)");
    }
    let [dataplane, postgres, redis, tool, machine] = watch.cpu_between(&measured.before, &measured.after);
    let window = measured.secs;
    let (sent, delivered) = tally.measured();
    let (errors, error_kinds) = tally.errors();
    let (latency, send_latency) = tally.latencies();
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
        errors,
        error_kinds,
        resources: Resources {
            dataplane_cpu_percent: dataplane,
            dataplane_rss_mib: measured.rss_mib,
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

/// A rate the run's senders are not expected to pass when sending as fast as they can (`--max`):
/// what they seal ahead is sized by it.
const ASSUMED_PEAK_PER_SEC: f64 = 6_000.0;

/// Seals, on blocking threads, what each sender will send during the warm-up and the measured
/// window at the target rate (or [`ASSUMED_PEAK_PER_SEC`]), with a margin.
async fn seal_ahead(
    sealers: &Arc<Vec<Option<Arc<Sealer>>>>,
    senders: &[usize],
    load: &Load,
    content: &[u8],
) -> Result<()> {
    let seconds = (load.warmup + load.duration).as_secs_f64() + 2.0;
    let total = load.rate.unwrap_or(ASSUMED_PEAK_PER_SEC) * seconds;
    let each = (total / senders.len().max(1) as f64 * 1.2).ceil() as usize + 8;
    let started = Instant::now();
    let threads = std::thread::available_parallelism().map(usize::from).unwrap_or(2);
    let chunks: Vec<Vec<Arc<Sealer>>> = senders
        .chunks(senders.len().div_ceil(threads).max(1))
        .map(|chunk| chunk.iter().filter_map(|&m| sealers[m].clone()).collect())
        .collect();
    let mut handles = Vec::new();
    for chunk in chunks {
        let content = content.to_vec();
        handles.push(tokio::task::spawn_blocking(move || -> Result<()> {
            for sealer in chunk {
                sealer.seal_ahead(&content, each)?;
            }
            Ok(())
        }));
    }
    for handle in handles {
        handle.await??;
    }
    eprintln!(
        "[bench] sealed {} MLS messages ahead ({each} per sender) in {:.1} s",
        each * senders.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::{MLS_FRAMING, MLS_OVERHEAD};
    use conclave_client::mls::{Device, IdentityKey};
    use uuid::Uuid;

    /// The sizes the bench sends are the sizes a real MLS application message of that content has
    /// (within its padding): measured on openmls with protocol v2's suite.
    #[test]
    fn the_bench_message_size_is_a_real_mls_message_size() {
        let identity = IdentityKey::generate().expect("identity");
        let device = Device::new(&identity, Uuid::now_v7(), Uuid::now_v7(), &[7u8; 32]).expect("device");
        let mut group = device.create_group(Uuid::now_v7(), None).expect("group");
        for len in [10usize, 200, 4_000] {
            let ciphertext = device.encrypt(&mut group, &vec![b'x'; len]).expect("encrypt");
            let overhead = ciphertext.len() - MLS_FRAMING - len;
            assert!(overhead.abs_diff(MLS_OVERHEAD) <= 8, "{len} bytes: {overhead} bytes of overhead");
        }
    }
}
