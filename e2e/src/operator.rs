//! The operator's leader Lease, as the suite reads it (the operator itself runs as the chart's
//! pod on the node: see [`crate::system`]).

use crate::control_plane::{ControlPlane, OPERATOR_NAMESPACE};
use anyhow::{Result, bail};
use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use std::time::{Duration, Instant};

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
