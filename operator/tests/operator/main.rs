//! Integration tests of the operator: the CRD manifests, and each kind's `sync` step
//! (`provision`, `cleanup`) against a real PostgreSQL (each test with its own database, from
//! `conclave_testkit::TestDb`); `deployments` runs the controllers against a real etcd +
//! kube-apiserver (`conclave_e2e::ControlPlane`) for what only the API server can show.

mod bots;
mod crds;
mod deployments;
mod organizations;
mod support;
mod webhooks;
mod workspaces;
