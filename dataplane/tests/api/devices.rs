use crate::support::{TestApp, TestDevice, b64, error_code, new_device};
use ed25519_dalek::Signer as _;
use futures::StreamExt;
use reqwest::StatusCode;
use serde_json::json;
use std::time::Duration;

#[tokio::test]
async fn a_device_without_a_proof_of_possession_of_its_key_is_refused() {
    let app = TestApp::start().await;
    let (_, access, _) = app.signed_in("ann@example.org").await;
    let tablet = TestDevice::new();
    let key = tablet.signing.verifying_key().to_bytes();
    // Version 1's binding input (with an X25519 key) signed by the right key is not the proof.
    let mut v1_binding = b"conclave/v1/device-binding\0".to_vec();
    v1_binding.extend_from_slice(&[9; 32]);
    v1_binding.extend_from_slice(&key);
    let forged = [
        [7u8; 64],
        tablet.signing.sign(&v1_binding).to_bytes(),
        // Another device's proof: signed by its own key, over its own key.
        TestDevice::new().signing.sign(&conclave_protocol::layout::device_key_input(&key)).to_bytes(),
    ];
    for signature in forged {
        let mut device = tablet.registration("tablet");
        device["key_signature"] = json!(b64(&signature));
        let (status, body) = app.post("/v1/devices", device, Some(&access)).await;
        assert_eq!((status, error_code(&body)), (StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"));
        assert_eq!(body["error"]["details"]["field"], "key_signature");
    }
    assert_eq!(app.count("SELECT count(*) FROM devices").await, 1, "only the login device");
    let (status, added) = app.post("/v1/devices", tablet.registration("tablet"), Some(&access)).await;
    assert_eq!(status, StatusCode::CREATED, "{added}");
}

#[tokio::test]
async fn devices_are_listed_with_the_current_one_marked() {
    let app = TestApp::start().await;
    let (_, access, pair) = app.signed_in("ben@example.org").await;
    let (status, added) = app.post("/v1/devices", new_device("tablet"), Some(&access)).await;
    assert_eq!(status, StatusCode::CREATED, "{added}");
    let (status, list) = app.get("/v1/devices", Some(&access)).await;
    assert_eq!(status, StatusCode::OK);
    let list = list.as_array().expect("array").clone();
    assert_eq!(list.len(), 2);
    let current: Vec<_> = list.iter().filter(|d| d["current"] == true).collect();
    assert_eq!(current.len(), 1);
    assert_eq!(current[0]["id"], pair["device_id"]);
}

#[tokio::test]
async fn revoking_a_device_stops_its_tokens_at_once_and_tells_every_replica() {
    let app = TestApp::start().await;
    let (user_id, phone_access, phone) = app.signed_in("cleo@example.org").await;
    let laptop = app.login("cleo@example.org", crate::support::PASSWORD).await;
    let laptop_access = laptop["access_token"].as_str().expect("token");
    let (status, _) = app
        .post(
            &format!("/v1/devices/{}/push-subscriptions", phone["device_id"].as_str().expect("id")),
            json!({ "endpoint": "https://push.example/sub/1", "p256dh": b64(&[4u8; 65]), "auth": b64(&[1u8; 16]) }),
            Some(&phone_access),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);

    // Listen on the revocation channel as another replica would.
    let client = redis::Client::open(crate::support::redis_url()).expect("redis");
    let mut pubsub = client.get_async_pubsub().await.expect("pubsub");
    pubsub
        .subscribe(conclave_dataplane::revocations_channel(&app.state.config.redis_namespace))
        .await
        .expect("subscribe");

    let phone_id = phone["device_id"].as_str().expect("id");
    let (status, _) = app.delete(&format!("/v1/devices/{phone_id}"), laptop_access).await;
    assert_eq!(status, StatusCode::NO_CONTENT);

    let (status, body) = app.get("/v1/me", Some(&phone_access)).await;
    assert_eq!((status, error_code(&body)), (StatusCode::UNAUTHORIZED, "session_revoked"));
    let (status, _) = app.post("/v1/auth/refresh", json!({ "refresh_token": phone["refresh_token"] }), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(app.get("/v1/me", Some(laptop_access)).await.0, StatusCode::OK, "the other device is untouched");
    assert_eq!(app.count("SELECT count(*) FROM push_subscriptions").await, 0);
    assert_eq!(app.count("SELECT count(*) FROM audit_logs WHERE action = 'device.revoked'").await, 1);

    let message = tokio::time::timeout(Duration::from_secs(5), pubsub.on_message().next())
        .await
        .expect("a revocation within 5 s")
        .expect("message");
    let payload: serde_json::Value =
        serde_json::from_str(&message.get_payload::<String>().expect("payload")).expect("json");
    assert_eq!(payload["device_id"], phone["device_id"]);
    assert_eq!(payload["user_id"], json!(user_id));
    // A second revocation of the same device is a 404.
    assert_eq!(app.delete(&format!("/v1/devices/{phone_id}"), laptop_access).await.0, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn another_users_device_cannot_be_revoked_or_subscribed() {
    let app = TestApp::start().await;
    let (_, _, dana) = app.signed_in("dana@example.org").await;
    let (_, eve_access, _) = app.signed_in("eve@example.org").await;
    let dana_device = dana["device_id"].as_str().expect("id");
    assert_eq!(app.delete(&format!("/v1/devices/{dana_device}"), &eve_access).await.0, StatusCode::NOT_FOUND);
    let (status, _) = app
        .post(
            &format!("/v1/devices/{dana_device}/push-subscriptions"),
            json!({ "endpoint": "https://push.example/x", "p256dh": b64(&[4u8; 65]), "auth": b64(&[1u8; 16]) }),
            Some(&eve_access),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(app.count("SELECT count(*) FROM devices WHERE revoked_at IS NOT NULL").await, 0);
}
