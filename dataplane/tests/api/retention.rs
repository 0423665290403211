//! Retention and legal holds (docs/compliance.md): what is past its window is deleted for real
//! (rows and blobs), nothing a standing hold covers is, a sweep cut short resumes, one replica at
//! a time holds the lease, and only admins manage holds, with other tenants' ids answering 404.
//!
//! The background sweep is off (`--retention-interval-ms 0`): each test runs passes itself
//! through the library, after moving messages back in time as the owner.

use crate::conversations::Chat;
use crate::realtime::{connect, next_of};
use crate::support::{Person, TestApp, error_code};
use conclave_dataplane::retention::{self, Target};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use uuid::Uuid;

async fn app_with_blobs() -> (TestApp, std::path::PathBuf) {
    crate::support::app_with_blobs("retention").await
}

fn blob_count(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir.join("blobs")).map(|entries| entries.count()).unwrap_or(0)
}

/// Sends a message and returns its id.
async fn send(chat: &Chat<'_>, by: &Person, generation: i32) -> Uuid {
    let (status, message) = chat.send(by, generation, &[1u8; 40]).await;
    assert_eq!(status, StatusCode::CREATED, "{message}");
    message["id"].as_str().and_then(|s| s.parse().ok()).expect("id")
}

/// Moves a message's creation back by `age` (a PostgreSQL interval), as the owner.
async fn age(app: &TestApp, message: Uuid, age: &str) {
    sqlx::query("UPDATE messages SET created_at = now() - $2::interval WHERE id = $1")
        .bind(message)
        .bind(age)
        .execute(&app.db.owner)
        .await
        .expect("age a message");
}

async fn workspace_of(app: &TestApp, chat: &Chat<'_>) -> Uuid {
    sqlx::query_scalar("SELECT workspace_id FROM conversations WHERE id = $1")
        .bind(chat.conversation)
        .fetch_one(&app.db.owner)
        .await
        .expect("workspace")
}

async fn set_retention(app: &TestApp, org: Uuid, org_days: Option<i32>, workspace_days: Option<i32>) {
    sqlx::query("UPDATE organizations SET message_retention_days = $2 WHERE id = $1")
        .bind(org)
        .bind(org_days)
        .execute(&app.db.owner)
        .await
        .expect("organization retention");
    sqlx::query("UPDATE workspaces SET message_retention_days = $2 WHERE organization_id = $1")
        .bind(org)
        .bind(workspace_days)
        .execute(&app.db.owner)
        .await
        .expect("workspace retention");
}

async fn messages_left(app: &TestApp, chat: &Chat<'_>) -> Vec<i64> {
    sqlx::query_scalar("SELECT seq FROM messages WHERE conversation_id = $1 ORDER BY seq")
        .bind(chat.conversation)
        .fetch_all(&app.db.owner)
        .await
        .expect("messages")
}

async fn pass(app: &TestApp) -> retention::Swept {
    retention::run_pass(&app.state).await.expect("a pass").expect("the lease")
}

async fn audit_intact(app: &TestApp, org: Uuid) {
    let broken: Option<i64> = sqlx::query_scalar("SELECT chain_seq FROM conclave_audit_verify($1)")
        .bind(org)
        .fetch_optional(&app.db.owner)
        .await
        .expect("verify");
    assert_eq!(broken, None, "the audit chain verifies");
}

#[tokio::test]
async fn retention_deletes_exactly_what_is_past_its_window_with_everything_only_it_needed() {
    let (app, dir) = app_with_blobs().await;
    let alice = app.person("alice@example.org").await;
    let bob = app.person("bob@example.org").await;
    let chat = crate::reactions::ready_chat(&app, &alice, &bob).await;

    // Generation 1: an old message with an attachment, a reaction and a pin, and another one
    // just past the window. Generation 2: one just inside the window, one new.
    let data = vec![42u8; 3000];
    let hash = hex::encode(Sha256::digest(&data));
    let url = app.url(&chat.path(&format!("/attachments?size={}&sha256={hash}", data.len())));
    let (status, attachment) = crate::support::exchange(app.http.post(url).bearer_auth(&alice.access).body(data)).await;
    assert_eq!(status, StatusCode::CREATED, "{attachment}");
    let mut body = chat.message(&alice, 1, Uuid::now_v7(), &[1u8; 40]);
    body["attachment_ids"] = json!([attachment["id"]]);
    let (status, first) = app.post(&chat.path("/messages"), body, Some(&alice.access)).await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    let first: Uuid = first["id"].as_str().and_then(|s| s.parse().ok()).expect("id");
    let reaction = json!({ "key_generation": 1, "nonce": crate::support::b64(&[3u8; 12]),
                           "ciphertext": crate::support::b64(&[5u8; 20]), "value_tag": crate::support::b64(&[6u8; 32]) });
    let (status, body) =
        app.post(&chat.path(&format!("/messages/{first}/reactions")), reaction, Some(&bob.access)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = app.post(&chat.path("/pins"), json!({ "message_id": first }), Some(&bob.access)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let second = send(&chat, &bob, 1).await;
    assert_eq!(chat.rotate(&alice, 2).await.0, StatusCode::CREATED);
    let third = send(&chat, &alice, 2).await;
    let _fourth = send(&chat, &bob, 2).await;
    age(&app, first, "40 days").await;
    age(&app, second, "30 days 1 minute").await;
    age(&app, third, "29 days 23 hours 59 minutes").await;
    assert_eq!(blob_count(&dir), 1);

    // No retention anywhere: nothing to do. The workspace's own period wins over the
    // organization's: 60 days keeps everything even where the organization says 30.
    assert_eq!(pass(&app).await, retention::Swept::default());
    set_retention(&app, chat.org, Some(30), Some(60)).await;
    assert_eq!(pass(&app).await.messages, 0);
    assert_eq!(messages_left(&app, &chat).await, vec![1, 2, 3, 4]);

    // The workspace sets none: the organization's 30 days apply.
    set_retention(&app, chat.org, Some(30), None).await;
    let mut socket = connect(&app.base, &bob).await;
    let swept = pass(&app).await;
    assert_eq!(
        swept,
        retention::Swept { batches: 1, messages: 2, attachments: 1, reactions: 1, pins: 1, key_generations: 1 }
    );
    assert_eq!(messages_left(&app, &chat).await, vec![3, 4], "exactly the two past the window");
    assert_eq!(app.count("SELECT count(*) FROM message_reactions").await, 0);
    assert_eq!(app.count("SELECT count(*) FROM message_pins").await, 0);
    assert_eq!(app.count("SELECT count(*) FROM message_attachments").await, 0, "the attachment row is gone");
    assert_eq!(blob_count(&dir), 0, "and so is its blob");
    let generations: Vec<i32> =
        sqlx::query_scalar("SELECT generation FROM conversation_encryption_keys WHERE conversation_id = $1")
            .bind(chat.conversation)
            .fetch_all(&app.db.owner)
            .await
            .expect("generations");
    assert_eq!(generations, vec![2], "generation 1 protected only deleted messages");
    let used: i64 = sqlx::query_scalar("SELECT attachment_bytes_used FROM organizations WHERE id = $1")
        .bind(chat.org)
        .fetch_one(&app.db.owner)
        .await
        .expect("quota");
    assert_eq!(used, 0, "the attachment's bytes went back to the quota");

    // Members learn it: on the socket, and in the conversation they read.
    let frame = next_of(&mut socket, "history_removed").await;
    assert_eq!(frame["conversation_id"], json!(chat.conversation));
    assert_eq!(frame["before_seq"], 3);
    let (status, conversation) = app.get(&chat.path(""), Some(&bob.access)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(conversation["history_removed_before_seq"], 3);
    let (status, page) = app.get(&chat.path("/messages"), Some(&bob.access)).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let seqs: Vec<i64> = page_seqs(&page);
    assert_eq!(seqs, vec![3, 4]);

    // The audit trail has the counts, and nothing of the content.
    let (details, actor): (Value, String) = sqlx::query_as(
        "SELECT details, actor_kind FROM audit_logs WHERE organization_id = $1 AND action = 'retention.messages_deleted'",
    )
    .bind(chat.org)
    .fetch_one(&app.db.owner)
    .await
    .expect("one audit entry");
    assert_eq!(actor, "system");
    assert_eq!(details["messages"], 2);
    assert_eq!(details["attachments"], 1);
    assert_eq!(details["key_generations"], 1);
    assert_eq!(details["retention_days"], 30);
    audit_intact(&app, chat.org).await;

    // Idempotent: a second pass finds nothing, and sends carry on as before.
    assert_eq!(pass(&app).await.messages, 0);
    send(&chat, &alice, 2).await;
    assert_eq!(messages_left(&app, &chat).await, vec![3, 4, 5]);
}

fn page_seqs(page: &Value) -> Vec<i64> {
    page["messages"].as_array().expect("a list of messages").iter().map(|m| m["seq"].as_i64().expect("seq")).collect()
}

#[tokio::test]
async fn legal_holds_block_retention_until_lifted_and_only_admins_manage_them() {
    let (app, _dir) = app_with_blobs().await;
    let alice = app.person("alice@example.org").await;
    let bob = app.person("bob@example.org").await;
    let chat = crate::reactions::ready_chat(&app, &alice, &bob).await;
    let workspace = workspace_of(&app, &chat).await;
    for _ in 0..3 {
        let id = send(&chat, &bob, 1).await;
        age(&app, id, "10 days").await;
    }
    set_retention(&app, chat.org, Some(7), None).await;
    let holds = format!("/v1/organizations/{}/legal-holds", chat.org);

    // A member cannot place, list or lift holds.
    let hold = json!({ "scope": "organization", "reason": "matter 2026-17" });
    let (status, err) = app.post(&holds, hold.clone(), Some(&bob.access)).await;
    assert_eq!((status, error_code(&err)), (StatusCode::FORBIDDEN, "insufficient_role"));
    let (status, err) = app.get(&holds, Some(&bob.access)).await;
    assert_eq!((status, error_code(&err)), (StatusCode::FORBIDDEN, "insufficient_role"));

    // Each scope in turn holds everything it covers; lifted, it holds nothing.
    let scopes = [
        json!({ "scope": "organization", "reason": "matter 1" }),
        json!({ "scope": "workspace", "target_id": workspace, "reason": "matter 2" }),
        json!({ "scope": "conversation", "target_id": chat.conversation, "reason": "matter 3" }),
        json!({ "scope": "user", "target_id": bob.user_id, "reason": "matter 4" }),
        // Alice sent none of them, but she is a member of the conversation they are in.
        json!({ "scope": "user", "target_id": alice.user_id, "reason": "matter 5" }),
    ];
    for body in &scopes {
        let (status, hold) = app.post(&holds, body.clone(), Some(&alice.access)).await;
        assert_eq!(status, StatusCode::CREATED, "{hold}");
        assert_eq!(hold["scope"], body["scope"]);
        assert!(hold["lifted_at"].is_null());
        assert_eq!(pass(&app).await.messages, 0, "held by {body}");
        assert_eq!(messages_left(&app, &chat).await.len(), 3);
        let id = hold["id"].as_str().expect("id");
        let (status, err) = app.post(&format!("{holds}/{id}/lift"), json!({}), Some(&bob.access)).await;
        assert_eq!((status, error_code(&err)), (StatusCode::FORBIDDEN, "insufficient_role"));
        let (status, lifted) = app.post(&format!("{holds}/{id}/lift"), json!({}), Some(&alice.access)).await;
        assert_eq!(status, StatusCode::OK, "{lifted}");
        assert_eq!(lifted["lifted_by"], json!(alice.user_id));
        // Lifting again changes nothing.
        let (status, again) = app.post(&format!("{holds}/{id}/lift"), json!({}), Some(&alice.access)).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(again["lifted_at"], lifted["lifted_at"]);
    }
    let (status, list) = app.get(&holds, Some(&alice.access)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list.as_array().map(Vec::len), Some(scopes.len()), "lifted holds stay listed");

    // A hold on another conversation holds nothing here.
    let other = crate::conversations::group(&app, &alice, &[&bob]).await;
    let (status, _) = app
        .post(
            &format!("/v1/organizations/{}/legal-holds", other.org),
            json!({ "scope": "conversation", "target_id": other.conversation, "reason": "other" }),
            Some(&alice.access),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(pass(&app).await.messages, 3, "nothing holds them any more");
    assert!(messages_left(&app, &chat).await.is_empty());

    let placed = app.count("SELECT count(*) FROM audit_logs WHERE action = 'legal_hold.placed'").await;
    let lifted = app.count("SELECT count(*) FROM audit_logs WHERE action = 'legal_hold.lifted'").await;
    assert_eq!((placed, lifted), (scopes.len() as i64 + 1, scopes.len() as i64), "each change audited once");
    audit_intact(&app, chat.org).await;

    // Bad bodies.
    for body in [
        json!({ "scope": "organization", "target_id": workspace, "reason": "x" }),
        json!({ "scope": "workspace", "reason": "x" }),
        json!({ "scope": "workspace", "target_id": workspace, "reason": "  " }),
    ] {
        let (status, err) = app.post(&holds, body.clone(), Some(&alice.access)).await;
        assert_eq!((status, error_code(&err)), (StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"), "{body}");
    }
}

#[tokio::test]
async fn another_organizations_ids_answer_like_unknown_ids_for_legal_holds() {
    let (app, _dir) = app_with_blobs().await;
    let alice = app.person("alice@example.org").await;
    let bob = app.person("bob@example.org").await;
    let mallory = app.person("mallory@example.org").await;
    let ours = crate::reactions::ready_chat(&app, &alice, &bob).await;
    let theirs = crate::reactions::ready_chat(&app, &mallory, &bob).await;
    let their_workspace = workspace_of(&app, &theirs).await;
    let holds = format!("/v1/organizations/{}/legal-holds", ours.org);

    for (scope, target) in [
        ("workspace", their_workspace),
        ("conversation", theirs.conversation),
        ("user", mallory.user_id),
        ("workspace", Uuid::new_v4()),
        ("conversation", Uuid::new_v4()),
        ("user", Uuid::new_v4()),
    ] {
        let (status, err) =
            app.post(&holds, json!({ "scope": scope, "target_id": target, "reason": "x" }), Some(&alice.access)).await;
        assert_eq!((status, error_code(&err)), (StatusCode::NOT_FOUND, "not_found"), "{scope} {target}");
    }

    // Mallory's hold, seen from Alice's organization, and Alice's organization, seen by Mallory.
    let (status, hold) = app
        .post(
            &format!("/v1/organizations/{}/legal-holds", theirs.org),
            json!({ "scope": "organization", "reason": "theirs" }),
            Some(&mallory.access),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{hold}");
    let their_hold = hold["id"].as_str().expect("id").to_owned();
    let (status, err) = app.post(&format!("{holds}/{their_hold}/lift"), json!({}), Some(&alice.access)).await;
    assert_eq!((status, error_code(&err)), (StatusCode::NOT_FOUND, "not_found"));
    let (status, err) = app.post(&format!("{holds}/{}/lift", Uuid::new_v4()), json!({}), Some(&alice.access)).await;
    assert_eq!((status, error_code(&err)), (StatusCode::NOT_FOUND, "not_found"));
    let (status, err) = app.get(&holds, Some(&mallory.access)).await;
    assert_eq!((status, error_code(&err)), (StatusCode::NOT_FOUND, "not_found"));
    let (status, list) = app.get(&holds, Some(&alice.access)).await;
    assert_eq!((status, list), (StatusCode::OK, json!([])));
}

#[tokio::test]
async fn a_sweep_cut_short_resumes_and_one_replica_at_a_time_holds_the_lease() {
    let (app, _dir) = app_with_blobs().await;
    let alice = app.person("alice@example.org").await;
    let bob = app.person("bob@example.org").await;
    let chat = crate::reactions::ready_chat(&app, &alice, &bob).await;
    for _ in 0..5 {
        let id = send(&chat, &alice, 1).await;
        age(&app, id, "2 days").await;
    }
    set_retention(&app, chat.org, None, Some(1)).await;
    let targets = retention::targets(&app.state).await.expect("targets");
    assert_eq!(targets.len(), 1);
    let target: Target = targets[0];

    // A batch does nothing unless this replica holds the lease.
    assert_eq!(retention::sweep_batch(&app.state, &target, 2).await.expect("a batch").messages, 0);
    assert!(retention::take_lease(&app.state).await.expect("lease"));
    // One batch of two, then the replica "dies": two gone, three left, the mark at 3.
    let swept = retention::sweep_batch(&app.state, &target, 2).await.expect("a batch");
    assert_eq!(swept.messages, 2);
    assert_eq!(messages_left(&app, &chat).await, vec![3, 4, 5]);
    let (_, conversation) = app.get(&chat.path(""), Some(&alice.access)).await;
    assert_eq!(conversation["history_removed_before_seq"], 3);

    // Another replica holds the lease: this one does nothing.
    let other = Uuid::new_v4();
    sqlx::query(
        "INSERT INTO worker_leases (name, holder, expires_at) VALUES ('retention', $1, now() + interval '1 minute')
         ON CONFLICT (name) DO UPDATE SET holder = $1, acquired_at = now(), expires_at = now() + interval '1 minute'",
    )
    .bind(other)
    .execute(&app.db.owner)
    .await
    .expect("lease");
    assert_eq!(retention::run_pass(&app.state).await.expect("a pass"), None);
    assert_eq!(messages_left(&app, &chat).await, vec![3, 4, 5]);

    // Its lease runs out (it died): this replica takes over and finishes the work.
    sqlx::query(
        "UPDATE worker_leases SET acquired_at = now() - interval '2 minutes', expires_at = now() - interval '1 second'",
    )
    .execute(&app.db.owner)
    .await
    .expect("expire");
    let swept = pass(&app).await;
    assert_eq!(swept.messages, 3);
    assert!(messages_left(&app, &chat).await.is_empty());
    let holder: Uuid = sqlx::query_scalar("SELECT holder FROM worker_leases WHERE name = 'retention'")
        .fetch_one(&app.db.owner)
        .await
        .expect("holder");
    assert_eq!(holder, app.state.retention.holder);
    let (_, conversation) = app.get(&chat.path(""), Some(&alice.access)).await;
    assert_eq!(conversation["history_removed_before_seq"], 6);

    // Progress on /metrics.
    let metrics = app.http.get(app.url("/metrics")).send().await.expect("metrics").text().await.expect("text");
    assert!(metrics.contains("conclave_dataplane_retention_messages_deleted_total 5"), "{metrics}");
    assert!(metrics.contains("conclave_dataplane_retention_batches_total 2"), "{metrics}");
    assert!(metrics.contains("conclave_dataplane_retention_lease_held 1"), "{metrics}");
    let entries = app.count("SELECT count(*) FROM audit_logs WHERE action = 'retention.messages_deleted'").await;
    assert_eq!(entries, 2, "one audit entry per committed batch");
}

#[tokio::test]
async fn a_sweep_tells_members_whose_unread_messages_it_removed() {
    let (app, _dir) = app_with_blobs().await;
    let alice = app.person("alice@example.org").await;
    let bob = app.person("bob@example.org").await;
    let chat = crate::reactions::ready_chat(&app, &alice, &bob).await;
    for _ in 0..3 {
        let id = send(&chat, &alice, 1).await;
        age(&app, id, "2 days").await;
    }
    send(&chat, &alice, 1).await;
    set_retention(&app, chat.org, Some(1), None).await;
    let mut socket = connect(&app.base, &bob).await;
    assert_eq!(pass(&app).await.messages, 3);
    let frame = next_of(&mut socket, "unread_changed").await;
    assert_eq!(frame["conversation_id"], json!(chat.conversation));
    assert_eq!(frame["unread"], 1, "{frame}");
}

/// Alice and Bob's conversation with one message of Alice's past a one-day retention.
async fn one_expired_message(app: &TestApp) -> (Person, Chat<'_>, Uuid) {
    let alice = app.person("alice@example.org").await;
    let bob = app.person("bob@example.org").await;
    let chat = crate::reactions::ready_chat(app, &alice, &bob).await;
    let old = send(&chat, &alice, 1).await;
    age(app, old, "2 days").await;
    set_retention(app, chat.org, Some(1), None).await;
    (alice, chat, old)
}

/// Runs a pass in the background.
fn pass_in_background(app: &TestApp) -> tokio::task::JoinHandle<retention::Swept> {
    let state = app.state.clone();
    tokio::spawn(async move { retention::run_pass(&state).await.expect("a pass").expect("the lease") })
}

#[tokio::test]
async fn a_sweep_locks_the_conversation_before_its_messages_like_a_send_does() {
    let (app, _dir) = app_with_blobs().await;
    let (_, chat, old) = one_expired_message(&app).await;

    // A send in flight: it holds the conversation row, then references the expiring message
    // (a reply takes a key-share lock on it). Were the sweep to lock the message first and wait
    // for the conversation, the two would deadlock; it must wait for the conversation instead.
    let mut send_tx = app.db.owner.begin().await.expect("begin");
    sqlx::query("SET LOCAL lock_timeout = '3s'").execute(&mut *send_tx).await.expect("timeout");
    sqlx::query("SELECT 1 FROM conversations WHERE id = $1 FOR NO KEY UPDATE")
        .bind(chat.conversation)
        .execute(&mut *send_tx)
        .await
        .expect("lock the conversation");
    let sweep = pass_in_background(&app);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(!sweep.is_finished(), "the sweep waits for the conversation");
    sqlx::query("SELECT 1 FROM messages WHERE id = $1 FOR KEY SHARE")
        .bind(old)
        .execute(&mut *send_tx)
        .await
        .expect("the message is not locked by the waiting sweep");
    send_tx.commit().await.expect("commit");
    assert_eq!(sweep.await.expect("the sweep").messages, 1);
}

#[tokio::test]
async fn a_hold_placed_while_a_batch_runs_waits_for_it_and_the_next_batch_honours_it() {
    let (app, _dir) = app_with_blobs().await;
    let (alice, chat, _) = one_expired_message(&app).await;

    // A batch in progress holds the organization's holds lock shared (as sweep_batch does).
    let mut batch = app.db.owner.begin().await.expect("begin");
    sqlx::query("SELECT conclave_lock_holds($1, true)").bind(chat.org).execute(&mut *batch).await.expect("shared lock");
    let place = {
        let http = app.http.clone();
        let url = app.url(&format!("/v1/organizations/{}/legal-holds", chat.org));
        let body = json!({ "scope": "conversation", "target_id": chat.conversation, "reason": "matter 7" });
        let token = alice.access.clone();
        tokio::spawn(async move { crate::support::exchange(http.post(url).json(&body).bearer_auth(token)).await })
    };
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(!place.is_finished(), "placing the hold waits for the batch");
    batch.commit().await.expect("the batch ends");
    let (status, hold) = place.await.expect("placed");
    assert_eq!(status, StatusCode::CREATED, "{hold}");
    assert_eq!(pass(&app).await.messages, 0, "the hold placed meanwhile holds");
    assert_eq!(messages_left(&app, &chat).await, vec![1]);
}
