//! The command line: each mode's arguments, with the defaults the documented runs use.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser)]
#[command(name = "conclave-bench", about = "Benchmarks Conclave against the limits of this machine")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Message throughput, fan-out and send→deliver latency (runs `baseline` first).
    Messages(MessagesArgs),
    /// Idle authenticated sockets with heartbeats on one replica: RSS per socket.
    Connections(ConnectionsArgs),
    /// The machine's raw PostgreSQL single-row commit rate and Redis PUBLISH rate.
    Baseline(BaselineArgs),
    /// 1,000 Organizations and 5,000 Workspaces against a real kube-apiserver, timed to Ready.
    Operator(OperatorArgs),
    /// Protocol v2 (MLS): commits in a group of 1,000 devices, key-package claims against the
    /// data plane, and the client's application-message throughput.
    Mls(MlsArgs),
    /// Web Push: what notifications add to a send, and pushes per second through the outbox
    /// worker to a push service of our own.
    Notifications(NotificationsArgs),
    /// Webhooks: what subscribed endpoints add to a send, and deliveries per second through the
    /// outbox worker to a loopback receiver that verifies each signature.
    Webhooks(WebhooksArgs),
    /// The retention sweep deleting expired messages: rows/s, and send latency while it runs.
    Retention(RetentionArgs),
    /// Call signalling: offer sent → answer received with calls in flight at once, caller and
    /// callee on two replicas.
    Calls(CallsArgs),
    /// A Matrix homeserver (Synapse, installed from PyPI into a venv when missing) in the shape of
    /// `messages --clients 8 --conversation-size 8 --max`, on this machine's PostgreSQL.
    PeerMatrix(PeerMatrixArgs),
    /// Writes the generated part of docs/benchmarks.md from a results file.
    Report {
        /// The results file.
        results: PathBuf,
        #[arg(long, default_value = "docs/benchmarks.md")]
        output: PathBuf,
    },
    /// Prints the headline figures of two results files side by side.
    Compare { a: PathBuf, b: PathBuf },
}

#[derive(Args, Clone)]
pub struct Common {
    /// The results file this run is appended to.
    #[arg(long, default_value = "target/bench/results.json")]
    pub out: PathBuf,
    /// A data plane binary to use instead of building `target/release/conclave-dataplane`.
    #[arg(long)]
    pub dataplane_bin: Option<PathBuf>,
    /// Database connections per data plane replica (the product's default is 20).
    #[arg(long, default_value_t = 20)]
    pub db_connections: u32,
    /// The outbox worker's poll interval (the product's default; 0 disables it). Left on: a
    /// replica runs it in production.
    #[arg(long, default_value_t = 1000)]
    pub outbox_poll_ms: u64,
    /// Loopback source addresses to spread client sockets over (127.0.0.1 .. 127.0.0.N).
    #[arg(long, default_value_t = 4)]
    pub source_addresses: usize,
    /// Logins in flight while provisioning.
    #[arg(long, default_value_t = 32)]
    pub login_parallelism: usize,
    /// Keep the database after the run (it is dropped by default).
    #[arg(long)]
    pub keep_database: bool,
}

#[derive(Args, Clone)]
pub struct MessagesArgs {
    #[command(flatten)]
    pub common: Common,
    /// Clients: each a user with one device, one session and one WebSocket.
    #[arg(long, default_value_t = 100)]
    pub clients: usize,
    /// Members per conversation: 2 (direct), 10 (groups), 1000 (channels).
    #[arg(long, default_value_t = 10)]
    pub conversation_size: usize,
    /// Messages per second in all (open loop); without it, `--max`.
    #[arg(long, conflicts_with = "max")]
    pub rate: Option<f64>,
    /// As fast as possible: `--concurrency` closed-loop senders.
    #[arg(long)]
    pub max: bool,
    /// Closed-loop senders with `--max`; the most sends in flight with `--rate`.
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    /// The measured window (after the warm-up), e.g. `30s`.
    #[arg(long, default_value = "20s", value_parser = parse_duration)]
    pub duration: Duration,
    #[arg(long, default_value = "3s", value_parser = parse_duration)]
    pub warmup: Duration,
    /// Data plane replicas (clients spread over them; deliveries cross through Redis).
    #[arg(long, default_value_t = 1)]
    pub replicas: usize,
    /// Plaintext size of a message in bytes.
    #[arg(long, default_value_t = 100)]
    pub message_bytes: usize,
    /// Check one delivery in N per socket: the MLS framing names the conversation and epoch, and
    /// the member's SDK opens another member's message to the content sealed, from the sender the
    /// server names.
    #[arg(long, default_value_t = 50)]
    pub verify_every: u64,
    /// Skip the baseline (pgbench, redis-benchmark) measured before the run.
    #[arg(long)]
    pub no_baseline: bool,
    #[command(flatten)]
    pub baseline: BaselineSettings,
}

#[derive(Args, Clone)]
pub struct ConnectionsArgs {
    #[command(flatten)]
    pub common: Common,
    /// Idle sockets to open on one replica.
    #[arg(long, default_value_t = 1000)]
    pub sockets: usize,
    /// Distinct users (sockets share their sessions round-robin); default: one per socket.
    #[arg(long)]
    pub users: Option<usize>,
    /// How long the sockets are held idle once open.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub hold: Duration,
}

#[derive(Args, Clone)]
pub struct BaselineSettings {
    /// pgbench clients (default: the data plane's database connections).
    #[arg(long)]
    pub pg_clients: Option<usize>,
    #[arg(long, default_value_t = 10)]
    pub pg_seconds: u64,
    #[arg(long, default_value_t = 50)]
    pub redis_clients: usize,
    #[arg(long, default_value_t = 200_000)]
    pub redis_requests: usize,
}

#[derive(Args, Clone)]
pub struct BaselineArgs {
    #[command(flatten)]
    pub common: Common,
    #[command(flatten)]
    pub settings: BaselineSettings,
    /// Plaintext size of the message the row stands for.
    #[arg(long, default_value_t = 100)]
    pub message_bytes: usize,
}

#[derive(Args, Clone)]
pub struct OperatorArgs {
    /// The results file this run is appended to.
    #[arg(long, default_value = "target/bench/results.json")]
    pub out: PathBuf,
    #[arg(long, default_value_t = 1000)]
    pub organizations: usize,
    /// Workspaces, spread evenly over the Organizations.
    #[arg(long, default_value_t = 5000)]
    pub workspaces: usize,
    /// Create requests in flight.
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    /// How long to wait for everything to be Ready.
    #[arg(long, default_value = "300s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// How long the operator is held at rest afterwards, to measure its idle CPU and RSS.
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    pub idle: Duration,
    /// Keep the database after the run (it is dropped by default).
    #[arg(long)]
    pub keep_database: bool,
    /// Create every object first and only then start the operator, timing its convergence
    /// alone (from its start) rather than together with the creates.
    #[arg(long)]
    pub start_after_create: bool,
    /// A chart value for the operator's install, as `helm --set` takes it (repeatable), e.g.
    /// `operator.reconcileConcurrency=64`.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub chart_values: Vec<String>,
}

/// The parts of the `mls` mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum MlsPart {
    /// Add and remove commits in a large group.
    Group,
    /// Key-package claims per second against the data plane.
    Claims,
    /// Application messages encrypted and decrypted in this process.
    Throughput,
}

#[derive(Args, Clone)]
pub struct MlsArgs {
    #[command(flatten)]
    pub common: Common,
    /// Devices in the large group (one per user, each a signed-in device).
    #[arg(long, default_value_t = 1000)]
    pub group_size: usize,
    /// Key packages per commit while the large group is built (not measured).
    #[arg(long, default_value_t = 100)]
    pub batch: usize,
    /// Rounds in the large group, each a commit adding one device and one removing it.
    #[arg(long, default_value_t = 5)]
    pub rounds: usize,
    /// Devices (one per user) that stock key packages for the claims.
    #[arg(long, default_value_t = 300)]
    pub claim_devices: usize,
    /// One-time key packages each of them uploads (the server keeps at most 100 per device).
    #[arg(long, default_value_t = 100)]
    pub packages_per_device: usize,
    /// Claim requests in flight (closed loop).
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    /// Users named per claim request.
    #[arg(long, default_value_t = 1)]
    pub users_per_claim: usize,
    /// The claims' window; it ends earlier when the stock would run out.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Group sizes for the client throughput (2 is a direct conversation).
    #[arg(long, value_delimiter = ',', default_value = "2,10")]
    pub throughput_sizes: Vec<usize>,
    /// Messages per throughput group (each processed by every other member).
    #[arg(long, default_value_t = 2000)]
    pub messages: u64,
    /// Plaintext size of an application message in bytes.
    #[arg(long, default_value_t = 100)]
    pub message_bytes: usize,
    /// Parts not to run (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub skip: Vec<MlsPart>,
}

#[derive(Args, Clone)]
pub struct RetentionArgs {
    #[command(flatten)]
    pub common: Common,
    /// Expired messages to write and have deleted.
    #[arg(long, default_value_t = 1_000_000)]
    pub messages: u64,
    /// Conversations they are spread over (two members each; one sends).
    #[arg(long, default_value_t = 20)]
    pub conversations: usize,
    /// The data plane's `--retention-batch`.
    #[arg(long, default_value_t = 1000)]
    pub batch: u32,
    /// Sends per second in all, through the API, before and while the sweep runs.
    #[arg(long, default_value_t = 50.0)]
    pub send_rate: f64,
    /// How long sends are measured before the retention period is set.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub before: Duration,
}

#[derive(Args, Clone)]
pub struct PeerMatrixArgs {
    /// The results file this run is appended to.
    #[arg(long, default_value = "target/bench/results.json")]
    pub out: PathBuf,
    /// Members of the room, each one a user with its own client reading with `/sync`.
    #[arg(long, default_value_t = 8)]
    pub conversation_size: usize,
    /// Closed-loop senders, taking the members in turn (8 and 1 in the documented runs).
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// The measured window (after the warm-up), e.g. `30s`.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    #[arg(long, default_value = "3s", value_parser = parse_duration)]
    pub warmup: Duration,
    /// Plaintext size of a message in bytes (the events carry Conclave's ciphertext size for it).
    #[arg(long, default_value_t = 100)]
    pub message_bytes: usize,
    /// Keep the database and the work directory (configuration, logs) after the run; Synapse
    /// is stopped either way.
    #[arg(long)]
    pub keep_database: bool,
}

/// `20s`, `500ms`, `2m`, or plain seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = text.find(|c: char| !c.is_ascii_digit() && c != '.').map_or((text, ""), |i| text.split_at(i));
    let value: f64 = number.parse().map_err(|_| format!("not a duration: {text}"))?;
    let secs = match unit {
        "" | "s" => value,
        "ms" => value / 1000.0,
        "m" => value * 60.0,
        _ => return Err(format!("unknown unit in {text} (use ms, s or m)")),
    };
    Ok(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_accept_units() {
        assert_eq!(parse_duration("20s"), Ok(Duration::from_secs(20)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert!(parse_duration("3h").is_err());
    }
}

#[derive(Args, Clone)]
pub struct NotificationsArgs {
    #[command(flatten)]
    pub common: Common,
    /// Messages sent to the member with subscriptions, and as many to the member without.
    #[arg(long, default_value_t = 2000)]
    pub messages: usize,
    /// Push subscriptions of the receiving member's device (each message is pushed to each).
    #[arg(long, default_value_t = 4)]
    pub subscriptions: usize,
    /// Sends in flight (closed loop).
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
}

#[derive(Args, Clone)]
pub struct WebhooksArgs {
    #[command(flatten)]
    pub common: Common,
    /// Messages sent with no endpoint subscribed, and as many with `--endpoints` subscribed.
    #[arg(long, default_value_t = 2000)]
    pub messages: usize,
    /// Webhook endpoints subscribed to `message.created` (each message is delivered to each).
    #[arg(long, default_value_t = 4)]
    pub endpoints: usize,
    /// Sends in flight (closed loop).
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// The longest the deliveries may take before the run reports what arrived.
    #[arg(long, value_parser = parse_duration, default_value = "300s")]
    pub drain_limit: Duration,
}

#[derive(Args, Clone)]
pub struct CallsArgs {
    #[command(flatten)]
    pub common: Common,
    /// Calls in flight at once (one direct conversation each, two people per call).
    #[arg(long, default_value_t = 50)]
    pub calls: usize,
    /// Calls placed one after the other in each conversation.
    #[arg(long, default_value_t = 20)]
    pub rounds: usize,
    /// Bytes of each SDP offer and answer (a browser's audio+video offer is 3-6 KB).
    #[arg(long, default_value_t = 4000)]
    pub sdp_bytes: usize,
}
