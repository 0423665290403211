//! Notification preferences (account defaults, overrides per scope, validation with specific
//! codes) and unread counts from the read cursors, served and announced live.

use crate::reactions::ready_chat;
use crate::realtime::{connect, next_of};
use crate::support::{TestApp, error_code};
use reqwest::StatusCode;
use serde_json::json;

#[tokio::test]
async fn preferences_start_at_the_defaults_and_change_field_by_field() {
    let app = TestApp::start().await;
    let alice = app.person("alice@example.org").await;
    let (status, prefs) = app.get("/v1/notification-preferences", Some(&alice.access)).await;
    assert_eq!(status, StatusCode::OK, "{prefs}");
    assert_eq!(prefs["level"], "all");
    assert_eq!(prefs["push_enabled"], true);
    assert_eq!(prefs["email_enabled"], false);
    assert_eq!(prefs["quiet_hours"], json!(null));
    assert_eq!(prefs["digest_frequency"], "daily");

    let until = (chrono::Utc::now() + chrono::Duration::hours(2)).to_rfc3339();
    let change = json!({ "level": "mentions", "email_enabled": true, "muted_until": until,
                         "quiet_hours": { "start": "22:00", "end": "07:30" }, "email_delay_minutes": 30,
                         "digest_frequency": "hourly" });
    let (status, prefs) = app.patch("/v1/notification-preferences", change, &alice.access).await;
    assert_eq!(status, StatusCode::OK, "{prefs}");
    assert_eq!(prefs["level"], "mentions");
    assert_eq!(prefs["quiet_hours"], json!({ "start": "22:00", "end": "07:30" }));
    assert_eq!(prefs["email_delay_minutes"], 30);
    assert!(prefs["muted_until"].is_string());

    // Fields left out stay; null clears.
    let (status, prefs) = app
        .patch("/v1/notification-preferences", json!({ "muted_until": null, "quiet_hours": null }), &alice.access)
        .await;
    assert_eq!(status, StatusCode::OK, "{prefs}");
    assert_eq!(prefs["muted_until"], json!(null));
    assert_eq!(prefs["quiet_hours"], json!(null));
    assert_eq!(prefs["level"], "mentions");
    assert_eq!(prefs["digest_frequency"], "hourly");
    let (_, again) = app.get("/v1/notification-preferences", Some(&alice.access)).await;
    assert_eq!(again, prefs);
}

#[tokio::test]
async fn bad_preferences_are_refused_with_a_code_of_their_own() {
    let app = TestApp::start().await;
    let alice = app.person("alice@example.org").await;
    let past = (chrono::Utc::now() - chrono::Duration::minutes(1)).to_rfc3339();
    let far = (chrono::Utc::now() + chrono::Duration::days(400)).to_rfc3339();
    for (body, code) in [
        (json!({ "muted_until": past }), "invalid_mute_until"),
        (json!({ "muted_until": far }), "invalid_mute_until"),
        (json!({ "quiet_hours": { "start": "22:00", "end": "22:00" } }), "invalid_quiet_hours"),
        (json!({ "quiet_hours": { "start": "25:00", "end": "07:00" } }), "invalid_quiet_hours"),
        (json!({ "quiet_hours": { "start": "7:00", "end": "08:00" } }), "invalid_quiet_hours"),
        (json!({ "email_delay_minutes": 1 }), "email_delay_out_of_range"),
        (json!({ "level": "loud" }), "invalid_body"),
        (json!({ "digest_frequency": "yearly" }), "invalid_body"),
    ] {
        let (status, answer) = app.patch("/v1/notification-preferences", body.clone(), &alice.access).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body} → {answer}");
        assert_eq!(error_code(&answer), code, "{body}");
    }
    // Nothing was stored by any of them.
    assert_eq!(app.count("SELECT count(*) FROM notification_preferences").await, 0);
}

#[tokio::test]
async fn overrides_apply_per_organization_workspace_and_conversation_of_the_caller_only() {
    let app = TestApp::start().await;
    let alice = app.person("alice@example.org").await;
    let bob = app.person("bob@example.org").await;
    let mallory = app.person("mallory@example.org").await;
    let chat = ready_chat(&app, &alice, &bob).await;
    let workspace: uuid::Uuid = sqlx::query_scalar("SELECT workspace_id FROM conversations WHERE id = $1")
        .bind(chat.conversation)
        .fetch_one(&app.db.owner)
        .await
        .expect("workspace");
    let org = format!("/v1/organizations/{}/notification-preferences", chat.org);
    let ws = format!("/v1/organizations/{}/workspaces/{workspace}/notification-preferences", chat.org);
    let conv = chat.path("/notification-preferences");

    let (status, answer) = app.put(&org, json!({ "level": "none" }), &bob.access).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["level"], "none");
    let (status, _) = app.put(&ws, json!({ "level": null }), &bob.access).await;
    assert_eq!(status, StatusCode::OK);
    let until = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let (status, answer) = app.put(&conv, json!({ "level": "all", "muted_until": until }), &bob.access).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["conversation_id"], json!(chat.conversation));

    let (status, list) = app.get(&org, Some(&bob.access)).await;
    assert_eq!(status, StatusCode::OK, "{list}");
    assert_eq!(list.as_array().map(Vec::len), Some(3), "{list}");
    assert_eq!(list[0]["level"], "none");
    assert_eq!(list[1]["workspace_id"], json!(workspace));

    // Someone outside: exactly like an unknown organization. A conversation Bob is not in, or
    // an unknown workspace: 404 too.
    assert_eq!(app.put(&org, json!({}), &mallory.access).await.0, StatusCode::NOT_FOUND);
    let other =
        format!("/v1/organizations/{}/conversations/{}/notification-preferences", chat.org, uuid::Uuid::now_v7());
    assert_eq!(app.put(&other, json!({}), &bob.access).await.0, StatusCode::NOT_FOUND);
    let other_ws =
        format!("/v1/organizations/{}/workspaces/{}/notification-preferences", chat.org, uuid::Uuid::now_v7());
    assert_eq!(app.delete(&other_ws, &bob.access).await.0, StatusCode::NOT_FOUND);
    let (status, answer) = app.put(&conv, json!({ "muted_until": "2001-01-01T00:00:00Z" }), &bob.access).await;
    assert_eq!((status, error_code(&answer)), (StatusCode::UNPROCESSABLE_ENTITY, "invalid_mute_until"));

    // Clearing removes just that scope; Alice never saw Bob's.
    assert_eq!(app.delete(&conv, &bob.access).await.0, StatusCode::NO_CONTENT);
    let (_, list) = app.get(&org, Some(&bob.access)).await;
    assert_eq!(list.as_array().map(Vec::len), Some(2));
    let (_, list) = app.get(&org, Some(&alice.access)).await;
    assert_eq!(list, json!([]));
}

#[tokio::test]
async fn unread_counts_follow_messages_and_the_read_cursor_live() {
    let app = TestApp::start().await;
    let alice = app.person("alice@example.org").await;
    let bob = app.person("bob@example.org").await;
    let chat = ready_chat(&app, &alice, &bob).await;
    let unread = format!("/v1/organizations/{}/unread", chat.org);
    let (status, counts) = app.get(&unread, Some(&bob.access)).await;
    assert_eq!(status, StatusCode::OK, "{counts}");
    assert_eq!(counts["total"], 0);

    for _ in 0..3 {
        assert_eq!(chat.send(&alice, 1, &[7u8; 32]).await.0, StatusCode::CREATED);
    }
    let (_, counts) = app.get(&unread, Some(&bob.access)).await;
    assert_eq!(counts["total"], 3, "{counts}");
    assert_eq!(counts["conversations"][0]["conversation_id"], json!(chat.conversation));
    assert_eq!(counts["conversations"][0]["unread"], 3);
    // The sender has nothing unread: her own messages do not count.
    let (_, counts) = app.get(&unread, Some(&alice.access)).await;
    assert_eq!(counts["total"], 0);

    // Bob reads two on one device; his socket hears the new count, Alice's does not.
    let mut bob_socket = connect(&app.base, &bob).await;
    let mut alice_socket = connect(&app.base, &alice).await;
    let (status, _) = app.post(&chat.path("/receipts"), json!({ "read_seq": 2 }), Some(&bob.access)).await;
    assert_eq!(status, StatusCode::OK);
    let frame = next_of(&mut bob_socket, "unread_changed").await;
    assert_eq!(frame["conversation_id"], json!(chat.conversation));
    assert_eq!(frame["unread"], 1);
    assert_eq!(frame["organization_unread"], 1);
    let receipt = next_of(&mut alice_socket, "receipt_updated").await;
    assert_eq!(receipt["member"]["read_seq"], 2);
    crate::presence::none_of(&mut alice_socket, "unread_changed", std::time::Duration::from_millis(300)).await;

    // A deleted message is not waiting to be read.
    let (_, counts) = app.get(&unread, Some(&bob.access)).await;
    assert_eq!(counts["total"], 1);
    sqlx::query("UPDATE messages SET deleted_at = now(), ciphertext = NULL WHERE conversation_id = $1 AND seq = 3")
        .bind(chat.conversation)
        .execute(&app.db.owner)
        .await
        .expect("delete");
    let (_, counts) = app.get(&unread, Some(&bob.access)).await;
    assert_eq!(counts["total"], 0, "{counts}");

    // Only members ask.
    let mallory = app.person("mallory@example.org").await;
    assert_eq!(app.get(&unread, Some(&mallory.access)).await.0, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn mentions_are_declared_once_by_the_sender_for_members_only() {
    let app = TestApp::start().await;
    let alice = app.person("alice@example.org").await;
    let bob = app.person("bob@example.org").await;
    let carol = app.person("carol@example.org").await;
    let chat = ready_chat(&app, &alice, &bob).await;
    let (_, message) = chat.send(&alice, 1, &[9u8; 32]).await;
    let path = chat.path(&format!("/messages/{}/mentions", message["id"].as_str().expect("id")));

    // Carol is no member of the conversation; Alice cannot mention herself.
    for user in [carol.user_id, alice.user_id] {
        let (status, answer) = app.post(&path, json!({ "user_ids": [bob.user_id, user] }), Some(&alice.access)).await;
        assert_eq!((status, error_code(&answer)), (StatusCode::UNPROCESSABLE_ENTITY, "invalid_mention"));
    }
    let (status, answer) = app.post(&path, json!({ "user_ids": [] }), Some(&alice.access)).await;
    assert_eq!((status, error_code(&answer)), (StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"));
    // Only the sender declares them.
    let (status, answer) = app.post(&path, json!({ "user_ids": [alice.user_id] }), Some(&bob.access)).await;
    assert_eq!((status, error_code(&answer)), (StatusCode::FORBIDDEN, "not_the_sender"));
    assert_eq!(app.count("SELECT count(*) FROM message_mentions").await, 0);

    let (status, _) = app.post(&path, json!({ "user_ids": [bob.user_id, bob.user_id] }), Some(&alice.access)).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, answer) = app.post(&path, json!({ "user_ids": [bob.user_id] }), Some(&alice.access)).await;
    assert_eq!((status, error_code(&answer)), (StatusCode::CONFLICT, "duplicate"));
    assert_eq!(app.count("SELECT count(*) FROM message_mentions").await, 1);
    // Bob has no push subscription: no push row for him.
    assert_eq!(
        app.count("SELECT count(*) FROM outbound_notifications WHERE event_type = 'message.mentioned'").await,
        0
    );
}
