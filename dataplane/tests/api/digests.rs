//! Email digests (`outbox/digests.rs`) through the SMTP catcher: one email per period with
//! counts per conversation and never content, `List-Unsubscribe` with RFC 8058 one-click
//! unsubscribe that works without signing in and turns email notifications off.

use crate::reactions::ready_chat;
use crate::support::{TestApp, error_code};
use reqwest::StatusCode;
use serde_json::json;
use std::time::Duration;

const MARKER: &[u8] = b"DIGEST-PLAINTEXT-MARKER";

async fn work(app: &TestApp, http: &conclave_dataplane::outbox::Clients) {
    conclave_dataplane::outbox::run_once(&app.state, http).await.expect("outbox run");
}

#[tokio::test]
async fn a_digest_lists_unread_counts_once_per_period_and_unsubscribes_in_one_click() {
    let app = TestApp::start_with(&["--rate-limit-factor", "1000", "--outbox-poll-ms", "0"]).await;
    let http = conclave_dataplane::outbox::http_clients(&app.state.config).expect("clients");
    let alice = app.person("alice@example.org").await;
    let bob = app.person("bob@example.org").await;
    let chat = ready_chat(&app, &alice, &bob).await;
    let prefs = json!({ "email_enabled": true, "email_delay_minutes": 5, "digest_frequency": "daily" });
    assert_eq!(app.patch("/v1/notification-preferences", prefs, &bob.access).await.0, StatusCode::OK);
    let mut bytes = MARKER.to_vec();
    bytes.resize(40, b'.');
    for _ in 0..2 {
        assert_eq!(chat.send(&alice, 1, &bytes).await.0, StatusCode::CREATED);
    }

    // Younger than Bob's delay: no email yet.
    work(&app, &http).await;
    assert!(app.mail.wait_for("bob@example.org", "Unread messages", Duration::from_millis(300)).await.is_none());

    sqlx::query("UPDATE messages SET created_at = now() - interval '10 minutes'")
        .execute(&app.db.owner)
        .await
        .expect("age");
    work(&app, &http).await;
    let mail = app.mail.wait_for("bob@example.org", "Unread messages", Duration::from_secs(5)).await.expect("a digest");
    assert!(mail.body.contains("You have 2 unread messages"), "{}", mail.body);
    assert!(mail.body.contains("a group conversation of 2 members: 2 unread"), "{}", mail.body);
    assert!(!mail.body.contains(std::str::from_utf8(MARKER).expect("utf-8")));
    assert_eq!(mail.header("List-Unsubscribe-Post"), Some("List-Unsubscribe=One-Click"));
    let link = mail.header("List-Unsubscribe").expect("List-Unsubscribe").trim_matches(['<', '>']).to_owned();
    assert!(link.starts_with(&format!("{}/v1/notifications/unsubscribe?token=cvu_", app.state.config.public_url)));
    // Alice, who wrote them, gets nothing; and one digest per period: another run sends none.
    work(&app, &http).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let digests = app.mail.all().into_iter().filter(|m| m.subject.contains("Unread messages")).count();
    assert_eq!(digests, 1);

    // The link works without signing in: the page changes nothing, the one-click POST does.
    let path = link.split_once("/v1/").map(|(_, rest)| format!("/v1/{rest}")).expect("path");
    let page = app.http.get(app.url(&path)).send().await.expect("page");
    assert_eq!(page.status(), StatusCode::OK);
    assert!(page.text().await.expect("html").contains("method=\"post\""));
    let (_, prefs) = app.get("/v1/notification-preferences", Some(&bob.access)).await;
    assert_eq!(prefs["email_enabled"], true);
    let response = app
        .http
        .post(app.url(&path))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("List-Unsubscribe=One-Click")
        .send()
        .await
        .expect("one click");
    assert_eq!(response.status(), StatusCode::OK);
    let (_, prefs) = app.get("/v1/notification-preferences", Some(&bob.access)).await;
    assert_eq!(prefs["email_enabled"], false);
    // Again: the same answer. A forged token: refused.
    assert_eq!(app.http.post(app.url(&path)).send().await.expect("again").status(), StatusCode::OK);
    let (status, body) = app.post("/v1/notifications/unsubscribe?token=cvu_forged", json!({}), None).await;
    assert_eq!((status, error_code(&body)), (StatusCode::BAD_REQUEST, "invalid_unsubscribe_token"));
    assert_eq!(app.count("SELECT count(*) FROM unsubscribe_tokens WHERE used_at IS NOT NULL").await, 1);
}
