//! Reactions, pins, attachments, typing and presence through the HTTP API and the WebSocket,
//! across two replicas. (Reaction and attachment bytes are random here: the server cannot tell;
//! the SDK's tests encrypt for real.)

use crate::messaging::{Chat, group};
use crate::realtime::{Socket, connect, next_frame, next_of};
use crate::support::{Person, TestApp, b64, error_code, rand32};
use futures::SinkExt;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message as Ws;
use uuid::Uuid;

async fn ready_chat<'a>(app: &'a TestApp, alice: &Person, bob: &Person) -> Chat<'a> {
    let chat = group(app, alice, &[bob]).await;
    assert_eq!(chat.rotate(alice, 1).await.0, StatusCode::CREATED);
    chat
}

fn reaction(generation: i32, tag: [u8; 32]) -> Value {
    json!({ "key_generation": generation, "nonce": b64(&[3u8; 12]), "ciphertext": b64(&[5u8; 20]), "value_tag": b64(&tag) })
}

async fn send_frame(socket: &mut Socket, frame: Value) {
    socket.send(Ws::Text(frame.to_string().into())).await.expect("send frame");
}

/// The next `presence` frame about `user`.
async fn presence_of(socket: &mut Socket, user: Uuid) -> Value {
    loop {
        let frame = next_of(socket, "presence").await;
        if frame["presence"]["user_id"] == json!(user) {
            return frame;
        }
    }
}

/// Asserts that no frame of `kind` arrives within `wait`.
async fn none_of(socket: &mut Socket, kind: &str, wait: Duration) {
    let deadline = tokio::time::Instant::now() + wait;
    while let Ok(frame) = tokio::time::timeout_at(deadline, next_frame(socket)).await {
        assert_ne!(frame["type"], kind, "unexpected {frame}");
    }
}

#[tokio::test]
async fn reactions_and_pins_round_trip_between_two_users_on_two_replicas() {
    let app = TestApp::start().await;
    let replica = app.replica().await;
    let alice = app.person("alice@example.org").await;
    let bob = app.person("bob@example.org").await;
    let chat = ready_chat(&app, &alice, &bob).await;
    let (status, message) = chat.send(&alice, 1, &[1u8; 40]).await;
    assert_eq!(status, StatusCode::CREATED);
    let message_id = message["id"].as_str().expect("id").to_owned();
    let mut alice_socket = connect(&app.base, &alice).await;

    // Bob reacts through the other replica; Alice's socket hears it.
    let tag = rand32();
    let reactions = chat.path(&format!("/messages/{message_id}/reactions"));
    let response = app
        .http
        .post(format!("{}{reactions}", replica.base))
        .bearer_auth(&bob.access)
        .json(&reaction(1, tag))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::CREATED);
    let stored: Value = response.json().await.expect("json");
    assert_eq!(stored["user_id"], json!(bob.user_id));
    let frame = next_of(&mut alice_socket, "reaction_added").await;
    assert_eq!(frame["reaction"], stored);

    // One reaction per user and value; another value, or another user, is fine.
    let (status, body) = app.post(&reactions, reaction(1, tag), Some(&bob.access)).await;
    assert_eq!((status, error_code(&body)), (StatusCode::CONFLICT, "reaction_exists"));
    assert_eq!(app.post(&reactions, reaction(1, rand32()), Some(&bob.access)).await.0, StatusCode::CREATED);
    assert_eq!(app.post(&reactions, reaction(1, tag), Some(&alice.access)).await.0, StatusCode::CREATED);
    let (status, body) = app.post(&reactions, reaction(2, rand32()), Some(&bob.access)).await;
    assert_eq!((status, error_code(&body)), (StatusCode::CONFLICT, "unknown_generation"));
    let (status, list) = app.get(&reactions, Some(&alice.access)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list.as_array().map(Vec::len), Some(3));

    // Removed by its tag, only the caller's own.
    let one = format!("{reactions}/{}", b64(&tag));
    assert_eq!(app.delete(&one, &bob.access).await.0, StatusCode::NO_CONTENT);
    assert_eq!(app.delete(&one, &bob.access).await.0, StatusCode::NOT_FOUND);
    let frame = next_of(&mut alice_socket, "reaction_removed").await;
    assert_eq!(frame["user_id"], json!(bob.user_id));
    assert_eq!(frame["value_tag"], json!(b64(&tag)));

    // Pins: any member of a group; once per message; listed; unpinned.
    let pins = chat.path("/pins");
    let response = app
        .http
        .post(format!("{}{pins}", replica.base))
        .bearer_auth(&bob.access)
        .json(&json!({ "message_id": message_id }))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::CREATED);
    let frame = next_of(&mut alice_socket, "message_pinned").await;
    assert_eq!(frame["pin"]["message_id"], json!(message_id));
    assert_eq!(frame["pin"]["pinned_by"], json!(bob.user_id));
    let (status, body) = app.post(&pins, json!({ "message_id": message_id }), Some(&alice.access)).await;
    assert_eq!((status, error_code(&body)), (StatusCode::CONFLICT, "already_pinned"));
    let (status, list) = app.get(&pins, Some(&alice.access)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list.as_array().map(Vec::len), Some(1));
    assert_eq!(app.delete(&format!("{pins}/{message_id}"), &alice.access).await.0, StatusCode::NO_CONTENT);
    let frame = next_of(&mut alice_socket, "message_unpinned").await;
    assert_eq!(frame["message_id"], json!(message_id));

    // A stranger sees nothing; a deleted message takes no reaction.
    let mallory = app.person("mallory@example.org").await;
    assert_eq!(app.get(&reactions, Some(&mallory.access)).await.0, StatusCode::NOT_FOUND);
    assert_eq!(
        app.delete(&chat.path(&format!("/messages/{message_id}")), &alice.access).await.0,
        StatusCode::NO_CONTENT
    );
    let (status, body) = app.post(&reactions, reaction(1, rand32()), Some(&bob.access)).await;
    assert_eq!((status, error_code(&body)), (StatusCode::CONFLICT, "message_deleted"));
}

#[tokio::test]
async fn in_a_channel_only_admins_pin() {
    let app = TestApp::start().await;
    let alice = app.person("alice@example.org").await;
    let bob = app.person("bob@example.org").await;
    let (org, workspace) = app.organization("chan", &[&alice, &bob]).await;
    let (status, conversation) = app
        .post(
            &format!("/v1/organizations/{org}/workspaces/{workspace}/conversations"),
            json!({ "kind": "channel", "name": "news", "member_user_ids": [bob.user_id] }),
            Some(&alice.access),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{conversation}");
    let chat =
        Chat { app: &app, org, conversation: conversation["id"].as_str().and_then(|s| s.parse().ok()).expect("id") };
    assert_eq!(chat.rotate(&alice, 1).await.0, StatusCode::CREATED);
    let (_, message) = chat.send(&bob, 1, &[1u8; 40]).await;
    let (status, body) = app.post(&chat.path("/pins"), json!({ "message_id": message["id"] }), Some(&bob.access)).await;
    assert_eq!((status, error_code(&body)), (StatusCode::FORBIDDEN, "insufficient_role"));
    let (status, _) = app.post(&chat.path("/pins"), json!({ "message_id": message["id"] }), Some(&alice.access)).await;
    assert_eq!(status, StatusCode::CREATED);
}

struct Files {
    dir: std::path::PathBuf,
}

impl Files {
    fn new() -> Self {
        Self { dir: std::env::temp_dir().join(format!("conclave-test-attachments-{}", Uuid::new_v4().simple())) }
    }

    fn blobs(&self) -> Vec<std::path::PathBuf> {
        std::fs::read_dir(self.dir.join("blobs"))
            .map(|entries| entries.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default()
    }

    fn staged(&self) -> usize {
        std::fs::read_dir(self.dir.join("staging")).map(|entries| entries.count()).unwrap_or(0)
    }
}

async fn upload(app: &TestApp, chat: &Chat<'_>, by: &Person, data: &[u8]) -> (StatusCode, Value) {
    let hash = hex::encode(Sha256::digest(data));
    let url = app.url(&chat.path(&format!("/attachments?size={}&sha256={hash}", data.len())));
    crate::support::exchange(app.http.post(url).bearer_auth(&by.access).body(data.to_vec())).await
}

async fn download(app: &TestApp, chat: &Chat<'_>, by: &Person, id: &str) -> (StatusCode, Vec<u8>) {
    let url = app.url(&chat.path(&format!("/attachments/{id}")));
    let response = app.http.get(url).bearer_auth(&by.access).send().await.expect("download");
    let status = response.status();
    (status, response.bytes().await.expect("body").to_vec())
}

fn random_bytes(n: usize) -> Vec<u8> {
    let mut data = Vec::with_capacity(n);
    while data.len() < n {
        data.extend_from_slice(&rand32());
    }
    data.truncate(n);
    data
}

#[tokio::test]
async fn attachments_stream_round_trip_respect_the_quota_and_are_collected() {
    let files = Files::new();
    let dir = files.dir.to_str().expect("utf-8").to_owned();
    let app = TestApp::start_with(&[
        "--rate-limit-factor",
        "1000",
        "--attachments-dir",
        &dir,
        "--attachment-gc-ms",
        "200",
        "--attachment-grace-secs",
        "2",
        "--attachment-max-bytes",
        "8000000",
    ])
    .await;
    let alice = app.person("alice@example.org").await;
    let bob = app.person("bob@example.org").await;
    let chat = ready_chat(&app, &alice, &bob).await;

    // Several megabytes, byte for byte, through a message.
    let data = random_bytes(5 * 1024 * 1024 + 123);
    let (status, attachment) = upload(&app, &chat, &alice, &data).await;
    assert_eq!(status, StatusCode::CREATED, "{attachment}");
    assert_eq!(attachment["status"], "stored");
    assert_eq!(attachment["content_sha256"], json!(hex::encode(Sha256::digest(&data))));
    let id = attachment["id"].as_str().expect("id").to_owned();
    // Before it is sent, only the uploader can fetch it.
    assert_eq!(download(&app, &chat, &bob, &id).await.0, StatusCode::NOT_FOUND);
    let mut body = chat.message(&alice, 1, Uuid::now_v7(), &[1u8; 60]);
    body["attachment_ids"] = json!([id]);
    let (status, message) = app.post(&chat.path("/messages"), body.clone(), Some(&alice.access)).await;
    assert_eq!(status, StatusCode::CREATED, "{message}");
    let (status, downloaded) = download(&app, &chat, &bob, &id).await;
    assert_eq!(status, StatusCode::OK);
    assert!(downloaded == data, "the download is the upload, byte for byte");
    // An attachment goes with one message only.
    body["client_message_id"] = json!(Uuid::now_v7());
    let mut again = chat.message(&alice, 1, Uuid::now_v7(), &[1u8; 60]);
    again["attachment_ids"] = json!([id]);
    let (status, err) = app.post(&chat.path("/messages"), again, Some(&alice.access)).await;
    assert_eq!((status, error_code(&err)), (StatusCode::UNPROCESSABLE_ENTITY, "unknown_attachment"));

    // A non-member cannot download it.
    let mallory = app.person("mallory@example.org").await;
    assert_eq!(download(&app, &chat, &mallory, &id).await.0, StatusCode::NOT_FOUND);

    // A wrong hash or size is refused and leaves nothing behind.
    let small = random_bytes(1000);
    let url = app.url(&chat.path(&format!("/attachments?size=1000&sha256={}", hex::encode([0u8; 32]))));
    let (status, err) =
        crate::support::exchange(app.http.post(url).bearer_auth(&alice.access).body(small.clone())).await;
    assert_eq!((status, error_code(&err)), (StatusCode::UNPROCESSABLE_ENTITY, "hash_mismatch"));
    let url = app.url(&chat.path(&format!("/attachments?size=999&sha256={}", hex::encode(Sha256::digest(&small)))));
    let (status, err) =
        crate::support::exchange(app.http.post(url).bearer_auth(&alice.access).body(small.clone())).await;
    assert_eq!((status, error_code(&err)), (StatusCode::UNPROCESSABLE_ENTITY, "size_mismatch"));
    let (status, err) = upload(&app, &chat, &alice, &random_bytes(8_000_001)).await;
    assert_eq!((status, error_code(&err)), (StatusCode::PAYLOAD_TOO_LARGE, "attachment_too_large"));
    assert_eq!(files.blobs().len(), 1);
    assert_eq!(files.staged(), 0);

    // The quota: what is used counts; an upload that does not fit is refused and stores nothing.
    let used: i64 = sqlx::query_scalar("SELECT attachment_bytes_used FROM organizations WHERE id = $1")
        .bind(chat.org)
        .fetch_one(&app.db.owner)
        .await
        .expect("used");
    assert_eq!(used, data.len() as i64);
    sqlx::query("UPDATE organizations SET attachment_quota_bytes = $2 WHERE id = $1")
        .bind(chat.org)
        .bind(used + 1500)
        .execute(&app.db.owner)
        .await
        .expect("quota");
    let (status, err) = upload(&app, &chat, &bob, &random_bytes(2000)).await;
    assert_eq!((status, error_code(&err)), (StatusCode::PAYLOAD_TOO_LARGE, "attachment_quota_exceeded"), "{err}");
    assert!(err["error"]["message"].as_str().is_some_and(|m| m.contains("quota")));
    assert_eq!(app.count("SELECT count(*) FROM message_attachments").await, 1);
    assert_eq!(files.blobs().len(), 1);
    assert_eq!(files.staged(), 0);

    // Never sent: collected after the grace period. Deleted message: collected, quota back.
    let (status, orphan) = upload(&app, &chat, &bob, &random_bytes(1000)).await;
    assert_eq!(status, StatusCode::CREATED, "{orphan}");
    assert_eq!(files.blobs().len(), 2);
    let message_id = message["id"].as_str().expect("id");
    assert_eq!(
        app.delete(&chat.path(&format!("/messages/{message_id}")), &alice.access).await.0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(download(&app, &chat, &bob, &id).await.0, StatusCode::NOT_FOUND);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let rows = app.count("SELECT count(*) FROM message_attachments").await;
        if rows == 0 && files.blobs().is_empty() {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "not collected: {rows} rows, {:?}", files.blobs());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let used: i64 = sqlx::query_scalar("SELECT attachment_bytes_used FROM organizations WHERE id = $1")
        .bind(chat.org)
        .fetch_one(&app.db.owner)
        .await
        .expect("used");
    assert_eq!(used, 0);
    let _ = std::fs::remove_dir_all(&files.dir);
}

#[tokio::test]
async fn typing_and_presence_reach_members_and_nobody_else() {
    let app = TestApp::start().await;
    let replica = app.replica().await;
    let alice = app.person("alice@example.org").await;
    let bob = app.person("bob@example.org").await;
    let carol = app.person("carol@example.org").await;
    let chat = ready_chat(&app, &alice, &bob).await;
    // Carol is in the organization but not in the conversation.
    sqlx::query("INSERT INTO organization_memberships (organization_id, user_id, role) VALUES ($1, $2, 'member')")
        .bind(chat.org)
        .bind(carol.user_id)
        .execute(&app.db.owner)
        .await
        .expect("membership");
    let mut bob_socket = connect(&replica.base, &bob).await;
    let mut carol_socket = connect(&app.base, &carol).await;

    let mut alice_socket = connect(&app.base, &alice).await;
    let frame = presence_of(&mut bob_socket, alice.user_id).await;
    assert_eq!(frame["presence"]["status"], "online");

    send_frame(&mut alice_socket, json!({ "type": "typing", "conversation_id": chat.conversation })).await;
    let frame = next_of(&mut bob_socket, "typing").await;
    assert_eq!(frame["user_id"], json!(alice.user_id));
    assert_eq!(frame["conversation_id"], json!(chat.conversation));

    send_frame(&mut alice_socket, json!({ "type": "presence", "status": "idle" })).await;
    let frame = presence_of(&mut bob_socket, alice.user_id).await;
    assert_eq!(frame["presence"]["status"], "idle");

    // Presence by request: members of the organization (and contacts) only.
    let mallory = app.person("mallory@example.org").await;
    let path = format!("/v1/organizations/{}/presence?user_ids={},{}", chat.org, alice.user_id, mallory.user_id);
    let (status, answer) = app.get(&path, Some(&carol.access)).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer.as_array().map(Vec::len), Some(1));
    assert_eq!(answer[0]["status"], "idle");
    assert!(answer[0]["last_seen_at"].is_string());
    assert_eq!(app.get(&path, Some(&mallory.access)).await.0, StatusCode::NOT_FOUND);

    drop(alice_socket);
    let frame = presence_of(&mut bob_socket, alice.user_id).await;
    assert_eq!(frame["presence"]["status"], "offline");

    // Carol shares no conversation with Alice: she heard none of it.
    none_of(&mut carol_socket, "typing", Duration::from_millis(300)).await;
    let mut seen = Vec::new();
    while let Ok(frame) = tokio::time::timeout(Duration::from_millis(200), next_frame(&mut carol_socket)).await {
        seen.push(frame);
    }
    let about_alice =
        |f: &Value| f["presence"]["user_id"] == json!(alice.user_id) || f["user_id"] == json!(alice.user_id);
    assert!(!seen.iter().any(about_alice), "{seen:?}");
}
