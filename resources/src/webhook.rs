//! `WebhookEndpoint`: where a workspace's or an organization's events are delivered.

use crate::common::{Condition, LocalRef, SecretKeyRef};
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

/// An HTTPS endpoint that receives event deliveries signed per the Standard Webhooks
/// specification (`webhook-signature: v1,<base64 HMAC-SHA256>`) for one workspace, or for a whole
/// organization.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[kube(
    group = "conclave.io",
    version = "v1alpha1",
    kind = "WebhookEndpoint",
    namespaced,
    status = "WebhookEndpointStatus",
    shortname = "whe",
    shortname = "webhook",
    category = "conclave",
    doc = "A webhook endpoint of a Conclave workspace or organization.",
    printcolumn(name = "URL", type_ = "string", json_path = ".spec.url"),
    printcolumn(name = "Enabled", type_ = "boolean", json_path = ".spec.enabled"),
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status"),
    printcolumn(name = "Reason", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].reason"),
    printcolumn(name = "Last delivery", type_ = "string", json_path = ".status.lastDeliveryStatus"),
    printcolumn(name = "Failures", type_ = "integer", json_path = ".status.consecutiveFailures"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[x_kube(
    validation = Rule::new("has(self.workspaceRef) != has(self.organizationRef)")
        .message("set exactly one of workspaceRef and organizationRef"),
    validation = Rule::new("self.url.startsWith('https://') || (has(self.allowInsecureHttp) && self.allowInsecureHttp)")
        .message("url must use https unless allowInsecureHttp is true"),
    validation = Rule::new("has(self.workspaceRef) == has(oldSelf.workspaceRef) && has(self.organizationRef) == has(oldSelf.organizationRef)")
        .message("an endpoint cannot move between a workspace and an organization")
)]
#[serde(rename_all = "camelCase")]
pub struct WebhookEndpointSpec {
    /// The Workspace (in this namespace) whose events are delivered. Set this or
    /// `organizationRef`, not both.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self == oldSelf").message("workspaceRef is immutable"))]
    pub workspace_ref: Option<LocalRef>,
    /// The Organization (in this namespace) whose events, in every workspace, are delivered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self == oldSelf").message("organizationRef is immutable"))]
    pub organization_ref: Option<LocalRef>,
    /// Where deliveries are POSTed. Must be `https://` unless `allowInsecureHttp` is true.
    #[schemars(length(min = 8, max = 2048), regex(pattern = r"^https?://[^\s]+$"))]
    pub url: String,
    /// Allows an `http://` URL (for in-cluster receivers that terminate no TLS).
    #[serde(default)]
    pub allow_insecure_http: bool,
    /// The event types delivered, such as `message.created` or `member.joined`: see the catalogue
    /// in docs/webhooks.md.
    #[schemars(length(min = 1, max = 64))]
    #[x_kube(merge_strategy = ListMerge::Set)]
    pub event_types: Vec<String>,
    /// The signing secret (`whsec_` and 24 to 64 bytes in standard base64, the Standard Webhooks
    /// format), from a Secret you manage; a change takes effect at once. Absent: the operator
    /// generates one into the Secret `<name>-webhook-signing` (key `signing-secret`) and rotates
    /// it when the annotation `conclave.io/rotate-secret` changes, signing with both secrets for
    /// `secretOverlapSeconds`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_secret_ref: Option<SecretKeyRef>,
    /// After a rotation of the generated secret, how long deliveries still carry a signature made
    /// with the previous one besides the new one, in seconds (default one day, at most seven days;
    /// 0: the previous secret stops at once).
    #[serde(default = "default_overlap")]
    #[schemars(range(min = 0, max = 604800))]
    pub secret_overlap_seconds: i64,
    /// Whether deliveries are made; disabling keeps the endpoint and its history.
    #[serde(default = "enabled")]
    pub enabled: bool,
}

/// The event types an endpoint may subscribe to: the catalogue of docs/webhooks.md. The call
/// events are reserved (there are no calls yet to cause them): subscribing is allowed, and
/// delivers nothing until they exist.
pub const EVENT_TYPES: &[&str] = &[
    "conversation.created",
    "member.joined",
    "member.left",
    "message.created",
    "message.edited",
    "message.deleted",
    "privacy_request.filed",
    "call.started",
    "call.ended",
];

fn enabled() -> bool {
    true
}

fn default_overlap() -> i64 {
    86_400
}

/// What the operator observed (the delivery fields are read back from the database, where the
/// data plane records them).
#[derive(KubeSchema, Serialize, Deserialize, Debug, Clone, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct WebhookEndpointStatus {
    /// `Ready` and its reason.
    #[serde(default)]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
    /// The `metadata.generation` last reconciled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The endpoint's id in PostgreSQL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint_id: Option<String>,
    /// The Secret holding the signing secret (yours, or the generated one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_name: Option<String>,
    /// `succeeded`, `failed` (the receiver could not be reached or did not answer 2xx) or
    /// `refused` (its address is not public and not allowed on the DataPlane; the reason is in
    /// `lastDeliveryError`), for the last delivery attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_delivery_status: Option<String>,
    /// When the last delivery was attempted (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_delivery_at: Option<String>,
    /// Why the last delivery failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_delivery_error: Option<String>,
    /// Failed deliveries in a row since the last success.
    #[serde(default)]
    pub consecutive_failures: i32,
}
