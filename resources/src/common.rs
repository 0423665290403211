//! What every kind shares: conditions, references, the deletion policy.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A condition, shaped like `metav1.Condition` so generic tools (kubectl wait, Argo CD, Flux)
/// read it as they read any other.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// The condition's type; Conclave resources report `Ready`.
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: ConditionStatus,
    /// A CamelCase word saying why, for machines (always set).
    pub reason: String,
    /// What happened, for people (always set when the status is not `True`).
    #[serde(default)]
    pub message: String,
    /// When the status last changed (RFC 3339).
    pub last_transition_time: String,
    /// The `metadata.generation` this condition describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// The three states of a condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ConditionStatus {
    True,
    False,
    Unknown,
}

/// A reference to another object of a known kind in the same namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct LocalRef {
    /// The name of the object, in this namespace.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// One key of a Secret in the same namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SecretKeyRef {
    /// The name of the Secret, in this namespace.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// The key inside the Secret's data.
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

/// What happens to the rows in PostgreSQL when the resource is deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum DeletionPolicy {
    /// Keep the tenant's data and detach it from Kubernetes (the default: deleting a YAML file
    /// should never destroy messages by accident).
    #[default]
    Retain,
    /// Delete the tenant's data (recorded in the audit log first).
    Delete,
}

/// The condition type every Conclave resource reports.
pub const READY: &str = "Ready";
