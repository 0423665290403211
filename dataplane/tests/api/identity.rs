//! The identity chain's server side (protocol v2): an account's identity key is set by its first
//! device and kept unless replaced explicitly; each device's credential is checked before it is
//! stored and is carried by every listing; fellow members can read the key, nobody else; an
//! identity sealed for another device of the account is handed to that device only, once.

use crate::support::{Person, TestApp, b64, error_code};
use conclave_protocol::identity::{CredentialFields, device_signing_input};
use ed25519_dalek::{Signer as _, SigningKey};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// An identity key as a client holds it.
struct Identity(SigningKey);

impl Identity {
    fn new() -> Self {
        Self(SigningKey::from_bytes(&crate::support::rand32()))
    }

    fn public(&self) -> [u8; 32] {
        self.0.verifying_key().to_bytes()
    }

    /// The credential of `device` under this key.
    fn credential(&self, device: &Person) -> [u8; 133] {
        let leaf = device.device.signing.verifying_key().to_bytes();
        let signature = self.0.sign(&device_signing_input(device.user_id, device.device_id, &leaf)).to_bytes();
        CredentialFields {
            user_id: device.user_id,
            device_id: device.device_id,
            identity_key: self.public(),
            signature,
        }
        .encode()
    }

    fn publication(&self, device: &Person, replace: bool) -> Value {
        json!({ "public_key": b64(&self.public()), "credential": b64(&self.credential(device)), "replace": replace })
    }
}

async fn publish(app: &TestApp, device: &Person, body: Value) -> (StatusCode, Value) {
    app.put("/v1/identity", body, &device.access).await
}

#[tokio::test]
async fn the_first_device_sets_the_key_later_ones_join_it_and_only_an_explicit_replace_changes_it() {
    let app = TestApp::start().await;
    let laptop = app.person("alice@example.org").await;
    let (status, body) = app.get("/v1/identity", Some(&laptop.access)).await;
    assert_eq!((status, error_code(&body)), (StatusCode::NOT_FOUND, "not_found"), "{body}");

    let identity = Identity::new();
    let (status, first) = publish(&app, &laptop, identity.publication(&laptop, false)).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    assert_eq!(first["public_key"], json!(b64(&identity.public())));
    assert_eq!(first["replaced"], json!(0));
    // Publishing again is harmless.
    let (status, again) = publish(&app, &laptop, identity.publication(&laptop, false)).await;
    assert_eq!((status, &again["created_at"]), (StatusCode::OK, &first["created_at"]), "{again}");

    // A second device joins the same key with its own credential; the listing carries both.
    let phone = app.another_device(&laptop, "alice@example.org").await;
    let (status, body) = publish(&app, &phone, identity.publication(&phone, false)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, devices) = app.get("/v1/devices", Some(&laptop.access)).await;
    for device in devices.as_array().expect("devices") {
        let id = device["id"].as_str().expect("id");
        let owner = if id == laptop.device_id.to_string() { &laptop } else { &phone };
        assert_eq!(device["credential"], json!(b64(&identity.credential(owner))), "{device}");
    }

    // Another key is refused unless replacing; a replacement retires the old key and the
    // credentials made under it.
    let stranger = Identity::new();
    let (status, body) = publish(&app, &phone, stranger.publication(&phone, false)).await;
    assert_eq!((status, error_code(&body)), (StatusCode::CONFLICT, "identity_exists"), "{body}");
    let (status, body) = publish(&app, &phone, stranger.publication(&phone, true)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!((body["public_key"].clone(), body["replaced"].clone()), (json!(b64(&stranger.public())), json!(1)));
    let (_, devices) = app.get("/v1/devices", Some(&laptop.access)).await;
    let credentials: Vec<&Value> = devices.as_array().expect("devices").iter().map(|d| &d["credential"]).collect();
    assert!(credentials.contains(&&Value::Null) && credentials.contains(&&json!(b64(&stranger.credential(&phone)))));
    assert_eq!(app.count("SELECT count(*) FROM identity_keys WHERE retired_at IS NOT NULL").await, 1);
}

#[tokio::test]
async fn a_credential_that_is_not_the_callers_device_under_the_key_is_refused() {
    let app = TestApp::start().await;
    let alice = app.person("alice@example.org").await;
    let bob = app.person("bob@example.org").await;
    let identity = Identity::new();
    let cases = [
        // Bob's device's credential, sent by Alice.
        (
            "another user's device",
            json!({ "public_key": b64(&identity.public()), "credential": b64(&identity.credential(&bob)) }),
        ),
        // Signed by another key than the one published.
        (
            "another key",
            json!({ "public_key": b64(&Identity::new().public()), "credential": b64(&identity.credential(&alice)) }),
        ),
        ("a bad signature", {
            let mut credential = identity.credential(&alice);
            credential[100] ^= 1;
            json!({ "public_key": b64(&identity.public()), "credential": b64(&credential) })
        }),
        ("a wrong layout", {
            let mut credential = identity.credential(&alice);
            credential[0] = b'X';
            json!({ "public_key": b64(&identity.public()), "credential": b64(&credential) })
        }),
    ];
    for (what, body) in cases {
        let (status, answer) = publish(&app, &alice, body).await;
        assert_eq!(
            (status, error_code(&answer)),
            (StatusCode::UNPROCESSABLE_ENTITY, "invalid_credential"),
            "{what}: {answer}"
        );
    }
    assert_eq!(app.count("SELECT count(*) FROM identity_keys").await, 0, "nothing was stored");
    assert_eq!(app.count("SELECT count(*) FROM devices WHERE credential IS NOT NULL").await, 0);
}

#[tokio::test]
async fn fellow_members_read_the_key_and_outsiders_cannot_tell_it_exists() {
    let app = TestApp::start().await;
    let (alice, bob, mallory) = (
        app.person("alice@example.org").await,
        app.person("bob@example.org").await,
        app.person("mallory@example.org").await,
    );
    let (org, workspace) = app.organization("idk", &[&alice, &bob]).await;
    let (other_org, _) = app.organization("other", &[&mallory]).await;
    let identity = Identity::new();
    publish(&app, &alice, identity.publication(&alice, false)).await;

    let (status, body) =
        app.get(&format!("/v1/organizations/{org}/members/{}/identity", alice.user_id), Some(&bob.access)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        (body["user_id"].clone(), body["public_key"].clone()),
        (json!(alice.user_id), json!(b64(&identity.public())))
    );
    // Bob has no key yet; Mallory is outside the organization, and asking through her own
    // organization about Alice answers like an unknown id.
    let (status, body) =
        app.get(&format!("/v1/organizations/{org}/members/{}/identity", bob.user_id), Some(&alice.access)).await;
    assert_eq!((status, error_code(&body)), (StatusCode::NOT_FOUND, "not_found"));
    let (status, _) =
        app.get(&format!("/v1/organizations/{org}/members/{}/identity", alice.user_id), Some(&mallory.access)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, body) = app
        .get(&format!("/v1/organizations/{other_org}/members/{}/identity", alice.user_id), Some(&mallory.access))
        .await;
    assert_eq!((status, error_code(&body)), (StatusCode::NOT_FOUND, "not_found"), "{body}");

    // The conversation's device listing carries the credential too.
    let (status, conversation) = app
        .post(
            &format!("/v1/organizations/{org}/workspaces/{workspace}/conversations"),
            json!({ "kind": "group", "member_user_ids": [bob.user_id] }),
            Some(&alice.access),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{conversation}");
    let id = conversation["id"].as_str().expect("id");
    let (_, devices) = app.get(&format!("/v1/organizations/{org}/conversations/{id}/devices"), Some(&bob.access)).await;
    let listed: Vec<(Value, Value)> = devices
        .as_array()
        .expect("devices")
        .iter()
        .map(|d| (d["device_id"].clone(), d["credential"].clone()))
        .collect();
    assert!(listed.contains(&(json!(alice.device_id), json!(b64(&identity.credential(&alice))))), "{devices}");
    assert!(listed.contains(&(json!(bob.device_id), Value::Null)), "{devices}");
}

#[tokio::test]
async fn a_sealed_identity_reaches_only_the_other_device_of_the_same_account_once() {
    let app = TestApp::start().await;
    let laptop = app.person("alice@example.org").await;
    let phone = app.another_device(&laptop, "alice@example.org").await;
    let bob = app.person("bob@example.org").await;
    let sealed = json!({ "sealed": b64(&[7u8; 80]) });
    let path = |device: &Person| format!("/v1/devices/{}/identity-transfer", device.device_id);

    // Not to oneself, not to someone else's device; sizes are checked.
    for (target, who) in [(&laptop, &laptop), (&bob, &laptop), (&laptop, &bob)] {
        let (status, body) = app.put(&path(target), sealed.clone(), &who.access).await;
        assert_eq!((status, error_code(&body)), (StatusCode::NOT_FOUND, "not_found"), "{body}");
    }
    let (status, body) = app.put(&path(&phone), json!({ "sealed": b64(&[7u8; 10]) }), &laptop.access).await;
    assert_eq!((status, error_code(&body)), (StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"), "{body}");

    let (status, body) = app.put(&path(&phone), sealed.clone(), &laptop.access).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    // Only the phone can take it; Bob and the laptop find nothing waiting for them.
    for who in [&bob, &laptop] {
        let (status, body) = app.post("/v1/identity/transfer", json!({}), Some(&who.access)).await;
        assert_eq!((status, error_code(&body)), (StatusCode::NOT_FOUND, "not_found"), "{body}");
    }
    let (status, body) = app.post("/v1/identity/transfer", json!({}), Some(&phone.access)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        (body["sealed"].clone(), body["from_device_id"].clone()),
        (json!(b64(&[7u8; 80])), json!(laptop.device_id))
    );
    let (status, _) = app.post("/v1/identity/transfer", json!({}), Some(&phone.access)).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "handed out once");

    // An expired transfer is not handed out (and is gone afterwards).
    app.put(&path(&phone), sealed, &laptop.access).await;
    sqlx::query("UPDATE identity_transfers SET created_at = now() - interval '1 hour', expires_at = now() - interval '1 minute'")
        .execute(&app.db.owner)
        .await
        .expect("age the transfer");
    let (status, _) = app.post("/v1/identity/transfer", json!({}), Some(&phone.access)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(app.count("SELECT count(*) FROM identity_transfers").await, 0);
}
