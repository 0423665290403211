//! Web Push from the outbox (`outbox/push.rs`) against the test push service of
//! `conclave_testkit::webpush`, which verifies VAPID and decrypts every payload: what a payload
//! carries (and that no message plaintext is ever in it), what each answer of the push service
//! does to the subscription and the row, and how preferences change what is sent.
//!
//! The worker is off in these apps (`--outbox-poll-ms 0`) and driven with `outbox::run_once`, so
//! each step happens exactly when the test says.

use crate::conversations::Chat;
use crate::reactions::ready_chat;
use crate::support::{Person, TestApp, b64};
use conclave_testkit::webpush::{PushService, Received, Subscription};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::Duration;
use uuid::Uuid;

/// What the test sends as a message's bytes: if the server ever put message bytes in a push,
/// this is what would show.
const MARKER: &[u8] = b"PLAINTEXT-MARKER-7f3a9c";

struct Setup {
    app: TestApp,
    push: PushService,
    http: conclave_dataplane::outbox::Clients,
}

async fn setup() -> Setup {
    let dir = std::env::temp_dir().join(format!("conclave-vapid-{}", Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("dir");
    let key = dir.join("private-key");
    // A valid P-256 scalar, as the operator writes it (base64url).
    std::fs::write(&key, b64(&[7u8; 32])).expect("key");
    let key = key.to_str().expect("utf-8").to_owned();
    let app = TestApp::start_with(&[
        "--rate-limit-factor",
        "1000",
        "--outbox-poll-ms",
        "0",
        "--push-allow-loopback-http",
        "--vapid-private-key-file",
        &key,
        "--vapid-subject",
        "mailto:ops@example.org",
    ])
    .await;
    let push = PushService::start().await.expect("push service");
    let (status, published) = app.get("/v1/push/vapid-public-key", Some(&app_token(&app).await)).await;
    assert_eq!(status, StatusCode::OK, "{published}");
    let public_key = conclave_protocol::b64::decode(published["public_key"].as_str().expect("key")).expect("b64");
    assert_eq!(public_key.len(), 65);
    push.expect_vapid_key(public_key);
    let http = conclave_dataplane::outbox::http_clients(&app.state.config).expect("clients");
    Setup { app, push, http }
}

/// Any signed-in caller may read the public key.
async fn app_token(app: &TestApp) -> String {
    app.person("keyreader@example.org").await.access
}

async fn subscribe(app: &TestApp, push: &PushService, person: &Person) -> Subscription {
    let subscription = push.subscribe().expect("subscription");
    let (status, body) = app
        .post(
            &format!("/v1/devices/{}/push-subscriptions", person.device_id),
            json!({ "endpoint": subscription.endpoint, "p256dh": b64(&subscription.p256dh), "auth": b64(&subscription.auth) }),
            Some(&person.access),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    subscription
}

impl Setup {
    async fn work(&self) {
        conclave_dataplane::outbox::run_once(&self.app.state, &self.http).await.expect("outbox run");
    }

    /// The push rows: (status, last_error, attempts), oldest first.
    async fn rows(&self) -> Vec<(String, Option<String>, i32)> {
        sqlx::query_as("SELECT status, last_error, attempts FROM outbound_notifications WHERE channel = 'push' ORDER BY created_at, id")
            .fetch_all(&self.app.db.owner)
            .await
            .expect("rows")
    }

    /// Makes every waiting row due now (instead of sleeping through back-off).
    async fn due_now(&self) {
        sqlx::query("UPDATE outbound_notifications SET next_attempt_at = now() WHERE status IN ('pending', 'failed')")
            .execute(&self.app.db.owner)
            .await
            .expect("due");
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Whether the marker shows in `bytes`, raw or in any base64 form.
fn shows_marker(bytes: &[u8]) -> bool {
    use base64::Engine as _;
    let encodings = [
        base64::engine::general_purpose::STANDARD.encode(MARKER),
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(MARKER),
    ];
    contains(bytes, MARKER) || encodings.iter().any(|e| contains(bytes, &e.as_bytes()[..e.len() - 4]))
}

async fn send(chat: &Chat<'_>, by: &Person) -> Value {
    let mut bytes = MARKER.to_vec();
    bytes.resize(48, b'.');
    let (status, message) = chat.send(by, 1, &bytes).await;
    assert_eq!(status, StatusCode::CREATED, "{message}");
    message
}

fn payload(received: &Received) -> Value {
    assert_eq!(received.error, None, "{received:?}");
    received.json().expect("a JSON payload")
}

#[tokio::test]
async fn a_push_is_encrypted_to_the_subscription_signed_with_vapid_and_carries_no_plaintext() {
    let s = setup().await;
    let alice = s.app.person("alice@example.org").await;
    let bob = s.app.person("bob@example.org").await;
    let chat = ready_chat(&s.app, &alice, &bob).await;
    let subscription = subscribe(&s.app, &s.push, &bob).await;
    let message = send(&chat, &alice).await;
    s.work().await;

    let received = s.push.wait_for(1, Duration::from_secs(5)).await;
    assert_eq!(received.len(), 1, "{received:?}");
    let push = &received[0];
    assert_eq!(push.subscription, subscription.id);
    assert_eq!(push.status, 201);
    let claims = push.claims.as_ref().expect("verified VAPID claims");
    assert_eq!(claims["aud"], json!(s.push.origin));
    assert_eq!(claims["sub"], "mailto:ops@example.org");
    assert_eq!(push.headers["ttl"], "86400");
    assert_eq!(push.headers["content-encoding"], "aes128gcm");
    assert_eq!(push.headers["urgency"], "normal");
    assert_eq!(push.headers["topic"], chat.conversation.simple().to_string());

    let body = payload(push);
    assert_eq!(body["kind"], "message");
    assert_eq!(body["conversation_id"], json!(chat.conversation));
    assert_eq!(body["message_id"], message["id"]);
    assert_eq!(body["seq"], message["seq"]);
    assert_eq!(body["unread"], 1);
    assert_eq!(body["badge"], 1);

    // No plaintext: neither the message's bytes (the marker) in the decrypted payload, nor the
    // payload itself readable on the wire. Positive controls: the same check finds the marker in
    // the message as the server stores it, and finds the payload's ids once decrypted.
    let stored: Vec<u8> = sqlx::query_scalar("SELECT ciphertext FROM messages WHERE id = $1")
        .bind(message["id"].as_str().and_then(|s| s.parse::<Uuid>().ok()).expect("id"))
        .fetch_one(&s.app.db.owner)
        .await
        .expect("stored");
    assert!(shows_marker(&stored), "the check must see the marker where it is");
    assert!(shows_marker(message.to_string().as_bytes()), "the check must see it base64-encoded too");
    let plaintext = push.plaintext.as_deref().expect("decrypted");
    assert!(!shows_marker(plaintext), "{}", String::from_utf8_lossy(plaintext));
    assert!(!shows_marker(&push.body));
    let id = chat.conversation.to_string();
    assert!(contains(plaintext, id.as_bytes()));
    assert!(!contains(&push.body, id.as_bytes()), "the payload travels encrypted");

    assert_eq!(s.rows().await, vec![("delivered".to_owned(), None, 1)]);
    // Alice (the sender) has no push for her own message.
    assert_eq!(s.push.received().len(), 1);
}

#[tokio::test]
async fn the_push_services_answers_drive_the_subscription_and_the_row() {
    let s = setup().await;
    let alice = s.app.person("alice@example.org").await;
    let bob = s.app.person("bob@example.org").await;
    let chat = ready_chat(&s.app, &alice, &bob).await;
    let subscriptions = "SELECT count(*) FROM push_subscriptions";

    // 410: the subscription is deleted and the row given up.
    subscribe(&s.app, &s.push, &bob).await;
    s.push.answer_next(410, None);
    send(&chat, &alice).await;
    s.work().await;
    assert_eq!(s.app.count(subscriptions).await, 0);
    assert_eq!(s.rows().await[0].0, "dead");

    // 404: the same.
    subscribe(&s.app, &s.push, &bob).await;
    s.push.answer_next(404, None);
    send(&chat, &alice).await;
    s.work().await;
    assert_eq!(s.app.count(subscriptions).await, 0);

    // 429 with Retry-After: retried after that long, then delivered; the subscription stays.
    subscribe(&s.app, &s.push, &bob).await;
    s.push.answer_next(429, Some(120));
    send(&chat, &alice).await;
    s.work().await;
    let (status, error, attempts) = s.rows().await[2].clone();
    assert_eq!((status.as_str(), attempts), ("failed", 1));
    assert!(error.is_some_and(|e| e.contains("429")));
    let wait: f64 = sqlx::query_scalar(
        "SELECT extract(epoch FROM next_attempt_at - now())::float8 FROM outbound_notifications WHERE status = 'failed'",
    )
    .fetch_one(&s.app.db.owner)
    .await
    .expect("next attempt");
    assert!((100.0..=121.0).contains(&wait), "Retry-After honoured: {wait}");
    s.work().await;
    assert_eq!(s.rows().await[2].0, "failed", "not before Retry-After");
    s.due_now().await;
    s.work().await;
    assert_eq!(s.rows().await[2], ("delivered".to_owned(), None, 2));

    // 5xx: retried with back-off.
    s.push.answer_next(503, None);
    send(&chat, &alice).await;
    s.work().await;
    assert_eq!(s.rows().await[3].0, "failed");
    s.due_now().await;
    s.work().await;
    assert_eq!(s.rows().await[3].0, "delivered");

    // 413: sent once more with the payload trimmed to its ids.
    let before = s.push.received().len();
    s.push.answer_next(413, None);
    send(&chat, &alice).await;
    s.work().await;
    let received = s.push.received();
    assert_eq!(received.len(), before + 2);
    let trimmed = payload(&received[before + 1]);
    assert_eq!(trimmed, json!({ "kind": "message", "conversation_id": chat.conversation }));
    assert_eq!(s.rows().await[4].0, "delivered");

    // Another 4xx: given up, the reason stored, the subscription kept.
    s.push.answer_next(400, None);
    send(&chat, &alice).await;
    s.work().await;
    let (status, error, _) = s.rows().await[5].clone();
    assert_eq!(status, "dead");
    assert!(error.is_some_and(|e| e.contains("400")));
    assert_eq!(s.app.count(subscriptions).await, 1);
}

#[tokio::test]
async fn a_retry_does_not_push_again_to_a_device_already_served() {
    let s = setup().await;
    let alice = s.app.person("alice@example.org").await;
    let bob = s.app.person("bob@example.org").await;
    let chat = ready_chat(&s.app, &alice, &bob).await;
    let first = subscribe(&s.app, &s.push, &bob).await;
    let second = subscribe(&s.app, &s.push, &bob).await;
    // Subscriptions are served in id order: the first gets 201, the second 503.
    s.push.answer_next(201, None);
    s.push.answer_next(503, None);
    send(&chat, &alice).await;
    s.work().await;
    s.due_now().await;
    s.work().await;
    let to: Vec<String> = s.push.received().iter().map(|r| r.subscription.clone()).collect();
    let times = |id: &str| to.iter().filter(|t| t.as_str() == id).count();
    assert_eq!(
        (times(&first.id), times(&second.id)),
        (1, 2),
        "the served device once, the other with its retry: {to:?}"
    );
    assert_eq!(s.rows().await[0].0, "delivered");
}

async fn override_conversation(app: &TestApp, chat: &Chat<'_>, who: &Person, body: Value) {
    let (status, answer) = app.put(&chat.path("/notification-preferences"), body, &who.access).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
}

#[tokio::test]
async fn preferences_mentions_and_reading_decide_what_is_pushed() {
    let s = setup().await;
    let alice = s.app.person("alice@example.org").await;
    let bob = s.app.person("bob@example.org").await;
    let chat = ready_chat(&s.app, &alice, &bob).await;
    subscribe(&s.app, &s.push, &bob).await;
    let last_error = |rows: &[(String, Option<String>, i32)]| rows.last().and_then(|r| r.1.clone());

    // Level none for the account: skipped, nothing sent.
    let (status, _) = s.app.patch("/v1/notification-preferences", json!({ "level": "none" }), &bob.access).await;
    assert_eq!(status, StatusCode::OK);
    send(&chat, &alice).await;
    s.work().await;
    let rows = s.rows().await;
    assert_eq!(rows.last().map(|r| r.0.as_str()), Some("skipped"));
    assert_eq!(last_error(&rows).as_deref(), Some("level_none"));

    // The conversation overrides it to mentions: a plain message is skipped, a mention is sent.
    override_conversation(&s.app, &chat, &bob, json!({ "level": "mentions" })).await;
    send(&chat, &alice).await;
    s.work().await;
    assert_eq!(last_error(&s.rows().await).as_deref(), Some("level_mentions"));
    let message = send(&chat, &alice).await;
    let mentions = chat.path(&format!("/messages/{}/mentions", message["id"].as_str().expect("id")));
    let (status, answer) = s.app.post(&mentions, json!({ "user_ids": [bob.user_id] }), Some(&alice.access)).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{answer}");
    s.work().await;
    let received = s.push.wait_for(1, Duration::from_secs(5)).await;
    assert_eq!(received.len(), 1, "one notification for the mention, not two");
    assert_eq!(payload(&received[0])["kind"], "mention");
    assert_eq!(payload(&received[0])["message_id"], message["id"]);
    assert_eq!(received[0].headers["urgency"], "high");

    // All again, but muted: skipped until the mute ends.
    let until = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    override_conversation(&s.app, &chat, &bob, json!({ "level": "all", "muted_until": until })).await;
    send(&chat, &alice).await;
    s.work().await;
    assert_eq!(last_error(&s.rows().await).as_deref(), Some("muted"));

    // Unmuted, but inside quiet hours (a span around now in Bob's time zone): skipped.
    override_conversation(&s.app, &chat, &bob, json!({ "level": "all" })).await;
    let now = chrono::Utc::now();
    let start = (now - chrono::Duration::minutes(30)).format("%H:%M").to_string();
    let end = (now + chrono::Duration::minutes(30)).format("%H:%M").to_string();
    let quiet = json!({ "quiet_hours": { "start": start, "end": end } });
    assert_eq!(s.app.patch("/v1/notification-preferences", quiet, &bob.access).await.0, StatusCode::OK);
    send(&chat, &alice).await;
    s.work().await;
    assert_eq!(last_error(&s.rows().await).as_deref(), Some("quiet_hours"));
    // In Tokyo that span is nine hours away: sent.
    let (status, _) = s.app.patch("/v1/profile", json!({ "time_zone": "Asia/Tokyo" }), &bob.access).await;
    assert_eq!(status, StatusCode::OK);
    send(&chat, &alice).await;
    s.work().await;
    assert_eq!(s.rows().await.last().map(|r| r.0.clone()), Some("delivered".to_owned()));

    // Read on another device before the worker got to it: nothing to announce.
    let message = send(&chat, &alice).await;
    let (status, _) =
        s.app.post(&chat.path("/receipts"), json!({ "read_seq": message["seq"] }), Some(&bob.access)).await;
    assert_eq!(status, StatusCode::OK);
    s.work().await;
    assert_eq!(last_error(&s.rows().await).as_deref(), Some("already_read"));
    assert_eq!(s.push.received().len(), 2);

    // The metrics say so.
    let text = s.app.http.get(s.app.url("/metrics")).send().await.expect("metrics").text().await.expect("text");
    for line in [
        "conclave_dataplane_push_sent_total 2",
        "conclave_dataplane_push_skipped_total{reason=\"muted\"} 1",
        "conclave_dataplane_push_skipped_total{reason=\"already_read\"} 1",
        "conclave_dataplane_outbox_pending{channel=\"push\"} 0",
    ] {
        assert!(text.contains(line), "{line} missing in\n{text}");
    }
}

#[tokio::test]
async fn calls_are_pushed_as_addressed_to_the_callee_even_at_mentions_level() {
    let s = setup().await;
    let alice = s.app.person("alice@example.org").await;
    let bob = s.app.person("bob@example.org").await;
    let chat = ready_chat(&s.app, &alice, &bob).await;
    subscribe(&s.app, &s.push, &bob).await;
    assert_eq!(
        s.app.patch("/v1/notification-preferences", json!({ "level": "mentions" }), &bob.access).await.0,
        StatusCode::OK
    );
    // The calls feature does not exist yet: its events are queued as it will queue them.
    for event in ["call.incoming", "call.missed"] {
        sqlx::query(
            "INSERT INTO outbound_notifications (organization_id, channel, event_type, recipient_user_id, payload)
             VALUES ($1, 'push', $2, $3, jsonb_build_object('conversation_id', $4::uuid, 'call_id', $5::uuid))",
        )
        .bind(chat.org)
        .bind(event)
        .bind(bob.user_id)
        .bind(chat.conversation)
        .bind(Uuid::now_v7())
        .execute(&s.app.db.owner)
        .await
        .expect("call event");
    }
    s.work().await;
    let received = s.push.wait_for(2, Duration::from_secs(5)).await;
    let mut kinds: Vec<(String, String, bool)> = received
        .iter()
        .map(|r| {
            (
                payload(r)["kind"].as_str().unwrap_or_default().to_owned(),
                r.headers["ttl"].clone(),
                r.headers.contains_key("topic"),
            )
        })
        .collect();
    kinds.sort();
    assert_eq!(
        kinds,
        vec![
            ("incoming_call".to_owned(), "60".to_owned(), false),
            ("missed_call".to_owned(), "86400".to_owned(), true)
        ]
    );
}
