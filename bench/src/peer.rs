//! `peer-matrix`: a Matrix homeserver (Synapse) in the shape `messages --conversation-size 8
//! --max` measures Conclave in: one room of eight members, closed-loop senders, every member
//! reading.
//!
//! Each member is its own client (its own HTTP connections) and reads with a `/sync` long-poll
//! loop from before the warm-up; a sender sends an `m.room.encrypted` event shaped as a Megolm
//! message whose opaque ciphertext has the size Conclave's bench sends for the same plaintext, and
//! waits for the answer before the next. As in `messages`, the ciphertext carries the message's
//! id, the tool keeps the send time with it ([`Tally`]), and each member's copy is timed when its
//! `/sync` answer is read.

use crate::messages::{MLS_FRAMING, MLS_OVERHEAD};
use crate::results::PeerMatrixFigures;
use crate::synapse::User;
use crate::system::{self, Watch};
use crate::tally::Tally;
use anyhow::{Context, Result, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use uuid::Uuid;

#[derive(Debug, Clone)]
pub struct Load {
    /// Closed-loop senders, taking the members in turn.
    pub senders: usize,
    pub warmup: Duration,
    pub duration: Duration,
    pub drain: Duration,
    pub plaintext_bytes: usize,
}

/// The `/sync` long-poll timeout, as Matrix clients use it.
const SYNC_TIMEOUT_MS: u64 = 30_000;

/// The sync filter: the default, but up to 1,000 timeline events per answer (the default is 10),
/// so that a member reading behind a fast room is given every event rather than a gap
/// (`limited`) it would have to fill with `/messages`.
const SYNC_FILTER: &str = r#"{"room":{"timeline":{"limit":1000}}}"#;

/// The opaque ciphertext of a message: its id, then filler, `len` bytes in all.
pub fn ciphertext(id: Uuid, len: usize) -> Vec<u8> {
    let mut bytes = id.as_bytes().to_vec();
    bytes.resize(len.max(16), 0x5c);
    bytes
}

/// The bytes Conclave's bench sends for `plaintext_bytes` of content (an MLS application message).
pub fn ciphertext_len(plaintext_bytes: usize) -> usize {
    plaintext_bytes + MLS_FRAMING + MLS_OVERHEAD
}

/// A sending device's Megolm identifiers (random: nothing decrypts them).
#[derive(Debug, Clone)]
pub struct Device {
    sender_key: String,
    session_id: String,
    device_id: String,
}

impl Device {
    pub fn random() -> Self {
        let key = || STANDARD_NO_PAD.encode([Uuid::new_v4().into_bytes(), Uuid::new_v4().into_bytes()].concat());
        let device_id: String =
            Uuid::new_v4().simple().to_string().chars().take(10).map(|c| c.to_ascii_uppercase()).collect();
        Self { sender_key: key(), session_id: key(), device_id }
    }
}

/// An `m.room.encrypted` event's content as a Megolm client sends it.
pub fn event_content(id: Uuid, len: usize, device: &Device) -> Value {
    json!({
        "algorithm": "m.megolm.v1.aes-sha2",
        "ciphertext": STANDARD_NO_PAD.encode(ciphertext(id, len)),
        "sender_key": device.sender_key,
        "session_id": device.session_id,
        "device_id": device.device_id,
    })
}

/// The message id an event's content carries, if it is one of the bench's.
pub fn message_id(content: &Value) -> Option<Uuid> {
    let bytes = STANDARD_NO_PAD.decode(content["ciphertext"].as_str()?).ok()?;
    Uuid::from_slice(bytes.get(..16)?).ok()
}

/// An error answer as an error kind: the status and Matrix `errcode`.
async fn answer_error(what: &str, response: reqwest::Response) -> String {
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap_or_default();
    format!("{what}: HTTP {status} {}", body["errcode"].as_str().unwrap_or(""))
}

/// A transport error as an error kind (short, without the URL).
fn transport_error(what: &str, e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else {
        "request failed"
    };
    format!("{what}: {kind}")
}

/// One member's client: its own connections.
struct Client {
    http: reqwest::Client,
    user: User,
}

impl Client {
    fn new(user: User) -> Result<Self> {
        let http = reqwest::Client::builder().timeout(Duration::from_millis(SYNC_TIMEOUT_MS + 10_000)).build()?;
        Ok(Self { http, user })
    }

    async fn post(&self, base: &str, path: &str, body: &Value) -> Result<Value> {
        let response =
            self.http.post(format!("{base}{path}")).bearer_auth(&self.user.access_token).json(body).send().await?;
        if !response.status().is_success() {
            bail!("{}", answer_error(&format!("POST {path}"), response).await);
        }
        Ok(response.json().await?)
    }

    /// One `/sync`: from `since` (or the start) waiting up to `timeout_ms` for something new.
    async fn sync(&self, base: &str, since: Option<&str>, timeout_ms: u64) -> Result<Value, String> {
        let mut query = vec![("timeout", timeout_ms.to_string()), ("filter", SYNC_FILTER.to_owned())];
        query.extend(since.map(|s| ("since", s.to_owned())));
        let request = self.http.get(format!("{base}/_matrix/client/v3/sync")).bearer_auth(&self.user.access_token);
        let response = request.query(&query).send().await.map_err(|e| transport_error("sync", &e))?;
        if !response.status().is_success() {
            return Err(answer_error("sync", response).await);
        }
        response.json().await.map_err(|e| transport_error("sync", &e))
    }
}

/// The room: the first user creates it (private, encrypted, the others invited), the others join.
pub async fn make_room(base: &str, users: &[User]) -> Result<String> {
    let clients = users.iter().cloned().map(Client::new).collect::<Result<Vec<_>>>()?;
    let (creator, others) = clients.split_first().context("no users")?;
    let invite: Vec<&str> = others.iter().map(|c| c.user.user_id.as_str()).collect();
    let created = creator
        .post(
            base,
            "/_matrix/client/v3/createRoom",
            &json!({
                "preset": "private_chat",
                "name": "one busy conversation",
                "invite": invite,
                "initial_state": [{
                    "type": "m.room.encryption",
                    "state_key": "",
                    "content": { "algorithm": "m.megolm.v1.aes-sha2" },
                }],
            }),
        )
        .await?;
    let room = created["room_id"].as_str().context("no room_id")?.to_owned();
    for other in others {
        other.post(base, &format!("/_matrix/client/v3/rooms/{room}/join"), &json!({})).await?;
    }
    Ok(room)
}

/// What one member reads from a `/sync` answer: the bench's messages in `room`, timed on arrival.
fn read_answer(answer: &Value, room: &str, tally: &Tally) {
    let now = Instant::now();
    let timeline = &answer["rooms"]["join"][room]["timeline"];
    if timeline["limited"].as_bool() == Some(true) {
        tally.error("sync: timeline limited (events left out)");
    }
    for event in timeline["events"].as_array().into_iter().flatten() {
        if event["type"] == "m.room.encrypted"
            && let Some(id) = message_id(&event["content"])
        {
            tally.delivered(id, now);
        }
    }
}

/// One member's `/sync` loop, from `since`: it reads through the drain after the senders stop,
/// until the run ends it (its `JoinSet` dropped).
async fn read(client: Arc<Client>, base: String, room: String, mut since: String, tally: Arc<Tally>) {
    loop {
        match client.sync(&base, Some(&since), SYNC_TIMEOUT_MS).await {
            Ok(answer) => {
                read_answer(&answer, &room, &tally);
                match answer["next_batch"].as_str() {
                    Some(next) => since = next.to_owned(),
                    None => tally.error("sync: no next_batch"),
                }
            }
            Err(kind) => {
                tally.error(kind);
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

/// One closed-loop sender: sends as `client` until the run stops, each send answered before the next.
async fn send(client: Arc<Client>, base: String, room: String, readers: u32, len: usize, tally: Arc<Tally>) {
    let device = Device::random();
    while !tally.stop.load(Ordering::Relaxed) {
        let id = Uuid::new_v4();
        let url = format!("{base}/_matrix/client/v3/rooms/{room}/send/m.room.encrypted/{}", id.simple());
        let request =
            client.http.put(url).bearer_auth(&client.user.access_token).json(&event_content(id, len, &device));
        let sending = tally.sending(id, readers);
        match request.send().await {
            Ok(response) if response.status().is_success() => {
                let _ = response.bytes().await;
                tally.sent(sending);
            }
            Ok(response) => tally.failed(sending, answer_error("send", response).await),
            Err(e) => tally.failed(sending, transport_error("send", &e)),
        }
    }
}

/// Runs the load against the homeserver at `base`: `users` in `room`, Synapse watched by `watch`
/// and its backends found by their `database`.
pub async fn run(
    base: &str,
    users: Vec<User>,
    room: &str,
    watch: &Watch,
    database: &str,
    load: &Load,
) -> Result<PeerMatrixFigures> {
    let members = users.len();
    let clients = users.into_iter().map(|u| Client::new(u).map(Arc::new)).collect::<Result<Vec<_>>>()?;
    let tally = Arc::new(Tally::new());
    // Every member has synced once before anything is sent: each loop then reads from there.
    // Dropping the set (at the end, or on an early return) ends the readers.
    let mut readers = tokio::task::JoinSet::new();
    for client in &clients {
        let first = client.sync(base, None, 0).await.map_err(anyhow::Error::msg)?;
        let since = first["next_batch"].as_str().context("no next_batch in the first sync")?.to_owned();
        readers.spawn(read(client.clone(), base.to_owned(), room.to_owned(), since, tally.clone()));
    }
    let started = Instant::now();
    let progress = tokio::spawn(tally.clone().progress(watch.clone(), started, "Synapse"));
    let len = ciphertext_len(load.plaintext_bytes);
    let senders: Vec<_> = (0..load.senders)
        .map(|i| {
            let client = clients[i % members].clone();
            tokio::spawn(send(client, base.to_owned(), room.to_owned(), members as u32, len, tally.clone()))
        })
        .collect();

    tokio::time::sleep(load.warmup).await;
    let before_ours = system::database_backend_ticks(database);
    let measured = tally.window(watch, load.duration).await;
    let ours = system::database_backend_ticks(database).saturating_sub(before_ours);
    let missing = tally.finish(senders, load.drain).await;
    progress.abort();
    drop(readers);
    let [synapse, postgres, _redis, tool, machine] = watch.cpu_between(&measured.before, &measured.after);
    let window = measured.secs;
    let (sent, delivered) = tally.measured();
    let (errors, error_kinds) = tally.errors();
    let (latency, send_latency) = tally.latencies();
    Ok(PeerMatrixFigures {
        server: format!("Synapse {}", crate::synapse::VERSION),
        members,
        senders: load.senders,
        duration_secs: window,
        plaintext_bytes: load.plaintext_bytes,
        ciphertext_bytes: len,
        messages_sent: sent,
        messages_per_sec: sent as f64 / window,
        deliveries: delivered,
        deliveries_per_sec: delivered as f64 / window,
        missing_deliveries: missing,
        latency,
        send_latency,
        errors,
        error_kinds,
        server_cpu_percent: synapse,
        server_rss_mib: measured.rss_mib,
        postgres_cpu_percent: postgres,
        run_postgres_cpu_percent: watch.ticks_percent(ours, window),
        tool_cpu_percent: tool,
        machine_cpu_percent: machine,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_carries_its_id_in_a_ciphertext_of_the_size_conclave_sends() {
        let id = Uuid::new_v4();
        let len = ciphertext_len(100);
        assert_eq!(len, 242, "100 bytes of plaintext in an MLS application message");
        let content = event_content(id, len, &Device::random());
        assert_eq!(content["algorithm"], "m.megolm.v1.aes-sha2");
        let ciphertext = content["ciphertext"].as_str().expect("ciphertext");
        assert_eq!(STANDARD_NO_PAD.decode(ciphertext).expect("base64").len(), 242);
        assert_eq!(content["sender_key"].as_str().map(str::len), Some(43), "a Curve25519 key");
        assert_eq!(message_id(&content), Some(id));
        assert_eq!(message_id(&json!({ "ciphertext": "not base64!" })), None);
        assert_eq!(message_id(&json!({ "body": "hello" })), None);
    }

    #[test]
    fn a_sync_answer_delivers_the_bench_events_of_the_room_and_flags_a_gap() {
        let tally = Tally::new();
        tally.measuring.store(true, Ordering::Relaxed);
        let (mine, other) = (Uuid::new_v4(), Uuid::new_v4());
        tally.sent(tally.sending(mine, 1));
        let device = Device::random();
        let answer = json!({ "rooms": { "join": {
            "!r:peer.localhost": { "timeline": { "limited": true, "events": [
                { "type": "m.room.member", "content": { "membership": "join" } },
                { "type": "m.room.encrypted", "content": event_content(mine, 242, &device) },
            ]}},
            "!other:peer.localhost": { "timeline": { "events": [
                { "type": "m.room.encrypted", "content": event_content(other, 242, &device) },
            ]}},
        }}});
        read_answer(&answer, "!r:peer.localhost", &tally);
        assert_eq!(tally.errors(), (1, vec![("sync: timeline limited (events left out)".to_owned(), 1)]));
        let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().expect("runtime");
        assert_eq!(runtime.block_on(tally.drain(Duration::ZERO)), 0, "the one reader has it");
    }
}
