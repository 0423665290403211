//! Contacts between accounts: invitations by email and by code, removal and blocking.

use crate::support::{TestApp, error_code};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::Duration;
use uuid::Uuid;

async fn links(app: &TestApp) -> Vec<(Uuid, Uuid, String)> {
    sqlx::query_as("SELECT user_id, contact_user_id, status FROM contact_links ORDER BY user_id, contact_user_id")
        .fetch_all(&app.db.owner)
        .await
        .expect("links")
}

fn received(list: &Value) -> Vec<Value> {
    list["received"].as_array().cloned().unwrap_or_default()
}

#[tokio::test]
async fn an_email_invitation_accepted_makes_mutual_contacts() {
    let app = TestApp::start().await;
    let (ann_id, ann, _) = app.signed_in("ann@example.org").await;
    let (bea_id, bea, _) = app.signed_in("bea@example.org").await;
    let (_, cid, _) = app.signed_in("cid@example.org").await;

    let (status, sent) = app.post("/v1/contacts/invitations", json!({ "email": "BEA@example.org" }), Some(&ann)).await;
    assert_eq!(status, StatusCode::CREATED, "{sent}");
    assert_eq!(sent["invitee_email"], "bea@example.org");
    assert_eq!(sent["email_sent"], true);
    assert!(sent.get("code").is_none());
    let mail = app.mail.wait_for("bea@example.org", "contact invitation", Duration::from_secs(10)).await;
    assert!(mail.expect("email").body.contains("ann@example.org"));
    let (status, body) = app.post("/v1/contacts/invitations", json!({ "email": "bea@example.org" }), Some(&ann)).await;
    assert_eq!((status, error_code(&body)), (StatusCode::CONFLICT, "invitation_exists"));
    let (status, body) = app.post("/v1/contacts/invitations", json!({ "email": "ann@example.org" }), Some(&ann)).await;
    assert_eq!((status, error_code(&body)), (StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"));
    assert_eq!(body["error"]["details"]["field"], "email");

    let (_, mine) = app.get("/v1/contacts/invitations", Some(&ann)).await;
    assert_eq!(mine["sent"].as_array().map(Vec::len), Some(1), "{mine}");
    let (_, theirs) = app.get("/v1/contacts/invitations", Some(&bea)).await;
    let inbox = received(&theirs);
    assert_eq!(inbox.len(), 1, "{theirs}");
    assert_eq!(inbox[0]["inviter_user_id"], ann_id.to_string());
    let id = inbox[0]["id"].as_str().expect("id").to_owned();

    // Only the addressee may answer it.
    let (status, body) = app.post(&format!("/v1/contacts/invitations/{id}/accept"), json!({}), Some(&cid)).await;
    assert_eq!((status, error_code(&body)), (StatusCode::NOT_FOUND, "not_found"));
    let (status, body) = app.post(&format!("/v1/contacts/invitations/{id}/accept"), json!({}), Some(&ann)).await;
    assert_eq!((status, error_code(&body)), (StatusCode::NOT_FOUND, "not_found"));
    let (status, contact) = app.post(&format!("/v1/contacts/invitations/{id}/accept"), json!({}), Some(&bea)).await;
    assert_eq!(status, StatusCode::OK, "{contact}");
    assert_eq!(contact["user_id"], ann_id.to_string());
    assert_eq!(contact["status"], "accepted");
    let mut expected = vec![(ann_id, bea_id, "accepted".to_owned()), (bea_id, ann_id, "accepted".to_owned())];
    expected.sort();
    assert_eq!(links(&app).await, expected, "one row per direction");
    let (status, body) = app.post(&format!("/v1/contacts/invitations/{id}/accept"), json!({}), Some(&bea)).await;
    assert_eq!((status, error_code(&body)), (StatusCode::GONE, "invitation_used"));

    let (_, list) = app.get("/v1/contacts", Some(&ann)).await;
    assert_eq!(list[0]["user_id"], bea_id.to_string(), "{list}");
    assert_eq!(list[0]["email"], "bea@example.org");
    let (status, body) = app.post("/v1/contacts/invitations", json!({ "email": "bea@example.org" }), Some(&ann)).await;
    assert_eq!((status, error_code(&body)), (StatusCode::CONFLICT, "already_contacts"));
}

#[tokio::test]
async fn a_shareable_code_makes_contacts_once() {
    let app = TestApp::start().await;
    let (ann_id, ann, _) = app.signed_in("ann@example.org").await;
    let (_, bea, _) = app.signed_in("bea@example.org").await;
    let (_, cid, _) = app.signed_in("cid@example.org").await;

    let (status, created) = app.post("/v1/contacts/invitations", json!({}), Some(&ann)).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let code = created["code"].as_str().expect("code").to_owned();
    assert!(code.starts_with("cvc_"));
    assert_eq!(created["invitee_email"], Value::Null);
    let stored: i64 =
        sqlx::query_scalar("SELECT count(*) FROM contact_invitations WHERE code_hash = sha256(convert_to($1, 'UTF8'))")
            .bind(&code)
            .fetch_one(&app.db.owner)
            .await
            .expect("count");
    assert_eq!(stored, 1, "only the digest is kept");

    let (status, body) = app.post("/v1/contacts/invitations/accept", json!({ "code": code }), Some(&ann)).await;
    assert_eq!((status, error_code(&body)), (StatusCode::CONFLICT, "own_invitation"));
    let (status, contact) = app.post("/v1/contacts/invitations/accept", json!({ "code": code }), Some(&bea)).await;
    assert_eq!(status, StatusCode::OK, "{contact}");
    assert_eq!(contact["user_id"], ann_id.to_string());
    let (status, body) = app.post("/v1/contacts/invitations/accept", json!({ "code": code }), Some(&cid)).await;
    assert_eq!((status, error_code(&body)), (StatusCode::GONE, "invitation_used"));
    let unknown = format!("cvc_{}", "B".repeat(43));
    let (status, body) = app.post("/v1/contacts/invitations/accept", json!({ "code": unknown }), Some(&cid)).await;
    assert_eq!((status, error_code(&body)), (StatusCode::NOT_FOUND, "not_found"));
    assert_eq!(links(&app).await.len(), 2);
}

#[tokio::test]
async fn removing_a_contact_removes_both_directions() {
    let app = TestApp::start().await;
    let (_, ann, _) = app.signed_in("ann@example.org").await;
    let (bea_id, bea, _) = app.signed_in("bea@example.org").await;
    let (_, created) = app.post("/v1/contacts/invitations", json!({}), Some(&ann)).await;
    let (status, _) = app.post("/v1/contacts/invitations/accept", json!({ "code": created["code"] }), Some(&bea)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(links(&app).await.len(), 2);

    let (status, _) = app.delete(&format!("/v1/contacts/{bea_id}"), &ann).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert!(links(&app).await.is_empty());
    let (status, body) = app.delete(&format!("/v1/contacts/{bea_id}"), &ann).await;
    assert_eq!((status, error_code(&body)), (StatusCode::NOT_FOUND, "not_found"));
    let (_, list) = app.get("/v1/contacts", Some(&bea)).await;
    assert_eq!(list, json!([]));
}

#[tokio::test]
async fn a_blocked_person_cannot_invite_again() {
    let app = TestApp::start().await;
    let (ann_id, ann, _) = app.signed_in("ann@example.org").await;
    let (bea_id, bea, _) = app.signed_in("bea@example.org").await;
    let (_, created) = app.post("/v1/contacts/invitations", json!({}), Some(&ann)).await;
    let (status, _) = app.post("/v1/contacts/invitations/accept", json!({ "code": created["code"] }), Some(&bea)).await;
    assert_eq!(status, StatusCode::OK);

    let (status, blocked) = app.post(&format!("/v1/contacts/{ann_id}/block"), json!({}), Some(&bea)).await;
    assert_eq!(status, StatusCode::OK, "{blocked}");
    assert_eq!(blocked["status"], "blocked");
    assert_eq!(blocked["email"], Value::Null);
    assert_eq!(links(&app).await, vec![(bea_id, ann_id, "blocked".to_owned())], "mine blocked, theirs gone");
    assert_eq!(
        app.count("SELECT count(*) FROM audit_logs WHERE action = 'contact.blocked' AND organization_id IS NULL").await,
        1
    );
    let (_, list) = app.get("/v1/contacts", Some(&ann)).await;
    assert_eq!(list, json!([]));

    // Neither an email invitation nor a code from the blocked person gets through.
    let (status, body) = app.post("/v1/contacts/invitations", json!({ "email": "bea@example.org" }), Some(&ann)).await;
    assert_eq!((status, error_code(&body)), (StatusCode::FORBIDDEN, "contact_refused"));
    let (_, created) = app.post("/v1/contacts/invitations", json!({}), Some(&ann)).await;
    let (status, body) =
        app.post("/v1/contacts/invitations/accept", json!({ "code": created["code"] }), Some(&bea)).await;
    assert_eq!((status, error_code(&body)), (StatusCode::FORBIDDEN, "contact_refused"));
    assert_eq!(links(&app).await.len(), 1);
    // The blocked person cannot lift the block by "removing" the contact.
    let (status, _) = app.delete(&format!("/v1/contacts/{bea_id}"), &ann).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(links(&app).await.len(), 1);
    let (status, body) = app.post(&format!("/v1/contacts/{bea_id}/block"), json!({}), Some(&bea)).await;
    assert_eq!((status, error_code(&body)), (StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"));
}

#[tokio::test]
async fn blocking_closes_pending_invitations_and_lifting_it_allows_new_ones() {
    let app = TestApp::start().await;
    let (ann_id, ann, _) = app.signed_in("ann@example.org").await;
    let (_, bea, _) = app.signed_in("bea@example.org").await;
    let (status, _) = app.post("/v1/contacts/invitations", json!({ "email": "bea@example.org" }), Some(&ann)).await;
    assert_eq!(status, StatusCode::CREATED);
    let (_, inbox) = app.get("/v1/contacts/invitations", Some(&bea)).await;
    assert_eq!(received(&inbox).len(), 1);

    let (status, _) = app.post(&format!("/v1/contacts/{ann_id}/block"), json!({}), Some(&bea)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(app.count("SELECT count(*) FROM contact_invitations WHERE status = 'declined'").await, 1);
    let (_, inbox) = app.get("/v1/contacts/invitations", Some(&bea)).await;
    assert!(received(&inbox).is_empty(), "{inbox}");

    let (status, _) = app.delete(&format!("/v1/contacts/{ann_id}"), &bea).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "removing my block lifts it");
    let (status, body) = app.post("/v1/contacts/invitations", json!({ "email": "bea@example.org" }), Some(&ann)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let id = body["id"].as_str().expect("id").to_owned();
    let (status, _) = app.post(&format!("/v1/contacts/invitations/{id}/decline"), json!({}), Some(&bea)).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = app.post(&format!("/v1/contacts/invitations/{id}/accept"), json!({}), Some(&bea)).await;
    assert_eq!((status, error_code(&body)), (StatusCode::GONE, "invitation_declined"));
    assert!(links(&app).await.is_empty());
}

#[tokio::test]
async fn blocking_is_only_for_people_the_caller_knows_and_anyone_else_answers_like_an_unknown_id() {
    let app = TestApp::start().await;
    let ann = app.person("ann@example.org").await;
    let colleague = app.person("colleague@example.org").await;
    let contact = app.person("contact@example.org").await;
    let invitee = app.person("invitee@example.org").await;
    let inviter = app.person("inviter@example.org").await;
    let stranger = app.person("stranger@example.org").await;
    app.organization("ann-org", &[&ann, &colleague]).await;
    app.organization("stranger-org", &[&stranger]).await;
    let (_, created) = app.post("/v1/contacts/invitations", json!({}), Some(&contact.access)).await;
    let (status, _) =
        app.post("/v1/contacts/invitations/accept", json!({ "code": created["code"] }), Some(&ann.access)).await;
    assert_eq!(status, StatusCode::OK);
    let invitation = json!({ "email": "invitee@example.org" });
    assert_eq!(app.post("/v1/contacts/invitations", invitation, Some(&ann.access)).await.0, StatusCode::CREATED);
    let invitation = json!({ "email": "ann@example.org" });
    assert_eq!(app.post("/v1/contacts/invitations", invitation, Some(&inviter.access)).await.0, StatusCode::CREATED);
    let before = links(&app).await;

    // Another organization's real account and an id nobody has: the same answer, byte for byte,
    // with no name in it, and nothing stored or audited.
    let block = |id: Uuid| app.post_owned(format!("/v1/contacts/{id}/block"), json!({}), ann.access.clone());
    let (status, other_tenant) = block(stranger.user_id).await;
    assert_eq!((status, error_code(&other_tenant)), (StatusCode::NOT_FOUND, "not_found"), "{other_tenant}");
    let (status, unknown) = block(Uuid::now_v7()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(other_tenant, unknown);
    assert!(!other_tenant.to_string().contains("Test"), "{other_tenant}");
    assert_eq!(links(&app).await, before);
    assert_eq!(app.count("SELECT count(*) FROM audit_logs WHERE action = 'contact.blocked'").await, 0);
    let (_, list) = app.get("/v1/contacts", Some(&ann.access)).await;
    assert!(!list.to_string().contains(&stranger.user_id.to_string()), "{list}");

    // A co-member, a contact, and either end of a pending invitation can still be blocked.
    for person in [&colleague, &contact, &invitee, &inviter] {
        let (status, blocked) = block(person.user_id).await;
        assert_eq!(status, StatusCode::OK, "{blocked}");
        assert_eq!(blocked["user_id"], person.user_id.to_string());
        assert_eq!(blocked["status"], "blocked");
    }
    assert_eq!(app.count("SELECT count(*) FROM audit_logs WHERE action = 'contact.blocked'").await, 4);
    // The invitations are closed, so nothing pending links the two any more; the block itself
    // still does, so blocking again stays idempotent.
    assert_eq!(app.count("SELECT count(*) FROM contact_invitations WHERE status = 'pending'").await, 0);
    assert_eq!(block(invitee.user_id).await.0, StatusCode::OK);
    // The stranger still cannot be blocked, and is still nowhere in the list.
    assert_eq!(block(stranger.user_id).await, (StatusCode::NOT_FOUND, unknown));
}
