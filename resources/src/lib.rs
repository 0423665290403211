//! The Conclave custom resources, group `conclave.io`, version `v1alpha1`.
//!
//! Five namespaced kinds declare everything the operator does:
//!
//! * [`Organization`]: a tenant (its identity, limits, security policy and first owners).
//! * [`Workspace`]: a workspace inside an Organization of the same namespace.
//! * [`WebhookEndpoint`]: where events of a workspace or a whole organization are delivered.
//! * [`BotAgent`]: a bot in a workspace, whose token the operator keeps in a Secret.
//! * [`DataPlane`]: the data-plane service itself (a Deployment and its companions).
//!
//! This crate holds the types (from which the CRD manifests in `crds/` are generated), the
//! status conditions they share, and the pure rules that go with them: the validations the
//! API server cannot express in CEL, and Kubernetes quantities. It does no I/O, so the operator,
//! the CRD generator and the end-to-end tests can all depend on it cheaply. The at-rest [`seal`]
//! with which a WebhookEndpoint's signing secret is stored is `conclave_credentials::seal`,
//! shared with the data plane and re-exported here for the code that reaches it through this
//! crate (the end-to-end tests open a WebhookEndpoint's stored secret).

// `#[kube(printcolumn(..))]` repeats `type_ = "string"` by design; clippy reads it as a duplicate.
#![allow(clippy::duplicated_attributes)]

pub mod bot;
pub mod common;
pub mod dataplane;
pub mod organization;
pub mod validate;
pub mod webhook;
pub mod workspace;

pub use conclave_credentials::seal;

pub use bot::{BotAgent, BotAgentSpec, BotAgentStatus, BotScope};
pub use common::{Condition, ConditionStatus, DeletionPolicy, LocalRef, SecretKeyRef};
pub use dataplane::{DataPlane, DataPlaneSpec, DataPlaneStatus};
pub use organization::{Organization, OrganizationSpec, OrganizationStatus};
pub use webhook::{WebhookEndpoint, WebhookEndpointSpec, WebhookEndpointStatus};
pub use workspace::{Workspace, WorkspaceSpec, WorkspaceStatus};

/// The API group of every Conclave resource.
pub const GROUP: &str = "conclave.io";
/// The one served (and stored) version.
pub const VERSION: &str = "v1alpha1";

/// The finalizer the operator puts on Organizations, Workspaces, WebhookEndpoints and BotAgents
/// so their rows in PostgreSQL are dealt with before the object goes away.
pub const FINALIZER: &str = "conclave.io/finalizer";
/// The field manager of every server-side apply the operator makes.
pub const FIELD_MANAGER: &str = "conclave-operator";

/// Set to any new value on a BotAgent to rotate its token (the old one stays valid for the
/// overlap window).
pub const ANNOTATION_ROTATE_TOKEN: &str = "conclave.io/rotate-token";
/// Set to any new value on a WebhookEndpoint whose signing secret is generated to rotate it.
pub const ANNOTATION_ROTATE_SECRET: &str = "conclave.io/rotate-secret";
/// Set to any new value on a WebhookEndpoint the data plane disabled after its failure budget to
/// enable it again (a change of its spec does the same).
pub const ANNOTATION_REENABLE: &str = "conclave.io/re-enable";
/// Set to any new value on a DataPlane to rotate its JWT signing key and VAPID key.
pub const ANNOTATION_ROTATE_KEYS: &str = "conclave.io/rotate-keys";
/// Set (to any value) on an object being deleted to let its finalizer go without reaching the
/// database: the rows stay behind, detached, and a Warning event says so.
pub const ANNOTATION_FORCE_DETACH: &str = "conclave.io/force-detach";
/// Recorded on a generated Secret: the last rotation request it answers.
pub const ANNOTATION_ROTATION_HANDLED: &str = "conclave.io/rotation-handled";

/// The CRDs of every kind, in a stable order (for the generator and its tests).
pub fn crds() -> Vec<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> {
    use kube::CustomResourceExt;
    vec![Organization::crd(), Workspace::crd(), WebhookEndpoint::crd(), BotAgent::crd(), DataPlane::crd()]
}
