use conclave_operator::{crdgen, structural};
use std::path::Path;

fn crds_dir() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../crds"))
}

#[test]
fn committed_crd_manifests_match_the_rust_types() {
    let problems = crdgen::check(crds_dir()).expect("rendering the CRDs");
    assert!(problems.is_empty(), "run `cargo run -p conclave-operator -- crdgen`: {problems:?}");
}

#[test]
fn every_generated_schema_is_structural_and_documented() {
    for crd in conclave_resources::crds() {
        let name = crd.metadata.name.clone().unwrap_or_default();
        for version in &crd.spec.versions {
            let schema = version
                .schema
                .as_ref()
                .and_then(|s| s.open_api_v3_schema.as_ref())
                .expect("every version has a schema");
            let value = serde_json::to_value(schema).expect("a schema serialises");
            let problems = structural::violations(&value);
            assert!(problems.is_empty(), "{name} {}: {problems:#?}", version.name);
        }
    }
}

#[test]
fn every_kind_has_a_status_subresource_short_names_the_conclave_category_and_ready_columns() {
    for crd in conclave_resources::crds() {
        let name = crd.metadata.name.clone().unwrap_or_default();
        assert_eq!(crd.spec.group, "conclave.io");
        assert_eq!(crd.spec.scope, "Namespaced");
        assert!(crd.spec.names.short_names.as_ref().is_some_and(|s| !s.is_empty()), "{name}");
        assert_eq!(crd.spec.names.categories.as_deref(), Some(&["conclave".to_owned()][..]), "{name}");
        let version = &crd.spec.versions[0];
        assert!(version.subresources.as_ref().and_then(|s| s.status.as_ref()).is_some(), "{name}");
        let columns: Vec<&str> = version.additional_printer_columns.iter().flatten().map(|c| c.name.as_str()).collect();
        for wanted in ["Ready", "Reason", "Age"] {
            assert!(columns.contains(&wanted), "{name} lacks the {wanted} column: {columns:?}");
        }
    }
}

#[test]
fn immutable_fields_and_cross_field_rules_are_declared_in_cel() {
    let rules: Vec<String> =
        conclave_resources::crds().iter().map(|crd| serde_json::to_string(crd).expect("a CRD serialises")).collect();
    let all = rules.join("\n");
    assert!(all.contains("slug is immutable"));
    assert!(all.contains("organizationRef is immutable"));
    assert!(all.contains("set exactly one of workspaceRef and organizationRef"));
    assert!(all.contains("url must use https unless allowInsecureHttp is true"));
    assert!(all.contains("set replicas or autoscaling, not both"));
    assert!(all.contains("maxConnectionsPerAddress caps direct clients"));
}
