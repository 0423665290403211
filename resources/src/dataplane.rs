//! `DataPlane`: the data-plane service and everything it runs with.

use crate::common::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The Conclave data plane: a Deployment of the stateless service with its Service, ConfigMap,
/// ServiceAccount, PodDisruptionBudget and (when autoscaling) HorizontalPodAutoscaler. The
/// operator generates the JWT signing key, the VAPID key and the at-rest key into Secrets, and
/// runs the new image's migrations (a Job) before rolling it out.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[kube(
    group = "conclave.io",
    version = "v1alpha1",
    kind = "DataPlane",
    namespaced,
    status = "DataPlaneStatus",
    shortname = "dp",
    category = "conclave",
    doc = "A Conclave data plane deployment, run by the operator.",
    printcolumn(name = "Version", type_ = "string", json_path = ".status.version"),
    printcolumn(name = "Schema", type_ = "integer", json_path = ".status.schemaVersion", priority = 1),
    printcolumn(name = "Replicas", type_ = "integer", json_path = ".status.replicas"),
    printcolumn(name = "Ready replicas", type_ = "integer", json_path = ".status.readyReplicas"),
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status"),
    printcolumn(name = "Reason", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].reason"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[x_kube(validation = Rule::new("!(has(self.replicas) && has(self.autoscaling))")
    .message("set replicas or autoscaling, not both"))]
#[x_kube(validation = Rule::new("!(has(self.trustForwardedFor) && self.trustForwardedFor && has(self.maxConnectionsPerAddress) && self.maxConnectionsPerAddress > 0)")
    .message("maxConnectionsPerAddress caps direct clients: with trustForwardedFor the proxy must cap connections"))]
#[serde(rename_all = "camelCase")]
pub struct DataPlaneSpec {
    /// The data-plane container image, such as `ghcr.io/example/conclave-dataplane:1.4.0`.
    #[schemars(length(min = 1, max = 512))]
    pub image: String,
    /// The image pull policy (`Always`, `IfNotPresent` or `Never`); absent uses Kubernetes'
    /// default for the tag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<PullPolicy>,
    /// A fixed number of replicas (default 2). Do not set together with `autoscaling`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 1000))]
    pub replicas: Option<i32>,
    /// Scale between bounds on CPU use, with a HorizontalPodAutoscaler.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaling: Option<Autoscaling>,
    /// CPU and memory requests and limits of the data-plane container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<Resources>,
    /// The PostgreSQL connection. A CloudNativePG `<cluster>-app` Secret works as is.
    pub postgres: PostgresRef,
    /// The Redis connection.
    pub redis: RedisRef,
    /// Outgoing email (invitations, confirmations, notifications).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub smtp: Option<Smtp>,
    /// TURN servers handed to clients for calls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub turn: Option<Turn>,
    /// The public base URL clients reach the data plane at (used in emails and links).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^https?://[^\s]+$"))]
    pub public_url: Option<String>,
    /// After a key rotation, how long tokens signed with the previous JWT key stay valid, in
    /// seconds (default one day).
    #[serde(default = "default_key_overlap")]
    #[schemars(range(min = 0, max = 2592000))]
    pub key_rotation_overlap_seconds: i64,
    /// The data plane is reached through a proxy (an ingress controller) that appends each
    /// client's address to `X-Forwarded-For`: per-source rate limits and sign-in limits read the
    /// client from there, and the data plane caps no connections (every peer is a proxy; cap
    /// connections per client on the proxy). Only when every request passes that proxy: a client
    /// reaching the data plane directly could name any address. Default false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub trust_forwarded_for: bool,
    /// Most connections (HTTP and WebSocket) one source, an IPv4 address or an IPv6 /64, may hold
    /// open at once; beyond, a new connection is closed unanswered. 0 removes the cap. Absent,
    /// the data plane's default (1024). Applies to clients that connect directly: not with
    /// `trustForwardedFor`, and behind a proxy that is not trusted all clients share its address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 1000000))]
    pub max_connections_per_address: Option<i32>,
    /// Webhook destinations allowed although they are not public addresses. Without an entry,
    /// the data plane delivers webhooks to public addresses only: it resolves each endpoint's host
    /// itself and refuses loopback, private (RFC 1918), link-local, unique-local, multicast,
    /// carrier-grade NAT, documentation and cloud metadata addresses, in IPv4 and every IPv6
    /// form. List here what in-cluster receivers use: address blocks (`10.96.0.0/12`),
    /// addresses, host names (`receiver.hooks.svc.cluster.local`), or `*.` and a domain for any
    /// of its subdomains (`*.svc.cluster.local`). A refused delivery shows its reason in the
    /// WebhookEndpoint's status.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    #[x_kube(merge_strategy = ListMerge::Set)]
    pub webhook_allowed_targets: Vec<String>,
}

fn default_key_overlap() -> i64 {
    86400
}

/// The image pull policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum PullPolicy {
    Always,
    IfNotPresent,
    Never,
}

impl PullPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Always => "Always",
            Self::IfNotPresent => "IfNotPresent",
            Self::Never => "Never",
        }
    }
}

/// Autoscaling bounds.
#[derive(KubeSchema, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[x_kube(validation = Rule::new("self.maxReplicas >= self.minReplicas")
    .message("maxReplicas must be at least minReplicas"))]
#[serde(rename_all = "camelCase")]
pub struct Autoscaling {
    /// Fewest replicas.
    #[schemars(range(min = 1, max = 1000))]
    pub min_replicas: i32,
    /// Most replicas.
    #[schemars(range(min = 1, max = 1000))]
    pub max_replicas: i32,
    /// The average CPU use (percent of requests) to scale towards (default 70).
    #[serde(default = "default_cpu")]
    #[schemars(range(min = 1, max = 100))]
    pub target_cpu_utilization_percentage: i32,
}

fn default_cpu() -> i32 {
    70
}

/// Requests and limits, as Kubernetes quantities by resource name (`cpu`, `memory`).
#[derive(JsonSchema, Serialize, Deserialize, Debug, Clone, Default, PartialEq)]
pub struct Resources {
    /// What the container is guaranteed, such as `{cpu: 250m, memory: 256Mi}`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub requests: BTreeMap<String, String>,
    /// The most the container may use.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub limits: BTreeMap<String, String>,
}

/// Where the PostgreSQL connection URL is.
#[derive(JsonSchema, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PostgresRef {
    /// The Secret (in this namespace), for example CloudNativePG's `<cluster>-app`.
    #[schemars(length(min = 1, max = 253))]
    pub secret_name: String,
    /// The key holding a `postgresql://` URL (default `uri`, as CloudNativePG writes it). The
    /// login must own the schema (to migrate) and be a member of `conclave_app`.
    #[serde(default = "default_uri_key")]
    pub uri_key: String,
}

fn default_uri_key() -> String {
    "uri".to_owned()
}

/// Where the Redis connection URL is.
#[derive(JsonSchema, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RedisRef {
    /// The Secret (in this namespace).
    #[schemars(length(min = 1, max = 253))]
    pub secret_name: String,
    /// The key holding a `redis://` or `rediss://` URL (default `url`).
    #[serde(default = "default_url_key")]
    pub url_key: String,
    /// The prefix of every Redis key and channel the data plane uses (default `conclave`), so
    /// several deployments can share one Redis without touching each other's rate limits,
    /// presence or fan-out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$"))]
    pub key_prefix: Option<String>,
}

fn default_url_key() -> String {
    "url".to_owned()
}

/// Outgoing email.
#[derive(JsonSchema, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Smtp {
    /// The SMTP server's host name.
    #[schemars(length(min = 1, max = 253))]
    pub host: String,
    /// The SMTP server's port (default 587).
    #[serde(default = "default_smtp_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,
    /// The sender address, such as `Conclave <noreply@example.com>`.
    #[schemars(length(min = 3, max = 320))]
    pub from: String,
    /// How the connection is secured (default `StartTls`).
    #[serde(default)]
    pub tls: SmtpTls,
    /// A Secret with keys `username` and `password`, when the server wants them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret_name: Option<String>,
}

fn default_smtp_port() -> i32 {
    587
}

/// SMTP transport security.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum SmtpTls {
    /// Upgrade a plain connection with STARTTLS (port 587).
    #[default]
    StartTls,
    /// TLS from the first byte (port 465).
    Tls,
    /// No encryption (only for a relay on the same host or a test server).
    None,
}

/// TURN servers for calls. The data plane hands each calling device short-lived credentials
/// for them (the TURN REST API scheme: coturn with `use-auth-secret` and `static-auth-secret`
/// set to the shared secret). Without it, calls connect directly only.
#[derive(JsonSchema, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Turn {
    /// `turn:` / `turns:` URIs (RFC 7065) handed to clients, such as
    /// `turn:turn.example.org:3478?transport=udp` or `turns:turn.example.org:5349?transport=tcp`.
    #[schemars(length(min = 1, max = 16))]
    pub urls: Vec<String>,
    /// A Secret (in this namespace) with the key `shared-secret`: coturn's `static-auth-secret`,
    /// which signs the short-lived TURN credentials. Until it exists the DataPlane is not Ready.
    #[schemars(length(min = 1, max = 253))]
    pub shared_secret_name: String,
    /// How long minted credentials last, in seconds (default 3600).
    #[serde(default = "default_turn_ttl")]
    #[schemars(range(min = 60, max = 86400))]
    pub credential_ttl_seconds: i32,
}

impl Turn {
    /// The key of the shared secret in the Secret named by `sharedSecretName`.
    pub const SECRET_KEY: &'static str = "shared-secret";
}

impl DataPlaneSpec {
    /// The Secrets this data plane reads that someone else provides, each with the key it needs:
    /// the operator waits for them (`Ready=False`, `SecretNotFound` / `SecretKeyMissing`) before
    /// it rolls anything out, and reconciles again when one of them changes.
    pub fn referenced_secrets(&self) -> Vec<(&str, &str)> {
        let mut secrets = vec![
            (self.postgres.secret_name.as_str(), self.postgres.uri_key.as_str()),
            (self.redis.secret_name.as_str(), self.redis.url_key.as_str()),
        ];
        if let Some(turn) = &self.turn {
            secrets.push((turn.shared_secret_name.as_str(), Turn::SECRET_KEY));
        }
        if let Some(name) = self.smtp.as_ref().and_then(|smtp| smtp.credentials_secret_name.as_deref()) {
            secrets.extend([(name, "username"), (name, "password")]);
        }
        secrets
    }
}

fn default_turn_ttl() -> i32 {
    3600
}

/// What the operator observed.
#[derive(KubeSchema, Serialize, Deserialize, Debug, Clone, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DataPlaneStatus {
    /// `Ready` and its reason.
    #[serde(default)]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
    /// The `metadata.generation` last reconciled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Replicas the Deployment has.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,
    /// Replicas ready to serve.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_replicas: Option<i32>,
    /// The image rolled out (after its migrations succeeded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The newest migration applied to the database.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema_version: Option<i64>,
    /// The image whose migrations last succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub migrated_image: Option<String>,
    /// The key id (`kid`) of the current JWT signing key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwt_key_id: Option<String>,
}
