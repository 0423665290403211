//! `BotAgent`: a bot in a workspace, with a token the operator manages.

use crate::common::{Condition, LocalRef};
use crate::dataplane::Resources;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A bot of a workspace. The operator generates its token into the Secret `<name>-bot-token`
/// (key `token`); PostgreSQL holds only the token's SHA-256 digest. Changing the annotation
/// `conclave.io/rotate-token` rotates the token; the previous one keeps working for
/// `tokenOverlapSeconds`.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[kube(
    group = "conclave.io",
    version = "v1alpha1",
    kind = "BotAgent",
    namespaced,
    status = "BotAgentStatus",
    shortname = "bot",
    category = "conclave",
    doc = "A bot of a Conclave workspace, whose token the operator keeps in a Secret.",
    printcolumn(name = "Workspace", type_ = "string", json_path = ".spec.workspaceRef.name"),
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status"),
    printcolumn(name = "Reason", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].reason"),
    printcolumn(name = "Secret", type_ = "string", json_path = ".status.secretName", priority = 1),
    printcolumn(name = "Connected", type_ = "string", json_path = ".status.connected"),
    printcolumn(name = "Rotated", type_ = "date", json_path = ".status.tokenRotatedAt"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct BotAgentSpec {
    /// The Workspace (in this namespace) the bot belongs to. It cannot be changed.
    #[x_kube(validation = Rule::new("self == oldSelf").message("workspaceRef is immutable"))]
    pub workspace_ref: LocalRef,
    /// The name people see.
    #[schemars(length(min = 1, max = 100))]
    pub display_name: String,
    /// What the bot may do.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Set)]
    pub scopes: Vec<BotScope>,
    /// Whether the bot may act; a disabled bot's token is refused.
    #[serde(default = "enabled")]
    pub enabled: bool,
    /// After a rotation, how long the previous token keeps working, in seconds (default one
    /// hour, at most seven days).
    #[serde(default = "default_overlap")]
    #[schemars(range(min = 0, max = 604800))]
    pub token_overlap_seconds: i64,
    /// Run the bot here: the operator keeps a Deployment of this image (one replica) with the
    /// token Secret mounted. Without it, the bot runs anywhere with its token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment: Option<BotDeployment>,
}

/// How the operator runs a bot. The container gets `CONCLAVE_SERVER`, `CONCLAVE_BOT_TOKEN_FILE`
/// (the mounted Secret's `token`, which the kubelet updates after a rotation) and
/// `CONCLAVE_BOT_STATE` (a directory for its keystore), as the SDK's bot framework reads them.
/// The state directory is a PersistentVolumeClaim with `storage`, else the pod's own `emptyDir`.
#[derive(JsonSchema, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BotDeployment {
    /// The bot's image.
    #[schemars(length(min = 1, max = 512))]
    pub image: String,
    /// Its arguments.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// CPU and memory requests and limits of the bot's container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<Resources>,
    /// The data plane's URL as the bot reaches it, such as `http://conclave.conclave.svc:8080`.
    #[schemars(regex(pattern = r"^https?://[^\s]+$"))]
    pub server: String,
    /// Keep the bot's state (its device keys, identity key and MLS groups) on a
    /// PersistentVolumeClaim `<name>-bot-state` that the operator creates and owns, so that a
    /// restarted or rescheduled pod is the same device in every conversation. Without it the
    /// state is the pod's own (`emptyDir`): each new pod is a new device, which every
    /// conversation must add again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<BotStorage>,
}

/// The claim holding a bot's state (`storage: {}` takes every default).
#[derive(JsonSchema, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BotStorage {
    /// Its size, a Kubernetes quantity (default `64Mi`: a bot's keystore is kilobytes per
    /// conversation). It can only grow, and only where the StorageClass allows expansion.
    #[serde(default = "default_state_size")]
    #[schemars(length(min = 1, max = 32))]
    pub size: String,
    /// The StorageClass (default: the cluster's default class). It cannot be changed once the
    /// claim exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub storage_class_name: Option<String>,
}

impl Default for BotStorage {
    fn default() -> Self {
        Self { size: default_state_size(), storage_class_name: None }
    }
}

fn default_state_size() -> String {
    "64Mi".to_owned()
}

fn enabled() -> bool {
    true
}

fn default_overlap() -> i64 {
    3600
}

/// A permission of a bot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
pub enum BotScope {
    #[serde(rename = "messages:read")]
    MessagesRead,
    #[serde(rename = "messages:write")]
    MessagesWrite,
    #[serde(rename = "conversations:read")]
    ConversationsRead,
    #[serde(rename = "conversations:write")]
    ConversationsWrite,
    #[serde(rename = "members:read")]
    MembersRead,
    #[serde(rename = "reactions:write")]
    ReactionsWrite,
    // Pin and unpin messages.
    #[serde(rename = "pins:write")]
    PinsWrite,
    // Read call records and receive call events (`call_updated`, `call_signal`) on the socket.
    #[serde(rename = "calls:read")]
    CallsRead,
    #[serde(rename = "files:read")]
    FilesRead,
    #[serde(rename = "files:write")]
    FilesWrite,
}

impl BotScope {
    /// The scope as the database (and the data plane) spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MessagesRead => "messages:read",
            Self::MessagesWrite => "messages:write",
            Self::ConversationsRead => "conversations:read",
            Self::ConversationsWrite => "conversations:write",
            Self::MembersRead => "members:read",
            Self::ReactionsWrite => "reactions:write",
            Self::PinsWrite => "pins:write",
            Self::CallsRead => "calls:read",
            Self::FilesRead => "files:read",
            Self::FilesWrite => "files:write",
        }
    }
}

/// What the operator observed.
#[derive(KubeSchema, Serialize, Deserialize, Debug, Clone, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BotAgentStatus {
    /// `Ready` and its reason.
    #[serde(default)]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
    /// The `metadata.generation` last reconciled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The bot's id in PostgreSQL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bot_id: Option<String>,
    /// The Secret holding the token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_name: Option<String>,
    /// When the current token was issued (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_rotated_at: Option<String>,
    /// Until when the previous token still works, during a rotation (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_token_expires_at: Option<String>,
    /// The Deployment running the bot, with `spec.deployment`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment_name: Option<String>,
    /// The PersistentVolumeClaim holding the bot's state, with `spec.deployment.storage`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_claim_name: Option<String>,
    /// Whether the bot holds a live session (opened with its current token, or with the previous
    /// one during a rotation's overlap), as of the last reconciliation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connected: Option<bool>,
}
