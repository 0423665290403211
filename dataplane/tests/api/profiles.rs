//! Profiles (read, partial update with specific codes, fan-out to the people who share a
//! conversation) and the exact-email member lookup that reveals nothing outside the
//! organization.

use crate::reactions::ready_chat;
use crate::realtime::{connect, next_of};
use crate::support::{TestApp, error_code};
use reqwest::StatusCode;
use serde_json::json;

#[tokio::test]
async fn a_profile_change_is_stored_and_reaches_the_people_who_share_a_conversation() {
    let app = TestApp::start().await;
    let alice = app.person("alice@example.org").await;
    let bob = app.person("bob@example.org").await;
    let carol = app.person("carol@example.org").await;
    let chat = ready_chat(&app, &alice, &bob).await;
    let mut bob_socket = connect(&app.base, &bob).await;

    let change = json!({ "display_name": "  Alice A. ", "status_text": "on leave", "time_zone": "Europe/Paris",
                         "locale": "fr", "avatar_url": "https://cdn.example.org/a.png" });
    let (status, profile) = app.patch("/v1/profile", change, &alice.access).await;
    assert_eq!(status, StatusCode::OK, "{profile}");
    assert_eq!(profile["display_name"], "Alice A.");
    assert_eq!(profile["time_zone"], "Europe/Paris");
    let frame = next_of(&mut bob_socket, "profile_updated").await;
    assert_eq!(frame["profile"], profile);
    assert_eq!(frame["conversation_id"], json!(chat.conversation));

    // Left out stays, null clears; the notification preferences read the same time zone.
    let (_, profile) = app.patch("/v1/profile", json!({ "status_text": null }), &alice.access).await;
    assert_eq!(profile["status_text"], json!(null));
    assert_eq!(profile["locale"], "fr");
    assert_eq!(app.get("/v1/profile", Some(&alice.access)).await.1, profile);
    let (_, prefs) = app.get("/v1/notification-preferences", Some(&alice.access)).await;
    assert_eq!(prefs["time_zone"], "Europe/Paris");

    // Members read it; someone outside the organization gets exactly an unknown member's answer.
    let path = format!("/v1/organizations/{}/members/{}/profile", chat.org, alice.user_id);
    let (status, seen) = app.get(&path, Some(&bob.access)).await;
    assert_eq!((status, seen), (StatusCode::OK, profile));
    let (status, hidden) = app.get(&path, Some(&carol.access)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let unknown = format!("/v1/organizations/{}/members/{}/profile", chat.org, uuid::Uuid::now_v7());
    let (_, unknown_answer) = app.get(&unknown, Some(&carol.access)).await;
    assert_eq!(hidden, unknown_answer);
    let (status, _) =
        app.get(&format!("/v1/organizations/{}/members/{}/profile", chat.org, carol.user_id), Some(&bob.access)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn bad_profile_values_are_refused_with_a_code_of_their_own() {
    let app = TestApp::start().await;
    let alice = app.person("alice@example.org").await;
    for (body, code) in [
        (json!({ "time_zone": "Mars/Olympus_Mons" }), "invalid_time_zone"),
        (json!({ "locale": "French" }), "invalid_locale"),
        (json!({ "display_name": "   " }), "validation_failed"),
        (json!({ "status_text": "x".repeat(141) }), "validation_failed"),
        (json!({ "avatar_url": "http://cdn.example.org/a.png" }), "validation_failed"),
        (json!({ "nickname": "al" }), "invalid_body"),
    ] {
        let (status, answer) = app.patch("/v1/profile", body.clone(), &alice.access).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body} → {answer}");
        assert_eq!(error_code(&answer), code, "{body}");
    }
    let (_, profile) = app.get("/v1/profile", Some(&alice.access)).await;
    assert_eq!(profile["time_zone"], json!(null));
    assert_eq!(profile["locale"], json!(null));
}

#[tokio::test]
async fn the_email_lookup_finds_members_only_and_is_rate_limited() {
    // Real limits: 30 lookups per caller in ten minutes.
    let app = TestApp::start_with(&["--rate-limit-factor", "1"]).await;
    let alice = app.person("alice@example.org").await;
    let bob = app.person("bob@example.org").await;
    let outsider = app.person("outsider@example.org").await;
    let (org, _) = app.organization("acme", &[&alice, &bob]).await;
    let (other_org, _) = app.organization("globex", &[&outsider]).await;
    let lookup = format!("/v1/organizations/{org}/members/lookup");

    let (status, found) = app.post(&lookup, json!({ "email": " Bob@Example.org " }), Some(&alice.access)).await;
    assert_eq!(status, StatusCode::OK, "{found}");
    assert_eq!(found["user_id"], json!(bob.user_id));
    assert!(found.get("email").is_none());

    // An account outside the organization answers exactly like an address nobody has.
    let (status, outside) = app.post(&lookup, json!({ "email": "outsider@example.org" }), Some(&alice.access)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, nobody) = app.post(&lookup, json!({ "email": "nobody@example.org" }), Some(&alice.access)).await;
    assert_eq!(outside, nobody);
    // Nor can the outsider ask inside an organization they are not in.
    let (status, _) = app.post(&lookup, json!({ "email": "bob@example.org" }), Some(&outsider.access)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, answer) = app.post(&lookup, json!({ "email": "not an address" }), Some(&alice.access)).await;
    assert_eq!((status, error_code(&answer)), (StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"));
    let _ = other_org;

    // Guests may not look people up.
    sqlx::query("UPDATE organization_memberships SET role = 'guest' WHERE user_id = $1")
        .bind(bob.user_id)
        .execute(&app.db.owner)
        .await
        .expect("guest");
    let (status, answer) = app.post(&lookup, json!({ "email": "alice@example.org" }), Some(&bob.access)).await;
    assert_eq!((status, error_code(&answer)), (StatusCode::FORBIDDEN, "insufficient_role"));

    // Alice used 3 of her 30 (the malformed address was refused before counting); the 31st is
    // refused with Retry-After.
    let mut last = StatusCode::OK;
    for _ in 0..27 {
        last = app.post(&lookup, json!({ "email": "bob@example.org" }), Some(&alice.access)).await.0;
    }
    assert_eq!(last, StatusCode::OK);
    let response = app
        .http
        .post(app.url(&lookup))
        .bearer_auth(&alice.access)
        .json(&json!({ "email": "bob@example.org" }))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(response.headers().contains_key("retry-after"));
}
