//! `Workspace`: a workspace inside an Organization.

use crate::common::{Condition, DeletionPolicy, LocalRef};
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

/// A workspace of an Organization in the same namespace, with the channels it starts with.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[kube(
    group = "conclave.io",
    version = "v1alpha1",
    kind = "Workspace",
    namespaced,
    status = "WorkspaceStatus",
    shortname = "ws",
    category = "conclave",
    doc = "A workspace of a Conclave Organization, provisioned in PostgreSQL by the operator.",
    printcolumn(name = "Organization", type_ = "string", json_path = ".spec.organizationRef.name"),
    printcolumn(name = "Slug", type_ = "string", json_path = ".spec.slug"),
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status"),
    printcolumn(name = "Reason", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].reason"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct WorkspaceSpec {
    /// The Organization (in this namespace) the workspace belongs to. It cannot be changed.
    #[x_kube(validation = Rule::new("self == oldSelf").message("organizationRef is immutable"))]
    pub organization_ref: LocalRef,
    /// The workspace's identity inside its organization (DNS-label shaped). It cannot be changed.
    #[schemars(length(min = 1, max = 63), regex(pattern = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("slug is immutable"))]
    pub slug: String,
    /// The name people see.
    #[schemars(length(min = 1, max = 200))]
    pub display_name: String,
    /// Overrides the organization's message retention, in days; absent inherits it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 36500))]
    pub message_retention_days: Option<i32>,
    /// Whether guests (people invited to the organization as `guest`) may join.
    #[serde(default)]
    pub guest_access: bool,
    /// Channels created with the workspace (names, DNS-label shaped). Channels are created once
    /// and never deleted by the operator: people own them afterwards.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 50))]
    #[x_kube(merge_strategy = ListMerge::Set)]
    pub default_channels: Vec<String>,
    /// `Retain` (default) keeps the workspace's data when this resource is deleted and only
    /// detaches it; `Delete` deletes the workspace and its conversations (audited).
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
}

/// What the operator observed.
#[derive(KubeSchema, Serialize, Deserialize, Debug, Clone, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct WorkspaceStatus {
    /// `Ready` and its reason.
    #[serde(default)]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
    /// The `metadata.generation` last reconciled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The workspace's id in PostgreSQL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workspace_id: Option<String>,
    /// The id of its organization in PostgreSQL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub organization_id: Option<String>,
}
