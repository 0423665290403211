//! Typing and presence: they reach a conversation's members on the WebSocket, and nobody else.

use crate::realtime::{Socket, connect, next_frame, next_of};
use crate::support::TestApp;
use futures::SinkExt;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message as Ws;
use uuid::Uuid;

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
pub async fn none_of(socket: &mut Socket, kind: &str, wait: Duration) {
    let deadline = tokio::time::Instant::now() + wait;
    while let Ok(frame) = tokio::time::timeout_at(deadline, next_frame(socket)).await {
        assert_ne!(frame["type"], kind, "unexpected {frame}");
    }
}

#[tokio::test]
async fn typing_and_presence_reach_members_and_nobody_else() {
    let app = TestApp::start().await;
    let replica = app.replica().await;
    let alice = app.person("alice@example.org").await;
    let bob = app.person("bob@example.org").await;
    let carol = app.person("carol@example.org").await;
    let chat = crate::reactions::ready_chat(&app, &alice, &bob).await;
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

#[tokio::test]
async fn a_socket_closing_while_the_heartbeat_renews_is_not_shown_online_again() {
    use conclave_dataplane::presence;
    use conclave_dataplane::realtime::hub::{Beat, Mailbox};
    use conclave_protocol::rich::PresenceStatus;
    use std::sync::Arc;

    let app = TestApp::start().await;
    let user_id = Uuid::now_v7();
    let beat =
        |mailbox: &Arc<Mailbox>, connection: Uuid| Beat { user_id, connection, idle: false, mailbox: mailbox.clone() };

    // A socket the heartbeat collected, still open: its entry is renewed, its user online.
    let open = Arc::new(Mailbox::new(8));
    let open_connection = Uuid::now_v7();
    open.set_presence(Some((open_connection, false)));
    presence::renew(&app.state, &[beat(&open, open_connection)]).await;
    assert_eq!(presence::read(&app.state, user_id).await.status, PresenceStatus::Online);

    // It closes between the collection and the renewal (it already deleted its entry and told
    // the members it went offline): the renewal must not bring the entry back.
    open.set_presence(None);
    presence::renew(&app.state, &[beat(&open, open_connection)]).await;
    assert_eq!(
        presence::read(&app.state, user_id).await.status,
        PresenceStatus::Offline,
        "a closed socket does not keep its user online for another minute"
    );
}
