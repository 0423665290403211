//! Conversations and their MLS epochs through the HTTP API: a first commit before any message, a
//! commit required when the membership changes or a device is revoked, and other tenants'
//! conversations answering 404. `Chat` and `group` are the helpers the other features' tests
//! build conversations with. (MLS messages are opaque bytes behind their clear framing here: the
//! server cannot tell, which is the point; the SDK's own tests run real MLS groups.)

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

    /// Opens epoch `generation` with a commit made in the one before it (opaque behind its MLS
    /// framing), welcoming every active device of the members but the committer's, as the SDK's
    /// commits adding them do.
    pub async fn rotate(&self, by: &Person, generation: i32) -> (StatusCode, Value) {
        let (status, devices) = self.app.get(&self.path("/devices"), Some(&by.access)).await;
        assert_eq!(status, StatusCode::OK, "{devices}");
        let welcomed: Vec<Value> = devices
            .as_array()
            .expect("devices")
            .iter()
            .filter(|d| d["device_id"] != json!(by.device_id))
            .map(|d| d["device_id"].clone())
            .collect();
        self.app.post(&self.path("/commits"), self.commit(generation - 1, welcomed), Some(&by.access)).await
    }

    /// A commit made in `epoch`, welcoming `welcomed` (no Welcome when empty).
    pub fn commit(&self, epoch: i32, welcomed: Vec<Value>) -> Value {
        let group = self.conversation.as_bytes();
        json!({
            "epoch": epoch,
            "commit": b64(&mls_wire::fake::private_message(group, epoch as u64, mls_wire::content_type::COMMIT, &rand32())),
            "group_info": b64(&mls_wire::fake::group_info(group, epoch as u64 + 1, &rand32())),
            "welcome": if welcomed.is_empty() { None } else { Some(b64(&mls_wire::fake::welcome(&rand32()))) },
            "welcomed_devices": welcomed,
        })
    }

    /// Why epoch `generation` was opened, as recorded.
    pub async fn reason(&self, generation: i32) -> String {
        sqlx::query_scalar(
            "SELECT reason FROM conversation_encryption_keys WHERE conversation_id = $1 AND generation = $2",
        )
        .bind(self.conversation)
        .bind(generation)
        .fetch_one(&self.app.db.owner)
        .await
        .expect("reason")
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
async fn a_new_conversation_needs_its_first_commit_before_any_message() {
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

    // A commit made in an epoch the conversation is not at is refused, saying where it is.
    let (status, body) = chat.rotate(&alice, 2).await;
    assert_eq!((status, error_code(&body)), (StatusCode::UNPROCESSABLE_ENTITY, "not_next_generation"));
    assert_eq!(body["error"]["details"]["current_key_generation"], 0);
    let (status, body) = chat.rotate(&alice, 1).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["epoch"], 1);
    assert_eq!(chat.reason(1).await, "initial");

    let (status, message) = chat.send(&alice, 1, &[1u8; 40]).await;
    assert_eq!(status, StatusCode::CREATED, "{message}");
    assert_eq!(message["seq"], 1);
    // The Welcome goes to Bob's device only.
    let (status, welcome) = app.get(&chat.path("/welcome"), Some(&bob.access)).await;
    assert_eq!((status, welcome["epoch"].as_i64()), (StatusCode::OK, Some(1)), "{welcome}");
    assert_eq!(app.get(&chat.path("/welcome"), Some(&alice.access)).await.0, StatusCode::NOT_FOUND);
    assert_eq!(app.count("SELECT count(*) FROM member_key_wraps").await, 1);
}

#[tokio::test]
async fn removing_a_member_requires_a_commit_that_leaves_them_out() {
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

    // The epoch is refused from now on, until a commit lands.
    let (status, body) = chat.send(&bob, 1, &[2u8; 30]).await;
    assert_eq!((status, error_code(&body)), (StatusCode::CONFLICT, "rotation_required"));
    // Carol's device is no longer listed, and welcoming it is refused.
    let (_, devices) = app.get(&chat.path("/devices"), Some(&bob.access)).await;
    assert!(devices.as_array().expect("devices").iter().all(|d| d["user_id"] != json!(carol.user_id)));
    let (status, body) =
        app.post(&chat.path("/commits"), chat.commit(1, vec![json!(carol.device_id)]), Some(&bob.access)).await;
    assert_eq!((status, error_code(&body)), (StatusCode::UNPROCESSABLE_ENTITY, "wrap_set_mismatch"));
    assert_eq!(body["error"]["details"]["unexpected"], json!([carol.device_id]));
    let (status, body) = app.post(&chat.path("/commits"), chat.commit(1, vec![]), Some(&bob.access)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(chat.reason(2).await, "member_removed");
    assert_eq!(chat.send(&bob, 2, &[2u8; 30]).await.0, StatusCode::CREATED);
    let (status, body) = chat.send(&alice, 1, &[2u8; 30]).await;
    assert_eq!((status, error_code(&body)), (StatusCode::CONFLICT, "stale_generation"));

    // Carol's device is named in no later epoch, and the conversation is closed to her.
    let named: i64 =
        sqlx::query_scalar("SELECT count(*) FROM member_key_wraps WHERE recipient_user_id = $1 AND generation = 2")
            .bind(carol.user_id)
            .fetch_one(&app.db.owner)
            .await
            .expect("count");
    assert_eq!(named, 0);
    assert_eq!(app.get(&chat.path("/messages"), Some(&carol.access)).await.0, StatusCode::NOT_FOUND);
    assert_eq!(app.get(&chat.path("/commits"), Some(&carol.access)).await.0, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn revoking_a_device_requires_a_new_epoch() {
    let app = TestApp::start().await;
    let alice = app.person("alice@example.org").await;
    let bob = app.person("bob@example.org").await;
    let chat = group(&app, &alice, &[&bob]).await;
    chat.rotate(&alice, 1).await;
    // A later commit (Alice updating her own leaf) welcomes nobody: Bob's device was added in
    // epoch 1 and is still in the group in epoch 2.
    let (status, body) = app.post(&chat.path("/commits"), chat.commit(1, vec![]), Some(&alice.access)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, _) = app.delete(&format!("/v1/devices/{}", bob.device_id), &bob.access).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = chat.send(&alice, 2, &[1u8; 30]).await;
    assert_eq!((status, error_code(&body)), (StatusCode::CONFLICT, "rotation_required"));
    let (_, devices) = app.get(&chat.path("/devices"), Some(&alice.access)).await;
    assert_eq!(devices.as_array().map(Vec::len), Some(1), "only Alice's device remains");
    let (status, body) = chat.rotate(&alice, 3).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(chat.reason(3).await, "device_revoked");
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
