//! The Helm chart (`charts/conclave`), installed with a real `helm` into the control plane.

use crate::control_plane::{ControlPlane, OPERATOR_NAMESPACE};
use crate::tools::repo_root;
use anyhow::Result;
use std::path::PathBuf;

/// The release name: the operator's resources are then called `conclave-operator`, the
/// ServiceAccount identity the control plane's token file gives the operator.
pub const RELEASE: &str = "conclave";
/// The Secret (in the release namespace) the chart's operator reads its database URL from.
pub const OPERATOR_DB_SECRET: &str = "conclave-operator-db";

pub fn chart_dir() -> PathBuf {
    repo_root().join("charts/conclave")
}

/// `helm install conclave charts/conclave -n conclave-system --create-namespace`, with `sets`
/// (`key=value`) on top of the database Secret's name.
pub fn install(plane: &ControlPlane, sets: &[&str]) -> Result<String> {
    let chart = chart_dir();
    let mut args = vec![
        "install",
        RELEASE,
        chart.to_str().unwrap_or_default(),
        "--namespace",
        OPERATOR_NAMESPACE,
        "--create-namespace",
        "--set",
    ];
    let db = format!("operator.database.secretName={OPERATOR_DB_SECRET}");
    args.push(&db);
    for set in sets {
        args.extend(["--set", set]);
    }
    plane.helm(&args)
}
