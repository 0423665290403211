//! The Kubernetes side: one controller per kind, run behind the leader Lease.
//!
//! Every controller has the same shape: a free `reconcile(obj, ctx)` and the shared
//! [`error_policy`] that backs off. For the four kinds that become rows (Organization,
//! Workspace, WebhookEndpoint, BotAgent), `reconcile` runs behind kube-runtime's `finalizer`
//! helper: Apply fetches what the object refers to, runs the kind's
//! [`sync`](crate::sync)`::*::provision` in one database transaction and [`finish`]es (the status
//! through the status subresource by server-side apply, only when it changed, and an event per
//! state change); Cleanup runs the deletion policy through [`cleanup`], which keeps a lost
//! database from wedging a deletion. The DataPlane's `reconcile` manages keys, migrations, the
//! Deployment and its companions by server-side apply, and owns them (no finalizer).
//!
//! One file per kind, and one per concern they share:
//!
//! * `context`: the [`Context`] every reconcile gets, with its per-object failure counts;
//! * `error`: the reconcile [`Error`], told apart as real, stale or throttled;
//! * `requeue`: when an object is looked at again, after a failure ([`error_policy`],
//!   [`backoff`]) and after a success;
//! * `pacing`: the [`Pacer`] that spaces out status writes changing only counts;
//! * `wake`: the [`Wake`] filter deciding which events of a watched kind wake its dependents;
//! * `status`: [`finish`], [`write_status`] and [`publish`]: the status and the events;
//! * `cleanup`: a deletion's database step and its escape hatches;
//! * `api`: [`api_for`] and [`get_reference`]: reaching the API server;
//! * `runner`: [`run_controllers`], every controller at once.

mod api;
mod bot;
mod cleanup;
mod context;
mod dataplane;
mod error;
mod organization;
mod pacing;
mod requeue;
mod runner;
pub mod secret;
mod status;
mod wake;
mod webhook;
mod workspace;

pub use api::{api_for, get_reference};
pub use cleanup::cleanup;
pub use context::Context;
pub use error::Error;
pub use pacing::Pacer;
pub use requeue::{backoff, error_policy};
pub use runner::run_controllers;
pub use status::{StatusResource, finish, publish, status_equal, write_status};
pub use wake::{Wake, organization_part, workspace_part};
