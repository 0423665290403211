//! Pins: who may pin in which kind of conversation.

use crate::conversations::Chat;
use crate::support::{TestApp, error_code};
use reqwest::StatusCode;
use serde_json::json;

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
