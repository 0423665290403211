//! `Organization`: a tenant.

use crate::common::{Condition, DeletionPolicy};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A Conclave organization (a tenant): its identity, limits, retention and security policy, and
/// the people invited as its first owners. The operator creates the organization in PostgreSQL,
/// keeps it as declared, and on deletion retains or deletes its data as `deletionPolicy` says.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[kube(
    group = "conclave.io",
    version = "v1alpha1",
    kind = "Organization",
    namespaced,
    status = "OrganizationStatus",
    shortname = "org",
    shortname = "orgs",
    category = "conclave",
    doc = "A Conclave organization (tenant), provisioned in PostgreSQL by the operator.",
    printcolumn(name = "Slug", type_ = "string", json_path = ".spec.slug"),
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status"),
    printcolumn(name = "Reason", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].reason"),
    printcolumn(name = "Members", type_ = "integer", json_path = ".status.memberCount"),
    printcolumn(name = "Workspaces", type_ = "integer", json_path = ".status.workspaceCount"),
    printcolumn(name = "Audit", type_ = "boolean", json_path = ".status.auditChain.intact"),
    printcolumn(name = "Policy", type_ = "string", json_path = ".spec.deletionPolicy", priority = 1),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct OrganizationSpec {
    /// The organization's identity in URLs and in the database: lower-case letters, digits and
    /// inner hyphens, at most 63 characters. It cannot be changed once set.
    #[schemars(length(min = 1, max = 63), regex(pattern = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("slug is immutable"))]
    pub slug: String,
    /// The name people see.
    #[schemars(length(min = 1, max = 200))]
    pub display_name: String,
    /// Caps on the organization's size; an absent limit means unlimited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<OrganizationLimits>,
    /// How many days messages are kept before the data plane deletes them; absent keeps them
    /// until they are deleted. Workspaces may override it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 36500))]
    pub message_retention_days: Option<i32>,
    /// Rules for signing in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security: Option<SecurityPolicy>,
    /// Email addresses invited as owners when the organization is created (and whenever one of
    /// them has neither an open invitation nor a membership). The data plane sends the emails.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 20))]
    #[x_kube(merge_strategy = ListMerge::Set)]
    pub initial_owners: Vec<String>,
    /// Legal holds the operator places on the organization, and lifts when they leave this list:
    /// retention and erasure delete nothing a standing hold covers. Holds placed through the API
    /// are separate and untouched by this list. A hold is a record: changing one lifts it and
    /// places a new one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100))]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["name".into()]))]
    pub legal_holds: Vec<LegalHoldSpec>,
    /// `Retain` (default) keeps the data in PostgreSQL when this resource is deleted and only
    /// detaches it; `Delete` deletes the organization and everything in it, after recording the
    /// deletion in the audit log.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
}

/// A legal hold declared on the Organization resource.
#[derive(KubeSchema, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("(self.scope == 'Organization') != has(self.target)")
        .message("target names the workspace, conversation or member held, and only for those scopes")
)]
pub struct LegalHoldSpec {
    /// The hold's name in this list (a matter reference works well): lower-case letters, digits
    /// and inner hyphens.
    #[schemars(length(min = 1, max = 63), regex(pattern = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"))]
    pub name: String,
    /// What the hold covers.
    pub scope: LegalHoldScope,
    /// The workspace's slug, the conversation's id, or the member's email address; absent for
    /// `Organization`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 320))]
    pub target: Option<String>,
    /// Why: a case or matter reference for the people managing holds, never message content.
    #[schemars(length(min = 1, max = 500))]
    pub reason: String,
}

/// What a legal hold covers.
#[derive(JsonSchema, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub enum LegalHoldScope {
    /// Every message of the organization.
    Organization,
    /// Every message of one workspace.
    Workspace,
    /// Every message of one conversation.
    Conversation,
    /// Everything one member sent, and their account (erasure waits).
    User,
}

impl LegalHoldScope {
    /// The name the database and the API use.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Organization => "organization",
            Self::Workspace => "workspace",
            Self::Conversation => "conversation",
            Self::User => "user",
        }
    }
}

/// Caps on an organization's size.
#[derive(KubeSchema, Serialize, Deserialize, Debug, Clone, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct OrganizationLimits {
    /// Most members the organization may have.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_members: Option<i32>,
    /// Most workspaces the organization may have.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_workspaces: Option<i32>,
    /// Attachment storage quota, as a Kubernetes quantity (`500Mi`, `10Gi`, `1T`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|k|M|G|T|P)?$"))]
    pub attachment_storage: Option<String>,
}

/// Rules for signing in to the organization.
#[derive(KubeSchema, Serialize, Deserialize, Debug, Clone, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SecurityPolicy {
    /// Members must confirm a TOTP second factor before they can use the organization.
    #[serde(default)]
    pub require_totp: bool,
    /// Only addresses at these domains may join (exact domain match, lower case); empty allows
    /// every domain.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Set)]
    pub allowed_email_domains: Vec<String>,
    /// How long a sign-in lasts before the person must sign in again, in seconds (300 to
    /// 31536000); absent uses the data plane's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 300, max = 31536000))]
    pub session_lifetime_seconds: Option<i32>,
}

/// What the operator observed.
#[derive(KubeSchema, Serialize, Deserialize, Debug, Clone, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct OrganizationStatus {
    /// `Ready` and its reason.
    #[serde(default)]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
    /// The `metadata.generation` last reconciled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The organization's id in PostgreSQL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub organization_id: Option<String>,
    /// How many members the organization has.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member_count: Option<i64>,
    /// How many workspaces the organization has.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workspace_count: Option<i64>,
    /// How many invitations to the initial owners are still open.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_invitations: Option<i64>,
    /// How many legal holds stand on the organization (declared here or placed through the API).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub standing_legal_holds: Option<i64>,
    /// The organization's audit trail, as the operator last verified its hash chain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit_chain: Option<AuditChainStatus>,
}

/// The last verification of an organization's audit hash chain (`conclave_audit_check`): every
/// entry's hash recomputed from its content and the previous hash, and the sequence checked for
/// gaps. The operator repeats it every `CONCLAVE_AUDIT_VERIFY_SECONDS` (an hour by default).
#[derive(KubeSchema, Serialize, Deserialize, Debug, Clone, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AuditChainStatus {
    /// When the chain was verified (RFC 3339).
    pub verified_at: String,
    /// True when no entry was altered and none is missing.
    pub intact: bool,
    /// How many entries were verified.
    pub entries: i64,
    /// The sequence number of the first entry that breaks the chain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_broken_seq: Option<i64>,
    /// How it breaks it: `hash mismatch` (altered) or `gap before this entry` (one removed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}
