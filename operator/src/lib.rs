//! The Conclave operator.
//!
//! It reconciles five custom resources (see `conclave-resources`): Organizations, Workspaces,
//! WebhookEndpoints and BotAgents become rows in PostgreSQL (written as the schema owner, which
//! row-level security does not restrict), and a DataPlane becomes a Deployment with its
//! companions (key Secrets, a migration Job, Service, ConfigMap and the rest). Most of the code
//! runs without a cluster, so most of it is tested without one:
//!
//! * [`plan`]: pure functions from a resource and what was observed (in the database, in
//!   Secrets) to what must be done, and the DataPlane's children. No I/O; tested in
//!   milliseconds.
//! * [`db`]: the SQL, small functions taking `&mut PgConnection` whose queries are checked
//!   against the schema at compile time.
//! * [`sync`]: each row kind's database step (`provision`, `cleanup`) with its Kubernetes
//!   inputs already fetched, joining [`plan`] and [`db`]; tested against a real PostgreSQL
//!   (`tests/operator`).
//! * [`controllers`]: the Kubernetes side: one controller per kind, finalizers, server-side
//!   apply, status with [`conditions`], events, and the generated Secrets whose contents
//!   [`secrets`] makes.
//!
//! Around them: [`run`] starts the controllers behind a leader-election Lease ([`leader`])
//! together with the health and metrics endpoints ([`http`], [`metrics`]), configured by
//! [`config`] and logging through [`telemetry`]; [`crdgen`] writes the CRD manifests in `crds/`
//! and [`structural`] checks that their schemas are structural.

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
