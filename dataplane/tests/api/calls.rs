//! Calls: the lifecycle across replicas and under concurrent answers, and TURN credentials proven
//! against a real coturn on loopback.

use crate::conversations::{Chat, group};
use crate::realtime::{connect, next_frame, next_of};
use crate::support::{Person, TestApp, b64, error_code};
use chrono::{Duration, Utc};
use conclave_dataplane::calls::turn::mint;
use conclave_testkit::turn::{Allocation, Coturn, allocate};
use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

const SECRET: &str = "calls-test-turn-secret";

#[tokio::test]
async fn issued_turn_credentials_allocate_a_relay_on_coturn() {
    let turn = Coturn::start(SECRET).await.expect("coturn");
    let uri = turn.uri();
    let app =
        TestApp::start_with(&["--rate-limit-factor", "1000", "--turn-urls", &uri, "--turn-shared-secret", SECRET])
            .await;
    let alice = app.person("alice@turn.test").await;

    let (status, body) = app.post("/v1/calls/turn-credentials", json!({}), Some(&alice.access)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["urls"], json!([uri]));
    let username = body["username"].as_str().expect("username");
    let password = body["credential"].as_str().expect("credential");
    let (expiry, user) = username.split_once(':').expect("expiry:user");
    assert_eq!(user, alice.user_id.to_string());
    let expiry: i64 = expiry.parse().expect("unix seconds");
    assert!((expiry - Utc::now().timestamp() - 3600).abs() < 60, "one hour by default: {expiry}");

    match allocate(turn.addr, username, password).await.expect("allocate") {
        Allocation::Relayed(relay) => assert!(relay.ip().is_loopback(), "{relay}"),
        refused => panic!("coturn refused the issued credentials: {refused:?}"),
    }
    let mut wrong = password.to_owned();
    wrong.replace_range(0..1, if wrong.starts_with('A') { "B" } else { "A" });
    assert_eq!(allocate(turn.addr, username, &wrong).await.expect("allocate"), Allocation::Refused(401));
    // Signed with the right secret, but its expiry has passed.
    let expired = mint(SECRET.as_bytes(), &[], alice.user_id, Utc::now() - Duration::hours(2), 3600);
    assert_eq!(
        allocate(turn.addr, &expired.username, &expired.credential).await.expect("allocate"),
        Allocation::Refused(401)
    );

    let (status, body) = app.post("/v1/calls/turn-credentials", json!({}), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
}

#[tokio::test]
async fn without_a_turn_server_credentials_are_refused_with_turn_not_configured() {
    let app = TestApp::start().await;
    let alice = app.person("alice@noturn.test").await;
    let (status, body) = app.post("/v1/calls/turn-credentials", json!({}), Some(&alice.access)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(error_code(&body), "turn_not_configured");
}

fn call_path(chat: &Chat<'_>, call: &Value, action: &str) -> String {
    chat.path(&format!("/calls/{}/{action}", call["id"].as_str().expect("call id")))
}

async fn start(chat: &Chat<'_>, caller: &Person) -> Value {
    let (status, call) = chat.app.post(&chat.path("/calls"), json!({ "kind": "audio" }), Some(&caller.access)).await;
    assert_eq!(status, StatusCode::CREATED, "{call}");
    call
}

fn participant<'v>(call: &'v Value, person: &Person) -> &'v Value {
    let list = call["participants"].as_array().expect("participants");
    list.iter().find(|p| p["user_id"] == json!(person.user_id)).expect("a participant")
}

#[tokio::test]
async fn a_call_rings_across_replicas_and_an_answer_stops_the_ringing_elsewhere() {
    let app = TestApp::start().await;
    let replica = app.replica().await;
    let alice = app.person("alice@ring.test").await;
    let bob_laptop = app.person("bob@ring.test").await;
    let bob_phone = app.another_device(&bob_laptop, "bob@ring.test").await;
    let chat = group(&app, &alice, &[&bob_laptop]).await;
    let mut laptop = connect(&replica.base, &bob_laptop).await;
    let mut phone = connect(&app.base, &bob_phone).await;

    let (status, call) = app.post(&chat.path("/calls"), json!({ "kind": "video" }), Some(&alice.access)).await;
    assert_eq!(status, StatusCode::CREATED, "{call}");
    assert_eq!((call["status"].as_str(), call["kind"].as_str()), (Some("ringing"), Some("video")));
    assert_eq!(participant(&call, &alice)["state"], "joined");
    for socket in [&mut laptop, &mut phone] {
        let ring = next_of(socket, "call_updated").await;
        assert_eq!(ring["call"]["id"], call["id"]);
        assert_eq!(participant(&ring["call"], &bob_laptop)["state"], "invited");
    }

    let (status, answered) = app.post(&call_path(&chat, &call, "accept"), json!({}), Some(&bob_phone.access)).await;
    assert_eq!(status, StatusCode::OK, "{answered}");
    assert_eq!(answered["status"], "active");
    // The laptop, on the other replica, learns the call was answered on the phone.
    let elsewhere = next_of(&mut laptop, "call_updated").await;
    assert_eq!(elsewhere["call"]["status"], "active");
    assert_eq!(participant(&elsewhere["call"], &bob_laptop)["device_id"], json!(bob_phone.device_id));
    let (status, body) = app.post(&call_path(&chat, &call, "accept"), json!({}), Some(&bob_laptop.access)).await;
    assert_eq!((status, error_code(&body)), (StatusCode::CONFLICT, "call_answered_elsewhere"));
    let (status, body) = app.post(&call_path(&chat, &call, "leave"), json!({}), Some(&bob_laptop.access)).await;
    assert_eq!((status, error_code(&body)), (StatusCode::CONFLICT, "call_state_conflict"), "not the device in it");

    let (status, after) = app.post(&call_path(&chat, &call, "leave"), json!({}), Some(&bob_phone.access)).await;
    assert_eq!((status, after["status"].as_str()), (StatusCode::OK, Some("active")), "alice is still in it");
    let (status, ended) = app.post(&call_path(&chat, &call, "leave"), json!({}), Some(&alice.access)).await;
    assert_eq!(
        (status, ended["status"].as_str(), ended["end_reason"].as_str()),
        (StatusCode::OK, Some("ended"), Some("hangup"))
    );
    let bob_left = next_of(&mut laptop, "call_updated").await;
    assert_eq!(bob_left["call"]["status"], "active");
    let last = next_of(&mut laptop, "call_updated").await;
    assert_eq!(last["call"]["status"], "ended");

    let (status, records) = app.get(&chat.path("/calls"), Some(&bob_laptop.access)).await;
    assert_eq!(status, StatusCode::OK, "{records}");
    let record = &records[0];
    assert_eq!(record["id"], call["id"]);
    for field in ["started_at", "answered_at", "ended_at"] {
        assert!(record[field].is_string(), "{field}: {record}");
    }
    assert_eq!(participant(record, &bob_laptop)["state"], "left");
    assert!(participant(record, &bob_laptop)["left_at"].is_string());
}

#[tokio::test]
async fn two_devices_accepting_at_once_make_exactly_one_winner() {
    let app = TestApp::start().await;
    let alice = app.person("alice@race.test").await;
    let bob_laptop = app.person("bob@race.test").await;
    let bob_phone = app.another_device(&bob_laptop, "bob@race.test").await;
    let chat = group(&app, &alice, &[&bob_laptop]).await;
    for round in 0..5 {
        let (status, call) = app.post(&chat.path("/calls"), json!({ "kind": "audio" }), Some(&alice.access)).await;
        assert_eq!(status, StatusCode::CREATED, "{call}");
        let accept = call_path(&chat, &call, "accept");
        let (a, b) = tokio::join!(
            app.post_owned(accept.clone(), json!({}), bob_laptop.access.clone()),
            app.post_owned(accept.clone(), json!({}), bob_phone.access.clone()),
        );
        let mut outcomes = [(a.0, error_code(&a.1).to_owned()), (b.0, error_code(&b.1).to_owned())];
        outcomes.sort();
        assert_eq!(
            outcomes,
            [(StatusCode::OK, String::new()), (StatusCode::CONFLICT, "call_answered_elsewhere".to_owned())],
            "round {round}"
        );
        let (status, ended) = app.post(&call_path(&chat, &call, "leave"), json!({}), Some(&alice.access)).await;
        assert_eq!(status, StatusCode::OK, "{ended}");
        let winner = if a.0 == StatusCode::OK { &bob_laptop } else { &bob_phone };
        let (status, ended) = app.post(&call_path(&chat, &call, "leave"), json!({}), Some(&winner.access)).await;
        assert_eq!((status, ended["status"].as_str()), (StatusCode::OK, Some("ended")));
    }
}

#[tokio::test]
async fn declined_cancelled_busy_and_bad_calls_get_their_own_answers() {
    let app = TestApp::start().await;
    let alice = app.person("alice@calls.test").await;
    let bob = app.person("bob@calls.test").await;
    let carol = app.person("carol@calls.test").await;
    let chat = group(&app, &alice, &[&bob]).await;

    // Declined by the only callee.
    let call = start(&chat, &alice).await;
    let (status, body) = app.post(&chat.path("/calls"), json!({ "kind": "audio" }), Some(&bob.access)).await;
    assert_eq!((status, error_code(&body)), (StatusCode::CONFLICT, "call_in_progress"));
    let (status, body) = app.post(&call_path(&chat, &call, "leave"), json!({}), Some(&bob.access)).await;
    assert_eq!((status, error_code(&body)), (StatusCode::CONFLICT, "call_state_conflict"), "bob is not in it");
    let (status, declined) = app.post(&call_path(&chat, &call, "decline"), json!({}), Some(&bob.access)).await;
    assert_eq!((status, declined["end_reason"].as_str()), (StatusCode::OK, Some("declined")), "{declined}");
    assert_eq!(participant(&declined, &alice)["state"], "left", "the caller is not left in a call that ended");
    let (status, body) = app.post(&call_path(&chat, &call, "accept"), json!({}), Some(&bob.access)).await;
    assert_eq!((status, error_code(&body)), (StatusCode::CONFLICT, "call_ended"));

    // Cancelled by the caller: the callee missed it.
    let call = start(&chat, &alice).await;
    let (status, cancelled) = app.post(&call_path(&chat, &call, "leave"), json!({}), Some(&alice.access)).await;
    assert_eq!((status, cancelled["end_reason"].as_str()), (StatusCode::OK, Some("cancelled")));
    assert_eq!(participant(&cancelled, &bob)["state"], "missed");

    // Busy: a device in one call cannot start or join another.
    let other = group(&app, &alice, &[&carol]).await;
    let call = start(&chat, &alice).await;
    let (status, _) = app.post(&call_path(&chat, &call, "accept"), json!({}), Some(&bob.access)).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = app.post(&other.path("/calls"), json!({ "kind": "audio" }), Some(&alice.access)).await;
    assert_eq!((status, error_code(&body)), (StatusCode::CONFLICT, "device_busy"));
    let (status, ring) = app.post(&other.path("/calls"), json!({ "kind": "screen" }), Some(&carol.access)).await;
    assert_eq!(status, StatusCode::CREATED, "{ring}");
    let (status, body) = app.post(&call_path(&other, &ring, "accept"), json!({}), Some(&alice.access)).await;
    assert_eq!((status, error_code(&body)), (StatusCode::CONFLICT, "device_busy"));

    // Unknown call, not a member, bad kind.
    let unknown = chat.path(&format!("/calls/{}/accept", uuid::Uuid::now_v7()));
    let (status, body) = app.post(&unknown, json!({}), Some(&bob.access)).await;
    assert_eq!((status, error_code(&body)), (StatusCode::NOT_FOUND, "not_found"));
    let (status, body) = app.post(&call_path(&chat, &call, "accept"), json!({}), Some(&carol.access)).await;
    assert_eq!((status, error_code(&body)), (StatusCode::NOT_FOUND, "not_found"), "carol is not in this conversation");
    let (status, body) = app.post(&chat.path("/calls"), json!({ "kind": "hologram" }), Some(&bob.access)).await;
    assert_eq!((status, error_code(&body)), (StatusCode::UNPROCESSABLE_ENTITY, "invalid_body"));
}

#[tokio::test]
async fn the_call_record_pages_back_by_call_id_and_refuses_bad_cursors() {
    let app = TestApp::start().await;
    let alice = app.person("alice@record.test").await;
    let bob = app.person("bob@record.test").await;
    let carol = app.person("carol@record.test").await;
    let chat = group(&app, &alice, &[&bob]).await;
    let mut started = Vec::new();
    for _ in 0..5 {
        let call = start(&chat, &alice).await;
        let (status, _) = app.post(&call_path(&chat, &call, "leave"), json!({}), Some(&alice.access)).await;
        assert_eq!(status, StatusCode::OK);
        started.push(call["id"].as_str().expect("id").to_owned());
    }
    let newest_first: Vec<String> = started.iter().rev().cloned().collect();
    let ids = |body: &Value| -> Vec<String> {
        body.as_array().expect("a list").iter().map(|c| c["id"].as_str().expect("id").to_owned()).collect()
    };
    let list = |query: String| {
        let path = chat.path(&format!("/calls{query}"));
        let token = bob.access.clone();
        let app = &app;
        async move { app.get(&path, Some(&token)).await }
    };

    let (status, all) = list(String::new()).await;
    assert_eq!((status, ids(&all)), (StatusCode::OK, newest_first.clone()), "no parameters: the newest 100");
    // Pages of two, each after the last id of the one before, then an empty page.
    let mut paged = Vec::new();
    let mut query = "?limit=2".to_owned();
    loop {
        let (status, page) = list(query).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        let page = ids(&page);
        assert!(page.len() <= 2, "{page:?}");
        let Some(last) = page.last().cloned() else { break };
        paged.extend(page);
        query = format!("?limit=2&before_call_id={last}");
    }
    assert_eq!(paged, newest_first);
    let (status, older) = list(format!("?before_call_id={}", started[2])).await;
    assert_eq!((status, ids(&older)), (StatusCode::OK, vec![started[1].clone(), started[0].clone()]));

    // Bad input: each a 422 with its own code, naming the field where there is one.
    let elsewhere = group(&app, &carol, &[&alice]).await;
    let foreign = start(&elsewhere, &carol).await;
    let cases = [
        ("?limit=0".to_owned(), "validation_failed", Some("limit")),
        ("?limit=201".to_owned(), "validation_failed", Some("limit")),
        ("?limit=-3".to_owned(), "validation_failed", Some("limit")),
        ("?limit=ten".to_owned(), "invalid_query", None),
        ("?before_call_id=yesterday".to_owned(), "invalid_query", None),
        ("?since=2026-01-01T00:00:00Z".to_owned(), "invalid_query", None),
        (format!("?before_call_id={}", Uuid::now_v7()), "validation_failed", Some("before_call_id")),
        // Another organization's call reads exactly like one that does not exist.
        (
            format!("?before_call_id={}", foreign["id"].as_str().expect("id")),
            "validation_failed",
            Some("before_call_id"),
        ),
    ];
    for (query, code, field) in cases {
        let (status, body) = list(query.clone()).await;
        assert_eq!((status, error_code(&body)), (StatusCode::UNPROCESSABLE_ENTITY, code), "{query}: {body}");
        if let Some(field) = field {
            assert_eq!(body["error"]["details"]["field"], json!(field), "{query}: {body}");
        }
    }
    let (status, body) = app.get(&chat.path("/calls?limit=2"), Some(&carol.access)).await;
    assert_eq!((status, error_code(&body)), (StatusCode::NOT_FOUND, "not_found"), "carol is not a member");
}

/// A data plane whose calls ring for `ring` seconds and lose a device after `silent` seconds
/// without a heartbeat, swept every 100 ms.
async fn impatient_app(ring: &str, silent: &str) -> TestApp {
    TestApp::start_with(&[
        "--rate-limit-factor",
        "1000",
        "--call-ring-timeout-secs",
        ring,
        "--call-heartbeat-timeout-secs",
        silent,
        "--call-sweep-ms",
        "100",
        // The push rows a ring queues stay in the table to be looked at; nothing is sent.
        "--outbox-poll-ms",
        "0",
    ])
    .await
}

/// The call as listed, once `done` holds of it (polled every 100 ms, at most 60 times).
async fn call_when(chat: &Chat<'_>, who: &Person, call: &Value, done: impl Fn(&Value) -> bool) -> Value {
    for _ in 0..60 {
        let (status, calls) = chat.app.get(&chat.path("/calls"), Some(&who.access)).await;
        assert_eq!(status, StatusCode::OK, "{calls}");
        let listed = calls.as_array().expect("calls").iter().find(|c| c["id"] == call["id"]).expect("listed").clone();
        if done(&listed) {
            return listed;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("the call never reached the expected state in 6 s");
}

#[tokio::test]
async fn a_ring_nobody_answers_ends_as_missed() {
    // The caller's heartbeat outlasts the ring (else she would leave first: `cancelled`).
    let app = impatient_app("1", "30").await;
    let alice = app.person("alice@missed.test").await;
    let bob = app.person("bob@missed.test").await;
    let chat = group(&app, &alice, &[&bob]).await;
    // Bob can be pushed to: the sweeper's timeout queues his missed call like any other path.
    sqlx::query(
        "INSERT INTO push_subscriptions (user_id, device_id, endpoint, p256dh, auth)
         VALUES ($1, $2, 'https://192.0.2.1/bob', $3, $4)",
    )
    .bind(bob.user_id)
    .bind(bob.device_id)
    .bind([4u8; 65].as_slice())
    .bind([0u8; 16].as_slice())
    .execute(&app.db.owner)
    .await
    .expect("a subscription");
    let mut socket = connect(&app.base, &bob).await;
    let call = start(&chat, &alice).await;
    assert_eq!(next_of(&mut socket, "call_updated").await["call"]["status"], "ringing");
    let ended = next_of(&mut socket, "call_updated").await;
    assert_eq!(
        (ended["call"]["status"].as_str(), ended["call"]["end_reason"].as_str()),
        (Some("ended"), Some("missed"))
    );
    assert_eq!(participant(&ended["call"], &bob)["state"], "missed");
    assert_eq!(participant(&ended["call"], &alice)["state"], "left");
    let (status, body) = app.post(&call_path(&chat, &call, "accept"), json!({}), Some(&bob.access)).await;
    assert_eq!((status, error_code(&body)), (StatusCode::CONFLICT, "call_ended"));
    let pushes: Vec<(String, Uuid)> = sqlx::query_as(
        "SELECT event_type, recipient_user_id FROM outbound_notifications WHERE channel = 'push' ORDER BY created_at, id",
    )
    .fetch_all(&app.db.owner)
    .await
    .expect("push rows");
    assert_eq!(pushes, [("call.incoming".to_owned(), bob.user_id), ("call.missed".to_owned(), bob.user_id)]);
}

#[tokio::test]
async fn a_device_that_stops_its_heartbeats_leaves_and_the_last_one_ends_the_call() {
    let app = impatient_app("30", "1").await;
    let alice = app.person("alice@silent.test").await;
    let bob = app.person("bob@silent.test").await;
    let chat = group(&app, &alice, &[&bob]).await;
    let call = start(&chat, &alice).await;
    let (status, _) = app.post(&call_path(&chat, &call, "accept"), json!({}), Some(&bob.access)).await;
    assert_eq!(status, StatusCode::OK);
    // Alice keeps her heartbeats up while Bob's device has gone silent (crashed, or its replica).
    let bob_gone = async { call_when(&chat, &alice, &call, |c| participant(c, &bob)["state"] == "left").await };
    let beats = async {
        for _ in 0..40 {
            let (status, body) = app.post(&call_path(&chat, &call, "heartbeat"), json!({}), Some(&alice.access)).await;
            assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
            tokio::time::sleep(std::time::Duration::from_millis(150)).await;
        }
    };
    let listed = tokio::select! {
        listed = bob_gone => listed,
        _ = beats => panic!("bob was never taken out of the call"),
    };
    assert_eq!(
        (listed["status"].as_str(), participant(&listed, &alice)["state"].as_str()),
        (Some("active"), Some("joined"))
    );
    let (status, body) = app.post(&call_path(&chat, &call, "heartbeat"), json!({}), Some(&bob.access)).await;
    assert_eq!((status, error_code(&body)), (StatusCode::CONFLICT, "call_state_conflict"));
    // Then Alice goes silent too: nobody is left, the call ends.
    let ended = call_when(&chat, &alice, &call, |c| c["status"] == "ended").await;
    assert_eq!(ended["end_reason"], "hangup");
    assert_eq!(participant(&ended, &alice)["state"], "left");
}

#[tokio::test]
async fn a_signal_reaches_the_addressed_device_only_across_replicas() {
    let app = TestApp::start().await;
    let replica = app.replica().await;
    let alice = app.person("alice@signal.test").await;
    let bob_laptop = app.person("bob@signal.test").await;
    let bob_phone = app.another_device(&bob_laptop, "bob@signal.test").await;
    let carol = app.person("carol@signal.test").await;
    let chat = group(&app, &alice, &[&bob_laptop, &carol]).await;
    let call = start(&chat, &alice).await;
    let (status, _) = app.post(&call_path(&chat, &call, "accept"), json!({}), Some(&bob_phone.access)).await;
    assert_eq!(status, StatusCode::OK);
    let mut phone = connect(&replica.base, &bob_phone).await;
    let mut laptop = connect(&app.base, &bob_laptop).await;
    let mut carols = connect(&app.base, &carol).await;

    let offer = chat.application(0, b"v=0 o=- an SDP offer sealed for bob's phone");
    let signal =
        |to: Uuid, ciphertext: &[u8]| json!({ "to_device_id": to, "key_generation": 0, "ciphertext": b64(ciphertext) });
    let path = call_path(&chat, &call, "signal");
    let (status, body) = app.post(&path, signal(bob_phone.device_id, &offer), Some(&alice.access)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let got = next_of(&mut phone, "call_signal").await;
    assert_eq!(got["ciphertext"], json!(b64(&offer)));
    assert_eq!(
        (got["from_user_id"].clone(), got["from_device_id"].clone()),
        (json!(alice.user_id), json!(alice.device_id))
    );
    assert_eq!(got["call_id"], call["id"]);

    // Refused: a sender or target not in the call, a payload that is not this group's MLS
    // application message, one too large.
    for (who, to, ciphertext, want) in [
        (&bob_laptop, alice.device_id, offer.clone(), (StatusCode::CONFLICT, "call_state_conflict")),
        (&alice, bob_laptop.device_id, offer.clone(), (StatusCode::CONFLICT, "call_state_conflict")),
        (&alice, carol.device_id, offer.clone(), (StatusCode::CONFLICT, "call_state_conflict")),
        (&alice, alice.device_id, offer.clone(), (StatusCode::CONFLICT, "call_state_conflict")),
        (&alice, bob_phone.device_id, vec![7u8; 64], (StatusCode::UNPROCESSABLE_ENTITY, "invalid_mls_message")),
        (
            &alice,
            bob_phone.device_id,
            chat.application(0, &vec![1u8; 17 * 1024]),
            (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
        ),
    ] {
        let (status, body) = app.post(&path, signal(to, &ciphertext), Some(&who.access)).await;
        assert_eq!((status, error_code(&body)), want, "{body}");
    }
    // Framed consistently, but for an epoch the conversation has not reached (it is at 0).
    let ahead = json!({ "to_device_id": bob_phone.device_id, "key_generation": 1, "ciphertext": b64(&chat.application(1, b"x")) });
    let (status, body) = app.post(&path, ahead, Some(&alice.access)).await;
    assert_eq!((status, error_code(&body)), (StatusCode::CONFLICT, "unknown_generation"), "{body}");
    assert_eq!(body["error"]["details"]["current_key_generation"], 0, "{body}");
    let elsewhere = Chat { app: &app, org: chat.org, conversation: Uuid::now_v7() }.application(0, b"x");
    let (status, body) = app.post(&path, signal(bob_phone.device_id, &elsewhere), Some(&alice.access)).await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::UNPROCESSABLE_ENTITY, "invalid_mls_message"),
        "another group's"
    );

    // The laptop and Carol saw the call change, never the signal.
    let (status, _) = app.post(&call_path(&chat, &call, "leave"), json!({}), Some(&bob_phone.access)).await;
    assert_eq!(status, StatusCode::OK);
    for socket in [&mut laptop, &mut carols] {
        loop {
            let frame = next_frame(socket).await;
            assert_ne!(frame["type"], "call_signal", "{frame}");
            if frame["type"] == "call_updated" && participant(&frame["call"], &bob_phone)["state"] == "left" {
                break;
            }
        }
    }
}
