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
    let (host, port) =
        node.host_service(&plane, "default", "postgres", pg.port.parse().expect("port")).expect("host Service");
    assert_eq!(host, "postgres.default.svc.cluster.local");
    let in_cluster_url = format!("postgres://{}:{}@{host}:{port}/{}", pg.username, pg.password, pg.dbname);
    let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db"}, "stringData": {"uri": in_cluster_url}});
    plane.kubectl_stdin(&["apply", "-f", "-"], &secret.to_string()).expect("apply the Secret");
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

/// The chart's operator runs as a pod from the operator image: the in-cluster configuration
/// (the `kubernetes` Service, a projected ServiceAccount token, `kube-root-ca.crt`) reaches the
/// API server, the chart's RBAC authorises it, its readiness probe makes the Deployment
/// available, it takes the leader Lease under its pod's name, and its log has no error line.
#[tokio::test(flavor = "multi_thread")]
async fn the_charts_operator_runs_as_a_pod_from_its_image_and_takes_the_lease() {
    use conclave_e2e::chart::{self, OPERATOR_DB_SECRET};
    use conclave_e2e::control_plane::OPERATOR_NAMESPACE;
    use conclave_e2e::stack::cnpg_app_secret;

    let net = NodeNet::create().expect("node network");
    let plane = ControlPlane::start_for_node(net.access()).expect("control plane");
    let mut node = Node::start(&plane, net).expect("node");
    let stack = Stack::new("conclave_test").await.expect("stack");
    let pg = parse_pg_url(&stack.owner_url()).expect("url");

    plane.kubectl(&["create", "namespace", OPERATOR_NAMESPACE]).expect("namespace");
    let ns = OPERATOR_NAMESPACE;
    let (host, port) = node.host_service(&plane, ns, "postgres", pg.port.parse().expect("port")).expect("host Service");
    let in_cluster = format!("postgres://{}:{}@{host}:{port}/{}", pg.username, pg.password, pg.dbname);
    plane
        .kubectl_stdin(
            &["apply", "-f", "-"],
            &cnpg_app_secret(OPERATOR_DB_SECRET, ns, &in_cluster).expect("secret").to_string(),
        )
        .expect("apply");

    chart::install(&plane, &["operator.image.pullPolicy=Never", "operator.logFormat=json"]).expect("helm install");
    let rollout = plane.kubectl(&["-n", ns, "rollout", "status", "deployment/conclave-operator", "--timeout=120s"]);
    let pods = plane.kubectl(&["-n", ns, "get", "pods", "-o", "wide"]).unwrap_or_default();
    let logs = plane.kubectl(&["-n", ns, "logs", "deployment/conclave-operator"]).unwrap_or_else(|e| e.to_string());
    assert!(rollout.is_ok(), "the operator's Deployment did not become available: {rollout:?}\n{pods}\n{logs}");
    eprintln!("[e2e] the chart's operator runs as a pod on the node:\n{pods}");

    let pod = plane
        .kubectl(&[
            "-n",
            ns,
            "get",
            "pods",
            "-l",
            "app.kubernetes.io/component=operator",
            "-o",
            "jsonpath={.items[0].metadata.name}",
        ])
        .expect("operator pod");
    conclave_e2e::operator::wait_for_leader(&plane, &pod, std::time::Duration::from_secs(60))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{logs}"));
    let uid = plane
        .kubectl(&[
            "-n",
            ns,
            "get",
            "pod",
            &pod,
            "-o",
            "jsonpath={.spec.containers[0].securityContext.readOnlyRootFilesystem}",
        ])
        .expect("security context");
    assert_eq!(uid, "true");

    // The operator's own log: JSON lines, none at ERROR level.
    let logs = plane.kubectl(&["-n", ns, "logs", &pod]).expect("operator log");
    assert!(!logs.trim().is_empty(), "the operator logged nothing");
    let errors: Vec<&str> = logs.lines().filter(|l| l.contains("\"level\":\"ERROR\"")).collect();
    assert!(errors.is_empty(), "the operator logged errors:\n{}", errors.join("\n"));

    node.stop().expect("the node leaves nothing behind");
}

/// The example DataPlane, reconciled by the chart's operator pod, runs on the node
/// (`System`, as the platform scenario and the demo run it): its migration Job runs as a Job,
/// its data-plane pods (from the image) become Ready through their probes and are the Service's
/// ready endpoints, the DataPlane reports Ready; the HPA is accepted. The PodDisruptionBudget is
/// honoured by the eviction API, a SIGKILLed container is restarted, a deleted operator pod is
/// replaced and leads. Deleting the DataPlane lets the controller manager's garbage collector
/// remove its Deployment, Service, ConfigMap and PodDisruptionBudget by owner reference.
#[tokio::test(flavor = "multi_thread")]
async fn a_dataplane_runs_as_pods_and_the_garbage_collector_removes_it_on_delete() {
    use conclave_e2e::control_plane::OPERATOR_NAMESPACE;
    use conclave_e2e::system::{System, TENANTS};
    use std::time::{Duration, Instant};

    let mut sys = System::start(None, conclave_testkit::TEST_PREFIX).await.expect("node, control plane, stack");
    sys.install_chart_and_operator().await.unwrap_or_else(|e| panic!("{e:#}"));
    sys.deploy_dataplane().await.unwrap_or_else(|e| panic!("{e:#}"));
    let plane = &sys.plane;
    let everything =
        plane.kubectl(&["-n", TENANTS, "get", "jobs,deploy,pods,svc,hpa,pdb,cm", "-o", "wide"]).unwrap_or_default();
    eprintln!("[e2e] the DataPlane runs on the node:\n{everything}");

    // The migration Job ran as a Job; two data-plane pods are Ready and are the Service's endpoints.
    let succeeded =
        plane.kubectl(&["-n", TENANTS, "get", "jobs", "-o", "jsonpath={.items[*].status.succeeded}"]).expect("jobs");
    assert!(succeeded.split_whitespace().any(|n| n == "1"), "no migration Job succeeded: {succeeded:?}\n{everything}");
    eprintln!("[e2e] two data-plane pods are the Service's ready endpoints: {:?}", sys.ready_endpoints());
    plane.kubectl(&["-n", TENANTS, "get", "hpa", "conclave"]).expect("the HPA is accepted");

    // The PodDisruptionBudget (maxUnavailable 1) is honoured by the eviction API: one of the two
    // replicas may be evicted, the second not while the first is gone.
    let pods = sys.running_pods(TENANTS, "server");
    assert_eq!(pods.len(), 2, "{pods:?}");
    // (once the disruption controller has counted both healthy replicas)
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let allowed = plane
            .kubectl(&["-n", TENANTS, "get", "pdb", "conclave", "-o", "jsonpath={.status.disruptionsAllowed}"])
            .unwrap_or_default();
        if allowed == "1" {
            break;
        }
        assert!(Instant::now() < deadline, "the PDB never allowed a disruption ({allowed:?})");
        std::thread::sleep(Duration::from_millis(500));
    }
    let evict = |pod: &str| {
        let body =
            json!({"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": pod, "namespace": TENANTS}});
        plane.kubectl_stdin(
            &["create", "--raw", &format!("/api/v1/namespaces/{TENANTS}/pods/{pod}/eviction"), "-f", "-"],
            &body.to_string(),
        )
    };
    evict(&pods[0]).expect("the first eviction is allowed");
    let refused = evict(&pods[1]).expect_err("the second eviction must wait for the budget");
    assert!(refused.to_string().contains("disruption budget"), "{refused}");
    eprintln!("[e2e] eviction: one replica evicted, the second refused by the PodDisruptionBudget");
    sys.wait_ready_endpoints(2, Duration::from_secs(120)).await.expect("two endpoints again");

    // A data-plane container killed (SIGKILL, through containerd) is restarted by the kubelet. The
    // pod whose eviction was refused is the one to kill: the evicted one may still be listed while
    // it terminates, and would vanish under the test.
    let pod = pods[1].clone();
    let container_id = plane
        .kubectl(&["-n", TENANTS, "get", "pod", &pod, "-o", "jsonpath={.status.containerStatuses[0].containerID}"])
        .expect("container id");
    let container_id = container_id.trim_start_matches("containerd://");
    sys.node.ctr(&["tasks", "kill", "--signal", "SIGKILL", container_id]).expect("kill the container");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let restarts = plane
            .kubectl(&["-n", TENANTS, "get", "pod", &pod, "-o", "jsonpath={.status.containerStatuses[0].restartCount}"])
            .unwrap_or_default();
        if restarts.parse::<u32>().is_ok_and(|count| count >= 1) {
            break;
        }
        assert!(Instant::now() < deadline, "the killed container was not restarted ({restarts:?})");
        std::thread::sleep(Duration::from_millis(500));
    }
    sys.wait_ready_endpoints(2, Duration::from_secs(120)).await.expect("two endpoints again");
    eprintln!("[e2e] a data-plane container killed with SIGKILL was restarted by the kubelet; two endpoints again");

    // The operator's pod deleted: its replacement takes the Lease.
    let old_operator = sys.running_pods(OPERATOR_NAMESPACE, "operator");
    assert_eq!(old_operator.len(), 1, "{old_operator:?}");
    plane.kubectl(&["-n", OPERATOR_NAMESPACE, "delete", "pod", &old_operator[0], "--wait=true"]).expect("delete");
    let new_operator = sys.wait_operator_leading(Duration::from_secs(120)).await.expect("a new operator pod leads");
    assert_ne!(new_operator, old_operator[0]);
    eprintln!("[e2e] the operator pod deleted: {new_operator} took the Lease");

    // Deleting the DataPlane: the garbage collector removes what it owns.
    let owned = || {
        plane
            .kubectl(&[
                "-n",
                TENANTS,
                "get",
                "deploy,svc,cm,pdb",
                "-l",
                "app.kubernetes.io/instance=conclave",
                "-o",
                "name",
            ])
            .unwrap_or_default()
    };
    let before = owned();
    for kind in ["deployment.apps/", "service/", "configmap/", "poddisruptionbudget.policy/"] {
        assert!(before.contains(kind), "no {kind} owned by the DataPlane before its deletion: {before}");
    }
    plane
        .kubectl(&["-n", TENANTS, "delete", "dataplane", "conclave", "--wait=true", "--timeout=120s"])
        .expect("delete");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let left = owned();
        let left: Vec<&str> = left.lines().filter(|l| !l.contains("kube-root-ca")).collect();
        if left.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "the garbage collector left {left:?}");
        std::thread::sleep(Duration::from_millis(500));
    }
    eprintln!("[e2e] deleting the DataPlane removed its Deployment, Service, ConfigMap and PDB (garbage collector)");

    let op_logs = plane.kubectl(&["-n", OPERATOR_NAMESPACE, "logs", &new_operator]).expect("operator log");
    let errors: Vec<&str> = op_logs.lines().filter(|l| l.contains("\"level\":\"ERROR\"")).collect();
    assert!(errors.is_empty(), "the operator logged errors:\n{}", errors.join("\n"));
    sys.stop().expect("the node leaves nothing behind");
}
