//! Encrypted attachments: streamed upload and download, quotas, integrity checks and collection.
//! (The bytes are random here: the server cannot tell.)

use crate::conversations::Chat;
use crate::support::{Person, TestApp, error_code, rand32};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::time::Duration;
use uuid::Uuid;

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
    let chat = crate::reactions::ready_chat(&app, &alice, &bob).await;

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
