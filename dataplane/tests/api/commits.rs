//! The MLS delivery service's ordering (protocol v2), with opaque bytes: one commit per epoch, the
//! Welcome to the devices it names only, catch-up in epoch order, the current group info. The SDK's
//! tests drive the same endpoints with real MLS groups.

use crate::support::{TestApp, b64, error_code};
use conclave_protocol::mls_wire::{content_type, fake};
use reqwest::StatusCode;
use serde_json::json;
use uuid::Uuid;

/// What the server can read of a commit made in `epoch` of the group of `conversation`: its
/// framing (a private message of content type commit); the rest is opaque to it.
fn fake_commit(conversation: Uuid, epoch: i32, tag: u8) -> Vec<u8> {
    fake::private_message(conversation.as_bytes(), epoch as u64, content_type::COMMIT, &[tag; 40])
}

fn fake_group_info(conversation: Uuid, epoch: i32, tag: u8) -> Vec<u8> {
    fake::group_info(conversation.as_bytes(), epoch as u64, &[tag ^ 0xff; 40])
}

fn fake_welcome(tag: u8) -> Vec<u8> {
    fake::welcome(&[tag; 60])
}

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
    let group: uuid::Uuid = conversation["id"].as_str().expect("id").parse().expect("uuid");
    let commit = |epoch: i32, tag: u8, welcomed: Vec<uuid::Uuid>| {
        json!({
            "epoch": epoch,
            "commit": b64(&fake_commit(group, epoch, tag)),
            "group_info": b64(&fake_group_info(group, epoch + 1, tag)),
            "welcome": if welcomed.is_empty() { None } else { Some(b64(&fake_welcome(tag))) },
            "welcomed_devices": welcomed,
        })
    };

    // Carol is not a member: her device cannot be welcomed.
    let (status, body) = app.post(&path("/commits"), commit(0, 1, vec![carol.device_id]), Some(&alice.access)).await;
    assert_eq!((status, error_code(&body)), (StatusCode::UNPROCESSABLE_ENTITY, "wrap_set_mismatch"), "{body}");
    assert_eq!(body["error"]["details"]["unexpected"], json!([carol.device_id]));
    // A Welcome without its devices, or devices without a Welcome.
    let mut lonely = commit(0, 1, vec![]);
    lonely["welcome"] = json!(b64(&fake_welcome(1)));
    let (status, body) = app.post(&path("/commits"), lonely, Some(&alice.access)).await;
    assert_eq!((status, error_code(&body)), (StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"), "{body}");

    let (status, body) = app.post(&path("/commits"), commit(0, 1, vec![bob.device_id]), Some(&alice.access)).await;
    assert_eq!((status, body.clone()), (StatusCode::CREATED, json!({ "epoch": 1 })), "{body}");
    let (status, welcome) = app.get(&path("/welcome"), Some(&bob.access)).await;
    assert_eq!(status, StatusCode::OK, "{welcome}");
    assert_eq!(welcome, json!({ "epoch": 1, "welcome": b64(&fake_welcome(1)) }));
    let (status, body) = app.get(&path("/welcome"), Some(&alice.access)).await;
    assert_eq!((status, error_code(&body)), (StatusCode::NOT_FOUND, "not_found"), "the committer was not welcomed");
    let (status, body) = app.get(&path("/welcome"), Some(&carol.access)).await;
    assert_eq!((status, error_code(&body)), (StatusCode::NOT_FOUND, "not_found"), "nor is a non-member");

    // What the server can read must match the upload: a commit of this group made in the epoch
    // named, the group info of the epoch it opens, a Welcome; anything else is refused unread.
    let other_group = Uuid::new_v4();
    let mismatches = [
        ("commit", json!(b64(&fake_commit(other_group, 1, 2)))),
        ("commit", json!(b64(&fake_commit(group, 0, 2)))),
        ("commit", json!(b64(&fake::private_message(group.as_bytes(), 1, content_type::APPLICATION, &[2; 40])))),
        ("commit", json!(b64(&[2; 40]))),
        ("group_info", json!(b64(&fake_group_info(group, 1, 2)))),
        ("group_info", json!(b64(&fake_group_info(other_group, 2, 2)))),
    ];
    for (field, bytes) in mismatches {
        let mut upload = commit(1, 2, vec![]);
        upload[field] = bytes;
        let (status, body) = app.post(&path("/commits"), upload, Some(&bob.access)).await;
        assert_eq!((status, error_code(&body)), (StatusCode::UNPROCESSABLE_ENTITY, "invalid_mls_message"), "{body}");
        assert_eq!(body["error"]["details"]["field"], json!(field));
    }
    let mut upload = commit(1, 2, vec![bob.device_id]);
    upload["welcome"] = json!(b64(&fake_commit(group, 1, 2)));
    let (status, body) = app.post(&path("/commits"), upload, Some(&bob.access)).await;
    assert_eq!((status, error_code(&body)), (StatusCode::UNPROCESSABLE_ENTITY, "invalid_mls_message"), "{body}");

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
    assert_eq!(epochs, vec![(1, b64(&fake_commit(group, 0, 1))), (2, b64(&fake_commit(group, 1, 2)))]);
    assert_eq!(commits[1]["committed_by_device_id"], json!(bob.device_id));
    let (_, later) = app.get(&path("/commits?after=1"), Some(&alice.access)).await;
    assert_eq!(later.as_array().map(Vec::len), Some(1));
    let (status, info) = app.get(&path("/group-info"), Some(&bob.access)).await;
    assert_eq!(
        (status, info),
        (StatusCode::OK, json!({ "epoch": 2, "group_info": b64(&fake_group_info(group, 2, 2)) }))
    );
    assert_eq!(
        app.count("SELECT count(*) FROM conversation_encryption_keys WHERE reason = 'initial' AND welcome IS NOT NULL")
            .await,
        1
    );
}

#[tokio::test]
async fn a_commit_for_a_large_group_fits_in_one_upload() {
    // Adding a device to a group of 1,000 devices: a Welcome and a group info of about 300 KB each
    // (the ratchet tree), about 900 KB of JSON in all, beyond the data plane's general body limit.
    let app = TestApp::start().await;
    let alice = app.person("alice@example.org").await;
    let bob = app.person("bob@example.org").await;
    let (org, workspace) = app.organization("large", &[&alice, &bob]).await;
    let (_, conversation) = app
        .post(
            &format!("/v1/organizations/{org}/workspaces/{workspace}/conversations"),
            json!({ "kind": "group", "member_user_ids": [bob.user_id] }),
            Some(&alice.access),
        )
        .await;
    let group: Uuid = conversation["id"].as_str().expect("id").parse().expect("uuid");
    let tree = vec![7u8; 310_000];
    let upload = json!({
        "epoch": 0,
        "commit": b64(&fake::private_message(group.as_bytes(), 0, content_type::COMMIT, &tree[..85_000])),
        "group_info": b64(&fake::group_info(group.as_bytes(), 1, &tree)),
        "welcome": b64(&fake::welcome(&tree)),
        "welcomed_devices": [bob.device_id],
    });
    assert!(upload.to_string().len() > 900_000);
    let (status, body) =
        app.post(&format!("/v1/organizations/{org}/conversations/{group}/commits"), upload, Some(&alice.access)).await;
    assert_eq!((status, body.clone()), (StatusCode::CREATED, json!({ "epoch": 1 })), "{body}");
}
