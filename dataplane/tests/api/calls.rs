//! Calls: TURN credentials proven against a real coturn on loopback.

use crate::support::{TestApp, error_code};
use chrono::{Duration, Utc};
use conclave_dataplane::calls::turn::mint;
use conclave_testkit::turn::{Allocation, Coturn, allocate};
use reqwest::StatusCode;
use serde_json::json;

const SECRET: &str = "calls-test-turn-secret";

#[tokio::test]
async fn issued_turn_credentials_allocate_a_relay_on_coturn() {
    let turn = Coturn::start(SECRET).await.expect("coturn");
    let uri = turn.uri();
    let app =
        TestApp::start_with(&["--rate-limit-factor", "1000", "--turn-urls", &uri, "--turn-shared-secret", SECRET])
            .await;
    let alice = app.person("alice@turn.test").await;

    let (status, body) = app.post("/v1/calls/turn-credentials", json!({}), Some(&alice.access)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["urls"], json!([uri]));
    let username = body["username"].as_str().expect("username");
    let password = body["credential"].as_str().expect("credential");
    let (expiry, user) = username.split_once(':').expect("expiry:user");
    assert_eq!(user, alice.user_id.to_string());
    let expiry: i64 = expiry.parse().expect("unix seconds");
    assert!((expiry - Utc::now().timestamp() - 3600).abs() < 60, "one hour by default: {expiry}");

    match allocate(turn.addr, username, password).await.expect("allocate") {
        Allocation::Relayed(relay) => assert!(relay.ip().is_loopback(), "{relay}"),
        refused => panic!("coturn refused the issued credentials: {refused:?}"),
    }
    let mut wrong = password.to_owned();
    wrong.replace_range(0..1, if wrong.starts_with('A') { "B" } else { "A" });
    assert_eq!(allocate(turn.addr, username, &wrong).await.expect("allocate"), Allocation::Refused(401));
    // Signed with the right secret, but its expiry has passed.
    let expired = mint(SECRET.as_bytes(), &[], alice.user_id, Utc::now() - Duration::hours(2), 3600);
    assert_eq!(
        allocate(turn.addr, &expired.username, &expired.credential).await.expect("allocate"),
        Allocation::Refused(401)
    );

    let (status, body) = app.post("/v1/calls/turn-credentials", json!({}), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
}

#[tokio::test]
async fn without_a_turn_server_credentials_are_refused_with_turn_not_configured() {
    let app = TestApp::start().await;
    let alice = app.person("alice@noturn.test").await;
    let (status, body) = app.post("/v1/calls/turn-credentials", json!({}), Some(&alice.access)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(error_code(&body), "turn_not_configured");
}
