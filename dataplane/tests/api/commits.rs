//! The MLS delivery service's ordering (protocol v2), with opaque bytes: one commit per epoch, the
//! Welcome to the devices it names only, catch-up in epoch order, the current group info. The SDK's
//! tests drive the same endpoints with real MLS groups.

use crate::support::{TestApp, b64, error_code};
use reqwest::StatusCode;
use serde_json::json;

#[tokio::test]
async fn the_first_commit_of_an_epoch_wins_and_the_welcome_reaches_only_its_devices() {
    let app = TestApp::start().await;
    let alice = app.person("alice@example.org").await;
    let bob = app.person("bob@example.org").await;
    let carol = app.person("carol@example.org").await;
    let (org, workspace) = app.organization("ds", &[&alice, &bob, &carol]).await;
    let (status, conversation) = app
        .post(
            &format!("/v1/organizations/{org}/workspaces/{workspace}/conversations"),
            json!({ "kind": "group", "member_user_ids": [bob.user_id] }),
            Some(&alice.access),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{conversation}");
    let path = |rest: &str| {
        format!("/v1/organizations/{org}/conversations/{}{rest}", conversation["id"].as_str().expect("id"))
    };
    let commit = |epoch: i32, tag: u8, welcomed: Vec<uuid::Uuid>| {
        json!({
            "epoch": epoch,
            "commit": b64(&[tag; 40]),
            "group_info": b64(&[tag ^ 0xff; 40]),
            "welcome": if welcomed.is_empty() { None } else { Some(b64(&[tag; 60])) },
            "welcomed_devices": welcomed,
        })
    };

    // Carol is not a member: her device cannot be welcomed.
    let (status, body) = app.post(&path("/commits"), commit(0, 1, vec![carol.device_id]), Some(&alice.access)).await;
    assert_eq!((status, error_code(&body)), (StatusCode::UNPROCESSABLE_ENTITY, "wrap_set_mismatch"), "{body}");
    assert_eq!(body["error"]["details"]["unexpected"], json!([carol.device_id]));
    // A Welcome without its devices, or devices without a Welcome.
    let mut lonely = commit(0, 1, vec![]);
    lonely["welcome"] = json!(b64(&[1; 60]));
    let (status, body) = app.post(&path("/commits"), lonely, Some(&alice.access)).await;
    assert_eq!((status, error_code(&body)), (StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"), "{body}");

    let (status, body) = app.post(&path("/commits"), commit(0, 1, vec![bob.device_id]), Some(&alice.access)).await;
    assert_eq!((status, body.clone()), (StatusCode::CREATED, json!({ "epoch": 1 })), "{body}");
    let (status, welcome) = app.get(&path("/welcome"), Some(&bob.access)).await;
    assert_eq!(status, StatusCode::OK, "{welcome}");
    assert_eq!(welcome, json!({ "epoch": 1, "welcome": b64(&[1; 60]) }));
    let (status, body) = app.get(&path("/welcome"), Some(&alice.access)).await;
    assert_eq!((status, error_code(&body)), (StatusCode::NOT_FOUND, "not_found"), "the committer was not welcomed");
    let (status, body) = app.get(&path("/welcome"), Some(&carol.access)).await;
    assert_eq!((status, error_code(&body)), (StatusCode::NOT_FOUND, "not_found"), "nor is a non-member");

    // Two commits made in epoch 1: the first wins, the second learns the current epoch.
    let (status, _) = app.post(&path("/commits"), commit(1, 2, vec![]), Some(&bob.access)).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, body) = app.post(&path("/commits"), commit(1, 3, vec![]), Some(&alice.access)).await;
    assert_eq!((status, error_code(&body)), (StatusCode::CONFLICT, "stale_generation"), "{body}");
    assert_eq!(body["error"]["details"], json!({ "current_key_generation": 2 }));
    let (status, body) = app.post(&path("/commits"), commit(5, 3, vec![]), Some(&alice.access)).await;
    assert_eq!((status, error_code(&body)), (StatusCode::UNPROCESSABLE_ENTITY, "not_next_generation"), "{body}");

    let (status, commits) = app.get(&path("/commits?after=0"), Some(&alice.access)).await;
    assert_eq!(status, StatusCode::OK, "{commits}");
    let epochs: Vec<(i64, String)> = commits
        .as_array()
        .expect("list")
        .iter()
        .map(|c| (c["epoch"].as_i64().expect("epoch"), c["commit"].as_str().expect("bytes").to_owned()))
        .collect();
    assert_eq!(epochs, vec![(1, b64(&[1; 40])), (2, b64(&[2; 40]))]);
    assert_eq!(commits[1]["committed_by_device_id"], json!(bob.device_id));
    let (_, later) = app.get(&path("/commits?after=1"), Some(&alice.access)).await;
    assert_eq!(later.as_array().map(Vec::len), Some(1));
    let (status, info) = app.get(&path("/group-info"), Some(&bob.access)).await;
    assert_eq!((status, info), (StatusCode::OK, json!({ "epoch": 2, "group_info": b64(&[2 ^ 0xff; 40]) })));
    assert_eq!(
        app.count("SELECT count(*) FROM conversation_encryption_keys WHERE reason = 'initial' AND welcome IS NOT NULL")
            .await,
        1
    );
}
