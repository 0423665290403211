//! The harness itself: a real etcd + kube-apiserver comes up with TLS, RBAC and token auth,
//! takes the CRDs, answers kubectl, and goes away leaving no process and no open port.

use conclave_e2e::ControlPlane;
use conclave_e2e::tools::repo_root;

#[test]
fn the_control_plane_serves_the_crds_to_kubectl_and_tears_down_cleanly() {
    let mut plane = ControlPlane::start().expect("control plane");
    let crds = repo_root().join("crds");
    plane.kubectl(&["apply", "--server-side", "-f", crds.to_str().expect("utf-8")]).expect("apply CRDs");
    plane.kubectl(&["wait", "--for=condition=Established", "--timeout=60s", "crd", "--all"]).expect("CRDs established");

    // `kubectl get orgs` works (the short name) and has the declared columns.
    let empty = plane.kubectl_command(&["get", "orgs", "-A"]).output().expect("kubectl get orgs");
    assert!(empty.status.success(), "{}", String::from_utf8_lossy(&empty.stderr));
    assert!(String::from_utf8_lossy(&empty.stderr).contains("No resources found"));

    // TLS and authentication are real: an anonymous request is refused.
    let anonymous = std::process::Command::new(&plane.tools.kubectl)
        .args(["--server", &plane.server, "--insecure-skip-tls-verify", "get", "orgs", "-A"])
        .env("KUBECONFIG", "/dev/null")
        .output()
        .expect("anonymous kubectl");
    assert!(!anonymous.status.success(), "an anonymous user must not list organizations");

    // RBAC is enforced: the operator's identity has no rights until the chart grants them.
    let denied = plane.kubectl_as_operator(&["get", "orgs", "-A"]).expect_err("no RBAC yet");
    assert!(denied.to_string().contains("forbidden"), "{denied}");

    let pids = plane.pids();
    assert_eq!(pids.len(), 2);
    plane.stop().expect("clean stop: no port left open");
    for pid in pids {
        assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists(), "process {pid} is still there");
    }
}
