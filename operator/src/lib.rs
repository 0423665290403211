//! The Conclave operator.
//!
//! It reconciles five custom resources (see `conclave-resources`): Organizations, Workspaces,
//! WebhookEndpoints and BotAgents become rows in PostgreSQL (written as the schema owner, which
//! row-level security does not restrict), and a DataPlane becomes a Deployment with its
//! companions. The code is in three layers, so most of it is tested without a cluster:
//!
//! * [`plan`]: pure functions from a resource and what was observed (in the database, in
//!   Secrets) to what must be done. No I/O; tested in milliseconds.
//! * [`db`]: the PostgreSQL side, small functions taking `&mut PgConnection`, tested against a
//!   real database (`tests/operator`).
//! * [`controllers`]: the Kubernetes side: one controller per kind, finalizers, server-side
//!   apply, status with conditions, events. [`run`] starts them behind a leader-election Lease
//!   together with the health and metrics endpoints.

pub mod conditions;
pub mod config;
pub mod controllers;
pub mod crdgen;
pub mod db;
pub mod http;
pub mod leader;
pub mod metrics;
pub mod plan;
mod run;
pub mod secrets;
pub mod structural;
pub mod sync;
pub mod telemetry;

pub use config::Config;
pub use run::run;
