//! The Helm chart, linted and rendered by a real Helm engine, then installed into a real
//! kube-apiserver, where its RBAC is what the operator's identity may do.

use conclave_e2e::chart::{self, OPERATOR_DB_SECRET};
use conclave_e2e::control_plane::OPERATOR_NAMESPACE;
use conclave_e2e::tools::{Tools, repo_root};
use std::process::Command;

fn helm(args: &[&str]) -> std::process::Output {
    let tools = Tools::ensure().expect("tools");
    Command::new(&tools.helm).args(args).output().expect("helm runs")
}

fn ok(output: &std::process::Output) -> String {
    assert!(
        output.status.success(),
        "helm failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn chart() -> String {
    chart::chart_dir().to_string_lossy().into_owned()
}

#[test]
fn the_chart_lints_and_renders_with_standard_labels_and_least_privilege_rbac() {
    let db = format!("operator.database.secretName={OPERATOR_DB_SECRET}");
    ok(&helm(&["lint", "--strict", &chart(), "--set", &db]));
    let rendered = ok(&helm(&["template", "conclave", &chart(), "--namespace", "conclave-system", "--set", &db]));
    let documents: Vec<serde_json::Value> = rendered
        .split("\n---")
        .filter(|d| d.lines().any(|l| l.starts_with("kind:")))
        .map(|d| serde_json::to_value(serde_saphyr_compat(d)).expect("yaml"))
        .collect();
    let kinds: Vec<&str> = documents.iter().filter_map(|d| d["kind"].as_str()).collect();
    for kind in ["ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "Deployment", "Service"]
    {
        assert!(kinds.contains(&kind), "{kind} missing from {kinds:?}");
    }
    assert!(!kinds.contains(&"DataPlane"), "no DataPlane unless dataPlane.enabled");
    for doc in &documents {
        let labels = &doc["metadata"]["labels"];
        for key in [
            "app.kubernetes.io/name",
            "app.kubernetes.io/instance",
            "app.kubernetes.io/version",
            "app.kubernetes.io/managed-by",
            "helm.sh/chart",
        ] {
            assert!(labels[key].is_string(), "{} {} has no label {key}", doc["kind"], doc["metadata"]["name"]);
        }
    }
    // Least privilege: no wildcard, no pods, no cluster-wide Leases.
    let cluster_role = documents.iter().find(|d| d["kind"] == "ClusterRole").expect("ClusterRole");
    let text = cluster_role["rules"].to_string();
    assert!(!text.contains('*'), "no wildcards in {text}");
    assert!(!text.contains("\"pods\"") && !text.contains("leases"), "{text}");

    // With dataPlane.enabled, a DataPlane is rendered and the operator finds its at-rest key.
    let with_dp = ok(&helm(&[
        "template",
        "conclave",
        &chart(),
        "--namespace",
        "conclave-system",
        "--set",
        &db,
        "--set",
        "dataPlane.enabled=true",
    ]));
    assert!(with_dp.contains("kind: DataPlane"), "{with_dp}");
    assert!(with_dp.contains("conclave-system/conclave-at-rest-key"), "{with_dp}");

    // values.schema.json refuses what makes no sense, with a readable message.
    let bad = helm(&["template", "conclave", &chart(), "--set", &db, "--set", "operator.logFormat=xml"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("logFormat"), "{}", String::from_utf8_lossy(&bad.stderr));
    let unknown = helm(&["template", "conclave", &chart(), "--set", &db, "--set", "operator.replica=3"]);
    assert!(!unknown.status.success(), "a misspelt key is refused");
    let missing = helm(&["template", "conclave", &chart()]);
    assert!(String::from_utf8_lossy(&missing.stderr).contains("operator.database.secretName is required"));
}

/// The images the chart's defaults name are the ones `scripts/images.sh` and the Containerfiles
/// build, at the version of the chart's `appVersion`, which is also the crates' version (what the
/// binaries report and the images' `org.opencontainers.image.version` label).
#[test]
fn the_chart_names_the_images_the_project_builds_at_its_app_version() {
    let root = repo_root();
    let read = |path: &str| std::fs::read_to_string(root.join(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
    let chart_yaml: serde_json::Value =
        serde_saphyr::from_str(&read("charts/conclave/Chart.yaml")).expect("Chart.yaml");
    let values: serde_json::Value = serde_saphyr::from_str(&read("charts/conclave/values.yaml")).expect("values.yaml");
    let app_version = chart_yaml["appVersion"].as_str().expect("appVersion is a string");
    assert_eq!(app_version, env!("CARGO_PKG_VERSION"), "Chart.yaml appVersion and the workspace version differ");

    let operator = &values["operator"]["image"];
    assert_eq!(operator["repository"], "ghcr.io/conclave/conclave-operator");
    let tag = operator["tag"].as_str().expect("operator.image.tag");
    assert!(tag.is_empty() || tag == app_version, "operator.image.tag {tag:?} is not appVersion {app_version}");
    let dataplane_image = format!("ghcr.io/conclave/conclave-dataplane:{app_version}");
    assert_eq!(values["dataPlane"]["spec"]["image"], dataplane_image.as_str(), "values.yaml dataPlane.spec.image");
    let example: serde_json::Value = serde_saphyr::from_str(&read("examples/dataplane.yaml")).expect("example");
    assert_eq!(example["spec"]["image"], dataplane_image.as_str(), "examples/dataplane.yaml");

    // The rendered operator Deployment runs that tag.
    let db = format!("operator.database.secretName={OPERATOR_DB_SECRET}");
    let rendered = ok(&helm(&["template", "conclave", &chart(), "--set", &db]));
    assert!(rendered.contains(&format!("image: \"ghcr.io/conclave/conclave-operator:{app_version}\"")), "{rendered}");

    // What builds them: the script's default registry and tag, and a Containerfile per program
    // with a numeric non-root user (runAsNonRoot needs one) and the OCI labels.
    let script = read("scripts/images.sh");
    assert!(script.contains("REGISTRY=\"${CONCLAVE_IMAGE_REGISTRY:-ghcr.io/conclave}\""), "scripts/images.sh registry");
    assert!(script.contains("TAG=\"${CONCLAVE_IMAGE_TAG:-$APP_VERSION}\""), "scripts/images.sh tag");
    for program in ["operator", "dataplane"] {
        let containerfile = read(&format!("images/{program}/Containerfile"));
        assert!(containerfile.contains("\nUSER 65532:65532\n"), "images/{program}/Containerfile user");
        assert!(
            containerfile.contains(&format!("ARG VERSION={app_version}\n")),
            "images/{program}/Containerfile version"
        );
        for label in ["source", "version", "revision"] {
            assert!(
                containerfile.contains(&format!("org.opencontainers.image.{label}=")),
                "images/{program}/Containerfile has no {label} label"
            );
        }
        assert!(containerfile.contains(&format!("ENTRYPOINT [\"/usr/local/bin/conclave-{program}\"]")));
    }
}

/// The chart's CRDs are the generated ones, byte for byte (crdgen writes crds/; the chart ships
/// a copy because Helm can only read files inside the chart).
#[test]
fn the_chart_ships_the_generated_crds() {
    let generated = repo_root().join("crds");
    let shipped = chart::chart_dir().join("crds");
    let mut names: Vec<_> =
        std::fs::read_dir(&generated).expect("crds/").map(|e| e.expect("entry").file_name()).collect();
    names.sort();
    let mut in_chart: Vec<_> =
        std::fs::read_dir(&shipped).expect("chart crds/").map(|e| e.expect("entry").file_name()).collect();
    in_chart.sort();
    assert_eq!(names, in_chart);
    for name in names {
        let a = std::fs::read(generated.join(&name)).expect("read");
        let b = std::fs::read(shipped.join(&name)).expect("read");
        assert!(
            a == b,
            "charts/conclave/crds/{} differs from crds/: copy it: cp crds/*.yaml charts/conclave/crds/",
            name.to_string_lossy()
        );
    }
}

#[test]
fn helm_installs_the_chart_into_a_real_apiserver_and_its_rbac_is_what_the_operator_may_do() {
    let plane = conclave_e2e::ControlPlane::start().expect("control plane");
    let notes = chart::install(&plane, &[]).expect("helm install");
    assert!(notes.contains("kubectl explain organization.spec"), "{notes}");
    assert!(plane.kubectl(&["get", "crd", "organizations.conclave.io", "-o", "name"]).is_ok());
    let deploy = plane
        .kubectl(&[
            "-n",
            OPERATOR_NAMESPACE,
            "get",
            "deployment",
            "conclave-operator",
            "-o",
            "jsonpath={.spec.template.spec.serviceAccountName}",
        ])
        .expect("deployment");
    assert_eq!(deploy, "conclave-operator");

    // `kubectl auth can-i` prints yes or no (and exits 1 on no), as the operator's identity.
    let can = |args: &[&str]| {
        let output = std::process::Command::new(&plane.tools.kubectl)
            .env("KUBECONFIG", &plane.operator_kubeconfig)
            .args([&["auth", "can-i"][..], args].concat())
            .output()
            .expect("kubectl auth can-i");
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    };
    for allowed in [
        &["list", "organizations.conclave.io", "-A"][..],
        &["patch", "organizations.conclave.io", "--subresource=status", "-n", "tenants"],
        &["create", "secrets", "-n", "tenants"],
        &["patch", "deployments.apps", "-n", "tenants"],
        &["create", "horizontalpodautoscalers.autoscaling", "-n", "tenants"],
        &["create", "events.events.k8s.io", "-n", "tenants"],
        &["update", "leases.coordination.k8s.io", "-n", OPERATOR_NAMESPACE],
    ] {
        assert_eq!(can(allowed), "yes", "the operator may {allowed:?}");
    }
    for denied in [
        &["delete", "organizations.conclave.io", "-n", "tenants"][..],
        &["get", "pods", "-n", "tenants"],
        &["update", "leases.coordination.k8s.io", "-n", "kube-system"],
        &["create", "clusterroles.rbac.authorization.k8s.io"],
        &["patch", "customresourcedefinitions.apiextensions.k8s.io"],
    ] {
        assert!(can(denied).starts_with("no"), "the operator must not {denied:?}: {}", can(denied));
    }

    // Upgrade in place, then uninstall: the CRDs (and so every tenant resource) stay.
    plane
        .helm(&[
            "upgrade",
            chart::RELEASE,
            &chart(),
            "-n",
            OPERATOR_NAMESPACE,
            "--reuse-values",
            "--set",
            "operator.replicas=2",
        ])
        .expect("helm upgrade");
    let replicas = plane
        .kubectl(&["-n", OPERATOR_NAMESPACE, "get", "deploy", "conclave-operator", "-o", "jsonpath={.spec.replicas}"])
        .expect("replicas");
    assert_eq!(replicas, "2");
    plane.helm(&["uninstall", chart::RELEASE, "-n", OPERATOR_NAMESPACE]).expect("helm uninstall");
    assert!(
        plane.kubectl(&["get", "crd", "organizations.conclave.io", "-o", "name"]).is_ok(),
        "CRDs survive an uninstall"
    );
    assert!(plane.kubectl(&["-n", OPERATOR_NAMESPACE, "get", "deploy", "conclave-operator"]).is_err());
}

/// The rendered YAML as JSON (helm's output is plain block YAML).
fn serde_saphyr_compat(doc: &str) -> serde_json::Value {
    serde_saphyr::from_str(doc).expect("rendered YAML parses")
}
