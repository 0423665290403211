//! Web Push deliveries (RFC 8030) of the `push` rows a send queues, one row per recipient:
//! the payload is encrypted to each of the recipient's subscriptions with RFC 8291 `aes128gcm`
//! and the request signed with RFC 8292 VAPID (ES256), both by the `web-push` crate; this module
//! only decides, builds the payload and reads the push service's answer.
//!
//! A payload never carries content: what a client needs to fetch and decrypt (organization,
//! conversation, sequence number, message id), the event kind and the unread counts for the
//! badge (docs/notifications.md). The push service's answer drives the subscription: 2xx
//! delivered; 404/410 the subscription is deleted; 413 the payload is trimmed to its ids and sent
//! once more; 429/5xx retried with back-off honouring `Retry-After`; any other 4xx is given up
//! with the reason stored. A row retried after some subscriptions were served remembers them
//! (`sent_to`), so a retry does not push twice to the same device.

use super::guard::{self, AllowList, AllowedTarget, Refused};
use super::http::{Failure, GuardedHttp};
use super::{Job, Outcome, system_tx};
use crate::AppState;
use crate::db::tenant_tx;
use crate::notifications::policy::{self, Preferences, Scoped, Verdict};
use crate::notifications::unread;
use chrono::Utc;
use conclave_protocol::notifications::NotificationLevel;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;
use uuid::Uuid;
use web_push::{
    ContentEncoding, PartialVapidSignatureBuilder, SubscriptionInfo, Urgency, VapidSignatureBuilder,
    WebPushMessageBuilder,
};

const TIMEOUT: Duration = Duration::from_secs(10);
/// How long a push service keeps a message for an offline device.
const MESSAGE_TTL: u32 = 24 * 3600;
/// An incoming call is worth nothing once it stopped ringing.
const CALL_TTL: u32 = 60;

/// The VAPID key (from the operator's Secret) and the subject named in every token.
pub struct PushKeys {
    signer: PartialVapidSignatureBuilder,
    /// The uncompressed P-256 point browsers subscribe with (`applicationServerKey`).
    pub public_key: Vec<u8>,
    subject: String,
    allow_loopback_http: bool,
}

impl PushKeys {
    /// `private_key`: the P-256 scalar, base64url (the operator's `private-key` file).
    pub fn from_base64(private_key: &str, subject: String, allow_loopback_http: bool) -> anyhow::Result<Self> {
        let signer = VapidSignatureBuilder::from_base64_no_sub(private_key.trim())
            .map_err(|e| anyhow::anyhow!("the VAPID private key is not a P-256 scalar in base64url: {e}"))?;
        let public_key = signer.get_public_key();
        Ok(Self { signer, public_key, subject, allow_loopback_http })
    }

    /// A key of this process only: subscriptions made against it stop working on restart.
    pub fn ephemeral(subject: String, allow_loopback_http: bool) -> anyhow::Result<Self> {
        loop {
            let scalar = conclave_credentials::random_bytes::<32>()?;
            if let Ok(keys) =
                Self::from_base64(&conclave_protocol::b64::encode(scalar), subject.clone(), allow_loopback_http)
            {
                return Ok(keys);
            }
        }
    }

    /// Whether an endpoint may be pushed to: https, or plain http on loopback when allowed.
    pub fn endpoint_allowed(&self, endpoint: &str) -> bool {
        endpoint.starts_with("https://") || (self.allow_loopback_http && is_loopback_http(endpoint))
    }

    /// Why an endpoint whose host is an address literal may not be pushed to. (A host name is
    /// vetted each time a delivery resolves it.)
    pub fn endpoint_refused(&self, endpoint: &str) -> Option<Refused> {
        let uri = endpoint.parse::<hyper::Uri>().ok()?;
        guard::vet_literal(&allow_list(self.allow_loopback_http), uri.host()?).err()
    }
}

/// Where pushes may go: public addresses only, as for webhooks (a subscription's endpoint is
/// chosen by its user), and loopback too when plain http to it is allowed (tests, the demo).
/// Push services are public: there is no allow-list for in-cluster ones.
pub fn allow_list(allow_loopback_http: bool) -> AllowList {
    let loopback = ["127.0.0.0/8", "::1/128"];
    let targets = if allow_loopback_http { &loopback[..] } else { &[] };
    AllowList::new(targets.iter().filter_map(|t| t.parse::<AllowedTarget>().ok()).collect())
}

/// `http://127.0.0.1:port/...`, `http://localhost/...`, `http://[::1]/...`: as the schema admits.
pub fn is_loopback_http(endpoint: &str) -> bool {
    let Some(rest) = endpoint.strip_prefix("http://") else { return false };
    let host_end = rest.find('/').unwrap_or(rest.len());
    let authority = &rest[..host_end];
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => authority.split(':').next().unwrap_or_default(),
    };
    host_end < rest.len() && matches!(host, "127.0.0.1" | "localhost" | "::1")
}

/// The origin of an endpoint (scheme, host and port): the VAPID token's audience.
fn origin(endpoint: &str) -> Option<String> {
    let (scheme, rest) = endpoint.split_once("://")?;
    let authority = rest.split('/').next()?;
    Some(format!("{scheme}://{authority}"))
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Reason {
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ChannelLabel {
    pub channel: String,
}

/// The push pipeline of a replica: its VAPID key and its metrics.
pub struct Push {
    pub keys: Arc<PushKeys>,
    pub stats: PushStats,
}

impl Push {
    /// The key from `--vapid-private-key-file` (the operator's Secret), else an ephemeral one.
    pub fn from_config(config: &crate::config::Config) -> anyhow::Result<Self> {
        let subject = config.vapid_subject.clone().unwrap_or_else(|| {
            if config.public_url.starts_with("https://") {
                config.public_url.clone()
            } else {
                "mailto:push@conclave.invalid".to_owned()
            }
        });
        let allow = config.push_allow_loopback_http;
        let keys = match &config.vapid_private_key_file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| anyhow::anyhow!("reading CONCLAVE_VAPID_PRIVATE_KEY_FILE: {e}"))?;
                PushKeys::from_base64(&text, subject, allow)?
            }
            None => {
                tracing::warn!("no CONCLAVE_VAPID_PRIVATE_KEY_FILE: Web Push uses an ephemeral VAPID key");
                PushKeys::ephemeral(subject, allow)?
            }
        };
        Ok(Self { keys: Arc::new(keys), stats: PushStats::default() })
    }
}

/// The push pipeline's metrics, registered by every router built on this state.
#[derive(Default)]
pub struct PushStats {
    pub sent: Counter,
    pub failed: Family<Reason, Counter>,
    pub skipped: Family<Reason, Counter>,
    /// Outbox rows not yet processed, per channel (refreshed by the worker each poll).
    pub pending: Family<ChannelLabel, Gauge>,
    pub oldest_pending_seconds: Family<ChannelLabel, Gauge<f64, AtomicU64>>,
}

/// Refreshes the queue gauges (every tenant's rows, through `conclave_outbox_backlog`).
pub async fn measure_backlog(state: &AppState) -> Result<(), sqlx::Error> {
    let rows = sqlx::query!(
        r#"SELECT channel AS "channel!", pending AS "pending!", oldest_seconds AS "oldest_seconds!" FROM conclave_outbox_backlog()"#
    )
    .fetch_all(&state.db)
    .await?;
    let stats = &state.push.stats;
    for channel in ["push", "email", "webhook"] {
        let row = rows.iter().find(|r| r.channel == channel);
        let label = ChannelLabel { channel: channel.to_owned() };
        stats.pending.get_or_create(&label).set(row.map_or(0, |r| r.pending));
        stats.oldest_pending_seconds.get_or_create(&label).set(row.map_or(0.0, |r| r.oldest_seconds));
    }
    Ok(())
}

/// What the push is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Message,
    Mention,
    IncomingCall,
    MissedCall,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Self::Message => "message",
            Self::Mention => "mention",
            Self::IncomingCall => "incoming_call",
            Self::MissedCall => "missed_call",
        }
    }
}

/// One subscription of the recipient.
struct Target {
    id: Uuid,
    endpoint: String,
    p256dh: Vec<u8>,
    auth: Vec<u8>,
}

/// What the database says about the recipient and the event.
struct Recipient {
    direct: bool,
    read_seq: i64,
    prefs: Preferences,
    mentioned: bool,
    unread: i64,
    organization_unread: i64,
    targets: Vec<Target>,
}

async fn recipient(
    state: &AppState,
    organization_id: Uuid,
    user_id: Uuid,
    conversation_id: Uuid,
    message_id: Option<Uuid>,
) -> Result<Option<Recipient>, crate::error::ApiError> {
    let mut tx = tenant_tx(state, organization_id, user_id).await?;
    let Some(seat) = sqlx::query!(
        "SELECT c.kind, c.workspace_id, m.read_seq FROM conversations c
           JOIN conversation_members m ON m.conversation_id = c.id AND m.user_id = $2
          WHERE c.id = $1",
        conversation_id,
        user_id
    )
    .fetch_optional(&mut *tx)
    .await?
    else {
        return Ok(None);
    };
    let rows = sqlx::query!(
        "SELECT organization_id, workspace_id, conversation_id, level, muted_until, push_enabled,
                quiet_hours_start, quiet_hours_end
           FROM notification_preferences
          WHERE user_id = $1
            AND (organization_id IS NULL
                 OR (organization_id = $2 AND ((workspace_id IS NULL AND conversation_id IS NULL)
                                               OR workspace_id = $3 OR conversation_id = $4)))",
        user_id,
        organization_id,
        seat.workspace_id,
        conversation_id
    )
    .fetch_all(&mut *tx)
    .await?;
    let time_zone = sqlx::query_scalar!("SELECT time_zone FROM user_profiles WHERE user_id = $1", user_id)
        .fetch_optional(&mut *tx)
        .await?
        .flatten();
    let mut prefs = Preferences { push_enabled: true, time_zone, ..Default::default() };
    // Organization, then workspace, then conversation: the most specific last.
    let mut overrides: Vec<(u8, Scoped)> = Vec::new();
    for row in rows {
        let scoped =
            Scoped { level: row.level.as_deref().and_then(NotificationLevel::parse), muted_until: row.muted_until };
        match (row.organization_id, row.workspace_id, row.conversation_id) {
            (None, _, _) => {
                prefs.account = scoped;
                prefs.push_enabled = row.push_enabled;
                prefs.quiet_hours = row.quiet_hours_start.zip(row.quiet_hours_end);
            }
            (Some(_), None, None) => overrides.push((0, scoped)),
            (Some(_), Some(_), _) => overrides.push((1, scoped)),
            (Some(_), None, Some(_)) => overrides.push((2, scoped)),
        }
    }
    overrides.sort_by_key(|(rank, _)| *rank);
    prefs.overrides = overrides.into_iter().map(|(_, s)| s).collect();
    let mentioned = match message_id {
        Some(message_id) => sqlx::query_scalar!(
            r#"SELECT EXISTS (SELECT 1 FROM message_mentions WHERE message_id = $1 AND mentioned_user_id = $2) AS "e!""#,
            message_id,
            user_id
        )
        .fetch_one(&mut *tx)
        .await?,
        None => false,
    };
    let counts = unread::counts(&mut tx, organization_id, user_id).await?;
    let targets = sqlx::query_as!(
        Target,
        "SELECT id, endpoint, p256dh, auth FROM push_subscriptions WHERE user_id = $1 ORDER BY id",
        user_id
    )
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    let unread = counts.conversations.iter().find(|c| c.conversation_id == conversation_id).map_or(0, |c| c.unread);
    Ok(Some(Recipient {
        direct: seat.kind == "direct",
        read_seq: seat.read_seq,
        prefs,
        mentioned,
        unread,
        organization_unread: counts.total,
        targets,
    }))
}

/// How one subscription's request went.
#[derive(Debug)]
enum Sent {
    Delivered,
    /// 404/410: the subscription no longer exists.
    Gone,
    /// 429/5xx or no answer: try again, after this many seconds when the service said.
    Retry {
        after: Option<u64>,
        reason: String,
    },
    /// Any other 4xx, or a subscription that cannot be encrypted to.
    Rejected(String),
}

pub async fn deliver(state: &AppState, http: &GuardedHttp, job: &Job) -> Outcome {
    let Some(user_id) = job.recipient_user_id else {
        return Outcome::Drop("push row without a recipient".to_owned());
    };
    let ids = |key: &str| job.payload.get(key).and_then(Value::as_str).and_then(|s| s.parse::<Uuid>().ok());
    let Some(conversation_id) = ids("conversation_id") else {
        return Outcome::Drop("push row without a conversation".to_owned());
    };
    let message_id = ids("message_id");
    let seq = job.payload.get("seq").and_then(Value::as_i64);
    let base_kind = match job.event_type.as_str() {
        "message.created" => Kind::Message,
        "message.mentioned" => Kind::Mention,
        "call.incoming" => Kind::IncomingCall,
        "call.missed" => Kind::MissedCall,
        other => return Outcome::Drop(format!("no push for event {other}")),
    };
    let recipient = match recipient(state, job.organization_id, user_id, conversation_id, message_id).await {
        Ok(Some(recipient)) => recipient,
        Ok(None) => return skip(state, "not_a_member"),
        Err(e) => return Outcome::Retry(format!("database: {e}")),
    };
    // Read on some device already (the reader's cursor is past it): nothing to announce.
    if matches!(base_kind, Kind::Message | Kind::Mention) && seq.is_some_and(|s| recipient.read_seq >= s) {
        return skip(state, "already_read");
    }
    // The mention's own row announces it (one notification, not two).
    if base_kind == Kind::Message && recipient.mentioned {
        return skip(state, "mentioned");
    }
    let kind = base_kind;
    let event = policy::Event {
        addressed: matches!(kind, Kind::Mention | Kind::IncomingCall | Kind::MissedCall),
        direct_conversation: recipient.direct,
    };
    if let Verdict::Skip(reason) = policy::decide(&recipient.prefs, event, Utc::now()) {
        return skip(state, reason);
    }
    let already: Vec<Uuid> = job
        .payload
        .get("sent_to")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|v| v.as_str()?.parse().ok()).collect())
        .unwrap_or_default();
    let targets: Vec<&Target> = recipient.targets.iter().filter(|t| !already.contains(&t.id)).collect();
    if targets.is_empty() {
        return skip(state, "no_subscription");
    }
    let full = json!({
        "kind": kind.as_str(),
        "organization_id": job.organization_id,
        "conversation_id": conversation_id,
        "message_id": message_id,
        "seq": seq,
        "call_id": job.payload.get("call_id"),
        "media": job.payload.get("media"),
        "unread": recipient.unread,
        "badge": recipient.organization_unread,
    });
    let trimmed = json!({ "kind": kind.as_str(), "conversation_id": conversation_id });
    let shape = Shape {
        ttl: if kind == Kind::IncomingCall { CALL_TTL } else { MESSAGE_TTL },
        urgency: match kind {
            Kind::Mention | Kind::IncomingCall => Urgency::High,
            Kind::Message if recipient.direct => Urgency::High,
            _ => Urgency::Normal,
        },
        // One notification per conversation waits at the push service: a newer replaces it.
        topic: (kind != Kind::IncomingCall).then(|| conversation_id.simple().to_string()),
    };
    let mut served = already;
    let mut retry: Option<(Option<u64>, String)> = None;
    let mut rejected = Vec::new();
    let mut gone = 0usize;
    for target in targets {
        match send(state, http, target, &shape, &full, &trimmed).await {
            Sent::Delivered => {
                state.push.stats.sent.inc();
                served.push(target.id);
            }
            Sent::Gone => {
                failed(state, "gone");
                gone += 1;
                forget(state, target.id).await;
            }
            Sent::Retry { after, reason } => {
                failed(state, if after.is_some() { "rate_limited" } else { "unavailable" });
                let longest = retry.as_ref().and_then(|(a, _)| *a).max(after);
                retry = Some((longest, reason));
            }
            Sent::Rejected(reason) => {
                failed(state, "rejected");
                rejected.push(reason);
            }
        }
    }
    if let Some((after, reason)) = retry {
        remember(state, job, &served).await;
        return match after {
            Some(seconds) => Outcome::RetryAfter(seconds, reason),
            None => Outcome::Retry(reason),
        };
    }
    if !rejected.is_empty() && served.is_empty() {
        return Outcome::Drop(rejected.join("; "));
    }
    if served.is_empty() && gone > 0 {
        return Outcome::Drop("every subscription is gone".to_owned());
    }
    Outcome::Delivered
}

fn skip(state: &AppState, reason: &'static str) -> Outcome {
    state.push.stats.skipped.get_or_create(&Reason { reason }).inc();
    Outcome::Skip(reason.to_owned())
}

fn failed(state: &AppState, reason: &'static str) {
    state.push.stats.failed.get_or_create(&Reason { reason }).inc();
}

struct Shape {
    ttl: u32,
    urgency: Urgency,
    topic: Option<String>,
}

/// Sends to one subscription; on 413 once more with the trimmed payload.
async fn send(
    state: &AppState,
    http: &GuardedHttp,
    target: &Target,
    shape: &Shape,
    full: &Value,
    trimmed: &Value,
) -> Sent {
    let first = send_once(state, http, target, shape, full).await;
    let (status, retry_after) = match first {
        Ok((413, _)) => match send_once(state, http, target, shape, trimmed).await {
            Ok(answered) => answered,
            Err(sent) => return sent,
        },
        Ok(answered) => answered,
        Err(sent) => return sent,
    };
    answer(status, retry_after)
}

/// What a push service's answer means for the subscription (`retry_after`: its `Retry-After`).
fn answer(status: u16, retry_after: Option<u64>) -> Sent {
    match status {
        200..=299 => Sent::Delivered,
        404 | 410 => Sent::Gone,
        429 => Sent::Retry { after: Some(retry_after.unwrap_or(60)), reason: "the push service answered 429".into() },
        500..=599 => Sent::Retry { after: retry_after, reason: format!("the push service answered {status}") },
        _ => Sent::Rejected(format!("the push service refused the request with {status}")),
    }
}

/// Encrypts, signs and posts one payload; the status and `Retry-After` seconds, or why not.
async fn send_once(
    state: &AppState,
    http: &GuardedHttp,
    target: &Target,
    shape: &Shape,
    payload: &Value,
) -> Result<(u16, Option<u64>), Sent> {
    if !state.push.keys.endpoint_allowed(&target.endpoint) {
        return Err(Sent::Rejected("the endpoint is not https".to_owned()));
    }
    let keys = state.push.keys.clone();
    let endpoint = target.endpoint.clone();
    let (p256dh, auth) = (target.p256dh.clone(), target.auth.clone());
    let body = payload.to_string();
    let (ttl, urgency, topic) = (shape.ttl, shape.urgency, shape.topic.clone());
    // ECDH, HKDF, AES-GCM and an ECDSA signature: CPU work, off the async runtime.
    let built = tokio::task::spawn_blocking(move || {
        let info = SubscriptionInfo::new(
            endpoint.clone(),
            conclave_protocol::b64::encode(&p256dh),
            conclave_protocol::b64::encode(&auth),
        );
        let mut signer = keys.signer.clone().add_sub_info(&info);
        // The audience is the origin with its port (web-push leaves the port out by itself).
        signer.add_claim("aud", origin(&endpoint).unwrap_or_default());
        signer.add_claim("sub", keys.subject.clone());
        signer.add_claim("exp", (Utc::now() + chrono::Duration::hours(12)).timestamp());
        let signature = signer.build()?;
        let mut message = WebPushMessageBuilder::new(&info);
        message.set_payload(ContentEncoding::Aes128Gcm, body.as_bytes());
        message.set_ttl(ttl);
        message.set_urgency(urgency);
        if let Some(topic) = topic {
            message.set_topic(topic);
        }
        message.set_vapid_signature(signature);
        message.build()
    })
    .await;
    let message = match built {
        Ok(Ok(message)) => message,
        Ok(Err(e)) => return Err(Sent::Rejected(format!("cannot encrypt to the subscription: {e}"))),
        Err(e) => return Err(Sent::Retry { after: None, reason: format!("encryption task failed: {e}") }),
    };
    let mut request = hyper::Request::post(target.endpoint.as_str())
        .header("ttl", message.ttl.to_string())
        .header("content-type", "application/octet-stream");
    if let Some(urgency) = &message.urgency {
        request = request.header("urgency", urgency.to_string());
    }
    if let Some(topic) = &message.topic {
        request = request.header("topic", topic.as_str());
    }
    let content = match message.payload {
        Some(payload) => {
            request = request.header("content-encoding", payload.content_encoding.to_str());
            for (name, value) in payload.crypto_headers {
                request = request.header(name, value);
            }
            payload.content
        }
        None => Vec::new(),
    };
    let request = match request.body(Full::new(Bytes::from(content))) {
        Ok(request) => request,
        Err(e) => return Err(Sent::Rejected(format!("invalid request: {e}"))),
    };
    let result = tokio::time::timeout(TIMEOUT, async {
        let response = http.request(request).await?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        let _ = response.into_body().collect().await;
        Ok::<_, Failure>((status, retry_after))
    })
    .await;
    match result {
        Ok(Ok(answer)) => Ok(answer),
        // The address will not become acceptable by waiting.
        Ok(Err(Failure::Refused(refused))) => Err(Sent::Rejected(format!("refused: {refused}"))),
        Ok(Err(Failure::Http(e))) => {
            Err(Sent::Retry { after: None, reason: format!("could not reach the push service: {e}") })
        }
        Err(_) => Err(Sent::Retry { after: None, reason: format!("no answer within {} seconds", TIMEOUT.as_secs()) }),
    }
}

/// A 404/410 subscription is deleted: the browser unsubscribed or the service expired it.
async fn forget(state: &AppState, subscription_id: Uuid) {
    if let Err(e) =
        sqlx::query!("DELETE FROM push_subscriptions WHERE id = $1", subscription_id).execute(&state.db).await
    {
        tracing::warn!(error = %e, %subscription_id, "could not delete a gone push subscription");
    }
}

/// Records the subscriptions served so far, so a retry skips them.
async fn remember(state: &AppState, job: &Job, served: &[Uuid]) {
    let served: Vec<String> = served.iter().map(Uuid::to_string).collect();
    let recorded = async {
        let mut tx = system_tx(state, job.organization_id).await?;
        sqlx::query!(
            "UPDATE outbound_notifications SET payload = payload || jsonb_build_object('sent_to', $2::text[]) WHERE id = $1",
            job.id,
            &served
        )
        .execute(&mut *tx)
        .await?;
        tx.commit().await
    }
    .await;
    if let Err(e) = recorded {
        tracing::warn!(error = %e, job = %job.id, "could not record the subscriptions already served");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_hosts_pass_as_plain_http() {
        assert!(is_loopback_http("http://127.0.0.1:4000/push/a"));
        assert!(is_loopback_http("http://localhost/push"));
        assert!(is_loopback_http("http://[::1]:8080/p"));
        assert!(!is_loopback_http("http://127.0.0.1.evil.example/p"));
        assert!(!is_loopback_http("http://example.org/p"));
        assert!(!is_loopback_http("https://127.0.0.1/p"));
        assert!(!is_loopback_http("http://127.0.0.1:4000"));
    }

    #[test]
    fn the_audience_is_the_origin_with_its_port() {
        assert_eq!(origin("https://push.example.org/send/abc").as_deref(), Some("https://push.example.org"));
        assert_eq!(origin("http://127.0.0.1:4000/push/a").as_deref(), Some("http://127.0.0.1:4000"));
    }

    #[test]
    fn answers_map_to_what_happens_to_the_subscription() {
        assert!(matches!(answer(201, None), Sent::Delivered));
        assert!(matches!(answer(404, None), Sent::Gone));
        assert!(matches!(answer(410, None), Sent::Gone));
        assert!(matches!(answer(429, Some(7)), Sent::Retry { after: Some(7), .. }));
        assert!(matches!(answer(429, None), Sent::Retry { after: Some(60), .. }));
        assert!(matches!(answer(503, None), Sent::Retry { after: None, .. }));
        assert!(matches!(answer(400, None), Sent::Rejected(_)));
    }

    #[test]
    fn a_key_pair_gives_the_65_byte_public_point() {
        let keys = PushKeys::ephemeral("mailto:ops@example.org".into(), false).expect("key");
        assert_eq!(keys.public_key.len(), 65);
        assert_eq!(keys.public_key[0], 0x04);
        assert!(!keys.endpoint_allowed("http://127.0.0.1:1/p"));
    }
}
