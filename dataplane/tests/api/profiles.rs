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

#[tokio::test]
async fn an_uploaded_avatar_is_served_to_members_only_and_replacing_it_deletes_the_old_blob() {
    let dir = std::env::temp_dir().join(format!("conclave-test-avatars-{}", uuid::Uuid::new_v4().simple()));
    let app = TestApp::start_with(&["--attachments-dir", dir.to_str().expect("utf-8")]).await;
    let blobs = || -> Vec<Vec<u8>> {
        std::fs::read_dir(dir.join("blobs"))
            .map(|entries| entries.filter_map(|e| e.ok().and_then(|e| std::fs::read(e.path()).ok())).collect())
            .unwrap_or_default()
    };
    let alice = app.person("alice@example.org").await;
    let bob = app.person("bob@example.org").await;
    let carol = app.person("carol@example.org").await;
    let chat = ready_chat(&app, &alice, &bob).await;
    let mut bob_socket = connect(&app.base, &bob).await;
    let put = |bytes: Vec<u8>, media_type: &str| {
        let request = app.http.put(app.url("/v1/profile/avatar")).bearer_auth(&alice.access);
        crate::support::exchange(request.header("content-type", media_type).body(bytes))
    };
    let mut png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec();
    png.extend(crate::support::rand32());

    let (status, profile) = put(png.clone(), "image/png").await;
    assert_eq!(status, StatusCode::OK, "{profile}");
    assert_eq!(
        (profile["avatar_media_type"].as_str(), profile["avatar_size_bytes"].as_u64()),
        (Some("image/png"), Some(png.len() as u64))
    );
    assert_eq!(next_of(&mut bob_socket, "profile_updated").await["profile"], profile);
    assert_eq!(blobs(), vec![png.clone()]);

    // A member of the organization gets the picture with its type, sniffing off; someone outside
    // it gets exactly what an unknown member's picture answers.
    let avatar = |user: uuid::Uuid| app.url(&format!("/v1/organizations/{}/members/{user}/avatar", chat.org));
    let response = app.http.get(avatar(alice.user_id)).bearer_auth(&bob.access).send().await.expect("get");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "image/png");
    assert_eq!(response.headers()["x-content-type-options"], "nosniff");
    assert_eq!(response.bytes().await.expect("bytes").to_vec(), png);
    let (status, hidden) =
        crate::support::exchange(app.http.get(avatar(alice.user_id)).bearer_auth(&carol.access)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, unknown) =
        crate::support::exchange(app.http.get(avatar(uuid::Uuid::now_v7())).bearer_auth(&carol.access)).await;
    assert_eq!(hidden, unknown);
    let (status, _) = crate::support::exchange(app.http.get(avatar(bob.user_id)).bearer_auth(&alice.access)).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "Bob has no picture");

    // Replaced: the old blob goes. Refused uploads change nothing and leave nothing behind.
    let mut jpeg = b"\xff\xd8\xff\xe0\0\x10JFIF".to_vec();
    jpeg.extend(crate::support::rand32());
    assert_eq!(put(jpeg.clone(), "image/jpeg").await.0, StatusCode::OK);
    assert_eq!(blobs(), vec![jpeg.clone()]);
    for (bytes, media_type, status, code) in [
        (
            b"<svg xmlns='http://www.w3.org/2000/svg'/>".to_vec(),
            "image/svg+xml",
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
        (png.clone(), "image/jpeg", StatusCode::UNPROCESSABLE_ENTITY, "invalid_image"),
        ([png.clone(), vec![0; 300 * 1024]].concat(), "image/png", StatusCode::PAYLOAD_TOO_LARGE, "avatar_too_large"),
        // Beyond the server's general body limit too: still this endpoint's JSON error.
        ([png.clone(), vec![0; 700 * 1024]].concat(), "image/png", StatusCode::PAYLOAD_TOO_LARGE, "avatar_too_large"),
    ] {
        let (answer, body) = put(bytes, media_type).await;
        assert_eq!((answer, error_code(&body)), (status, code), "{media_type}: {body}");
    }
    let (_, profile) = app.get("/v1/profile", Some(&alice.access)).await;
    assert_eq!(profile["avatar_media_type"], "image/jpeg");
    assert_eq!(blobs(), vec![jpeg]);
    assert_eq!(std::fs::read_dir(dir.join("staging")).map(|e| e.count()).unwrap_or(0), 0);

    // Removed: the blob goes, the picture answers 404, the profile says none.
    let (status, profile) =
        crate::support::exchange(app.http.delete(app.url("/v1/profile/avatar")).bearer_auth(&alice.access)).await;
    assert_eq!((status, profile["avatar_media_type"].clone()), (StatusCode::OK, json!(null)));
    assert!(blobs().is_empty());
    let (status, _) =
        crate::support::exchange(app.http.get(app.url("/v1/profile/avatar")).bearer_auth(&alice.access)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    drop(app);
    let _ = std::fs::remove_dir_all(&dir);
}
