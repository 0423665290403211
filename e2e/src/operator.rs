//! The operator, run as the chart's Deployment would run it (see [`crate::kubelet`]).

use crate::chart::RELEASE;
use crate::control_plane::{ControlPlane, OPERATOR_NAMESPACE};
use crate::kubelet::{self, HostPod};
use crate::proc::free_port;
use crate::tools::our_binary;
use anyhow::{Result, bail};
use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use std::time::{Duration, Instant};

pub struct Operator {
    pub pod: HostPod,
    pub identity: String,
    pub http_port: u16,
}

/// Starts the operator from the chart's Deployment (its env, its database Secret), under the
/// ServiceAccount's identity, as replica `identity`.
pub async fn start(plane: &ControlPlane, identity: &str) -> Result<Operator> {
    let client = plane.client().await?;
    let http_port = free_port()?;
    let root = plane.dir.join("pods").join(identity);
    let pod = kubelet::start_deployment_pod(
        &client,
        OPERATOR_NAMESPACE,
        &format!("{RELEASE}-operator"),
        "operator",
        &our_binary("conclave-operator")?,
        &root,
        &[
            ("KUBECONFIG", plane.operator_kubeconfig.to_string_lossy().into_owned()),
            ("POD_NAME", identity.to_owned()),
            ("CONCLAVE_HTTP_LISTEN", format!("127.0.0.1:{http_port}")),
            ("RUST_LOG", "info".to_owned()),
        ],
    )
    .await?;
    let mut operator = Operator { pod, identity: identity.to_owned(), http_port };
    let deadline = Instant::now() + Duration::from_secs(30);
    while !crate::proc::port_open(http_port) {
        if !operator.pod.proc.running() {
            bail!("the operator exited:\n{}", operator.pod.proc.tail(40));
        }
        if Instant::now() > deadline {
            bail!("the operator did not serve /healthz:\n{}", operator.pod.proc.tail(40));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(operator)
}

/// The holder of the operator's leader Lease.
pub async fn lease_holder(plane: &ControlPlane) -> Result<Option<String>> {
    let leases: Api<Lease> = Api::namespaced(plane.client().await?, OPERATOR_NAMESPACE);
    Ok(leases.get_opt("conclave-operator").await?.and_then(|l| l.spec).and_then(|s| s.holder_identity))
}

/// Waits until `identity` holds the Lease.
pub async fn wait_for_leader(plane: &ControlPlane, identity: &str, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let holder = lease_holder(plane).await?;
        if holder.as_deref() == Some(identity) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{identity} did not take the Lease within {timeout:?} (holder: {holder:?})");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
