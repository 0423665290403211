//! The end-to-end harness: Conclave run the way its users run it, with nothing mocked.
//!
//! * [`control_plane`]: a real etcd and kube-apiserver on loopback (TLS, RBAC, token auth),
//!   built from their official Go modules by `scripts/k8s-tools.sh` (or taken from
//!   `KUBEBUILDER_ASSETS`), with `kubectl` and `helm` pointed at it.
//! * [`chart`]: the Helm chart, installed with a real `helm`.
//! * [`node`]: a real node (containerd + runc, kubelet, kube-proxy, CoreDNS in a network namespace
//!   of the run's own; controller manager and scheduler) running the project's images; [`relay`]
//!   makes loopback services reachable from it.
//! * [`system`]: the chart's operator and the example DataPlane as pods on that node (the
//!   platform scenario and the demo); [`operator`] reads its leader Lease.
//! * [`stack`]: PostgreSQL (a database per run) and Redis, handed over as Secrets.
//! * [`proc`], [`tools`]: child processes that stop with their guard; where the binaries are.

pub mod chart;
pub mod control_plane;
pub mod node;
pub mod operator;
pub mod proc;
pub mod relay;
pub mod stack;
pub mod system;
pub mod tools;

pub use control_plane::ControlPlane;
