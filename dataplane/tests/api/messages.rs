//! Messages through the HTTP API, framed like the SDK's MLS application messages: sends
//! (idempotent, framing-checked, sequenced, size-limited), history, edits and deletes, receipts,
//! replies, and the send batch that stores them. (The encrypted part is random bytes here: the
//! server cannot tell, which is the point; the SDK's own tests encrypt for real.)

use crate::conversations::{Chat, group};
use crate::support::{Person, TestApp, b64, error_code};
use conclave_dataplane::context::session::AuthUser;
use conclave_dataplane::messages::batch::{BatchStats, DEFAULT_DEADLINE, Link, Pending, Stored, store, write_batch};
use conclave_protocol::mls_wire;
use reqwest::StatusCode;
use serde_json::json;
use std::sync::atomic::Ordering;
use uuid::Uuid;

#[tokio::test]
async fn sends_are_idempotent_framing_checked_sequenced_and_size_limited() {
    let app = TestApp::start().await;
    let alice = app.person("alice@example.org").await;
    let bob = app.person("bob@example.org").await;
    let chat = group(&app, &alice, &[&bob]).await;
    assert_eq!(chat.rotate(&alice, 1).await.0, StatusCode::CREATED);

    let id = Uuid::now_v7();
    let body = chat.message(&alice, 1, id, &[5u8; 64]);
    let (first_status, first) = app.post(&chat.path("/messages"), body.clone(), Some(&alice.access)).await;
    let (retry_status, retry) = app.post(&chat.path("/messages"), body, Some(&alice.access)).await;
    assert_eq!((first_status, retry_status), (StatusCode::CREATED, StatusCode::OK));
    assert_eq!(first, retry, "a retry returns the stored message");

    // What is not an MLS application message of this group in the epoch named is refused, each
    // with the reason: a blob, a commit, another conversation's group, another epoch.
    let other_group =
        mls_wire::fake::private_message(Uuid::now_v7().as_bytes(), 1, mls_wire::content_type::APPLICATION, &[6u8; 64]);
    let commit =
        mls_wire::fake::private_message(chat.conversation.as_bytes(), 1, mls_wire::content_type::COMMIT, &[6u8; 64]);
    for (ciphertext, reason) in [
        (vec![7u8; 64], "not an MLS 1.0 message"),
        (commit, "not an encrypted MLS application message"),
        (other_group, "another conversation's group"),
        (chat.application(2, &[6u8; 64]), "framed for epoch 2, not key_generation 1"),
    ] {
        let mut bad = chat.message(&bob, 1, Uuid::now_v7(), &[6u8; 64]);
        bad["ciphertext"] = json!(b64(&ciphertext));
        let (status, body) = app.post(&chat.path("/messages"), bad, Some(&bob.access)).await;
        assert_eq!((status, error_code(&body)), (StatusCode::UNPROCESSABLE_ENTITY, "invalid_mls_message"), "{reason}");
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(reason), "{message} should say {reason}");
    }

    let (status, body) = chat.send(&bob, 1, &vec![1u8; 262_145]).await;
    assert_eq!((status, error_code(&body)), (StatusCode::PAYLOAD_TOO_LARGE, "message_too_large"));
    let (status, second) = chat.send(&bob, 1, &[8u8; 32]).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(second["seq"], 2, "refused sends took no sequence number");
    assert_eq!(app.count("SELECT count(*) FROM messages").await, 2);
    assert_eq!(app.count("SELECT last_seq FROM conversations").await, 2);
}

#[tokio::test]
async fn history_pages_in_both_directions_and_edits_and_deletes_replace_the_ciphertext() {
    let app = TestApp::start().await;
    let alice = app.person("alice@example.org").await;
    let bob = app.person("bob@example.org").await;
    let chat = group(&app, &alice, &[&bob]).await;
    chat.rotate(&alice, 1).await;
    let mut ids = Vec::new();
    for i in 0..5u8 {
        let (_, m) = chat.send(&alice, 1, &[i; 20]).await;
        ids.push(m["id"].as_str().expect("id").to_owned());
    }
    let (_, page) = app.get(&format!("{}?after_seq=1&limit=2", chat.path("/messages")), Some(&bob.access)).await;
    let seqs: Vec<i64> =
        page["messages"].as_array().expect("messages").iter().map(|m| m["seq"].as_i64().expect("seq")).collect();
    assert_eq!((seqs, page["has_more"].as_bool()), (vec![2, 3], Some(true)));
    let (_, page) = app.get(&format!("{}?before_seq=3&limit=5", chat.path("/messages")), Some(&bob.access)).await;
    let seqs: Vec<i64> =
        page["messages"].as_array().expect("messages").iter().map(|m| m["seq"].as_i64().expect("seq")).collect();
    assert_eq!((seqs, page["has_more"].as_bool()), (vec![2, 1], Some(false)));
    let (status, body) = app.get(&format!("{}?limit=1000", chat.path("/messages")), Some(&bob.access)).await;
    assert_eq!((status, error_code(&body)), (StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"));

    // Edit: a new ciphertext under the same message; only the sending device may.
    let (_, original) = app.get(&format!("{}?after_seq=0&limit=1", chat.path("/messages")), Some(&alice.access)).await;
    let original = &original["messages"][0];
    let client_id: Uuid = original["client_message_id"].as_str().and_then(|s| s.parse().ok()).expect("client id");
    let mut edit = chat.message(&alice, 1, client_id, &[42u8; 24]);
    edit.as_object_mut().expect("object").remove("client_message_id");
    let (status, body) = app.patch(&chat.path(&format!("/messages/{}", ids[0])), edit.clone(), &bob.access).await;
    assert_eq!((status, error_code(&body)), (StatusCode::FORBIDDEN, "not_the_sender"));
    let (status, edited) = app.patch(&chat.path(&format!("/messages/{}", ids[0])), edit, &alice.access).await;
    assert_eq!(status, StatusCode::OK, "{edited}");
    assert_eq!(edited["ciphertext"], json!(b64(&chat.application(1, &[42u8; 24]))));
    assert!(edited["edited_at"].is_string());
    let old: i64 = sqlx::query_scalar("SELECT count(*) FROM messages WHERE ciphertext = $1")
        .bind(chat.application(1, &[0u8; 20]))
        .fetch_one(&app.db.owner)
        .await
        .expect("count");
    assert_eq!(old, 0, "the old ciphertext is gone");

    let (status, _) = app.delete(&chat.path(&format!("/messages/{}", ids[1])), &bob.access).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = app.delete(&chat.path(&format!("/messages/{}", ids[1])), &alice.access).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, page) = app.get(&format!("{}?after_seq=1&limit=1", chat.path("/messages")), Some(&bob.access)).await;
    let tombstone = &page["messages"][0];
    assert_eq!(tombstone["seq"], 2);
    assert!(tombstone["ciphertext"].is_null() && tombstone["deleted_at"].is_string());
}

#[tokio::test]
async fn receipts_are_cursors_that_only_move_forward() {
    let app = TestApp::start().await;
    let alice = app.person("alice@example.org").await;
    let bob = app.person("bob@example.org").await;
    let chat = group(&app, &alice, &[&bob]).await;
    chat.rotate(&alice, 1).await;
    for i in 0..3u8 {
        chat.send(&alice, 1, &[i; 20]).await;
    }
    let (status, member) =
        app.post(&chat.path("/receipts"), json!({ "delivered_seq": 3, "read_seq": 2 }), Some(&bob.access)).await;
    assert_eq!(status, StatusCode::OK, "{member}");
    assert_eq!((member["delivered_seq"].as_i64(), member["read_seq"].as_i64()), (Some(3), Some(2)));
    let (_, member) = app.post(&chat.path("/receipts"), json!({ "read_seq": 1 }), Some(&bob.access)).await;
    assert_eq!(member["read_seq"], 2, "never backwards");
    let (_, member) = app.post(&chat.path("/receipts"), json!({ "read_seq": 99 }), Some(&bob.access)).await;
    assert_eq!(
        (member["delivered_seq"].as_i64(), member["read_seq"].as_i64()),
        (Some(3), Some(3)),
        "never past the last message"
    );
    // Alice sees Bob's cursors in the conversation.
    let (_, conversation) = app.get(&chat.path(""), Some(&alice.access)).await;
    let bobs = conversation["members"]
        .as_array()
        .expect("members")
        .iter()
        .find(|m| m["user_id"] == json!(bob.user_id))
        .cloned();
    assert_eq!(bobs.map(|m| m["read_seq"].clone()), Some(json!(3)));
    assert_eq!(app.count("SELECT count(*) FROM message_deliveries").await, 0, "no per-message rows");
}

/// A send as the batch writer receives it, framed like the SDK's MLS application messages.
async fn pending(app: &TestApp, chat: &Chat<'_>, by: &Person, generation: i32, client_message_id: Uuid) -> Pending {
    let session_id: Uuid = sqlx::query_scalar("SELECT id FROM session_tokens WHERE device_id = $1")
        .bind(by.device_id)
        .fetch_one(&app.db.owner)
        .await
        .expect("session");
    let ciphertext = chat.application(generation, &client_message_id.as_bytes().repeat(2));
    Pending {
        organization_id: chat.org,
        auth: AuthUser { user_id: by.user_id, session_id, device_id: by.device_id },
        conversation_id: chat.conversation,
        client_message_id,
        key_generation: generation,
        ciphertext,
        reply_to_id: None,
        attachment_ids: Vec::new(),
    }
}

fn outcome(answer: &Result<Stored, conclave_dataplane::error::ApiError>) -> String {
    match answer {
        Ok(Stored::Created(m)) => format!("created #{}", m.seq),
        Ok(Stored::Existing(m)) => format!("existing #{}", m.seq),
        Err(e) => format!("{} {}", e.status().as_u16(), e.code.as_str()),
    }
}

#[tokio::test]
async fn one_batch_answers_each_send_on_its_own_and_stores_only_the_accepted() {
    let app = TestApp::start().await;
    let alice = app.person("alice@example.org").await;
    let bob = app.person("bob@example.org").await;
    let carol = app.person("carol@example.org").await;
    let chat = group(&app, &alice, &[&bob, &carol]).await;
    assert_eq!(chat.rotate(&alice, 1).await.0, StatusCode::CREATED);
    let unrotated = group(&app, &alice, &[&bob]).await;
    let without_bob = group(&app, &alice, &[&carol]).await;
    // Carol's session ends before the batch is written.
    sqlx::query("UPDATE session_tokens SET revoked_at = now() WHERE user_id = $1")
        .bind(carol.user_id)
        .execute(&app.db.owner)
        .await
        .expect("revoke");

    let twice = Uuid::now_v7();
    let mut with_unknown_attachment = pending(&app, &chat, &alice, 1, Uuid::now_v7()).await;
    with_unknown_attachment.attachment_ids = vec![Uuid::now_v7()];
    let batch = vec![
        pending(&app, &chat, &alice, 1, Uuid::now_v7()).await,
        pending(&app, &unrotated, &alice, 1, Uuid::now_v7()).await,
        pending(&app, &chat, &bob, 1, twice).await,
        pending(&app, &without_bob, &bob, 1, Uuid::now_v7()).await,
        pending(&app, &chat, &bob, 1, twice).await,
        with_unknown_attachment,
        pending(&app, &chat, &carol, 1, Uuid::now_v7()).await,
        pending(&app, &chat, &bob, 2, Uuid::now_v7()).await,
        pending(&app, &Chat { org: unrotated.org, ..chat }, &bob, 1, Uuid::now_v7()).await,
        pending(&app, &chat, &alice, 1, Uuid::now_v7()).await,
    ];
    let answers = store(&mut Link::new(app.state.db.clone()), &batch, DEFAULT_DEADLINE).await.expect("one call");
    let outcomes: Vec<String> = answers.iter().map(outcome).collect();
    assert_eq!(
        outcomes,
        [
            "created #1",
            "409 rotation_required",
            "created #2",
            "404 not_found",
            "existing #2",
            "422 unknown_attachment",
            "401 session_revoked",
            "409 unknown_generation",
            "404 not_found",
            "created #3",
        ],
        "each send in queue order, answered on its own"
    );
    // The retry within the batch answers with the same stored message.
    let (Ok(Stored::Created(first)), Ok(Stored::Existing(again))) = (&answers[2], &answers[4]) else {
        panic!("{outcomes:?}")
    };
    assert_eq!((first.id, first.client_message_id), (again.id, twice));

    // Only the three accepted sends were written, with their sequence numbers, cursors and
    // nothing else; every other conversation is untouched.
    assert_eq!(app.count("SELECT count(*) FROM messages").await, 3);
    let stored: Vec<(i64, Uuid)> =
        sqlx::query_as("SELECT seq, sender_user_id FROM messages WHERE conversation_id = $1 ORDER BY seq")
            .bind(chat.conversation)
            .fetch_all(&app.db.owner)
            .await
            .expect("messages");
    assert_eq!(stored, [(1, alice.user_id), (2, bob.user_id), (3, alice.user_id)]);
    assert_eq!(app.count("SELECT sum(last_seq)::bigint FROM conversations").await, 3);
    let read: i64 =
        sqlx::query_scalar("SELECT read_seq FROM conversation_members WHERE conversation_id = $1 AND user_id = $2")
            .bind(chat.conversation)
            .bind(bob.user_id)
            .fetch_one(&app.db.owner)
            .await
            .expect("cursor");
    assert_eq!(read, 2, "the sender's own cursor moved with their send");
}

#[tokio::test]
async fn within_a_batch_the_first_acceptable_copy_is_stored_and_an_attachment_goes_to_the_first_stored_send() {
    let app = TestApp::start().await;
    let alice = app.person("alice@example.org").await;
    let bob = app.person("bob@example.org").await;
    let chat = group(&app, &alice, &[&bob]).await;
    assert_eq!(chat.rotate(&alice, 1).await.0, StatusCode::CREATED);
    let upload: Uuid = sqlx::query_scalar(
        "INSERT INTO message_attachments (organization_id, conversation_id, uploader_user_id, size_bytes,
                                          content_sha256, storage_key, status)
         VALUES ($1, $2, $3, 10, decode(repeat('ab', 32), 'hex'), 'test/one', 'stored') RETURNING id",
    )
    .bind(chat.org)
    .bind(chat.conversation)
    .bind(alice.user_id)
    .fetch_one(&app.db.owner)
    .await
    .expect("an uploaded attachment");

    let retried = Uuid::now_v7();
    let with_file = async |generation: i32, ids: Vec<Uuid>| {
        let mut send = pending(&app, &chat, &alice, generation, Uuid::now_v7()).await;
        send.attachment_ids = ids;
        send
    };
    let batch = vec![
        // A copy refused for its generation stores nothing; the next acceptable copy is stored
        // and the one after it is a retry of that one.
        pending(&app, &chat, &bob, 2, retried).await,
        pending(&app, &chat, &bob, 1, retried).await,
        pending(&app, &chat, &bob, 1, retried).await,
        // The attachment goes to the first send naming it that is stored, not to a refused one.
        with_file(2, vec![upload]).await,
        with_file(1, vec![upload, upload]).await,
        with_file(1, vec![upload]).await,
        pending(&app, &chat, &bob, 1, Uuid::now_v7()).await,
    ];
    let stats = BatchStats::default();
    let answers = write_batch(&mut Link::new(app.state.db.clone()), &batch, &stats, DEFAULT_DEADLINE).await;
    let outcomes: Vec<String> = answers.iter().map(outcome).collect();
    assert_eq!(
        outcomes,
        [
            "409 unknown_generation",
            "created #1",
            "existing #1",
            "409 unknown_generation",
            "created #2",
            "422 unknown_attachment",
            "created #3",
        ],
        "each send as if it came alone, after the ones before it"
    );
    assert_eq!(stats.batches.load(Ordering::Relaxed), 3, "split where a send names an attachment named before");
    let (attached_to, status): (Option<Uuid>, String) =
        sqlx::query_as("SELECT message_id, status FROM message_attachments WHERE id = $1")
            .bind(upload)
            .fetch_one(&app.db.owner)
            .await
            .expect("attachment");
    let Ok(Stored::Created(stored_with_file)) = &answers[4] else { panic!("{outcomes:?}") };
    assert_eq!((attached_to, status.as_str()), (Some(stored_with_file.id), "attached"));
    assert_eq!(app.count("SELECT count(*) FROM messages").await, 3);
    assert_eq!(app.count("SELECT last_seq FROM conversations WHERE last_seq > 0").await, 3);
}

#[tokio::test]
async fn concurrent_sends_through_one_writer_stay_gap_free_per_conversation() {
    let app = TestApp::start_with(&["--rate-limit-factor", "1000", "--send-writers", "1"]).await;
    let alice = app.person("alice@example.org").await;
    let bob = app.person("bob@example.org").await;
    let first = group(&app, &alice, &[&bob]).await;
    let second = group(&app, &bob, &[&alice]).await;
    for chat in [&first, &second] {
        assert_eq!(chat.rotate(&alice, 1).await.0, StatusCode::CREATED);
    }
    let sends = (0..40u8).map(|i| {
        let chat = if i % 2 == 0 { &first } else { &second };
        let by = if i % 3 == 0 { &alice } else { &bob };
        let body = chat.message(by, 1, Uuid::now_v7(), &[i; 48]);
        app.post_owned(chat.path("/messages"), body, by.access.clone())
    });
    let answers = futures::future::join_all(sends).await;
    for (status, body) in &answers {
        assert_eq!(*status, StatusCode::CREATED, "{body}");
    }
    for chat in [&first, &second] {
        let seqs: Vec<i64> = sqlx::query_scalar("SELECT seq FROM messages WHERE conversation_id = $1 ORDER BY seq")
            .bind(chat.conversation)
            .fetch_all(&app.db.owner)
            .await
            .expect("messages");
        assert_eq!(seqs, (1..=20).collect::<Vec<i64>>());
    }
    // Every send went through the writer, whatever the batches turned out to be.
    let metrics = app.http.get(app.url("/metrics")).send().await.expect("scrape").text().await.expect("text");
    let value = |name: &str| -> u64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("{name} in {metrics}"))
    };
    assert_eq!(value("conclave_dataplane_send_batch_messages_total"), 40);
    let batches = value("conclave_dataplane_send_batches_total");
    assert!((1..=40).contains(&batches), "{batches} batches");
}

/// Two batches of one conversation can reach the database together (two replicas each have a
/// writer for it). The conversation's row lock is what orders them: whichever takes it first
/// writes all its sends and commits, and only then does the other read `last_seq`. Each
/// batch's sends therefore get consecutive numbers after the other's, with no gap and no
/// number twice, and a send that is in both (a client's retry while its first attempt is still
/// in flight) is stored once. Any change to how sequence numbers are taken (outside the lock,
/// or batches of one writer pipelined) has to keep this.
#[tokio::test]
async fn two_batches_of_one_conversation_in_flight_together_take_consecutive_sequence_numbers() {
    let app = TestApp::start().await;
    let alice = app.person("alice@example.org").await;
    let bob = app.person("bob@example.org").await;
    let chat = group(&app, &alice, &[&bob]).await;
    assert_eq!(chat.rotate(&alice, 1).await.0, StatusCode::CREATED);
    for round in 0..5 {
        let retried = Uuid::now_v7();
        let mut first = Vec::new();
        let mut second = Vec::new();
        for i in 0..6 {
            let by = if i % 2 == 0 { &alice } else { &bob };
            first.push(pending(&app, &chat, by, 1, if i == 3 { retried } else { Uuid::now_v7() }).await);
            second.push(pending(&app, &chat, by, 1, if i == 3 { retried } else { Uuid::now_v7() }).await);
        }
        let (mut one, mut other) = (Link::new(app.state.db.clone()), Link::new(app.state.db.clone()));
        let (a, b) =
            tokio::join!(store(&mut one, &first, DEFAULT_DEADLINE), store(&mut other, &second, DEFAULT_DEADLINE));
        let (a, b) = (a.expect("first batch"), b.expect("second batch"));
        let seqs = |answers: &[Result<Stored, conclave_dataplane::error::ApiError>]| -> Vec<(i64, bool)> {
            answers
                .iter()
                .map(|answer| match answer {
                    Ok(Stored::Created(m)) => (m.seq, true),
                    Ok(Stored::Existing(m)) => (m.seq, false),
                    Err(e) => panic!("{e:?}"),
                })
                .collect()
        };
        let (a, b) = (seqs(&a), seqs(&b));
        let created = |s: &[(i64, bool)]| s.iter().filter(|(_, c)| *c).map(|(q, _)| *q).collect::<Vec<_>>();
        let (ca, cb) = (created(&a), created(&b));
        assert_eq!(ca.len() + cb.len(), 11, "the retried send stored once: {a:?} {b:?}");
        // One batch entirely before the other, each one's numbers consecutive.
        let base = 11 * round;
        let (before, after) = if ca[0] < cb[0] { (&ca, &cb) } else { (&cb, &ca) };
        let expected: Vec<i64> = (base + 1..=base + 11).collect();
        assert_eq!([before.as_slice(), after.as_slice()].concat(), expected, "{a:?} {b:?}");
        assert_eq!(a[3].0, b[3].0, "both answers of the retried send name the one stored message");
    }
    let seqs: Vec<i64> = sqlx::query_scalar("SELECT seq FROM messages WHERE conversation_id = $1 ORDER BY seq")
        .bind(chat.conversation)
        .fetch_all(&app.db.owner)
        .await
        .expect("messages");
    assert_eq!(seqs, (1..=55).collect::<Vec<i64>>());
    assert_eq!(app.count("SELECT max(last_seq)::bigint FROM conversations").await, 55);
}

/// The backend behind the connection a writer kept.
async fn backend(link: &mut Link) -> i32 {
    let conn = link.kept().expect("the writer kept its connection");
    sqlx::query_scalar("SELECT pg_backend_pid()").fetch_one(conn).await.expect("pid")
}

/// A writer keeps its connection from one batch to the next (one round trip a batch, one warm
/// backend), and gives up a connection that failed: the next batch takes a fresh one from the
/// pool and is stored, with nothing lost or stored twice.
#[tokio::test]
async fn a_writer_keeps_its_connection_between_batches_and_replaces_one_that_failed() {
    let app = TestApp::start().await;
    let alice = app.person("alice@example.org").await;
    let bob = app.person("bob@example.org").await;
    let chat = group(&app, &alice, &[&bob]).await;
    assert_eq!(chat.rotate(&alice, 1).await.0, StatusCode::CREATED);
    let mut link = Link::new(app.state.db.clone());

    let first = vec![pending(&app, &chat, &alice, 1, Uuid::now_v7()).await];
    let answers = store(&mut link, &first, DEFAULT_DEADLINE).await.expect("first batch");
    assert_eq!(answers.iter().map(outcome).collect::<Vec<_>>(), ["created #1"]);
    let pid = backend(&mut link).await;
    let second = vec![pending(&app, &chat, &bob, 1, Uuid::now_v7()).await];
    store(&mut link, &second, DEFAULT_DEADLINE).await.expect("second batch");
    assert_eq!(backend(&mut link).await, pid, "the same backend served both batches");

    // The backend goes away (a restart, an administrator): that batch fails, the connection is
    // dropped, and the retry of the same send on the next batch is stored once.
    let terminated: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
        .bind(pid)
        .fetch_one(&app.state.db)
        .await
        .expect("terminate");
    assert!(terminated);
    let third = vec![pending(&app, &chat, &alice, 1, Uuid::now_v7()).await];
    let failed = store(&mut link, &third, DEFAULT_DEADLINE).await;
    assert!(failed.is_err(), "{failed:?}");
    assert!(link.kept().is_none(), "a connection that failed is not kept");
    let answers = store(&mut link, &third, DEFAULT_DEADLINE).await.expect("retried batch");
    assert_eq!(answers.iter().map(outcome).collect::<Vec<_>>(), ["created #3"]);
    assert_ne!(backend(&mut link).await, pid, "a fresh connection");
    assert_eq!(app.count("SELECT count(*) FROM messages").await, 3);
}

#[tokio::test]
async fn a_batch_that_fails_as_a_whole_is_retried_send_by_send() {
    let app = TestApp::start().await;
    let alice = app.person("alice@example.org").await;
    let bob = app.person("bob@example.org").await;
    let chat = group(&app, &alice, &[&bob]).await;
    assert_eq!(chat.rotate(&alice, 1).await.0, StatusCode::CREATED);
    // A ciphertext over the column's limit (the handler refuses it long before; here it stands
    // for anything that makes the one statement fail) takes the whole batch down with it.
    let mut oversized = pending(&app, &chat, &bob, 1, Uuid::now_v7()).await;
    oversized.ciphertext = vec![1u8; 262_145];
    let batch = vec![
        pending(&app, &chat, &alice, 1, Uuid::now_v7()).await,
        oversized,
        pending(&app, &chat, &bob, 1, Uuid::now_v7()).await,
    ];
    let stats = BatchStats::default();
    let answers = write_batch(&mut Link::new(app.state.db.clone()), &batch, &stats, DEFAULT_DEADLINE).await;
    let outcomes: Vec<String> = answers.iter().map(outcome).collect();
    assert_eq!(outcomes[0], "created #1");
    assert!(outcomes[1].starts_with("422 "), "{outcomes:?}");
    assert_eq!(outcomes[2], "created #2", "the failed batch left no gap");
    assert_eq!(app.count("SELECT count(*) FROM messages").await, 2);
    // The whole batch once, then each of its three sends on its own.
    assert_eq!((stats.batches.load(Ordering::Relaxed), stats.sends.load(Ordering::Relaxed)), (4, 6));
}

/// The organization's policy is checked in two places: `context::member_tx` for every
/// organization-scoped request, and again inside `conclave_send_messages` for the send batch (one
/// statement for many callers). Both must give the same answer for each rule.
#[tokio::test]
async fn the_send_batch_and_member_tx_enforce_the_same_organization_policy() {
    let app = TestApp::start().await;
    let alice = app.person("alice@example.org").await;
    let bob = app.person("bob@example.org").await;
    let chat = group(&app, &alice, &[&bob]).await;
    assert_eq!(chat.rotate(&alice, 1).await.0, StatusCode::CREATED);
    assert_eq!(chat.send(&alice, 1, &[1u8; 30]).await.0, StatusCode::CREATED);
    let org_path = format!("/v1/organizations/{}", chat.org);
    let both = |expected: (StatusCode, &'static str)| {
        let chat = &chat;
        let alice = &alice;
        let org_path = org_path.clone();
        async move {
            let (status, body) = chat.app.get(&org_path, Some(&alice.access)).await;
            assert_eq!((status, error_code(&body)), expected, "member_tx: {body}");
            let (status, body) = chat.send(alice, 1, &[2u8; 30]).await;
            assert_eq!((status, error_code(&body)), expected, "send batch: {body}");
        }
    };
    let policy = |sql: &'static str| {
        let app = &app;
        let org = chat.org;
        async move { sqlx::query(sql).bind(org).execute(&app.db.owner).await.expect("policy") }
    };

    policy("UPDATE organizations SET require_totp = true WHERE id = $1").await;
    both((StatusCode::FORBIDDEN, "totp_required_by_organization")).await;
    policy("UPDATE organizations SET require_totp = false WHERE id = $1").await;

    policy("UPDATE organizations SET session_lifetime_seconds = 3600 WHERE id = $1").await;
    sqlx::query("UPDATE session_tokens SET created_at = now() - interval '2 hours' WHERE user_id = $1")
        .bind(alice.user_id)
        .execute(&app.db.owner)
        .await
        .expect("age the session");
    both((StatusCode::UNAUTHORIZED, "session_expired_by_organization")).await;
    policy("UPDATE organizations SET session_lifetime_seconds = NULL WHERE id = $1").await;

    policy("UPDATE organizations SET status = 'suspended' WHERE id = $1").await;
    both((StatusCode::NOT_FOUND, "not_found")).await;
}

/// A message of `chat` sent by `by`; its id.
async fn sent(chat: &Chat<'_>, by: &Person) -> Uuid {
    let (status, message) = chat.send(by, 1, &[4u8; 32]).await;
    assert_eq!(status, StatusCode::CREATED, "{message}");
    message["id"].as_str().and_then(|s| s.parse().ok()).expect("message id")
}

/// Alice and Bob's conversation holding one message of Bob's, and a message Mallory sent in an
/// organization of her own: (Alice, Bob, their chat, Bob's message id, Mallory's message id).
async fn a_chat_and_a_foreign_message(app: &TestApp) -> (Person, Person, Chat<'_>, Uuid, Uuid) {
    let alice = app.person("alice@example.org").await;
    let bob = app.person("bob@example.org").await;
    let mallory = app.person("mallory@example.org").await;
    let chat = group(app, &alice, &[&bob]).await;
    assert_eq!(chat.rotate(&alice, 1).await.0, StatusCode::CREATED);
    let original = sent(&chat, &bob).await;
    let mallorys = group(app, &mallory, &[]).await;
    assert_eq!(mallorys.rotate(&mallory, 1).await.0, StatusCode::CREATED);
    let foreign = sent(&mallorys, &mallory).await;
    (alice, bob, chat, original, foreign)
}

#[tokio::test]
async fn a_reply_names_a_message_of_the_same_conversation_or_is_refused_like_an_unknown_id() {
    let app = TestApp::start().await;
    let (alice, bob, chat, original, foreign) = a_chat_and_a_foreign_message(&app).await;
    // Another conversation of the same organization.
    let workspace: Uuid = sqlx::query_scalar("SELECT id FROM workspaces WHERE organization_id = $1")
        .bind(chat.org)
        .fetch_one(&app.db.owner)
        .await
        .expect("workspace");
    let (status, other) = app
        .post(
            &format!("/v1/organizations/{}/workspaces/{workspace}/conversations", chat.org),
            json!({ "kind": "group", "member_user_ids": [bob.user_id] }),
            Some(&alice.access),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{other}");
    let other = Chat { conversation: other["id"].as_str().and_then(|s| s.parse().ok()).expect("id"), ..chat };
    assert_eq!(other.rotate(&alice, 1).await.0, StatusCode::CREATED);
    let elsewhere = sent(&other, &alice).await;

    let reply = |to: Uuid| {
        let mut body = chat.message(&alice, 1, Uuid::now_v7(), &[5u8; 32]);
        body["reply_to_id"] = json!(to);
        app.post_owned(chat.path("/messages"), body, alice.access.clone())
    };
    let (status, unknown) = reply(Uuid::now_v7()).await;
    assert_eq!((status, error_code(&unknown)), (StatusCode::NOT_FOUND, "not_found"), "{unknown}");
    for to in [foreign, elsewhere] {
        assert_eq!(reply(to).await, (StatusCode::NOT_FOUND, unknown.clone()), "the same answer as an unknown id");
    }
    let stored = "SELECT count(*) FROM messages";
    assert_eq!(app.count(stored).await, 3, "nothing stored for a refused reply");
    let last_seq: i64 = sqlx::query_scalar("SELECT last_seq FROM conversations WHERE id = $1")
        .bind(chat.conversation)
        .fetch_one(&app.db.owner)
        .await
        .expect("last_seq");
    assert_eq!(last_seq, 1, "no sequence number taken");

    let (status, answered) = reply(original).await;
    assert_eq!(status, StatusCode::CREATED, "{answered}");
    assert_eq!((answered["seq"].as_i64(), &answered["reply_to_id"]), (Some(2), &json!(original)));
    let (_, page) = app.get(&chat.path("/messages"), Some(&bob.access)).await;
    assert_eq!(page["messages"][1]["reply_to_id"], json!(original), "{page}");
}

#[tokio::test]
async fn a_batch_refuses_each_bad_reply_on_its_own_and_stores_the_rest() {
    let app = TestApp::start().await;
    let (alice, bob, chat, original, foreign) = a_chat_and_a_foreign_message(&app).await;

    let replying = async |by: &Person, to: Option<Uuid>| {
        let mut send = pending(&app, &chat, by, 1, Uuid::now_v7()).await;
        send.reply_to_id = to;
        send
    };
    let batch = vec![
        replying(&alice, None).await,
        replying(&bob, Some(foreign)).await,
        replying(&alice, Some(original)).await,
        replying(&bob, Some(Uuid::now_v7())).await,
        replying(&bob, Some(original)).await,
    ];
    let answers = store(&mut Link::new(app.state.db.clone()), &batch, DEFAULT_DEADLINE).await.expect("one call");
    let outcomes: Vec<String> = answers.iter().map(outcome).collect();
    assert_eq!(outcomes, ["created #2", "404 not_found", "created #3", "404 not_found", "created #4"]);
    let replies: Vec<(i64, Option<Uuid>)> =
        sqlx::query_as("SELECT seq, reply_to_id FROM messages WHERE conversation_id = $1 ORDER BY seq")
            .bind(chat.conversation)
            .fetch_all(&app.db.owner)
            .await
            .expect("messages");
    assert_eq!(replies, [(1, None), (2, None), (3, Some(original)), (4, Some(original))]);
    assert_eq!(app.count("SELECT count(*) FROM messages").await, 5, "four here, one in Mallory's organization");
}
