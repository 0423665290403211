//! Integration tests of the operator: the CRD manifests, and each kind's `sync` step
//! (`provision`, `cleanup`) against a real PostgreSQL (each test with its own database, from
//! `conclave_testkit::TestDb`).

mod bots;
mod crds;
mod organizations;
mod support;
mod webhooks;
mod workspaces;
