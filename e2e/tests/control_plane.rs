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

    // The CRDs' validation rules compile and hold on the real API server: a legal hold names its
    // target exactly when its scope has one.
    let hold = |scope: &str, target: &str| {
        format!(
            "apiVersion: conclave.io/v1alpha1\nkind: Organization\nmetadata: {{name: held, namespace: default}}\n\
             spec: {{slug: held, displayName: Held, legalHolds: [{{name: m1, scope: {scope}, {target}reason: matter 1}}]}}\n"
        )
    };
    let apply = |manifest: String| {
        use std::io::Write as _;
        let mut child = plane
            .kubectl_command(&["apply", "--dry-run=server", "-f", "-"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("kubectl apply");
        child.stdin.take().expect("stdin").write_all(manifest.as_bytes()).expect("manifest");
        let out = child.wait_with_output().expect("kubectl apply");
        (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let (accepted, err) = apply(hold("Workspace", "target: general, "));
    assert!(accepted, "a workspace hold with its target: {err}");
    let (accepted, err) = apply(hold("Organization", "target: general, "));
    assert!(!accepted && err.contains("only for those scopes"), "an organization hold with a target: {err}");
    let (accepted, err) = apply(hold("User", ""));
    assert!(!accepted && err.contains("only for those scopes"), "a user hold without its member: {err}");

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
