//! The outbox worker against real endpoints: signed webhook deliveries with their result written
//! back for the operator, retries with backoff, and the owner invitations the operator queues.

use crate::conversations::group;
use crate::support::{PASSWORD, TestApp, error_code};
use axum::body::Bytes;
use axum::http::HeaderMap;
use conclave_dataplane::outbox::events::Event;
use reqwest::StatusCode;
use serde_json::{Value, json};
use standardwebhooks::Webhook;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use uuid::Uuid;

const AT_REST_KEY: [u8; 32] = [42u8; 32];

/// An app whose webhooks may reach the loopback receivers of these tests, through the
/// allow-list (which this proves works: without it they are refused).
async fn app() -> TestApp {
    app_allowing("127.0.0.0/8").await
}

async fn app_allowing(targets: &str) -> TestApp {
    let dir = std::env::temp_dir().join(format!("conclave-at-rest-{}", Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join("key");
    std::fs::write(&path, conclave_protocol::b64::encode(AT_REST_KEY).replace('-', "+").replace('_', "/") + "=")
        .expect("key");
    let path = path.to_str().expect("utf-8").to_owned();
    let mut args = vec!["--rate-limit-factor", "1000", "--outbox-poll-ms", "100", "--at-rest-key-file", &path];
    if !targets.is_empty() {
        args.extend(["--webhook-allowed-targets", targets]);
    }
    TestApp::start_with(&args).await
}

type Seen = Arc<Mutex<Vec<(HeaderMap, Bytes)>>>;

/// A webhook receiver on loopback answering `status`.
async fn receiver(status: StatusCode) -> (String, Seen) {
    let seen: Seen = Arc::default();
    let store = seen.clone();
    let router = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: Bytes| {
            let store = store.clone();
            async move {
                store.lock().expect("lock").push((headers, body));
                status
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, router).await });
    (url, seen)
}

/// A fresh Standard Webhooks secret (`whsec_...`).
fn secret() -> String {
    conclave_credentials::webhook_secret::generate().expect("randomness")
}

fn seal(id: Uuid, secret: &str) -> Vec<u8> {
    conclave_dataplane::sealing::SealingKey::from_bytes(&AT_REST_KEY)
        .seal(format!("webhook:{id}").as_bytes(), secret.as_bytes())
}

async fn endpoint(app: &TestApp, organization: Uuid, url: &str, secret: &str) -> Uuid {
    subscribed(app, organization, url, secret, &["message.created"]).await
}

/// An organization-wide endpoint subscribed to `events`.
async fn subscribed(app: &TestApp, organization: Uuid, url: &str, secret: &str, events: &[&str]) -> Uuid {
    let id = Uuid::now_v7();
    sqlx::query("INSERT INTO webhook_endpoints (id, organization_id, url, event_types, signing_secret_sealed) VALUES ($1, $2, $3, $4, $5)")
        .bind(id)
        .bind(organization)
        .bind(url)
        .bind(events)
        .bind(seal(id, secret))
        .execute(&app.db.owner)
        .await
        .expect("endpoint");
    id
}

/// Whether the reference library accepts the delivery with `secret`.
fn verifies(secret: &str, headers: &HeaderMap, body: &[u8]) -> bool {
    Webhook::new(secret).expect("a whsec_ secret").verify(body, headers).is_ok()
}

async fn wait_for<F: Fn(&Value) -> bool>(app: &TestApp, sql: &'static str, id: Uuid, done: F) -> Value {
    for _ in 0..100 {
        let row: Value = sqlx::query_scalar(sql).bind(id).fetch_one(&app.db.owner).await.expect("row");
        if done(&row) {
            return row;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("condition not reached for {id}");
}

/// The endpoint row once its last delivery has `status`.
async fn endpoint_when(app: &TestApp, id: Uuid, status: &str) -> Value {
    wait_for(app, "SELECT to_jsonb(w) FROM webhook_endpoints w WHERE id = $1", id, |w| {
        w["last_delivery_status"] == status
    })
    .await
}

/// The endpoint's (one) outbox row once it has `status`.
async fn job_when(app: &TestApp, endpoint_id: Uuid, status: &str) -> Value {
    let sql = "SELECT to_jsonb(o) FROM outbound_notifications o WHERE webhook_endpoint_id = $1";
    wait_for(app, sql, endpoint_id, |o| o["status"] == status).await
}

#[tokio::test]
async fn a_message_reaches_a_webhook_signed_and_the_result_is_recorded() {
    let app = app().await;
    let alice = app.person("alice@example.org").await;
    let bob = app.person("bob@example.org").await;
    let chat = group(&app, &alice, &[&bob]).await;
    let (url, seen) = receiver(StatusCode::NO_CONTENT).await;
    let secret = secret();
    let endpoint_id = endpoint(&app, chat.org, &url, &secret).await;
    chat.rotate(&alice, 1).await;
    let (status, message) = chat.send(&alice, 1, &[3u8; 40]).await;
    assert_eq!(status, StatusCode::CREATED);

    let endpoint = endpoint_when(&app, endpoint_id, "succeeded").await;
    assert_eq!(endpoint["consecutive_failures"], 0);
    let (headers, body) = seen.lock().expect("lock").first().cloned().expect("a delivery");
    Webhook::new(&secret)
        .expect("a whsec_ secret")
        .verify(&body, &headers)
        .expect("the Standard Webhooks library verifies the delivery with the endpoint's secret");
    assert!(!verifies(&self::secret(), &headers, &body), "another secret does not verify it");
    let payload: Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(headers["webhook-id"].to_str().expect("header"), payload["id"].as_str().expect("id"));
    assert_eq!(payload["type"], "message.created");
    assert_eq!(payload["data"]["message_id"], message["id"]);
    assert!(!String::from_utf8_lossy(&body).contains("ciphertext"), "no content leaves in a webhook");
    // The job itself is marked delivered right after the endpoint's result is written.
    let job = job_when(&app, endpoint_id, "delivered").await;
    assert_eq!(job["attempts"], 1);
}

/// Gives the endpoint a previous secret whose overlap ends in `seconds` (negative: ended).
async fn rotate(app: &TestApp, endpoint_id: Uuid, previous: &str, seconds: f64) {
    sqlx::query(
        "UPDATE webhook_endpoints SET previous_signing_secret_sealed = $2,
                previous_secret_expires_at = now() + make_interval(secs => $3) WHERE id = $1",
    )
    .bind(endpoint_id)
    .bind(seal(endpoint_id, previous))
    .bind(seconds)
    .execute(&app.db.owner)
    .await
    .expect("rotate");
}

#[tokio::test]
async fn during_a_rotation_overlap_both_secrets_verify_and_after_it_only_the_new_one() {
    let app = app().await;
    let alice = app.person("alice@example.org").await;
    let chat = group(&app, &alice, &[]).await;
    let (old, new) = (secret(), secret());
    let (overlapping_url, overlapping) = receiver(StatusCode::NO_CONTENT).await;
    let (ended_url, ended) = receiver(StatusCode::NO_CONTENT).await;
    let overlapping_id = endpoint(&app, chat.org, &overlapping_url, &new).await;
    rotate(&app, overlapping_id, &old, 3600.0).await;
    let ended_id = endpoint(&app, chat.org, &ended_url, &new).await;
    rotate(&app, ended_id, &old, -1.0).await;
    chat.rotate(&alice, 1).await;
    chat.send(&alice, 1, &[3u8; 40]).await;
    for id in [overlapping_id, ended_id] {
        endpoint_when(&app, id, "succeeded").await;
    }

    let (headers, body) = overlapping.lock().expect("lock").first().cloned().expect("a delivery");
    assert_eq!(headers["webhook-signature"].to_str().expect("header").split(' ').count(), 2);
    assert!(verifies(&new, &headers, &body), "the new secret verifies during the overlap");
    assert!(verifies(&old, &headers, &body), "so does the old one, until the overlap ends");

    let (headers, body) = ended.lock().expect("lock").first().cloned().expect("a delivery");
    assert_eq!(headers["webhook-signature"].to_str().expect("header").split(' ').count(), 1);
    assert!(verifies(&new, &headers, &body));
    assert!(!verifies(&old, &headers, &body), "the old secret no longer verifies after the overlap");
}

#[tokio::test]
async fn a_webhook_to_an_internal_address_is_refused_with_its_reason_and_never_sent() {
    // Allowed: one other block and one other host, neither of them the receivers'.
    let app = app_allowing("10.96.0.0/12,receiver.hooks.svc.cluster.local").await;
    let alice = app.person("alice@example.org").await;
    let chat = group(&app, &alice, &[]).await;
    let (url, seen) = receiver(StatusCode::NO_CONTENT).await;
    let by_name = url.replace("127.0.0.1", "localhost");
    let literal_id = endpoint(&app, chat.org, &url, &secret()).await;
    let name_id = endpoint(&app, chat.org, &by_name, &secret()).await;
    chat.rotate(&alice, 1).await;
    chat.send(&alice, 1, &[3u8; 40]).await;
    for (id, says) in [(literal_id, "127.0.0.1 is a loopback address"), (name_id, "localhost resolves")] {
        let endpoint = endpoint_when(&app, id, "refused").await;
        let error = endpoint["last_delivery_error"].as_str().unwrap_or_default();
        assert!(error.starts_with("refused: ") && error.contains(says), "{error}");
        assert!(error.contains("webhookAllowedTargets"), "the reason says what to change: {error}");
        assert_eq!(endpoint["consecutive_failures"], 1);
        // Given up at once: waiting does not make an address acceptable.
        let job = job_when(&app, id, "dead").await;
        assert_eq!(job["attempts"], 1);
    }
    assert!(seen.lock().expect("lock").is_empty(), "nothing reached the receiver");
}

#[tokio::test]
async fn the_allow_list_lets_a_named_host_through() {
    let app = app_allowing("localhost").await;
    let alice = app.person("alice@example.org").await;
    let chat = group(&app, &alice, &[]).await;
    let (url, seen) = receiver(StatusCode::NO_CONTENT).await;
    let literal_id = endpoint(&app, chat.org, &url, &secret()).await;
    let name_id = endpoint(&app, chat.org, &url.replace("127.0.0.1", "localhost"), &secret()).await;
    chat.rotate(&alice, 1).await;
    chat.send(&alice, 1, &[3u8; 40]).await;
    endpoint_when(&app, name_id, "succeeded").await;
    endpoint_when(&app, literal_id, "refused").await;
    assert_eq!(seen.lock().expect("lock").len(), 1, "only the delivery by the allowed name arrived");
}

#[tokio::test]
async fn each_cause_queues_its_event_for_the_endpoints_subscribed_to_it_with_ids_only() {
    let app = app().await;
    let alice = app.person("alice@example.org").await;
    let bob = app.person("bob@example.org").await;
    let chat = group(&app, &alice, &[&bob]).await;
    let (url, _seen) = receiver(StatusCode::NO_CONTENT).await;
    // Every event the data plane causes, and a reserved one that nothing causes yet.
    let mut every: Vec<&str> = Event::ALL.iter().map(|e| e.as_str()).collect();
    every.push("call.started");
    let all = subscribed(&app, chat.org, &url, &secret(), &every).await;
    let deletions = subscribed(&app, chat.org, &url, &secret(), &["message.deleted"]).await;

    // A message created, edited, deleted (twice: the second changes nothing).
    chat.rotate(&alice, 1).await;
    let (_, message) = chat.send(&alice, 1, &[3u8; 40]).await;
    let message_path = chat.path(&format!("/messages/{}", message["id"].as_str().expect("id")));
    let client_id: Uuid = message["client_message_id"].as_str().and_then(|s| s.parse().ok()).expect("client id");
    let mut edit = chat.message(&alice, 1, client_id, &[42u8; 24]);
    edit.as_object_mut().expect("object").remove("client_message_id");
    assert_eq!(app.patch(&message_path, edit, &alice.access).await.0, StatusCode::OK);
    assert_eq!(app.delete(&message_path, &alice.access).await.0, StatusCode::NO_CONTENT);
    assert_eq!(app.delete(&message_path, &alice.access).await.0, StatusCode::NO_CONTENT);
    // Bob removed, then added back.
    let bob_path = chat.path(&format!("/members/{}", bob.user_id));
    assert_eq!(app.delete(&bob_path, &alice.access).await.0, StatusCode::NO_CONTENT);
    let (status, _) = app.post(&chat.path("/members"), json!({"user_id": bob.user_id}), Some(&alice.access)).await;
    assert_eq!(status, StatusCode::CREATED);
    // Another conversation in the workspace; a privacy request.
    let workspace: Uuid = sqlx::query_scalar("SELECT workspace_id FROM conversations WHERE id = $1")
        .bind(chat.conversation)
        .fetch_one(&app.db.owner)
        .await
        .expect("workspace");
    let path = format!("/v1/organizations/{}/workspaces/{workspace}/conversations", chat.org);
    let (status, created) = app.post(&path, json!({"kind": "group", "member_user_ids": []}), Some(&alice.access)).await;
    assert_eq!(status, StatusCode::CREATED);
    let path = format!("/v1/organizations/{}/privacy-requests", chat.org);
    let (status, filed) = app.post(&path, json!({"kind": "export"}), Some(&bob.access)).await;
    assert_eq!(status, StatusCode::CREATED, "{filed}");

    let rows = |endpoint: Uuid| {
        sqlx::query_as::<_, (String, Value)>(
            "SELECT event_type, payload FROM outbound_notifications WHERE webhook_endpoint_id = $1 ORDER BY event_type",
        )
        .bind(endpoint)
        .fetch_all(&app.db.owner)
    };
    let queued = rows(all).await.expect("rows");
    let types: Vec<&str> = queued.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(
        types,
        [
            "conversation.created",
            "member.joined",
            "member.left",
            "message.created",
            "message.deleted",
            "message.edited",
            "privacy_request.filed"
        ]
    );
    let data = |t: &str| queued.iter().find(|(q, _)| q == t).map(|(_, d)| d.clone()).expect("queued");
    assert_eq!(data("conversation.created")["conversation_id"], created["id"]);
    assert_eq!(data("conversation.created")["member_count"], 1);
    assert_eq!(data("member.left")["user_id"], json!(bob.user_id));
    assert_eq!(data("member.left")["reason"], "removed");
    assert_eq!(data("member.joined")["via"], "added");
    assert_eq!(data("message.edited")["message_id"], message["id"]);
    assert_eq!(data("message.deleted")["by_user_id"], json!(alice.user_id));
    assert_eq!(data("privacy_request.filed")["privacy_request_id"], filed["id"]);
    let text = serde_json::to_string(&queued).expect("json");
    assert!(!text.contains("ciphertext") && !text.contains(&b64_of(&[42u8; 24])), "ids and metadata only");
    let only_deletions: Vec<String> = rows(deletions).await.expect("rows").into_iter().map(|(t, _)| t).collect();
    assert_eq!(only_deletions, ["message.deleted"], "an endpoint hears only the types it subscribed to");
}

fn b64_of(bytes: &[u8]) -> String {
    conclave_protocol::b64::encode(bytes)
}

#[tokio::test]
async fn an_endpoint_failing_past_its_budget_is_disabled_and_called_no_more() {
    let app = app().await;
    let alice = app.person("alice@example.org").await;
    let chat = group(&app, &alice, &[]).await;
    let (url, seen) = receiver(StatusCode::INTERNAL_SERVER_ERROR).await;
    let (short_url, _) = receiver(StatusCode::INTERNAL_SERVER_ERROR).await;
    // 14 failures over a day, and 14 failures within the last hour.
    let long = endpoint(&app, chat.org, &url, &secret()).await;
    let short = endpoint(&app, chat.org, &short_url, &secret()).await;
    for (id, hours) in [(long, 25.0), (short, 1.0)] {
        sqlx::query(
            "UPDATE webhook_endpoints SET consecutive_failures = 14,
                    failing_since = now() - make_interval(hours => $2::float8::int) WHERE id = $1",
        )
        .bind(id)
        .bind(hours)
        .execute(&app.db.owner)
        .await
        .expect("failing");
    }
    chat.rotate(&alice, 1).await;
    chat.send(&alice, 1, &[3u8; 40]).await;
    let disabled = wait_for(&app, "SELECT to_jsonb(w) FROM webhook_endpoints w WHERE id = $1", long, |w| {
        !w["disabled_at"].is_null()
    })
    .await;
    let reason = disabled["disabled_reason"].as_str().unwrap_or_default();
    assert!(reason.starts_with("15 failed deliveries in a row since") && reason.contains("500"), "{reason}");
    let within_a_day = wait_for(&app, "SELECT to_jsonb(w) FROM webhook_endpoints w WHERE id = $1", short, |w| {
        w["consecutive_failures"] == 15
    })
    .await;
    assert!(within_a_day["disabled_at"].is_null(), "15 failures within an hour are not the budget");

    // Disabled: the next event is given up without a call.
    chat.send(&alice, 1, &[4u8; 40]).await;
    wait_for(
        &app,
        "SELECT to_jsonb(array_agg(o.status ORDER BY o.created_at)) FROM outbound_notifications o WHERE webhook_endpoint_id = $1",
        long,
        |s| s.as_array().is_some_and(|s| s.len() == 2 && s[1] == "dead"),
    )
    .await;
    assert_eq!(seen.lock().expect("lock").len(), 1, "called once, before it was disabled");
}

#[tokio::test]
async fn admins_page_through_an_endpoints_delivery_log_and_replay_a_delivery() {
    let app = app().await;
    let alice = app.person("alice@example.org").await;
    let bob = app.person("bob@example.org").await;
    let chat = group(&app, &alice, &[&bob]).await;
    let (url, seen) = receiver(StatusCode::NO_CONTENT).await;
    let endpoint_id = endpoint(&app, chat.org, &url, &secret()).await;
    chat.rotate(&alice, 1).await;
    for n in 0..3u8 {
        chat.send(&alice, 1, &[n; 40]).await;
    }
    let sql = "SELECT to_jsonb(array_agg(status)) FROM outbound_notifications WHERE webhook_endpoint_id = $1";
    wait_for(&app, sql, endpoint_id, |s| {
        s.as_array().is_some_and(|s| s.len() == 3 && s.iter().all(|x| x == "delivered"))
    })
    .await;
    let log = format!("/v1/organizations/{}/webhooks/{endpoint_id}/deliveries", chat.org);

    let (status, first) = app.get(&format!("{log}?limit=2"), Some(&alice.access)).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    let deliveries = first["deliveries"].as_array().expect("deliveries");
    assert_eq!(deliveries.len(), 2);
    assert_eq!(deliveries[0]["status"], "delivered");
    assert_eq!(deliveries[0]["last_status_code"], 204);
    assert!(deliveries[0]["last_latency_ms"].as_i64().is_some_and(|ms| ms >= 0));
    assert!(deliveries[0]["id"].as_str() > deliveries[1]["id"].as_str(), "newest first");
    let cursor = first["next_cursor"].as_str().expect("a next page");
    let (_, second) = app.get(&format!("{log}?limit=2&cursor={cursor}"), Some(&alice.access)).await;
    assert_eq!(second["deliveries"].as_array().map(Vec::len), Some(1));
    assert!(second["next_cursor"].is_null());

    // Replay: queued again with a fresh count, delivered again with the same webhook-id.
    let oldest = second["deliveries"][0]["id"].as_str().expect("id").to_owned();
    let replay = format!("{log}/{oldest}/replay");
    let (status, queued) = app.post(&replay, json!({}), Some(&alice.access)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{queued}");
    assert_eq!(queued["status"], "pending");
    let oldest_id: Uuid = oldest.parse().expect("uuid");
    wait_for(&app, "SELECT to_jsonb(status) FROM outbound_notifications WHERE id = $1", oldest_id, |s| {
        s == "delivered"
    })
    .await;
    let ids: Vec<String> =
        seen.lock().expect("lock").iter().map(|(h, _)| h["webhook-id"].to_str().expect("header").to_owned()).collect();
    assert_eq!(ids.iter().filter(|id| **id == oldest).count(), 2, "{ids:?}");

    // Errors: members who are not admins, unknown ids, deliveries still in progress, disabled endpoints.
    let (status, body) = app.get(&log, Some(&bob.access)).await;
    assert_eq!((status, error_code(&body)), (StatusCode::FORBIDDEN, "insufficient_role"));
    let unknown = format!("/v1/organizations/{}/webhooks/{}/deliveries", chat.org, Uuid::now_v7());
    let (status, body) = app.get(&unknown, Some(&alice.access)).await;
    assert_eq!((status, error_code(&body)), (StatusCode::NOT_FOUND, "not_found"));
    let (status, body) = app.post(&format!("{log}/{}/replay", Uuid::now_v7()), json!({}), Some(&alice.access)).await;
    assert_eq!((status, error_code(&body)), (StatusCode::NOT_FOUND, "not_found"));
    sqlx::query("UPDATE outbound_notifications SET status = 'failed', delivered_at = NULL WHERE id = $1")
        .bind(oldest_id)
        .execute(&app.db.owner)
        .await
        .expect("failed");
    let (status, body) = app.post(&replay, json!({}), Some(&alice.access)).await;
    assert_eq!((status, error_code(&body)), (StatusCode::CONFLICT, "delivery_in_progress"));
    sqlx::query("UPDATE webhook_endpoints SET enabled = false WHERE id = $1")
        .bind(endpoint_id)
        .execute(&app.db.owner)
        .await
        .expect("disable");
    let (status, body) = app.post(&replay, json!({}), Some(&alice.access)).await;
    assert_eq!((status, error_code(&body)), (StatusCode::CONFLICT, "endpoint_disabled"));
}

#[tokio::test]
async fn a_failing_endpoint_is_retried_later_and_counted() {
    let app = app().await;
    let alice = app.person("alice@example.org").await;
    let chat = group(&app, &alice, &[]).await;
    let (url, seen) = receiver(StatusCode::INTERNAL_SERVER_ERROR).await;
    let endpoint_id = endpoint(&app, chat.org, &url, &secret()).await;
    chat.rotate(&alice, 1).await;
    chat.send(&alice, 1, &[3u8; 40]).await;
    let endpoint = wait_for(&app, "SELECT to_jsonb(w) FROM webhook_endpoints w WHERE id = $1", endpoint_id, |w| {
        w["consecutive_failures"] == 1
    })
    .await;
    assert_eq!(endpoint["last_delivery_status"], "failed");
    assert!(endpoint["last_delivery_error"].as_str().is_some_and(|e| e.contains("500")), "{endpoint}");
    job_when(&app, endpoint_id, "failed").await;
    let row: (String, i32, bool) = sqlx::query_as(
        "SELECT status, attempts, next_attempt_at > now() + interval '5 seconds' FROM outbound_notifications",
    )
    .fetch_one(&app.db.owner)
    .await
    .expect("row");
    assert_eq!(row, ("failed".to_owned(), 1, true), "backed off, not hammered");
    assert_eq!(seen.lock().expect("lock").len(), 1);
}

#[tokio::test]
async fn an_owner_invitation_queued_by_the_operator_is_emailed_with_a_fresh_token() {
    let app = app().await;
    let dana = app.person("dana@example.org").await;
    let (org, _) = app.organization("acme", &[]).await;
    // What the operator writes: an invitation whose token nobody knows, and an email job.
    let invitation: Uuid = sqlx::query_scalar(
        "INSERT INTO organization_invitations (organization_id, email, role, token_hash, expires_at)
         VALUES ($1, 'dana@example.org', 'owner', sha256('unknown'::bytea), now() + interval '14 days') RETURNING id",
    )
    .bind(org)
    .fetch_one(&app.db.owner)
    .await
    .expect("invitation");
    sqlx::query("INSERT INTO outbound_notifications (organization_id, channel, event_type, recipient_user_id, payload) VALUES ($1, 'email', 'organization.invitation_created', $2, $3)")
        .bind(org)
        .bind(dana.user_id)
        .bind(json!({ "invitation_id": invitation, "email": "dana@example.org", "role": "owner" }))
        .execute(&app.db.owner)
        .await
        .expect("job");
    let mail =
        app.mail.wait_for("dana@example.org", "invited", Duration::from_secs(10)).await.expect("invitation email");
    let token = mail.token("cvi_").expect("token");
    let (status, body) = app
        .post(&format!("/v1/organizations/{org}/invitations/accept"), json!({ "token": token }), Some(&dana.access))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let role: String = sqlx::query_scalar("SELECT role FROM organization_memberships WHERE user_id = $1")
        .bind(dana.user_id)
        .fetch_one(&app.db.owner)
        .await
        .expect("membership");
    assert_eq!(role, "owner");
    let _ = PASSWORD;
}

#[tokio::test]
async fn a_send_queues_one_push_per_other_member_with_a_subscription_and_nothing_else() {
    let app = app().await;
    let alice = app.person("alice@example.org").await;
    let bob = app.person("bob@example.org").await;
    let carol = app.person("carol@example.org").await;
    let chat = group(&app, &alice, &[&bob, &carol]).await;
    for person in [&alice, &bob] {
        let (status, _) = app
            .post(
                &format!("/v1/devices/{}/push-subscriptions", person.device_id),
                json!({ "endpoint": "https://push.example/sub", "p256dh": crate::support::b64(&[4u8; 65]), "auth": crate::support::b64(&[1u8; 16]) }),
                Some(&person.access),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED);
    }
    chat.rotate(&alice, 1).await;
    let (status, message) = chat.send(&alice, 1, &[3u8; 40]).await;
    assert_eq!(status, StatusCode::CREATED);
    let pushes: Vec<(Uuid, Value)> =
        sqlx::query_as("SELECT recipient_user_id, payload FROM outbound_notifications WHERE channel = 'push'")
            .fetch_all(&app.db.owner)
            .await
            .expect("rows");
    assert_eq!(pushes.len(), 1, "Bob only: Alice sent it and Carol has no subscription");
    assert_eq!(pushes[0].0, bob.user_id);
    assert_eq!(pushes[0].1["message_id"], message["id"]);
    assert_eq!(app.count("SELECT count(*) FROM outbound_notifications WHERE channel = 'webhook'").await, 0);
}
