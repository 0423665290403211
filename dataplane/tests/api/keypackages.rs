//! Key packages (protocol v2): uploaded per device, each one-time package handed out at most
//! once even to concurrent claims, the last-resort one when they run out, never a revoked
//! device's, and nobody's outside the organization.

use crate::support::{Person, TestApp, b64, error_code};
use conclave_protocol::mls_wire;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::collections::BTreeSet;

/// A distinct key package as the server sees one: the framing of an MLS 1.0 key package of the
/// protocol's suite (the rest is opaque to it).
fn package(tag: u8, n: usize) -> String {
    let mut body = vec![tag; 200];
    body[..8].copy_from_slice(&(n as u64).to_be_bytes());
    b64(&mls_wire::fake::key_package(&body))
}

async fn upload(
    app: &TestApp,
    who: &Person,
    packages: Vec<String>,
    last_resort: Option<String>,
) -> (StatusCode, Value) {
    app.post("/v1/key-packages", json!({ "key_packages": packages, "last_resort": last_resort }), Some(&who.access))
        .await
}

async fn claim(app: &TestApp, org: uuid::Uuid, who: &Person, users: &[uuid::Uuid]) -> (StatusCode, Value) {
    app.post(&format!("/v1/organizations/{org}/key-packages/claim"), json!({ "user_ids": users }), Some(&who.access))
        .await
}

#[tokio::test]
async fn one_time_packages_go_oldest_first_then_the_last_resort_one_repeatedly() {
    let app = TestApp::start().await;
    let alice = app.person("alice@example.org").await;
    let bob = app.person("bob@example.org").await;
    let (org, _) = app.organization("kp", &[&alice, &bob]).await;

    let (status, stock) = upload(&app, &bob, vec![package(1, 0), package(1, 1)], Some(package(9, 0))).await;
    assert_eq!(status, StatusCode::OK, "{stock}");
    assert_eq!(stock, json!({ "available": 2, "last_resort": true }));

    let mut seen = Vec::new();
    for _ in 0..4 {
        let (status, body) = claim(&app, org, &alice, &[bob.user_id]).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let claimed = &body["key_packages"][0];
        assert_eq!(claimed["device_id"], json!(bob.device_id));
        seen.push((claimed["key_package"].as_str().expect("bytes").to_owned(), claimed["last_resort"] == json!(true)));
    }
    assert_eq!(
        seen,
        vec![(package(1, 0), false), (package(1, 1), false), (package(9, 0), true), (package(9, 0), true)],
        "oldest first, each one-time package once, then the last-resort package, which stays"
    );
    let (_, stock) = app.get("/v1/key-packages", Some(&bob.access)).await;
    assert_eq!(stock, json!({ "available": 0, "last_resort": true }));

    // A new last-resort package replaces the old one.
    upload(&app, &bob, vec![], Some(package(8, 0))).await;
    let (_, body) = claim(&app, org, &alice, &[bob.user_id]).await;
    assert_eq!(body["key_packages"][0]["key_package"], json!(package(8, 0)));
    assert_eq!(app.count("SELECT count(*) FROM device_key_packages WHERE last_resort").await, 1);
}

#[tokio::test]
async fn concurrent_claims_never_get_the_same_one_time_package() {
    let app = TestApp::start().await;
    let alice = app.person("alice@example.org").await;
    let bob = app.person("bob@example.org").await;
    let (org, _) = app.organization("kp-race", &[&alice, &bob]).await;
    let uploaded: Vec<String> = (0..8).map(|n| package(2, n)).collect();
    assert_eq!(upload(&app, &bob, uploaded.clone(), None).await.0, StatusCode::OK);

    let bob_only = [bob.user_id];
    let claims = (0..12).map(|_| claim(&app, org, &alice, &bob_only));
    let answers = futures::future::join_all(claims).await;
    let mut handed = Vec::new();
    let mut exhausted = 0;
    for (status, body) in answers {
        assert_eq!(status, StatusCode::OK, "{body}");
        match body["key_packages"].as_array().expect("list").first() {
            Some(p) => handed.push(p["key_package"].as_str().expect("bytes").to_owned()),
            None => {
                assert_eq!(body["exhausted"], json!([{ "user_id": bob.user_id, "device_id": bob.device_id }]));
                exhausted += 1;
            }
        }
    }
    let distinct: BTreeSet<&String> = handed.iter().collect();
    assert_eq!(handed.len(), 8, "every package handed out");
    assert_eq!(distinct.len(), 8, "none handed out twice");
    assert_eq!(distinct, uploaded.iter().collect::<BTreeSet<_>>());
    assert_eq!(exhausted, 4, "the device had no last-resort package: the rest are told it is exhausted");
}

#[tokio::test]
async fn a_revoked_device_gets_no_package_and_outsiders_are_unknown() {
    let app = TestApp::start().await;
    let alice = app.person("alice@example.org").await;
    let bob = app.person("bob@example.org").await;
    let mallory = app.person("mallory@example.org").await;
    let (org, _) = app.organization("kp-tenants", &[&alice, &bob]).await;
    let (other_org, _) = app.organization("kp-other", &[&mallory]).await;
    upload(&app, &bob, vec![package(3, 0)], None).await;
    upload(&app, &mallory, vec![package(4, 0)], None).await;
    // A member's package is handed out (so the refusals below are refusals, not a broken claim).
    let (status, body) = claim(&app, org, &alice, &[bob.user_id]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["key_packages"][0]["key_package"], json!(package(3, 0)));
    upload(&app, &bob, vec![package(3, 1)], None).await;

    // Mallory is not in Alice's organization: exactly like an id nobody has.
    let (status, body) = claim(&app, org, &alice, &[mallory.user_id]).await;
    assert_eq!((status, error_code(&body)), (StatusCode::NOT_FOUND, "not_found"));
    let (unknown_status, unknown) = claim(&app, org, &alice, &[uuid::Uuid::new_v4()]).await;
    assert_eq!((unknown_status, error_code(&unknown)), (status, error_code(&body)));
    assert_eq!(unknown["message"], body["message"]);
    // Nor can Alice claim through an organization she is not in.
    let (status, body) = claim(&app, other_org, &alice, &[mallory.user_id]).await;
    assert_eq!((status, error_code(&body)), (StatusCode::NOT_FOUND, "not_found"));
    assert_eq!(
        app.count("SELECT count(*) FROM device_key_packages").await,
        2,
        "Mallory's and Bob's second are still there"
    );

    // Bob revokes his device (from itself): its packages are no longer handed out.
    let (status, _) = app.delete(&format!("/v1/devices/{}", bob.device_id), &bob.access).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = claim(&app, org, &alice, &[bob.user_id]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, json!({ "key_packages": [], "exhausted": [] }));
}

#[tokio::test]
async fn bad_uploads_are_refused_whole() {
    let app = TestApp::start().await;
    let bob = app.person("bob@example.org").await;
    assert_eq!(upload(&app, &bob, (0..60).map(|n| package(5, n)).collect(), None).await.0, StatusCode::OK);
    let (status, body) = upload(&app, &bob, (60..101).map(|n| package(5, n)).collect(), Some(package(9, 1))).await;
    assert_eq!((status, error_code(&body)), (StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"), "{body}");
    let (status, body) = upload(&app, &bob, vec![package(6, 0), b64(&[1u8; 10])], None).await;
    assert_eq!((status, error_code(&body)), (StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"), "{body}");
    // A blob of the right size, or a key package of another suite, is not a key package.
    let (status, body) = upload(&app, &bob, vec![package(6, 1), b64(&[1u8; 200])], None).await;
    assert_eq!((status, error_code(&body)), (StatusCode::UNPROCESSABLE_ENTITY, "invalid_mls_message"), "{body}");
    let mut other_suite = mls_wire::fake::key_package(&[2u8; 200]);
    other_suite[7] = 0x01;
    let (status, body) = upload(&app, &bob, vec![], Some(b64(&other_suite))).await;
    assert_eq!((status, error_code(&body)), (StatusCode::UNPROCESSABLE_ENTITY, "invalid_mls_message"), "{body}");
    assert_eq!(body["error"]["details"]["field"], json!("last_resort"));
    let (_, stock) = app.get("/v1/key-packages", Some(&bob.access)).await;
    assert_eq!(stock, json!({ "available": 60, "last_resort": false }), "nothing of a refused upload is stored");
}

#[tokio::test]
async fn a_claim_can_name_the_devices_it_wants() {
    let app = TestApp::start().await;
    let alice = app.person("alice@example.org").await;
    let laptop = app.person("bob@example.org").await;
    let phone = app.another_device(&laptop, "bob@example.org").await;
    let (org, _) = app.organization("kp-devices", &[&alice, &laptop]).await;
    upload(&app, &laptop, vec![package(1, 0)], None).await;
    upload(&app, &phone, vec![package(2, 0)], None).await;
    let body = json!({ "user_ids": [laptop.user_id], "device_ids": [phone.device_id, alice.device_id] });
    let (status, claimed) =
        app.post(&format!("/v1/organizations/{org}/key-packages/claim"), body, Some(&alice.access)).await;
    assert_eq!(status, StatusCode::OK, "{claimed}");
    let devices: Vec<&Value> =
        claimed["key_packages"].as_array().expect("list").iter().map(|p| &p["device_id"]).collect();
    assert_eq!(devices, vec![&json!(phone.device_id)], "only the phone: Alice's device is not Bob's");
    let (_, stock) = app.get("/v1/key-packages", Some(&laptop.access)).await;
    assert_eq!(stock["available"], json!(1), "the laptop's package was not used up");
}
