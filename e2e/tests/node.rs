//! The real node: containerd + runc, kubelet, kube-proxy, CoreDNS, the controller manager and
//! the scheduler run a Job from the project's data-plane image, which reaches PostgreSQL through
//! a Service by name; then everything the node made goes away.

use conclave_e2e::control_plane::ControlPlane;
use conclave_e2e::node::{Node, NodeNet};
use conclave_e2e::stack::{Stack, parse_pg_url};
use serde_json::json;

#[tokio::test(flavor = "multi_thread")]
async fn a_job_from_the_data_plane_image_runs_on_the_node_and_reaches_postgres_by_service_name() {
    let net = NodeNet::create().expect("node network");
    let (netns, host_veth, octet) = (net.netns.clone(), net.host_veth.clone(), net.octet);
    let plane = ControlPlane::start_for_node(net.access()).expect("control plane");
    let mut node = Node::start(&plane, net).expect("node");
    let stack = Stack::new("conclave_test").await.expect("stack");

    // PostgreSQL stays on the host's loopback; pods reach it as `postgres.default.svc` (a
    // Service without selector whose EndpointSlice is the node link's relay).
    let pg = parse_pg_url(&stack.owner_url()).expect("url");
    let relay = node.relay(pg.port.parse().expect("port")).expect("relay");
    let in_cluster_url = format!(
        "postgres://{}:{}@postgres.default.svc.cluster.local:{}/{}",
        pg.username, pg.password, pg.port, pg.dbname
    );
    let service = json!({"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "postgres"},
         "spec": {"ports": [{"name": "pg", "port": relay.port(), "protocol": "TCP"}]}},
        {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
         "metadata": {"name": "postgres-host", "labels": {"kubernetes.io/service-name": "postgres"}},
         "addressType": "IPv4",
         "endpoints": [{"addresses": [relay.ip().to_string()], "conditions": {"ready": true}}],
         "ports": [{"name": "pg", "port": relay.port(), "protocol": "TCP"}]},
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db"}, "stringData": {"uri": in_cluster_url}},
    ]});
    plane.kubectl_stdin(&["apply", "-f", "-"], &service.to_string()).expect("apply the Service");
    node.wait_service_programmed("default", "postgres").expect("kube-proxy programs the Service");
    let job = json!(
    {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "migrate"},
     "spec": {"backoffLimit": 0, "template": {"spec": {
         "restartPolicy": "Never",
         "automountServiceAccountToken": false,
         "securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
         "containers": [{
             "name": "migrate",
             "image": format!("ghcr.io/conclave/conclave-dataplane:{}", env!("CARGO_PKG_VERSION")),
             "imagePullPolicy": "Never",
             "args": ["migrate"],
             "env": [{"name": "CONCLAVE_OWNER_DATABASE_URL", "valueFrom": {"secretKeyRef": {"name": "db", "key": "uri"}}}],
             "securityContext": {"readOnlyRootFilesystem": true, "allowPrivilegeEscalation": false,
                                 "capabilities": {"drop": ["ALL"]}}
         }]
     }}}});
    plane.kubectl_stdin(&["apply", "-f", "-"], &job.to_string()).expect("apply the Job");
    // Succeeded or failed, whichever comes first (a failed Job does not wait for a timeout).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let outcome = loop {
        let status = plane
            .kubectl(&["get", "job", "migrate", "-o", "jsonpath={.status.succeeded}/{.status.failed}"])
            .unwrap_or_default();
        if status.starts_with('1') || status.ends_with('1') || std::time::Instant::now() > deadline {
            break status;
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    };
    let pods = plane.kubectl(&["get", "pods", "-o", "wide"]).unwrap_or_default();
    let logs = plane.kubectl(&["logs", "job/migrate"]).unwrap_or_else(|e| e.to_string());
    assert_eq!(outcome, "1/", "the Job did not succeed (succeeded/failed: {outcome}):\n{pods}\n{logs}");
    eprintln!("[e2e] the migration Job completed on the node:\n{pods}");

    // It ran in a pod of the node's network, as the image's non-root user, and the API server
    // reaches the kubelet for its logs.
    let ip = plane
        .kubectl(&["get", "pods", "-l", "job-name=migrate", "-o", "jsonpath={.items[0].status.podIP}"])
        .expect("pod IP");
    assert!(ip.starts_with(&format!("10.{octet}.1.")), "pod IP {ip} outside the node's pod range");
    assert!(!logs.contains("error"), "{logs}");
    let image_user = node.ctr(&["images", "ls"]).expect("ctr images");
    assert!(image_user.contains("ghcr.io/conclave/conclave-dataplane"), "{image_user}");

    node.stop().expect("the node leaves nothing behind");
    assert!(!std::path::Path::new("/run/netns").join(&netns).exists());
    assert!(!std::path::Path::new("/sys/class/net").join(&host_veth).exists());
    drop(node);
    drop(plane);
}
