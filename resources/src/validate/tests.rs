use super::*;

#[test]
fn slugs_are_dns_labels() {
    assert!(is_slug("acme"));
    assert!(is_slug("a-1"));
    assert!(!is_slug("-acme"));
    assert!(!is_slug("acme-"));
    assert!(!is_slug("Acme"));
    assert!(!is_slug(""));
    assert!(!is_slug(&"a".repeat(64)));
}

#[test]
fn emails_are_normalised_or_refused() {
    assert_eq!(normalize_email("  Alice@Example.COM "), Some("alice@example.com".to_owned()));
    assert_eq!(normalize_email("alice@localhost"), None);
    assert_eq!(normalize_email("@example.com"), None);
    assert_eq!(normalize_email("a@b@example.com"), None);
}

#[test]
fn quantities_parse_into_bytes() {
    assert_eq!(parse_quantity_bytes("1024"), Ok(1024));
    assert_eq!(parse_quantity_bytes("500Mi"), Ok(500 * 1024 * 1024));
    assert_eq!(parse_quantity_bytes("1.5G"), Ok(1_500_000_000));
    assert_eq!(parse_quantity_bytes("2Ti"), Ok(2 * 1024_i64.pow(4)));
    assert!(parse_quantity_bytes("10GB").is_err());
    assert!(parse_quantity_bytes("Gi").is_err());
    assert!(parse_quantity_bytes("1..2").is_err());
    assert!(parse_quantity_bytes("9999999999Pi").is_err());
}

#[test]
fn event_types_are_dotted_words() {
    assert!(is_event_type("message.created"));
    assert!(is_event_type("call.participant_joined"));
    assert!(!is_event_type("message"));
    assert!(!is_event_type("Message.Created"));
    assert!(!is_event_type("message..created"));
}

#[test]
fn a_webhook_needs_exactly_one_reference() {
    use crate::common::LocalRef;
    use crate::webhook::WebhookEndpointSpec;
    let mut spec = WebhookEndpointSpec {
        workspace_ref: None,
        organization_ref: None,
        url: "https://example.com/hook".into(),
        allow_insecure_http: false,
        event_types: vec!["message.created".into()],
        signing_secret_ref: None,
        enabled: true,
        secret_overlap_seconds: 0,
    };
    assert!(spec.validate().is_err());
    spec.workspace_ref = Some(LocalRef { name: "w".into() });
    assert!(spec.validate().is_ok());
    spec.organization_ref = Some(LocalRef { name: "o".into() });
    assert!(spec.validate().is_err());
}

#[test]
fn a_webhook_subscribes_to_event_types_of_the_documented_catalogue_only() {
    let mut spec: crate::webhook::WebhookEndpointSpec = serde_json::from_value(serde_json::json!({
        "workspaceRef": {"name": "w"}, "url": "https://example.com/hook", "eventTypes": ["message.deleted", "call.ended"]
    }))
    .expect("spec");
    assert!(spec.validate().is_ok());
    spec.event_types.push("message.read".into());
    assert!(spec.validate().expect_err("refused").0.contains("message.read"));
    let docs = include_str!("../../../docs/webhooks.md");
    for event in crate::webhook::EVENT_TYPES {
        assert!(docs.contains(&format!("### `{event}`")), "docs/webhooks.md has no section for {event}");
    }
}

#[test]
fn a_webhook_secret_overlap_is_at_most_a_week() {
    let mut spec: crate::webhook::WebhookEndpointSpec = serde_json::from_value(serde_json::json!({
        "workspaceRef": {"name": "w"}, "url": "https://example.com/hook", "eventTypes": ["message.created"]
    }))
    .expect("spec");
    assert_eq!(spec.secret_overlap_seconds, 86_400, "a day by default");
    assert!(spec.validate().is_ok());
    spec.secret_overlap_seconds = 604_801;
    assert!(spec.validate().is_err());
    spec.secret_overlap_seconds = -1;
    assert!(spec.validate().is_err());
}

#[test]
fn a_dataplane_cannot_have_both_replicas_and_autoscaling() {
    let spec: crate::DataPlaneSpec = serde_json::from_value(serde_json::json!({
        "image": "conclave:1",
        "replicas": 2,
        "autoscaling": {"minReplicas": 2, "maxReplicas": 4},
        "postgres": {"secretName": "pg-app"},
        "redis": {"secretName": "redis"}
    }))
    .expect("a spec");
    assert_eq!(spec.postgres.uri_key, "uri");
    assert!(spec.validate().is_err());
}

#[test]
fn webhook_allowed_targets_are_blocks_addresses_or_host_names() {
    for good in [
        "10.96.0.0/12",
        "fd00::/8",
        "127.0.0.1",
        "::1",
        "localhost",
        "receiver.hooks.svc.cluster.local",
        "*.svc.cluster.local",
    ] {
        assert!(super::is_allowed_target(good), "{good:?}");
    }
    for bad in [
        "",
        "10.0.0.0/33",
        "::/129",
        "10.0.0.0/+8",
        "x/8",
        "http://a.example",
        "*.",
        "*.local",
        "a b",
        "under_score.example",
    ] {
        assert!(!super::is_allowed_target(bad), "{bad:?}");
    }
    let spec: crate::DataPlaneSpec = serde_json::from_value(serde_json::json!({
        "image": "conclave:1", "postgres": {"secretName": "pg-app"}, "redis": {"secretName": "redis"},
        "webhookAllowedTargets": ["10.0.0.0/8", "not a target"]
    }))
    .expect("spec");
    assert!(spec.validate().expect_err("refused").0.contains("not a target"));
}

#[test]
fn a_dataplane_caps_connections_of_direct_clients_only() {
    let spec = |extra: serde_json::Value| -> crate::DataPlaneSpec {
        let mut spec = serde_json::json!({
            "image": "conclave:1",
            "postgres": {"secretName": "pg-app"},
            "redis": {"secretName": "redis"}
        });
        spec.as_object_mut().expect("an object").extend(extra.as_object().expect("an object").clone());
        serde_json::from_value(spec).expect("a spec")
    };
    let plain = spec(serde_json::json!({}));
    assert_eq!((plain.trust_forwarded_for, plain.max_connections_per_address), (false, None));
    assert!(spec(serde_json::json!({"maxConnectionsPerAddress": 64})).validate().is_ok());
    assert!(spec(serde_json::json!({"maxConnectionsPerAddress": 0, "trustForwardedFor": true})).validate().is_ok());
    assert!(spec(serde_json::json!({"trustForwardedFor": true})).validate().is_ok());
    assert!(spec(serde_json::json!({"maxConnectionsPerAddress": -1})).validate().is_err());
    let both = spec(serde_json::json!({"maxConnectionsPerAddress": 64, "trustForwardedFor": true}));
    assert!(both.validate().is_err(), "a cap the data plane would ignore");
}

#[test]
fn turn_uris_follow_rfc_7065() {
    for good in [
        "turn:turn.example.org",
        "turn:turn.example.org:3478?transport=udp",
        "turns:turn.example.org:5349?transport=tcp",
        "turn:127.0.0.1:3478",
        "turn:[2001:db8::1]:3478",
        "turn:coturn",
    ] {
        assert!(crate::validate::is_turn_uri(good), "{good}");
    }
    for bad in [
        "",
        "stun:turn.example.org",
        "https://turn.example.org",
        "turn:",
        "turn:turn.example.org:0",
        "turn:turn.example.org:70000",
        "turn:turn.example.org:3478?transport=sctp",
        "turn:[2001:db8::1",
        "turn:[not-ip]:3478",
        "turn:user@turn.example.org",
        "turn: turn.example.org",
    ] {
        assert!(!crate::validate::is_turn_uri(bad), "{bad}");
    }
}

#[test]
fn a_dataplane_names_its_turn_servers_by_uri() {
    let spec = |urls: serde_json::Value| -> crate::DataPlaneSpec {
        serde_json::from_value(serde_json::json!({
            "image": "conclave:1",
            "postgres": {"secretName": "pg-app"},
            "redis": {"secretName": "redis"},
            "turn": {"urls": urls, "sharedSecretName": "turn"}
        }))
        .expect("a spec")
    };
    assert!(spec(serde_json::json!(["turn:turn.example.org:3478"])).validate().is_ok());
    let err = spec(serde_json::json!(["turn:turn.example.org", "http://x"])).validate().expect_err("a bad URI");
    assert!(err.0.contains("\"http://x\""), "{err}");
    assert!(spec(serde_json::json!([])).validate().is_err());
}

#[test]
fn a_bot_deployment_needs_an_image_and_a_server_url() {
    let deployment = |image: &str, server: &str| crate::bot::BotDeployment {
        image: image.into(),
        args: vec![],
        resources: None,
        server: server.into(),
        storage: None,
    };
    let spec = |d| BotAgentSpec {
        workspace_ref: crate::LocalRef { name: "eng".into() },
        display_name: "Reminder".into(),
        scopes: vec![],
        enabled: true,
        token_overlap_seconds: 60,
        deployment: Some(d),
    };
    assert!(spec(deployment("bot:1", "http://conclave.conclave.svc:8080")).validate().is_ok());
    assert!(spec(deployment(" ", "http://conclave:8080")).validate().is_err());
    for server in ["conclave:8080", "ftp://conclave", "http://a b", ""] {
        assert!(spec(deployment("bot:1", server)).validate().is_err(), "{server}");
    }
    let stored = |size: &str| crate::bot::BotDeployment {
        storage: Some(crate::bot::BotStorage { size: size.into(), storage_class_name: None }),
        ..deployment("bot:1", "http://conclave:8080")
    };
    assert!(spec(stored("64Mi")).validate().is_ok());
    let err = spec(stored("lots")).validate().expect_err("not a quantity");
    assert!(err.0.contains("deployment.storage.size"), "{err}");
    let defaults: crate::bot::BotStorage = serde_json::from_str("{}").expect("every field has a default");
    assert_eq!(defaults, crate::bot::BotStorage::default());
    assert_eq!(defaults.size, "64Mi");
}
