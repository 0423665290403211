//! Where the control-plane binaries and our own programs are.
//!
//! kube-apiserver, etcd and kubectl come from `KUBEBUILDER_ASSETS` when it is set (the envtest
//! convention), else from the cache `scripts/k8s-tools.sh` builds them into (it is run here when
//! they are missing, showing its progress). helm, the node's binaries (kubelet,
//! kube-controller-manager, kube-scheduler, kube-proxy) and CoreDNS always come from that cache. Our programs
//! (`conclave-operator`, `conclave-dataplane`, `conclave`) come from the cargo target directory
//! this test binary was built in.

use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(Path::to_path_buf).unwrap_or_default()
}

#[derive(Debug, Clone)]
pub struct Tools {
    pub kube_apiserver: PathBuf,
    pub etcd: PathBuf,
    pub kubectl: PathBuf,
    pub helm: PathBuf,
    /// The node's binaries (always from the cache; see [`crate::node`]).
    pub kubelet: PathBuf,
    pub kube_controller_manager: PathBuf,
    pub kube_scheduler: PathBuf,
    pub kube_proxy: PathBuf,
    pub coredns: PathBuf,
}

impl Tools {
    /// Finds the tools, building them first (once, cached) if needed.
    pub fn ensure() -> Result<Self> {
        let script = repo_root().join("scripts/k8s-tools.sh");
        let ready = Command::new("bash").arg(&script).arg("check").status().is_ok_and(|s| s.success());
        if !ready {
            eprintln!("[e2e] building the control-plane tools once (scripts/k8s-tools.sh); later runs reuse them");
            let status = Command::new("bash").arg(&script).status().context("running scripts/k8s-tools.sh")?;
            if !status.success() {
                bail!("scripts/k8s-tools.sh failed");
            }
        }
        let cache = crate::proc::run({
            let mut c = Command::new("bash");
            c.arg(&script).arg("dir");
            c
        })?;
        let cache = PathBuf::from(cache.trim());
        let assets = std::env::var_os("KUBEBUILDER_ASSETS").map(PathBuf::from);
        let from_assets = |name: &str| assets.as_ref().map_or_else(|| cache.join(name), |a| a.join(name));
        let tools = Self {
            kube_apiserver: from_assets("kube-apiserver"),
            etcd: from_assets("etcd"),
            kubectl: from_assets("kubectl"),
            helm: cache.join("helm"),
            kubelet: cache.join("kubelet"),
            kube_controller_manager: cache.join("kube-controller-manager"),
            kube_scheduler: cache.join("kube-scheduler"),
            kube_proxy: cache.join("kube-proxy"),
            coredns: cache.join("coredns"),
        };
        for path in [
            &tools.kube_apiserver,
            &tools.etcd,
            &tools.kubectl,
            &tools.helm,
            &tools.kubelet,
            &tools.kube_controller_manager,
            &tools.kube_scheduler,
            &tools.kube_proxy,
            &tools.coredns,
        ] {
            if !path.is_file() {
                bail!("{} is missing (scripts/k8s-tools.sh builds it)", path.display());
            }
        }
        Ok(tools)
    }
}

/// The directory holding the workspace's binaries (`target/debug`), next to this test binary's
/// `deps/` directory (or the binary itself, for `conclave-local`).
pub fn target_bin_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_default();
    let dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    if dir.file_name().is_some_and(|n| n == "deps") { dir.parent().map(Path::to_path_buf).unwrap_or(dir) } else { dir }
}

/// One of our binaries, which must have been built (`scripts/test.sh` builds them first).
pub fn our_binary(name: &str) -> Result<PathBuf> {
    let path = target_bin_dir().join(name);
    if !path.is_file() {
        bail!(
            "{} is not built: run `cargo build -p conclave-operator -p conclave-dataplane -p conclave-client` first \
             (scripts/test.sh does)",
            path.display()
        );
    }
    Ok(path)
}
