//! Reactions (and pinning the message reacted to) between two people on two replicas, through
//! the HTTP API and the WebSocket. (Reaction bytes are random here: the server cannot tell; the
//! SDK's tests encrypt for real.)

use crate::conversations::{Chat, group};
use crate::realtime::{connect, next_of};
use crate::support::{Person, TestApp, b64, error_code, rand32};
use reqwest::StatusCode;
use serde_json::{Value, json};

pub async fn ready_chat<'a>(app: &'a TestApp, alice: &Person, bob: &Person) -> Chat<'a> {
    let chat = group(app, alice, &[bob]).await;
    assert_eq!(chat.rotate(alice, 1).await.0, StatusCode::CREATED);
    chat
}

fn reaction(generation: i32, tag: [u8; 32]) -> Value {
    json!({ "key_generation": generation, "nonce": b64(&[3u8; 12]), "ciphertext": b64(&[5u8; 20]), "value_tag": b64(&tag) })
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
