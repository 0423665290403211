//! Conversations and their key generations through the HTTP API: a first generation before any
//! message, rotations when the membership changes or a device is revoked, and other tenants'
//! conversations answering 404. `Chat` and `group` are the helpers the other features' tests
//! build conversations with. (Content is random bytes here: the server cannot tell, which is the
//! point; the SDK's own tests encrypt for real.)

use crate::support::{Person, TestApp, b64, error_code, rand32};
use conclave_protocol::mls_wire;
use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

pub struct Chat<'a> {
    pub app: &'a TestApp,
    pub org: Uuid,
    pub conversation: Uuid,
}

impl Chat<'_> {
    pub fn path(&self, rest: &str) -> String {
        format!("/v1/organizations/{}/conversations/{}{}", self.org, self.conversation, rest)
    }

    /// Uploads `generation` with a (random) wrap for every device the server lists.
    pub async fn rotate(&self, by: &Person, generation: i32) -> (StatusCode, Value) {
        let (status, devices) = self.app.get(&self.path("/devices"), Some(&by.access)).await;
        assert_eq!(status, StatusCode::OK, "{devices}");
        let wraps: Vec<Value> = devices
            .as_array()
            .expect("devices")
            .iter()
            .map(|d| json!({ "device_id": d["device_id"], "encapsulated_key": b64(&rand32()), "wrapped_key": b64(&[7u8; 48]) }))
            .collect();
        self.app.post(&self.path("/keys"), json!({ "generation": generation, "wraps": wraps }), Some(&by.access)).await
    }

    /// A send whose ciphertext is framed as an MLS application message of this conversation's
    /// group in epoch `generation`, with `body` as the (opaque) encrypted part.
    pub fn message(&self, _by: &Person, generation: i32, client_message_id: Uuid, body: &[u8]) -> Value {
        json!({
            "client_message_id": client_message_id,
            "key_generation": generation,
            "ciphertext": b64(&self.application(generation, body)),
        })
    }

    /// `body` behind the framing of an MLS application message of this group in `generation`.
    pub fn application(&self, generation: i32, body: &[u8]) -> Vec<u8> {
        mls_wire::fake::private_message(
            self.conversation.as_bytes(),
            generation as u64,
            mls_wire::content_type::APPLICATION,
            body,
        )
    }

    pub async fn send(&self, by: &Person, generation: i32, ciphertext: &[u8]) -> (StatusCode, Value) {
        let body = self.message(by, generation, Uuid::now_v7(), ciphertext);
        self.app.post(&self.path("/messages"), body, Some(&by.access)).await
    }
}

pub async fn group<'a>(app: &'a TestApp, owner: &Person, members: &[&Person]) -> Chat<'a> {
    let mut everyone = vec![owner];
    everyone.extend_from_slice(members);
    let (org, workspace) =
        app.organization(&format!("org-{}", &Uuid::new_v4().simple().to_string()[..8]), &everyone).await;
    let ids: Vec<Uuid> = members.iter().map(|m| m.user_id).collect();
    let (status, conversation) = app
        .post(
            &format!("/v1/organizations/{org}/workspaces/{workspace}/conversations"),
            json!({ "kind": "group", "member_user_ids": ids }),
            Some(&owner.access),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{conversation}");
    let id = conversation["id"].as_str().and_then(|s| s.parse().ok()).expect("id");
    Chat { app, org, conversation: id }
}

#[tokio::test]
async fn a_new_conversation_needs_its_first_generation_before_any_message() {
    let app = TestApp::start().await;
    let alice = app.person("alice@example.org").await;
    let bob = app.person("bob@example.org").await;
    let chat = group(&app, &alice, &[&bob]).await;
    let (status, conversation) = app.get(&chat.path(""), Some(&bob.access)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(conversation["rotation_required"], true);
    assert_eq!(conversation["current_key_generation"], 0);
    assert_eq!(conversation["members"].as_array().map(Vec::len), Some(2));

    let (status, body) = chat.send(&alice, 1, &[1u8; 40]).await;
    assert_eq!((status, error_code(&body)), (StatusCode::CONFLICT, "rotation_required"));

    // A generation that leaves out Bob's device is refused, naming it.
    let (status, body) = app
        .post(
            &chat.path("/keys"),
            json!({ "generation": 1, "wraps": [{ "device_id": alice.device_id, "encapsulated_key": b64(&rand32()), "wrapped_key": b64(&[1u8; 48]) }] }),
            Some(&alice.access),
        )
        .await;
    assert_eq!((status, error_code(&body)), (StatusCode::UNPROCESSABLE_ENTITY, "wrap_set_mismatch"));
    assert_eq!(body["error"]["details"]["missing"], json!([bob.device_id]));
    let (status, body) = chat.rotate(&alice, 2).await;
    assert_eq!((status, error_code(&body)), (StatusCode::UNPROCESSABLE_ENTITY, "not_next_generation"));
    assert_eq!(body["error"]["details"]["current_key_generation"], 0);
    let (status, body) = chat.rotate(&alice, 1).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["reason"], "initial");

    let (status, message) = chat.send(&alice, 1, &[1u8; 40]).await;
    assert_eq!(status, StatusCode::CREATED, "{message}");
    assert_eq!(message["seq"], 1);
    // Each device fetches only its own wrap.
    let (status, wraps) = app.get(&chat.path("/keys"), Some(&bob.access)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(wraps.as_array().map(Vec::len), Some(1));
    assert_eq!(app.count("SELECT count(*) FROM member_key_wraps").await, 2);
}

#[tokio::test]
async fn removing_a_member_forces_a_rotation_that_leaves_them_out() {
    let app = TestApp::start().await;
    let alice = app.person("alice@example.org").await;
    let bob = app.person("bob@example.org").await;
    let carol = app.person("carol@example.org").await;
    let chat = group(&app, &alice, &[&bob, &carol]).await;
    chat.rotate(&alice, 1).await;
    assert_eq!(chat.send(&alice, 1, &[1u8; 30]).await.0, StatusCode::CREATED);

    let (status, _) = app.delete(&chat.path(&format!("/members/{}", carol.user_id)), &bob.access).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "a plain member cannot remove others");
    let (status, _) = app.delete(&chat.path(&format!("/members/{}", carol.user_id)), &alice.access).await;
    assert_eq!(status, StatusCode::NO_CONTENT);

    // The old generation is refused from now on.
    let (status, body) = chat.send(&bob, 1, &[2u8; 30]).await;
    assert_eq!((status, error_code(&body)), (StatusCode::CONFLICT, "rotation_required"));
    // Carol's device is no longer among those to wrap for, and including it is refused.
    let (_, devices) = app.get(&chat.path("/devices"), Some(&bob.access)).await;
    assert!(devices.as_array().expect("devices").iter().all(|d| d["user_id"] != json!(carol.user_id)));
    let mut wraps: Vec<Value> = devices
        .as_array()
        .expect("devices")
        .iter()
        .map(|d| json!({ "device_id": d["device_id"], "encapsulated_key": b64(&rand32()), "wrapped_key": b64(&[3u8; 48]) }))
        .collect();
    wraps.push(
        json!({ "device_id": carol.device_id, "encapsulated_key": b64(&rand32()), "wrapped_key": b64(&[3u8; 48]) }),
    );
    let (status, body) =
        app.post(&chat.path("/keys"), json!({ "generation": 2, "wraps": wraps }), Some(&bob.access)).await;
    assert_eq!((status, error_code(&body)), (StatusCode::UNPROCESSABLE_ENTITY, "wrap_set_mismatch"));
    assert_eq!(body["error"]["details"]["unexpected"], json!([carol.device_id]));
    let (status, body) = chat.rotate(&bob, 2).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["reason"], "member_removed");
    assert_eq!(chat.send(&bob, 2, &[2u8; 30]).await.0, StatusCode::CREATED);
    let (status, body) = chat.send(&alice, 1, &[2u8; 30]).await;
    assert_eq!((status, error_code(&body)), (StatusCode::CONFLICT, "stale_generation"));

    // Carol has no wrap of generation 2 and cannot read the conversation any more.
    let wraps: i64 =
        sqlx::query_scalar("SELECT count(*) FROM member_key_wraps WHERE recipient_user_id = $1 AND generation = 2")
            .bind(carol.user_id)
            .fetch_one(&app.db.owner)
            .await
            .expect("count");
    assert_eq!(wraps, 0);
    assert_eq!(app.get(&chat.path("/messages"), Some(&carol.access)).await.0, StatusCode::NOT_FOUND);
    assert_eq!(app.get(&chat.path("/keys"), Some(&carol.access)).await.0, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn revoking_a_device_requires_a_new_generation() {
    let app = TestApp::start().await;
    let alice = app.person("alice@example.org").await;
    let bob = app.person("bob@example.org").await;
    let chat = group(&app, &alice, &[&bob]).await;
    chat.rotate(&alice, 1).await;
    let (status, _) = app.delete(&format!("/v1/devices/{}", bob.device_id), &bob.access).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = chat.send(&alice, 1, &[1u8; 30]).await;
    assert_eq!((status, error_code(&body)), (StatusCode::CONFLICT, "rotation_required"));
    let (_, devices) = app.get(&chat.path("/devices"), Some(&alice.access)).await;
    assert_eq!(devices.as_array().map(Vec::len), Some(1), "only Alice's device remains");
    let (status, body) = chat.rotate(&alice, 2).await;
    assert_eq!((status, body["reason"].as_str()), (StatusCode::CREATED, Some("device_revoked")));
}

#[tokio::test]
async fn another_organizations_conversation_answers_404() {
    let app = TestApp::start().await;
    let alice = app.person("alice@example.org").await;
    let bob = app.person("bob@example.org").await;
    let mallory = app.person("mallory@example.org").await;
    let chat = group(&app, &alice, &[&bob]).await;
    chat.rotate(&alice, 1).await;
    let (own_org, _) = app.organization("mallory-org", &[&mallory]).await;
    // Mallory is in an organization of her own, not this one: same 404 with either org id.
    for org in [chat.org, own_org] {
        let base = format!("/v1/organizations/{org}/conversations/{}", chat.conversation);
        assert_eq!(app.get(&base, Some(&mallory.access)).await.0, StatusCode::NOT_FOUND);
        assert_eq!(app.get(&format!("{base}/messages"), Some(&mallory.access)).await.0, StatusCode::NOT_FOUND);
        assert_eq!(app.get(&format!("{base}/devices"), Some(&mallory.access)).await.0, StatusCode::NOT_FOUND);
        let (status, _) =
            app.post(&format!("{base}/members"), json!({ "user_id": mallory.user_id }), Some(&mallory.access)).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }
}
