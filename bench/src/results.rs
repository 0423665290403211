//! What a run measured, as it is written to a results file (JSON) and read back by `report` and
//! `compare`. Pure data and arithmetic: no I/O.

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// A results file: the machine, and the runs made on it (each with its own command line).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ResultsFile {
    pub machine: Machine,
    pub runs: Vec<Run>,
}

/// Where the figures were taken.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Machine {
    pub cpu_model: String,
    pub cores: usize,
    pub memory_mib: u64,
    pub kernel: String,
    pub postgres_version: String,
    pub redis_version: String,
    /// The load average when the run started: other work on a shared machine shows here.
    pub load_average: String,
}

/// One run of one mode.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Run {
    /// The exact command line.
    pub command: String,
    /// RFC 3339, UTC.
    pub date: String,
    pub figures: Figures,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum Figures {
    Messages(Box<MessageFigures>),
    Connections(ConnectionFigures),
    Baseline(Baseline),
    Operator(OperatorFigures),
    Mls(Box<MlsFigures>),
    Notifications(NotificationFigures),
    Webhooks(WebhookFigures),
    Retention(RetentionFigures),
    Calls(CallFigures),
    PeerMatrix(Box<PeerMatrixFigures>),
}

impl Figures {
    pub fn mode(&self) -> &'static str {
        match self {
            Self::Messages(_) => "messages",
            Self::Connections(_) => "connections",
            Self::Baseline(_) => "baseline",
            Self::Operator(_) => "operator",
            Self::Mls(_) => "mls",
            Self::Notifications(_) => "notifications",
            Self::Webhooks(_) => "webhooks",
            Self::Retention(_) => "retention",
            Self::Calls(_) => "calls",
            Self::PeerMatrix(_) => "peer-matrix",
        }
    }

    /// What identifies comparable runs: the mode and its shape (not the measured figures).
    pub fn shape(&self) -> String {
        match self {
            Self::Messages(m) => format!(
                "messages clients={} size={} load={} replicas={}",
                m.clients,
                m.conversation_size,
                m.target_rate.map_or("max".to_owned(), |r| format!("{r}/s")),
                m.replicas
            ),
            Self::Connections(c) => format!("connections sockets={}", c.sockets),
            Self::Baseline(b) => format!("baseline clients={}", b.pg_clients),
            Self::Operator(o) => format!("operator organizations={} workspaces={}", o.organizations, o.workspaces),
            Self::Retention(r) => format!("retention messages={} batch={}", r.messages, r.batch),
            Self::Calls(c) => format!("calls calls={} rounds={} sdp={}", c.calls, c.rounds, c.sdp_bytes),
            Self::Mls(m) => format!(
                "mls group={} claims={} throughput={}",
                m.group.as_ref().map_or(0, |g| g.group_size),
                m.claims.as_ref().map_or(0, |c| c.concurrency),
                m.throughput.iter().map(|t| t.group_size.to_string()).collect::<Vec<_>>().join("+")
            ),
            Self::Notifications(n) => {
                format!("notifications messages={} subscriptions={}", n.messages, n.subscriptions)
            }
            Self::Webhooks(w) => format!("webhooks messages={} endpoints={}", w.messages, w.endpoints),
            Self::PeerMatrix(p) => {
                format!("peer-matrix server={} members={} senders={}", p.server, p.members, p.senders)
            }
        }
    }

    /// The headline figures by name, for comparisons: (name, value, higher is better).
    pub fn headline(&self) -> Vec<(&'static str, f64, bool)> {
        match self {
            Self::Messages(m) => conversation_headline(
                [m.messages_per_sec, m.deliveries_per_sec, m.errors as f64],
                &m.latency,
                [
                    ("data plane CPU %", m.resources.dataplane_cpu_percent),
                    ("data plane RSS MiB", m.resources.dataplane_rss_mib),
                ],
            ),
            Self::Connections(c) => vec![
                ("sockets", c.connected as f64, true),
                ("RSS MiB", c.rss_after_mib, false),
                ("KiB per socket", c.kib_per_socket, false),
                ("idle CPU %", c.idle_cpu_percent, false),
            ],
            Self::Baseline(b) => {
                vec![("pg commits/s", b.pg_commits_per_sec, true), ("redis publish/s", b.redis_publish_per_sec, true)]
            }
            Self::Operator(o) => vec![
                ("objects Ready/s", o.objects_per_sec, true),
                ("all Ready s", o.all_ready_secs().unwrap_or(f64::NAN), false),
                ("errors", o.errors as f64, false),
                ("operator idle CPU %", o.idle_cpu_percent, false),
                ("operator idle RSS MiB", o.idle_rss_mib, false),
            ],
            Self::Calls(c) => vec![
                ("setup p50 ms", c.setup.p50_ms, false),
                ("setup p99 ms", c.setup.p99_ms, false),
                ("ring p99 ms", c.ring.p99_ms, false),
                ("calls/s", c.calls_per_sec, true),
                ("errors", c.errors as f64, false),
            ],
            Self::Retention(r) => vec![
                ("rows deleted/s", r.rows_per_sec, true),
                ("send p99 ms before", r.sends_before.p99_ms, false),
                ("send p99 ms during", r.sends_during.p99_ms, false),
                ("send errors", r.send_errors as f64, false),
            ],
            Self::Mls(m) => {
                let mut out = Vec::new();
                if let Some(g) = &m.group {
                    out.push(("add: commit create ms", g.add.create_ms.median, false));
                    out.push(("add: commit bytes", g.add.commit_bytes as f64, false));
                    out.push(("remove: commit create ms", g.remove.create_ms.median, false));
                    out.push(("remove: commit bytes", g.remove.commit_bytes as f64, false));
                    out.push(("welcome bytes", g.add.welcome_bytes.unwrap_or(0) as f64, false));
                }
                if let Some(c) = &m.claims {
                    out.push(("claims/s", c.claims_per_sec, true));
                }
                for t in &m.throughput {
                    out.push((
                        if t.group_size == 2 { "1:1 encrypts/s" } else { "group encrypts/s" },
                        t.encrypts_per_sec,
                        true,
                    ));
                    out.push((
                        if t.group_size == 2 { "1:1 decrypts/s" } else { "group decrypts/s" },
                        t.decrypts_per_sec,
                        true,
                    ));
                }
                out
            }
            Self::Notifications(n) => vec![
                ("pushes/s", n.pushes_per_sec, true),
                ("send p50 ms with push", n.send_with_push.p50_ms, false),
                ("send p50 ms without", n.send_without_push.p50_ms, false),
                ("worker CPU ms per push", n.worker_cpu_ms_per_push, false),
            ],
            Self::Webhooks(w) => vec![
                ("deliveries/s", w.deliveries_per_sec, true),
                ("send p50 ms with endpoints", w.send_with_endpoints.p50_ms, false),
                ("send p99 ms with endpoints", w.send_with_endpoints.p99_ms, false),
                ("send p50 ms without", w.send_without_endpoints.p50_ms, false),
                ("send p99 ms without", w.send_without_endpoints.p99_ms, false),
                ("worker CPU ms per delivery", w.worker_cpu_ms_per_delivery, false),
            ],
            Self::PeerMatrix(p) => conversation_headline(
                [p.messages_per_sec, p.deliveries_per_sec, p.errors as f64],
                &p.latency,
                [("server CPU %", p.server_cpu_percent), ("server RSS MiB", p.server_rss_mib)],
            ),
        }
    }
}

/// The headline of a run of senders and readers (`messages`, `peer-matrix`): messages/s,
/// deliveries/s and errors, the send→deliver quantiles, then the server's resources.
fn conversation_headline(
    [messages, deliveries, errors]: [f64; 3],
    latency: &Latency,
    server: [(&'static str, f64); 2],
) -> Vec<(&'static str, f64, bool)> {
    let mut out = vec![
        ("messages/s", messages, true),
        ("deliveries/s", deliveries, true),
        ("p50 ms", latency.p50_ms, false),
        ("p99 ms", latency.p99_ms, false),
        ("p99.9 ms", latency.p999_ms, false),
        ("errors", errors, false),
    ];
    out.extend(server.map(|(name, value)| (name, value, false)));
    out
}

/// Send→deliver latency, milliseconds.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
pub struct Latency {
    pub samples: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

impl Latency {
    /// From a histogram of microseconds.
    pub fn from_micros(histogram: &Histogram<u64>) -> Self {
        if histogram.is_empty() {
            return Self::default();
        }
        let ms = |micros: u64| micros as f64 / 1000.0;
        Self {
            samples: histogram.len(),
            p50_ms: ms(histogram.value_at_quantile(0.50)),
            p99_ms: ms(histogram.value_at_quantile(0.99)),
            p999_ms: ms(histogram.value_at_quantile(0.999)),
            max_ms: ms(histogram.max()),
        }
    }
}

/// CPU and memory over the measured window.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
pub struct Resources {
    /// Mean CPU of the data plane processes over the window (100 = one core).
    pub dataplane_cpu_percent: f64,
    /// Resident memory of the data plane processes at the end of the window.
    pub dataplane_rss_mib: f64,
    /// PostgreSQL (every backend) over the window.
    pub postgres_cpu_percent: f64,
    pub redis_cpu_percent: f64,
    /// This load tool.
    pub tool_cpu_percent: f64,
    /// The whole machine (all cores; 100 × cores when saturated).
    pub machine_cpu_percent: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct MessageFigures {
    pub clients: usize,
    pub conversation_size: usize,
    pub conversations: usize,
    /// Messages per second asked for; `None` is as fast as possible.
    pub target_rate: Option<f64>,
    /// Closed-loop senders with `--max`, most sends in flight with `--rate`.
    pub concurrency: usize,
    pub replicas: usize,
    pub duration_secs: f64,
    pub plaintext_bytes: usize,
    pub messages_sent: u64,
    pub messages_per_sec: f64,
    pub deliveries: u64,
    pub deliveries_per_sec: f64,
    /// Deliveries expected (every member socket, the sender's included) but not seen by the end
    /// of the drain.
    pub missing_deliveries: u64,
    /// Deliveries opened with the SDK (signature verified, decrypted) as a check.
    pub verified_deliveries: u64,
    pub latency: Latency,
    /// Send request latency (the HTTP round trip of the send, until 201).
    pub send_latency: Latency,
    pub errors: u64,
    pub error_kinds: Vec<(String, u64)>,
    pub resources: Resources,
    /// Sends stored per database call (the data plane's group commit) during the window, from
    /// its `/metrics`: small batches cost PostgreSQL more per message.
    #[serde(default)]
    pub messages_per_batch: Option<f64>,
    /// The raw limits measured in the same run, if any.
    pub baseline: Option<Baseline>,
}

impl MessageFigures {
    /// Our ingest as a share of the raw PostgreSQL single-row commit rate.
    pub fn ingest_ratio(&self) -> Option<f64> {
        self.baseline.as_ref().and_then(|b| ratio(self.messages_per_sec, b.pg_commits_per_sec))
    }

    /// Our messages/s as a share of the raw Redis PUBLISH rate (one publish per message).
    pub fn publish_ratio(&self) -> Option<f64> {
        self.baseline.as_ref().and_then(|b| ratio(self.messages_per_sec, b.redis_publish_per_sec))
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ConnectionFigures {
    pub sockets: usize,
    pub connected: usize,
    pub users: usize,
    pub source_addresses: usize,
    pub connect_secs: f64,
    pub hold_secs: f64,
    pub rss_before_mib: f64,
    pub rss_after_mib: f64,
    pub kib_per_socket: f64,
    /// Data plane CPU while the sockets sit idle (heartbeats only).
    pub idle_cpu_percent: f64,
    pub errors: u64,
    pub error_kinds: Vec<(String, u64)>,
}

/// Organizations and Workspaces created against a real kube-apiserver, timed to `Ready`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct OperatorFigures {
    pub organizations: usize,
    pub workspaces: usize,
    /// Create requests in flight.
    pub concurrency: usize,
    /// Seconds to create every object (the API server's side).
    pub create_secs: f64,
    /// Seconds from the first create (or, with `existing_objects`, from the operator's start)
    /// until every Organization was Ready (`None`: timed out).
    pub organizations_ready_secs: Option<f64>,
    /// Seconds until every Workspace was Ready, counted like `organizations_ready_secs`.
    pub workspaces_ready_secs: Option<f64>,
    pub ready_organizations: usize,
    pub ready_workspaces: usize,
    /// Objects per second, first create to all Ready (0 when not all became Ready).
    pub objects_per_sec: f64,
    /// The operator's mean CPU while reconciling (100 = one core).
    pub busy_cpu_percent: f64,
    /// The operator's RSS when everything was Ready.
    pub busy_rss_mib: f64,
    /// Seconds from everything Ready until the operator had no more reconciles to run (its
    /// reconcile counter still for [`crate::operator::SETTLED_AFTER`], 12 s): work the Ready
    /// conditions do not show, such as paced count updates. The idle figures are taken after.
    #[serde(default)]
    pub settle_secs: Option<f64>,
    pub idle_secs: f64,
    /// The operator's mean CPU at rest afterwards.
    pub idle_cpu_percent: f64,
    pub idle_rss_mib: f64,
    pub errors: u64,
    pub error_kinds: Vec<(String, u64)>,
    /// Every object existed before the operator started (`--start-after-create`): the Ready
    /// times count from the operator's start and measure its convergence alone.
    #[serde(default)]
    pub existing_objects: bool,
}

impl OperatorFigures {
    /// Seconds until both kinds were all Ready.
    pub fn all_ready_secs(&self) -> Option<f64> {
        Some(self.organizations_ready_secs?.max(self.workspaces_ready_secs?))
    }
}

/// Calls: signalling through the data plane with calls in flight at once, caller and callee on
/// different replicas.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct CallFigures {
    /// Calls in flight at once.
    pub calls: usize,
    /// Calls placed one after the other in each conversation.
    pub rounds: usize,
    pub replicas: usize,
    /// Bytes of each SDP before MLS.
    pub sdp_bytes: usize,
    /// Offer sent (the caller's request) → answer received (on the caller's socket).
    pub setup: Latency,
    /// Start requested → the callee's socket shows the call ringing.
    pub ring: Latency,
    /// Whole call cycles (start, ring, accept, offer, answer, both leave) per second.
    pub calls_per_sec: f64,
    pub errors: u64,
    pub secs: f64,
}

/// Retention: the sweep deleting expired messages, and send latency before and while it runs.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct RetentionFigures {
    /// Expired messages written before the sweep (all deleted).
    pub messages: u64,
    pub conversations: usize,
    /// `--retention-batch` of the data plane.
    pub batch: u32,
    /// From the first deleted batch seen on `/metrics` to the last.
    pub delete_secs: f64,
    pub rows_per_sec: f64,
    /// From setting the retention period to the first batch (the pass interval).
    pub first_batch_after_secs: f64,
    /// Sends per second in all, through the API, before and during.
    pub send_rate: f64,
    pub sends_before: Latency,
    pub sends_during: Latency,
    pub send_errors: u64,
}

/// Protocol v2 (MLS): commits in a large group, key-package claims against the data plane, and
/// the client's application-message throughput. Each part is optional (`--skip`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct MlsFigures {
    pub group: Option<GroupFigures>,
    pub claims: Option<ClaimFigures>,
    pub throughput: Vec<ThroughputFigures>,
}

/// Median, smallest and largest of a few samples (milliseconds).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
pub struct Spread {
    pub samples: usize,
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Spread {
    pub fn of(values: &[f64]) -> Self {
        let mut sorted: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
        sorted.sort_by(f64::total_cmp);
        match (sorted.first(), sorted.last()) {
            (Some(&min), Some(&max)) => {
                let mid = sorted.len() / 2;
                let median =
                    if sorted.len().is_multiple_of(2) { (sorted[mid - 1] + sorted[mid]) / 2.0 } else { sorted[mid] };
                Self { samples: sorted.len(), median, min, max }
            }
            _ => Self::default(),
        }
    }
}

/// A group of `group_size` devices (one per user, every leaf a real signed-in device) built by one
/// committer in batches, then `rounds` times: a commit adding one device, and one removing it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct GroupFigures {
    pub group_size: usize,
    /// Key packages per provisioning commit.
    pub batch: usize,
    /// Seconds to build the group (not measured: context).
    pub build_secs: f64,
    pub rounds: usize,
    /// Claiming the added device's key package from the data plane (one round trip).
    pub claim_ms: Spread,
    /// The commit adding one device: the group grows from `group_size` to `group_size + 1`.
    pub add: CommitFigures,
    /// Joining from the add's Welcome (the new device: checks every leaf, builds its state).
    pub join_ms: Spread,
    /// The commit removing that device again: `group_size + 1` back to `group_size`.
    pub remove: CommitFigures,
}

/// One kind of commit in the large group: its bytes, the client's work and the server's answer.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CommitFigures {
    /// The commit (TLS-encoded `MLSMessage`), from the last round.
    pub commit_bytes: usize,
    pub welcome_bytes: Option<usize>,
    /// The new epoch's group info (with the ratchet tree).
    pub group_info_bytes: usize,
    /// The JSON body of `POST .../commits` (base64url of the above).
    pub request_bytes: usize,
    /// The committer making the commit (checks included: key packages, leaves).
    pub create_ms: Spread,
    /// The committer merging it once the server accepted it.
    pub merge_ms: Spread,
    /// An existing member processing it (checks included) and merging it.
    pub process_ms: Spread,
    /// `POST .../commits`, request to answer, whatever the answer.
    pub post_ms: Spread,
    /// The answers: "201", or the status and error code of a refusal, with their counts.
    pub post_outcomes: Vec<(String, u64)>,
}

/// Key-package claims against the real data plane, closed loop.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ClaimFigures {
    /// Devices that published key packages (one per user).
    pub devices: usize,
    /// One-time key packages stored before the window.
    pub stocked: usize,
    pub concurrency: usize,
    /// Users named per claim request (one device each).
    pub users_per_claim: usize,
    pub duration_secs: f64,
    pub claims: u64,
    pub claims_per_sec: f64,
    /// Key packages handed out per second.
    pub packages_per_sec: f64,
    pub latency: Latency,
    /// Claims that found a device with nothing left.
    pub exhausted: u64,
    pub errors: u64,
    pub error_kinds: Vec<(String, u64)>,
    pub key_package_bytes: usize,
    pub resources: Resources,
    /// The CPU of the PostgreSQL backends serving this run's database only (`resources` counts
    /// every PostgreSQL process of the machine, other people's work included).
    #[serde(default)]
    pub run_postgres_cpu_percent: Option<f64>,
}

/// Application messages in one group, in this process only (no server): every message encrypted
/// by one member and processed by every other.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ThroughputFigures {
    pub group_size: usize,
    pub plaintext_bytes: usize,
    /// The `PrivateMessage` as sent.
    pub message_bytes: usize,
    pub messages: u64,
    /// One core: encryptions per second of encrypting time.
    pub encrypts_per_sec: f64,
    /// One core: decryptions (with the sender's leaf checked) per second of decrypting time.
    pub decrypts_per_sec: f64,
    /// Messages per second with every member's decryption (`group_size - 1` each) included.
    pub messages_per_sec: f64,
}

/// The machine's limits for the same work, measured with the standard tools.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Baseline {
    /// `pgbench` with a custom script: one INSERT of a message-shaped row per transaction.
    pub pg_commits_per_sec: f64,
    pub pg_clients: usize,
    pub pg_secs: u64,
    pub synchronous_commit: String,
    pub fsync: String,
    pub pg_script: String,
    /// `redis-benchmark` running PUBLISH with an event-sized payload.
    pub redis_publish_per_sec: f64,
    pub redis_clients: usize,
    pub redis_payload_bytes: usize,
}

/// `a / b`, when `b` is a usable divisor.
pub fn ratio(a: f64, b: f64) -> Option<f64> {
    (b > 0.0 && b.is_finite() && a.is_finite()).then(|| a / b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_quantiles_come_from_microseconds() {
        let mut histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram");
        for micros in 1..=1000u64 {
            histogram.record(micros * 10).expect("record");
        }
        let latency = Latency::from_micros(&histogram);
        assert_eq!(latency.samples, 1000);
        assert!((latency.p50_ms - 5.0).abs() < 0.01, "{latency:?}");
        assert!((latency.p99_ms - 9.9).abs() < 0.01, "{latency:?}");
        assert!((latency.max_ms - 10.0).abs() < 0.01, "{latency:?}");
    }

    #[test]
    fn an_empty_histogram_reads_as_zero() {
        let histogram = Histogram::<u64>::new(3).expect("histogram");
        assert_eq!(Latency::from_micros(&histogram), Latency::default());
    }

    #[test]
    fn spreads_take_the_median_of_what_was_measured() {
        assert_eq!(Spread::of(&[3.0, 1.0, 2.0]), Spread { samples: 3, median: 2.0, min: 1.0, max: 3.0 });
        assert_eq!(Spread::of(&[4.0, 1.0]).median, 2.5);
        assert_eq!(Spread::of(&[f64::NAN]), Spread::default());
        assert_eq!(Spread::of(&[]), Spread::default());
    }

    #[test]
    fn ratios_refuse_a_zero_divisor() {
        assert_eq!(ratio(5.0, 10.0), Some(0.5));
        assert_eq!(ratio(5.0, 0.0), None);
        assert_eq!(ratio(f64::NAN, 1.0), None);
    }

    #[test]
    fn a_results_file_round_trips_through_json() {
        let file = crate::report::tests::sample();
        let json = serde_json::to_string(&file).expect("encode");
        let back: ResultsFile = serde_json::from_str(&json).expect("decode");
        assert_eq!(back, file);
    }
}

/// A Matrix homeserver (`peer-matrix`) in the one-conversation shape of `messages`: one room,
/// closed-loop senders, every member reading with `/sync`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PeerMatrixFigures {
    /// The server and its version, e.g. "Synapse 1.163.2".
    pub server: String,
    /// Members of the room, each reading.
    pub members: usize,
    /// Closed-loop senders.
    pub senders: usize,
    pub duration_secs: f64,
    pub plaintext_bytes: usize,
    /// The opaque ciphertext of each event before base64: what Conclave's bench sends for
    /// `plaintext_bytes`.
    pub ciphertext_bytes: usize,
    pub messages_sent: u64,
    pub messages_per_sec: f64,
    pub deliveries: u64,
    pub deliveries_per_sec: f64,
    /// Deliveries expected (every member, the sender included) but not read by the end of the drain.
    pub missing_deliveries: u64,
    /// Send → the member's `/sync` answer read.
    pub latency: Latency,
    /// The send request (`PUT .../send/...` until its answer).
    pub send_latency: Latency,
    pub errors: u64,
    pub error_kinds: Vec<(String, u64)>,
    /// The homeserver's process over the window (100 = one core) and its RSS at the end.
    pub server_cpu_percent: f64,
    pub server_rss_mib: f64,
    /// Every PostgreSQL process of the machine.
    pub postgres_cpu_percent: f64,
    /// The PostgreSQL backends serving the run's database only.
    pub run_postgres_cpu_percent: f64,
    pub tool_cpu_percent: f64,
    pub machine_cpu_percent: f64,
}

/// Web Push (`notifications`): the cost a send pays for notifications, and the outbox worker's
/// push rate to the test push service.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct NotificationFigures {
    pub messages: usize,
    pub subscriptions: usize,
    pub concurrency: usize,
    /// Sends to a member whose device has the subscriptions (the send writes a push row).
    pub send_with_push: Latency,
    /// Sends to a member with no subscription (no push row).
    pub send_without_push: Latency,
    pub send_errors: u64,
    /// Pushes expected (`messages` × `subscriptions`) and received by the service.
    pub pushes_expected: usize,
    pub pushes_received: usize,
    /// From the worker's data plane being ready to the last push received.
    pub drain_secs: f64,
    pub pushes_per_sec: f64,
    /// The worker's data plane CPU over the drain, in percent of one core and per push.
    pub worker_cpu_percent: f64,
    pub worker_cpu_ms_per_push: f64,
}

/// Webhooks (`webhooks`): the cost a send pays for subscribed endpoints, and the outbox worker's
/// delivery rate to a loopback receiver verifying each signature with `standardwebhooks`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct WebhookFigures {
    pub messages: usize,
    pub endpoints: usize,
    pub concurrency: usize,
    /// Sends with no endpoint in the organization.
    pub send_without_endpoints: Latency,
    /// Sends with `endpoints` subscribed to `message.created` (one outbox row each per send).
    pub send_with_endpoints: Latency,
    pub send_errors: u64,
    /// Deliveries expected (sends × `endpoints`) and received with a valid signature.
    pub deliveries_expected: usize,
    pub deliveries_verified: usize,
    /// From the first delivery received to the last.
    pub drain_secs: f64,
    pub deliveries_per_sec: f64,
    /// The worker's data plane CPU over the drain, in percent of one core and per delivery.
    pub worker_cpu_percent: f64,
    pub worker_cpu_ms_per_delivery: f64,
}
