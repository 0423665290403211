use super::*;
use conclave_resources::DataPlane;
use conclave_resources::dataplane::DataPlaneSpec;

fn mk_dataplane(extra: Value) -> DataPlane {
    let mut spec = json!({
        "image": "registry.example/conclave-dataplane:1.0.0",
        "postgres": {"secretName": "pg-app"},
        "redis": {"secretName": "redis", "urlKey": "uri"}
    });
    if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra.as_object()) {
        spec.extend(extra.clone());
    }
    let spec: DataPlaneSpec = serde_json::from_value(spec).expect("a valid spec");
    let mut dp = DataPlane::new("chat", spec);
    dp.metadata.namespace = Some("conclave".into());
    dp.metadata.uid = Some("uid-1".into());
    dp
}

#[test]
fn a_cloudnativepg_app_secret_is_read_through_its_uri_key() {
    let dp = mk_dataplane(json!({}));
    let d = deployment(&dp, "img:1", "rev", "kid1");
    let env = &d["spec"]["template"]["spec"]["containers"][0]["env"];
    assert_eq!(env[0]["name"], "CONCLAVE_DATABASE_URL");
    assert_eq!(env[0]["valueFrom"]["secretKeyRef"], json!({"name": "pg-app", "key": "uri", "optional": false}));
    assert_eq!(env[1]["valueFrom"]["secretKeyRef"]["key"], "uri");
}

#[test]
fn every_child_is_owned_by_the_dataplane() {
    let dp = mk_dataplane(json!({"autoscaling": {"minReplicas": 2, "maxReplicas": 5}}));
    let hpa = horizontal_pod_autoscaler(&dp).expect("an autoscaler");
    for child in [
        config_map(&dp),
        deployment(&dp, "img:1", "r", "kid1"),
        service(&dp),
        service_account(&dp),
        pod_disruption_budget(&dp),
        hpa,
        migration_job(&dp, "img:1"),
    ] {
        let owner = &child["metadata"]["ownerReferences"][0];
        assert_eq!(owner["uid"], "uid-1", "{}", child["kind"]);
        assert_eq!(owner["controller"], true);
        assert_eq!(child["metadata"]["namespace"], "conclave");
    }
}

#[test]
fn with_autoscaling_the_deployment_leaves_replicas_to_the_autoscaler() {
    let scaled = mk_dataplane(json!({"autoscaling": {"minReplicas": 2, "maxReplicas": 5}}));
    assert!(deployment(&scaled, "i", "r", "kid1")["spec"].get("replicas").is_none());
    let hpa = horizontal_pod_autoscaler(&scaled).expect("an autoscaler");
    assert_eq!(hpa["spec"]["maxReplicas"], 5);
    let fixed = mk_dataplane(json!({"replicas": 3}));
    assert_eq!(deployment(&fixed, "i", "r", "kid1")["spec"]["replicas"], 3);
    assert!(horizontal_pod_autoscaler(&fixed).is_none());
    assert_eq!(deployment(&mk_dataplane(json!({})), "i", "r", "kid1")["spec"]["replicas"], 2);
}

#[test]
fn smtp_and_turn_settings_reach_the_config_and_their_secrets_the_env() {
    let dp = mk_dataplane(json!({
        "smtp": {"host": "smtp.example", "from": "noreply@example.com", "credentialsSecretName": "smtp"},
        "turn": {"urls": ["turn:turn.example:3478", "turns:turn.example:5349"], "sharedSecretName": "turn"}
    }));
    let cm = config_map(&dp);
    assert_eq!(cm["data"]["CONCLAVE_MAIL_FROM"], "noreply@example.com");
    assert_eq!(cm["data"]["CONCLAVE_TURN_URLS"], "turn:turn.example:3478,turns:turn.example:5349");
    let env = deployment(&dp, "i", "r", "kid1")["spec"]["template"]["spec"]["containers"][0]["env"].clone();
    let names: Vec<&str> = env.as_array().expect("env").iter().filter_map(|e| e["name"].as_str()).collect();
    assert!(names.contains(&"CONCLAVE_SMTP_PASSWORD"));
    assert!(names.contains(&"CONCLAVE_TURN_SHARED_SECRET"));
    let url = env.as_array().expect("env").iter().find(|e| e["name"] == "CONCLAVE_SMTP_URL").expect("an SMTP URL");
    assert_eq!(
        url["value"],
        "smtp://$(CONCLAVE_SMTP_USERNAME):$(CONCLAVE_SMTP_PASSWORD)@smtp.example:587?tls=required"
    );
    let position = |n: &str| names.iter().position(|x| *x == n).expect("present");
    assert!(
        position("CONCLAVE_SMTP_PASSWORD") < position("CONCLAVE_SMTP_URL"),
        "variables expand only from earlier ones"
    );
}

#[test]
fn a_redis_key_prefix_keeps_deployments_sharing_one_redis_apart() {
    let default = config_map(&mk_dataplane(json!({})));
    assert!(default["data"].get("CONCLAVE_REDIS_NAMESPACE").is_none(), "the data plane's default");
    let prefixed = config_map(&mk_dataplane(json!({"redis": {"secretName": "redis", "keyPrefix": "team-a"}})));
    assert_eq!(prefixed["data"]["CONCLAVE_REDIS_NAMESPACE"], "team-a");
    assert_ne!(config_hash(&default), config_hash(&prefixed), "a new prefix restarts the pods");
}

#[test]
fn the_webhook_allow_list_reaches_the_data_plane_as_its_flag() {
    let none = config_map(&mk_dataplane(json!({})));
    assert!(none["data"].get("CONCLAVE_WEBHOOK_ALLOWED_TARGETS").is_none(), "public addresses only");
    let allowed = config_map(&mk_dataplane(json!({"webhookAllowedTargets": ["10.96.0.0/12", "*.svc.cluster.local"]})));
    assert_eq!(allowed["data"]["CONCLAVE_WEBHOOK_ALLOWED_TARGETS"], "10.96.0.0/12,*.svc.cluster.local");
    assert_ne!(config_hash(&none), config_hash(&allowed), "a new list restarts the pods");
}

#[test]
fn the_connection_settings_reach_the_data_plane_as_its_flags() {
    // Absent: the data plane's own defaults (1024 per source, X-Forwarded-For not trusted).
    let data = config_map(&mk_dataplane(json!({})))["data"].clone();
    assert!(data.get("CONCLAVE_TRUST_FORWARDED_FOR").is_none(), "{data}");
    assert!(data.get("CONCLAVE_MAX_CONNECTIONS_PER_ADDRESS").is_none(), "{data}");
    // A direct deployment with its own cap.
    let direct = config_map(&mk_dataplane(json!({"maxConnectionsPerAddress": 64})));
    assert_eq!(direct["data"]["CONCLAVE_MAX_CONNECTIONS_PER_ADDRESS"], "64");
    assert!(direct["data"].get("CONCLAVE_TRUST_FORWARDED_FOR").is_none());
    // Behind an ingress: the client is the proxy's last X-Forwarded-For hop.
    let proxied = config_map(&mk_dataplane(json!({"trustForwardedFor": true, "maxConnectionsPerAddress": 0})));
    assert_eq!(proxied["data"]["CONCLAVE_TRUST_FORWARDED_FOR"], "true");
    assert_eq!(proxied["data"]["CONCLAVE_MAX_CONNECTIONS_PER_ADDRESS"], "0");
    // Changing them restarts the pods.
    assert_ne!(config_hash(&direct), config_hash(&proxied));
    // The names are the data plane's (its `--help` lists them under `[env: ...]`).
    let deployment = deployment(&mk_dataplane(json!({"trustForwardedFor": true})), "i", "r", "kid1");
    let env_from = &deployment["spec"]["template"]["spec"]["containers"][0]["envFrom"];
    assert_eq!(env_from[0]["configMapRef"]["name"], "chat", "{env_from}");
}

#[test]
fn the_keys_are_mounted_where_the_data_plane_reads_them() {
    let dp = mk_dataplane(json!({}));
    let cm = config_map(&dp);
    assert_eq!(cm["data"]["CONCLAVE_JWT_KEYS_DIR"], "/var/run/conclave/keys/jwt");
    assert_eq!(cm["data"]["CONCLAVE_AT_REST_KEY_FILE"], "/var/run/conclave/keys/at-rest/key");
    let d = deployment(&dp, "i", "r", "kid1");
    let env = &d["spec"]["template"]["spec"]["containers"][0]["env"];
    assert!(env.as_array().expect("env").contains(&json!({"name": "CONCLAVE_JWT_SIGNING_KEY_ID", "value": "kid1"})));
    assert_eq!(d["spec"]["template"]["spec"]["volumes"][2]["secret"]["secretName"], "chat-at-rest-key");
    // The MLS removal key, and the one before it during a rotation's overlap, in one mount.
    assert_eq!(cm["data"]["CONCLAVE_MLS_REMOVAL_KEY_FILE"], "/var/run/conclave/keys/mls-removal/private-key");
    assert_eq!(
        cm["data"]["CONCLAVE_MLS_REMOVAL_PREVIOUS_KEY_FILE"],
        "/var/run/conclave/keys/mls-removal/previous-private-key"
    );
    assert_eq!(d["spec"]["template"]["spec"]["volumes"][3]["secret"]["secretName"], "chat-mls-removal");
    let mounts = &d["spec"]["template"]["spec"]["containers"][0]["volumeMounts"];
    assert!(mounts.as_array().expect("mounts").contains(
        &json!({"name": "mls-removal", "mountPath": "/var/run/conclave/keys/mls-removal", "readOnly": true})
    ));
}

#[test]
fn a_config_change_changes_the_config_hash() {
    let a = config_hash(&config_map(&mk_dataplane(json!({}))));
    let b = config_hash(&config_map(&mk_dataplane(json!({"publicUrl": "https://chat.example"}))));
    assert_ne!(a, b);
    assert_eq!(a, config_hash(&config_map(&mk_dataplane(json!({})))));
}

#[test]
fn each_image_gets_its_own_migration_job() {
    assert_ne!(migration_job_name("chat", "img:1"), migration_job_name("chat", "img:2"));
    assert_eq!(migration_job_name("chat", "img:1"), migration_job_name("chat", "img:1"));
    let job = migration_job(&mk_dataplane(json!({})), "img:2");
    assert_eq!(job["spec"]["template"]["spec"]["containers"][0]["args"], json!(["migrate"]));
}

#[test]
fn a_new_image_waits_for_its_migrations() {
    let r = rollout("img:2", Some("img:1"), JobState::Absent, Some("img:1"));
    assert!(r.run_migration);
    assert_eq!(r.deploy_image.as_deref(), Some("img:1"));
    assert_eq!(r.blocked.as_ref().map(|b| b.0), Some("Migrating"));

    let r = rollout("img:2", Some("img:1"), JobState::Running, Some("img:1"));
    assert!(!r.run_migration);
    assert_eq!(r.deploy_image.as_deref(), Some("img:1"));

    let r = rollout("img:2", Some("img:1"), JobState::Succeeded, Some("img:1"));
    assert_eq!(r.deploy_image.as_deref(), Some("img:2"));
    assert_eq!(r.migrated_image.as_deref(), Some("img:2"));
    assert!(r.blocked.is_none());
}

#[test]
fn a_failed_migration_keeps_the_old_version_running() {
    let r = rollout("img:2", Some("img:1"), JobState::Failed, Some("img:1"));
    assert_eq!(r.deploy_image.as_deref(), Some("img:1"));
    assert_eq!(r.migrated_image.as_deref(), Some("img:1"));
    assert_eq!(r.blocked.as_ref().map(|b| b.0), Some("MigrationFailed"));
}

#[test]
fn a_first_rollout_creates_no_deployment_before_the_migrations() {
    let r = rollout("img:1", None, JobState::Absent, None);
    assert!(r.run_migration);
    assert_eq!(r.deploy_image, None);
}
