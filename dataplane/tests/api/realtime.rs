//! Real-time delivery across two replicas through Redis, with PostgreSQL as the record: resume
//! after a dropped socket, a Redis restart, device revocation.

use crate::conversations::{Chat, group};
use crate::support::{Person, TestApp};
use conclave_dataplane::context::session::{AuthUser, Route};
use conclave_dataplane::messages::batch;
use futures::{SinkExt, StreamExt};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message as Ws;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

pub type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

pub async fn connect(base: &str, person: &Person) -> Socket {
    let url = format!("{}/v1/ws", base.replace("http://", "ws://"));
    let mut request = url.into_client_request().expect("request");
    request.headers_mut().insert("authorization", format!("Bearer {}", person.access).parse().expect("header"));
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await.expect("websocket");
    let ready = next_frame(&mut socket).await;
    assert_eq!(ready["type"], "ready");
    socket
}

/// The next JSON frame (skipping pings), or panics after five seconds.
pub async fn next_frame(socket: &mut Socket) -> Value {
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(5), socket.next()).await.expect("a frame within 5 s");
        match frame.expect("open").expect("frame") {
            Ws::Text(text) => return serde_json::from_str(&text).expect("json"),
            Ws::Close(close) => return json!({ "type": "closed", "code": close.map(|c| u16::from(c.code)) }),
            _ => continue,
        }
    }
}

/// Frames until one of `kind` arrives.
pub async fn next_of(socket: &mut Socket, kind: &str) -> Value {
    loop {
        let frame = next_frame(socket).await;
        if frame["type"] == kind {
            return frame;
        }
    }
}

async fn seqs_until_resumed(socket: &mut Socket) -> Vec<i64> {
    let mut seqs = Vec::new();
    loop {
        let frame = next_frame(socket).await;
        match frame["type"].as_str() {
            Some("message_created") => seqs.push(frame["message"]["seq"].as_i64().expect("seq")),
            Some("resumed") => return seqs,
            _ => {}
        }
    }
}

async fn ready_chat<'a>(app: &'a TestApp, alice: &Person, bob: &Person) -> Chat<'a> {
    let chat = group(app, alice, &[bob]).await;
    assert_eq!(chat.rotate(alice, 1).await.0, StatusCode::CREATED);
    chat
}

#[tokio::test]
async fn a_message_sent_on_one_replica_reaches_a_socket_on_the_other() {
    let app = TestApp::start().await;
    let replica = app.replica().await;
    let alice = app.person("alice@example.org").await;
    let bob = app.person("bob@example.org").await;
    let chat = ready_chat(&app, &alice, &bob).await;
    let mut bob_socket = connect(&replica.base, &bob).await;
    let (status, sent) = chat.send(&alice, 1, &[1u8; 48]).await;
    assert_eq!(status, StatusCode::CREATED);
    let frame = next_of(&mut bob_socket, "message_created").await;
    assert_eq!(frame["message"]["id"], sent["id"]);
    assert_eq!(frame["message"]["ciphertext"], sent["ciphertext"]);

    // Receipts, edits and deletes travel the same way.
    let (status, _) = app.post(&chat.path("/receipts"), json!({ "read_seq": 1 }), Some(&alice.access)).await;
    assert_eq!(status, StatusCode::OK);
    let receipt = next_of(&mut bob_socket, "receipt_updated").await;
    assert_eq!(receipt["member"]["user_id"], json!(alice.user_id));
    let id = sent["id"].as_str().expect("id");
    assert_eq!(app.delete(&chat.path(&format!("/messages/{id}")), &alice.access).await.0, StatusCode::NO_CONTENT);
    let deleted = next_of(&mut bob_socket, "message_deleted").await;
    assert_eq!(deleted["message_id"], sent["id"]);
}

#[tokio::test]
async fn a_send_stored_but_never_published_is_published_when_its_retry_finds_it() {
    // What a batch that commits just after its deadline leaves: the message stored, its sender
    // answered 503, nothing published. The retry (same client_message_id) finds it.
    let app = TestApp::start().await;
    let alice = app.person("alice@example.org").await;
    let bob = app.person("bob@example.org").await;
    let chat = ready_chat(&app, &alice, &bob).await;
    let mut bob_socket = connect(&app.base, &bob).await;
    let client_message_id = uuid::Uuid::now_v7();
    let body = chat.message(&alice, 1, client_message_id, &[7u8; 48]);
    let ciphertext = chat.application(1, &[7u8; 48]);
    let route = Route {
        method: &reqwest::Method::POST,
        path: "/v1/organizations/{organization_id}/conversations/{conversation_id}/messages",
    };
    let auth = AuthUser::from_token(&app.state, &alice.access, route).await.expect("alice's session");
    let pending = batch::Pending {
        organization_id: chat.org,
        auth,
        conversation_id: chat.conversation,
        client_message_id,
        key_generation: 1,
        ciphertext,
        reply_to_id: None,
        attachment_ids: Vec::new(),
    };
    let stored =
        batch::store(&mut batch::Link::new(app.state.db.clone()), &[pending], std::time::Duration::from_secs(5))
            .await
            .expect("stored");
    assert!(matches!(stored[..], [Ok(batch::Stored::Created(_))]), "{stored:?}");

    let (status, retried) = app.post(&chat.path("/messages"), body, Some(&alice.access)).await;
    assert_eq!(status, StatusCode::OK, "found, not created again: {retried}");
    let frame = next_of(&mut bob_socket, "message_created").await;
    assert_eq!(frame["message"]["id"], retried["id"], "bob hears of it now, not at the next message");
}

/// A busy conversation (many sends at once, gathered into batches by its writer) reaches a
/// member's socket once per message and in sequence order: the writer publishes each batch
/// before it stores the next, and a socket that sees a gap fills it from the database.
#[tokio::test]
async fn a_busy_conversation_reaches_a_socket_once_each_and_in_order() {
    let app = TestApp::start_with(&["--rate-limit-factor", "1000", "--send-writers", "1"]).await;
    let alice = app.person("alice@example.org").await;
    let bob = app.person("bob@example.org").await;
    let chat = ready_chat(&app, &alice, &bob).await;
    let mut bob_socket = connect(&app.base, &bob).await;
    let sends = (0..80u8).map(|i| {
        let by = if i % 2 == 0 { &alice } else { &bob };
        let body = chat.message(by, 1, uuid::Uuid::now_v7(), &[i; 48]);
        app.post_owned(chat.path("/messages"), body, by.access.clone())
    });
    let answers = futures::future::join_all(sends).await;
    let mut answered: Vec<i64> = answers
        .iter()
        .map(|(status, body)| {
            assert_eq!(*status, StatusCode::CREATED, "{body}");
            body["seq"].as_i64().expect("seq")
        })
        .collect();
    answered.sort_unstable();
    assert_eq!(answered, (1..=80).collect::<Vec<i64>>());
    let mut received = Vec::new();
    while received.len() < 80 {
        let frame = next_of(&mut bob_socket, "message_created").await;
        received.push(frame["message"]["seq"].as_i64().expect("seq"));
    }
    assert_eq!(received, (1..=80).collect::<Vec<i64>>(), "once each, in order");
}

#[tokio::test]
async fn a_message_far_larger_than_the_socket_buffers_arrives_intact() {
    let app = TestApp::start().await;
    let alice = app.person("alice@example.org").await;
    let bob = app.person("bob@example.org").await;
    let chat = ready_chat(&app, &alice, &bob).await;
    let mut socket = connect(&app.base, &bob).await;
    let big: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let (status, sent) = chat.send(&alice, 1, &big).await;
    assert_eq!(status, StatusCode::CREATED);
    let frame = next_of(&mut socket, "message_created").await;
    assert_eq!(frame["message"]["ciphertext"], sent["ciphertext"]);
    assert_eq!(
        conclave_protocol::b64::decode(frame["message"]["ciphertext"].as_str().expect("b64")).expect("decode"),
        chat.application(1, &big)
    );
}

#[tokio::test]
async fn a_dropped_socket_resumes_with_exactly_the_missed_messages() {
    let app = TestApp::start().await;
    let replica = app.replica().await;
    let alice = app.person("alice@example.org").await;
    let bob = app.person("bob@example.org").await;
    let chat = ready_chat(&app, &alice, &bob).await;
    let mut socket = connect(&replica.base, &bob).await;
    chat.send(&alice, 1, &[1u8; 20]).await;
    let first = next_of(&mut socket, "message_created").await;
    let last_seen = first["message"]["seq"].as_i64().expect("seq");
    drop(socket); // killed mid-stream

    for i in 0..3u8 {
        assert_eq!(chat.send(&alice, 1, &[i; 20]).await.0, StatusCode::CREATED);
    }
    let mut socket = connect(&replica.base, &bob).await;
    let resume = json!({ "type": "resume", "cursors": { chat.conversation.to_string(): last_seen } });
    socket.send(Ws::Text(resume.to_string().into())).await.expect("resume");
    assert_eq!(seqs_until_resumed(&mut socket).await, vec![2, 3, 4]);
    // And live messages continue after the back-fill, without repeats.
    chat.send(&alice, 1, &[9u8; 20]).await;
    let next = next_of(&mut socket, "message_created").await;
    assert_eq!(next["message"]["seq"], 5);
}

#[tokio::test]
async fn a_redis_restart_loses_nothing() {
    // A Redis of this test's own, so restarting it disturbs no other test.
    let port = portpicker();
    let mut redis = start_redis(port);
    let app = TestApp::start_on_redis(&format!("redis://127.0.0.1:{port}/"), &["--rate-limit-factor", "1000"]).await;
    let replica = app.replica().await;
    let alice = app.person("alice@example.org").await;
    let bob = app.person("bob@example.org").await;
    let chat = ready_chat(&app, &alice, &bob).await;
    let mut socket = connect(&replica.base, &bob).await;
    chat.send(&alice, 1, &[1u8; 20]).await;
    assert_eq!(next_of(&mut socket, "message_created").await["message"]["seq"], 1);

    redis.kill().expect("stop redis");
    let _ = redis.wait();
    // Sent while Redis is down: committed, but nothing is published.
    for i in 0..2u8 {
        let (status, body) = chat.send(&alice, 1, &[i; 20]).await;
        assert_eq!(status, StatusCode::CREATED, "sends do not depend on Redis: {body}");
    }
    let mut redis = start_redis(port);
    // The replica resubscribes and back-fills its sockets from PostgreSQL.
    let mut seqs = Vec::new();
    while seqs.len() < 2 {
        let frame = tokio::time::timeout(Duration::from_secs(20), next_of(&mut socket, "message_created"))
            .await
            .expect("back-fill");
        seqs.push(frame["message"]["seq"].as_i64().expect("seq"));
    }
    assert_eq!(seqs, vec![2, 3]);
    chat.send(&alice, 1, &[7u8; 20]).await;
    assert_eq!(next_of(&mut socket, "message_created").await["message"]["seq"], 4);
    redis.kill().expect("stop redis");
    let _ = redis.wait();
}

#[tokio::test]
async fn revoking_a_device_closes_its_sockets_on_every_replica() {
    let app = TestApp::start().await;
    let replica = app.replica().await;
    let bob = app.person("bob@example.org").await;
    let bob_laptop = app.login("bob@example.org", crate::support::PASSWORD).await;
    let _org = app.organization("acme", &[&bob]).await;
    let mut socket = connect(&replica.base, &bob).await;
    let laptop_access = bob_laptop["access_token"].as_str().expect("token");
    assert_eq!(app.delete(&format!("/v1/devices/{}", bob.device_id), laptop_access).await.0, StatusCode::NO_CONTENT);
    let closed = next_of(&mut socket, "closed").await;
    assert_eq!(closed["code"], 4001);
    // And the revoked device cannot open a new one.
    let url = format!("{}/v1/ws", replica.base.replace("http://", "ws://"));
    let mut request = url.into_client_request().expect("request");
    request.headers_mut().insert("authorization", format!("Bearer {}", bob.access).parse().expect("header"));
    assert!(tokio_tungstenite::connect_async(request).await.is_err());
}

#[tokio::test]
async fn a_socket_without_a_valid_token_is_refused() {
    let app = TestApp::start().await;
    let url = format!("{}/v1/ws?access_token=nope", app.base.replace("http://", "ws://"));
    let result = tokio_tungstenite::connect_async(url).await;
    match result {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => assert_eq!(response.status(), 401),
        other => panic!("expected a 401, got {other:?}"),
    }
}

fn portpicker() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

fn start_redis(port: u16) -> std::process::Child {
    let child = std::process::Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("redis-server on PATH (scripts/stack.sh installs it)");
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}
