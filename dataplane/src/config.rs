//! Configuration, from flags or the environment (`CONCLAVE_*`), parsed once at start-up.

use clap::{Args, ValueEnum};
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Debug, Clone, Copy, Default, ValueEnum)]
pub enum LogFormat {
    /// One JSON object per line, for log collectors.
    #[default]
    Json,
    /// Human-readable lines, for a terminal.
    Pretty,
}

#[derive(Debug, Clone, Args)]
pub struct Config {
    /// Address to serve HTTP and WebSocket on.
    #[arg(long, env = "CONCLAVE_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// The URL clients reach this service at; links in emails point here.
    #[arg(long, env = "CONCLAVE_PUBLIC_URL", default_value = "http://127.0.0.1:8080")]
    pub public_url: String,
    /// PostgreSQL URL of the data plane's login (the `conclave_app` role, or a member of it).
    #[arg(long, env = "CONCLAVE_DATABASE_URL", hide_env_values = true)]
    pub database_url: Secret,
    /// The role every connection works as; row-level security applies to it.
    #[arg(long, env = "CONCLAVE_DATABASE_ROLE", default_value = conclave_schema::APP_ROLE)]
    pub database_role: String,
    /// Most PostgreSQL connections this replica holds.
    #[arg(long, env = "CONCLAVE_DATABASE_MAX_CONNECTIONS", default_value_t = 20)]
    pub database_max_connections: u32,
    /// Milliseconds a request may wait for a pooled PostgreSQL connection (including the health
    /// check of an idle one, or opening a new one) before it is answered 503 `database_busy`.
    #[arg(long, env = "CONCLAVE_DATABASE_ACQUIRE_TIMEOUT_MS", default_value_t = 5_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub database_acquire_timeout_ms: u64,
    /// Milliseconds a pooled connection has to answer a health check (a `Sync` round trip),
    /// when it is handed out and when it is given back. One that does not is dropped: after a
    /// partition that left connections silent (no FIN, no RST), this is what finds them.
    #[arg(long, env = "CONCLAVE_DATABASE_PING_TIMEOUT_MS", default_value_t = 1_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub database_ping_timeout_ms: u64,
    /// Milliseconds a send batch has in all (a connection, then its one statement and commit).
    /// Past it the connection is abandoned (closed, never returned to the pool) and each send is
    /// answered 503 `database_busy` with `Retry-After`: it may have been stored, and a retry with
    /// the same `client_message_id` answers with the stored message.
    #[arg(long, env = "CONCLAVE_DATABASE_SEND_DEADLINE_MS", default_value_t = 5_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub database_send_deadline_ms: u64,
    /// Writers storing queued sends in batches (group commit), each serving a share of the
    /// conversations with one database connection of the pool, which it keeps while sends keep
    /// coming and gives back after 2 s without any (at most half the pool). Sends gather into batches while their writer is busy; fewer writers make larger
    /// batches (less database work per message), more writers overlap commits (lower latency
    /// when the database has cores to spare). docs/benchmarks.md has measurements.
    #[arg(long, env = "CONCLAVE_SEND_WRITERS", default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub send_writers: u16,
    /// Redis URL for fan-out, presence, rate limits and signalling state.
    #[arg(long, env = "CONCLAVE_REDIS_URL", hide_env_values = true)]
    pub redis_url: Secret,
    /// Prefix of every Redis key and channel, so several deployments can share one Redis.
    #[arg(long, env = "CONCLAVE_REDIS_NAMESPACE", default_value = "conclave")]
    pub redis_namespace: String,
    /// Directory of Ed25519 signing keys for access tokens, one PKCS#8 PEM file per key named
    /// `<key id>.pem`. Every key verifies; the one named by `--jwt-signing-key-id` (or, without
    /// it, the last by name) signs. Replicas sharing the directory accept each other's tokens,
    /// and a rotation adds the new key before the old one is removed. Without a directory an
    /// ephemeral key is generated (one replica, tokens die with the process).
    #[arg(long, env = "CONCLAVE_JWT_KEYS_DIR")]
    pub jwt_keys_dir: Option<PathBuf>,
    #[arg(long, env = "CONCLAVE_JWT_SIGNING_KEY_ID")]
    pub jwt_signing_key_id: Option<String>,
    /// Lifetime of access tokens, in seconds.
    #[arg(long, env = "CONCLAVE_ACCESS_TOKEN_TTL", default_value_t = 900)]
    pub access_token_ttl: u64,
    /// Lifetime of a refresh token (each use mints a new one), in seconds.
    #[arg(long, env = "CONCLAVE_REFRESH_TOKEN_TTL", default_value_t = 30 * 24 * 3600)]
    pub refresh_token_ttl: u64,
    /// A file holding the 32-byte at-rest key (base64) that seals TOTP and webhook secrets.
    /// Without it an ephemeral key is generated, and sealed secrets do not survive a restart.
    #[arg(long, env = "CONCLAVE_AT_REST_KEY_FILE")]
    pub at_rest_key_file: Option<PathBuf>,
    /// A file holding the MLS removal key (Ed25519, PKCS#8 PEM; the operator's
    /// `<name>-mls-removal` Secret): the delivery service's external sender, with which it signs
    /// the `Remove` proposals for removed members' and revoked devices' leaves. Replicas share it.
    /// Without it, groups get no external sender and members commit removals themselves.
    #[arg(long, env = "CONCLAVE_MLS_REMOVAL_KEY_FILE")]
    pub mls_removal_key_file: Option<PathBuf>,
    /// The removal key being replaced, during a rotation's overlap (read when the file exists):
    /// groups made with it keep getting proposals they can verify until a member moves them on.
    #[arg(long, env = "CONCLAVE_MLS_REMOVAL_PREVIOUS_KEY_FILE")]
    pub mls_removal_previous_key_file: Option<PathBuf>,
    /// SMTP relay for account email, e.g. `smtp://mail.example:25` (plain, for a local relay).
    /// Without it, no email is sent and the features that need one say so.
    #[arg(long, env = "CONCLAVE_SMTP_URL", hide_env_values = true)]
    pub smtp_url: Option<Secret>,
    /// The From address of account email.
    #[arg(long, env = "CONCLAVE_MAIL_FROM", default_value = "Conclave <no-reply@conclave.local>")]
    pub mail_from: String,
    /// TURN servers handed to calling devices, `turn:` / `turns:` URIs (RFC 7065), comma
    /// separated. Without them (or without the shared secret) `POST /v1/calls/turn-credentials`
    /// answers 503 `turn_not_configured`.
    #[arg(long, env = "CONCLAVE_TURN_URLS", value_delimiter = ',')]
    pub turn_urls: Vec<String>,
    /// The secret shared with the TURN servers (coturn's `static-auth-secret`) that signs the
    /// short-lived credentials.
    #[arg(long, env = "CONCLAVE_TURN_SHARED_SECRET", hide_env_values = true)]
    pub turn_shared_secret: Option<Secret>,
    /// How long minted TURN credentials last, in seconds.
    #[arg(long, env = "CONCLAVE_TURN_CREDENTIAL_TTL_SECONDS", default_value_t = 3600, value_parser = clap::value_parser!(i64).range(60..=86_400))]
    pub turn_credential_ttl_seconds: i64,
    /// Seconds a call rings before the members who did not answer have `missed` it (and a call
    /// nobody answered ends).
    #[arg(long, env = "CONCLAVE_CALL_RING_TIMEOUT_SECS", default_value_t = 45, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub call_ring_timeout_secs: u64,
    /// Seconds a device in a call may go without a heartbeat before it is taken out of the call
    /// (a crashed app, a dropped network): the last one out ends it.
    #[arg(long, env = "CONCLAVE_CALL_HEARTBEAT_TIMEOUT_SECS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub call_heartbeat_timeout_secs: u64,
    /// How often (milliseconds) the call sweeper applies ring timeouts and heartbeat timeouts; 0
    /// disables it on this replica.
    #[arg(long, env = "CONCLAVE_CALL_SWEEP_MS", default_value_t = 5_000)]
    pub call_sweep_ms: u64,
    /// Take the client address from the last hop of `X-Forwarded-For` (behind a trusted proxy).
    #[arg(long, env = "CONCLAVE_TRUST_FORWARDED_FOR", default_value_t = false)]
    pub trust_forwarded_for: bool,
    /// Seconds a connection has to send a whole request head (request line and headers): on a
    /// new connection, and between requests on a kept-alive one (so it is also the keep-alive
    /// idle timeout). A client that is slower, or sends nothing, is disconnected (slow-loris).
    /// Upgraded WebSockets are not affected.
    #[arg(long, env = "CONCLAVE_HEADER_READ_TIMEOUT_SECS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    pub header_read_timeout_secs: u64,
    /// Seconds a request body may go without sending a byte before the request fails and the
    /// connection is closed. An idle timeout, not a total one: an attachment upload streams for
    /// as long as its bytes keep coming.
    #[arg(long, env = "CONCLAVE_BODY_IDLE_TIMEOUT_SECS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    pub body_idle_timeout_secs: u64,
    /// Seconds a JSON request body has in total, counted from the arrival of the request head;
    /// one still arriving then is answered 408 `request_timeout` and the connection closes (a
    /// client trickling a byte just inside every idle timeout holds its socket no longer than
    /// this). Attachment uploads stream and have only the idle timeout.
    #[arg(long, env = "CONCLAVE_BODY_READ_TIMEOUT_SECS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    pub body_read_timeout_secs: u64,
    /// Seconds a request's work may take once its body is in (`dataplane/src/deadline.rs`);
    /// past it the request is answered 503 `deadline_exceeded` with `Retry-After` and its
    /// database work is abandoned. The backstop for a query on a connection whose network went
    /// silent. Uploads and the whole-account compliance operations are not bounded by it.
    #[arg(long, env = "CONCLAVE_REQUEST_DEADLINE_SECS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    pub request_deadline_secs: u64,
    /// Most connections open at once from one peer address (HTTP and WebSocket alike); one more is
    /// closed as soon as it is accepted, before anything is read. 0 removes the cap. With
    /// `--trust-forwarded-for` the peers are proxies that carry every client's connections, so
    /// there is no cap here (the proxy must apply its own).
    #[arg(long, env = "CONCLAVE_MAX_CONNECTIONS_PER_ADDRESS", default_value_t = 1024)]
    pub max_connections_per_address: usize,
    /// Failed logins in a row before an account is locked.
    #[arg(long, env = "CONCLAVE_LOCKOUT_THRESHOLD", default_value_t = 5)]
    pub lockout_threshold: i32,
    /// How long a lockout lasts, in seconds.
    #[arg(long, env = "CONCLAVE_LOCKOUT_SECONDS", default_value_t = 900)]
    pub lockout_seconds: i64,
    /// Multiplies every rate limit (tests and benchmarks raise it; 1 in production).
    #[arg(long, env = "CONCLAVE_RATE_LIMIT_FACTOR", default_value_t = 1)]
    pub rate_limit_factor: u32,
    /// How often (milliseconds) an idle outbox worker looks for due webhooks, pushes and emails; 0
    /// disables the worker on this replica.
    #[arg(long, env = "CONCLAVE_OUTBOX_POLL_MS", default_value_t = 1000)]
    pub outbox_poll_ms: u64,
    /// Webhook destinations let through although their addresses are not public (loopback,
    /// private, link-local, ...; docs/webhooks.md): address blocks (`10.96.0.0/12`), addresses,
    /// host names, or `*.` and a domain for its subdomains (`*.svc.cluster.local`),
    /// comma-separated. Empty: webhooks reach public addresses only.
    #[arg(long, env = "CONCLAVE_WEBHOOK_ALLOWED_TARGETS", value_delimiter = ',')]
    pub webhook_allowed_targets: Vec<crate::outbox::AllowedTarget>,
    /// A file holding the VAPID (RFC 8292) private key: the P-256 scalar, base64url (the
    /// operator's `<name>-vapid` Secret). Without it an ephemeral key is generated, and push
    /// subscriptions made against it stop working when the process restarts.
    #[arg(long, env = "CONCLAVE_VAPID_PRIVATE_KEY_FILE")]
    pub vapid_private_key_file: Option<PathBuf>,
    /// The contact in every VAPID token (`mailto:` or `https:`); default: the public URL when it
    /// is https.
    #[arg(long, env = "CONCLAVE_VAPID_SUBJECT")]
    pub vapid_subject: Option<String>,
    /// Accept push subscriptions at plain `http://` loopback endpoints (tests and local trials
    /// only; every other endpoint must be https).
    #[arg(long, env = "CONCLAVE_PUSH_ALLOW_LOOPBACK_HTTP", default_value_t = false)]
    pub push_allow_loopback_http: bool,
    /// Directory of attachment blobs (`blobs/`) and of uploads in progress (`staging/`); a
    /// volume shared by the replicas in Kubernetes. Default: `conclave-attachments` in the
    /// system's temporary directory. With an S3 bucket, only staging happens here.
    #[arg(long, env = "CONCLAVE_ATTACHMENTS_DIR")]
    pub attachments_dir: Option<PathBuf>,
    /// Store attachment blobs in this S3 (or S3-compatible) bucket instead of the directory
    /// (needs a data plane built with the `s3` feature; credentials from `AWS_*`).
    #[arg(long, env = "CONCLAVE_ATTACHMENTS_S3_BUCKET")]
    pub attachments_s3_bucket: Option<String>,
    /// Endpoint of an S3-compatible service (MinIO, Ceph, R2); default AWS.
    #[arg(long, env = "CONCLAVE_ATTACHMENTS_S3_ENDPOINT")]
    pub attachments_s3_endpoint: Option<String>,
    /// Key prefix of blobs in the bucket.
    #[arg(long, env = "CONCLAVE_ATTACHMENTS_S3_PREFIX", default_value = "attachments")]
    pub attachments_s3_prefix: String,
    /// Largest attachment (encrypted size) accepted, in bytes.
    #[arg(long, env = "CONCLAVE_ATTACHMENT_MAX_BYTES", default_value_t = 100 * 1024 * 1024)]
    pub attachment_max_bytes: u64,
    /// How long an uploaded attachment may wait for its message before it is collected, in seconds.
    #[arg(long, env = "CONCLAVE_ATTACHMENT_GRACE_SECS", default_value_t = 24 * 3600)]
    pub attachment_grace_secs: u64,
    /// How often (milliseconds) the attachment collector runs; 0 disables it on this replica.
    #[arg(long, env = "CONCLAVE_ATTACHMENT_GC_MS", default_value_t = 60_000)]
    pub attachment_gc_ms: u64,
    /// How often (milliseconds) the retention sweep runs (docs/compliance.md); one replica at a
    /// time does the work, under a lease. 0 disables it on this replica.
    #[arg(long, env = "CONCLAVE_RETENTION_INTERVAL_MS", default_value_t = 300_000)]
    pub retention_interval_ms: u64,
    /// The most messages the retention sweep deletes in one transaction.
    #[arg(long, env = "CONCLAVE_RETENTION_BATCH", default_value_t = 1000)]
    pub retention_batch: u32,
    /// Pause (milliseconds) between two retention batches, leaving the database to sends.
    #[arg(long, env = "CONCLAVE_RETENTION_BATCH_PAUSE_MS", default_value_t = 20)]
    pub retention_batch_pause_ms: u64,
    #[arg(long, env = "CONCLAVE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Json)]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Args)]
pub struct MigrateArgs {
    /// PostgreSQL URL of the schema owner (not the data plane's role).
    #[arg(long, env = "CONCLAVE_OWNER_DATABASE_URL", hide_env_values = true)]
    pub database_url: Secret,
    #[arg(long, env = "CONCLAVE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Pretty)]
    pub log_format: LogFormat,
}

/// A setting that may hold a credential (a URL with a password, a shared secret): its `Debug`
/// shows only that it is set, so logging a [`Config`] cannot leak it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self(value)
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(s.to_owned()))
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        config: Config,
    }

    #[test]
    fn a_config_shown_for_debugging_hides_every_credential() {
        let cli = Cli::parse_from([
            "dataplane",
            "--database-url",
            "postgres://app:db-password-1@db/conclave",
            "--redis-url",
            "redis://:redis-password-2@redis:6379",
            "--smtp-url",
            "smtp://mailer:smtp-password-3@mail:25",
            "--turn-shared-secret",
            "turn-secret-4",
        ]);
        let shown = format!("{:?}", cli.config);
        for secret in ["db-password-1", "redis-password-2", "smtp-password-3", "turn-secret-4"] {
            assert!(!shown.contains(secret), "{secret} shows in {shown}");
        }
        assert_eq!(cli.config.database_url.expose(), "postgres://app:db-password-1@db/conclave");
    }
}
