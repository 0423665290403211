//! Organizations, invitations, members and workspaces through the API. The operator creates
//! organizations and workspaces, so the tests insert those rows as the owner role; everything
//! people do goes through HTTP.

use crate::support::{TestApp, error_code};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::Duration;
use uuid::Uuid;

pub async fn organization(app: &TestApp, slug: &str) -> Uuid {
    sqlx::query_scalar("INSERT INTO organizations (slug, display_name) VALUES ($1, $1) RETURNING id")
        .bind(slug)
        .fetch_one(&app.db.owner)
        .await
        .expect("organization")
}

pub async fn add_member(app: &TestApp, organization_id: Uuid, user_id: Uuid, role: &str) {
    sqlx::query("INSERT INTO organization_memberships (organization_id, user_id, role) VALUES ($1, $2, $3)")
        .bind(organization_id)
        .bind(user_id)
        .bind(role)
        .execute(&app.db.owner)
        .await
        .expect("membership");
}

async fn workspace(app: &TestApp, organization_id: Uuid, slug: &str, guest_access: bool) -> Uuid {
    sqlx::query_scalar(
        "INSERT INTO workspaces (organization_id, slug, display_name, guest_access) VALUES ($1, $2, $2, $3) RETURNING id",
    )
    .bind(organization_id)
    .bind(slug)
    .bind(guest_access)
    .fetch_one(&app.db.owner)
    .await
    .expect("workspace")
}

async fn exec(app: &TestApp, sql: &'static str, organization_id: Uuid) {
    sqlx::query(sql).bind(organization_id).execute(&app.db.owner).await.expect("update");
}

/// Any method, any body.
pub async fn call(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
    token: &str,
) -> (StatusCode, Value) {
    let mut request = app.http.request(method, app.url(path)).bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("request");
    let status = response.status();
    let text = response.text().await.expect("body");
    (status, if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(Value::String(text)) })
}

async fn invite(app: &TestApp, token: &str, organization_id: Uuid, email: &str, role: &str) -> (StatusCode, Value) {
    app.post(
        &format!("/v1/organizations/{organization_id}/invitations"),
        json!({ "email": email, "role": role }),
        Some(token),
    )
    .await
}

/// The newest invitation token mailed to `email` that is not `previous`.
async fn mailed_token(app: &TestApp, email: &str, previous: Option<&str>) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(mail) = app.mail.wait_for(email, "invited", Duration::from_secs(10)).await
            && let Some(token) = mail.token("cvi_")
            && Some(token.as_str()) != previous
        {
            return token;
        }
        assert!(tokio::time::Instant::now() < deadline, "no invitation email to {email}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn accept(app: &TestApp, token: &str, organization_id: Uuid, invitation: &str) -> (StatusCode, Value) {
    app.post(
        &format!("/v1/organizations/{organization_id}/invitations/accept"),
        json!({ "token": invitation }),
        Some(token),
    )
    .await
}

async fn memberships(app: &TestApp, organization_id: Uuid) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM organization_memberships WHERE organization_id = $1")
        .bind(organization_id)
        .fetch_one(&app.db.owner)
        .await
        .expect("count")
}

/// An organization with a signed-in owner: (organization id, owner id, owner token).
async fn owned(app: &TestApp, slug: &str, owner_email: &str) -> (Uuid, Uuid, String) {
    let org = organization(app, slug).await;
    let (owner, token, _) = app.signed_in(owner_email).await;
    add_member(app, org, owner, "owner").await;
    (org, owner, token)
}

#[tokio::test]
async fn an_invited_person_joins_through_the_emailed_token() {
    let app = TestApp::start().await;
    let (org, _, owner) = owned(&app, "acme", "olga@acme.example").await;

    let (status, sent) = invite(&app, &owner, org, " Bob@Acme.example ", "member").await;
    assert_eq!(status, StatusCode::CREATED, "{sent}");
    assert_eq!(sent["email"], "bob@acme.example");
    assert_eq!(sent["role"], "member");
    assert_eq!(sent["email_sent"], true);
    assert!(sent.get("token").is_none(), "the token travels by email only");
    let token = mailed_token(&app, "bob@acme.example", None).await;
    assert!(token.starts_with("cvi_"));
    let stored: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM organization_invitations
          WHERE token_hash = sha256(convert_to($1, 'UTF8')) AND expires_at BETWEEN now() + interval '6 days 23 hours' AND now() + interval '7 days 1 minute'",
    )
    .bind(&token)
    .fetch_one(&app.db.owner)
    .await
    .expect("count");
    assert_eq!(stored, 1, "only the digest is kept, valid for seven days");
    let (status, open) = app.get(&format!("/v1/organizations/{org}/invitations"), Some(&owner)).await;
    assert_eq!(status, StatusCode::OK, "{open}");
    assert_eq!(open.as_array().map(Vec::len), Some(1));

    let (bob_id, bob, _) = app.signed_in("bob@acme.example").await;
    let (status, joined) = accept(&app, &bob, org, &token).await;
    assert_eq!(status, StatusCode::CREATED, "{joined}");
    assert_eq!(joined["role"], "member");
    let (status, orgs) = app.get("/v1/organizations", Some(&bob)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(orgs[0]["id"], org.to_string());
    assert_eq!(orgs[0]["role"], "member");

    let (status, members) = app.get(&format!("/v1/organizations/{org}/members"), Some(&bob)).await;
    assert_eq!(status, StatusCode::OK, "{members}");
    let members = members.as_array().expect("array").clone();
    assert_eq!(members.len(), 2);
    assert!(members.iter().any(|m| m["user_id"] == bob_id.to_string() && m["role"] == "member"));
    assert!(members.iter().all(|m| m.get("email").is_none()), "members do not see emails");
    let (_, members) = app.get(&format!("/v1/organizations/{org}/members"), Some(&owner)).await;
    assert!(members.as_array().expect("array").iter().any(|m| m["email"] == "bob@acme.example"), "owners do");

    let (status, body) = accept(&app, &bob, org, &token).await;
    assert_eq!((status, error_code(&body)), (StatusCode::GONE, "invitation_used"));
    let (_, open) = app.get(&format!("/v1/organizations/{org}/invitations"), Some(&owner)).await;
    assert_eq!(open, json!([]));
    assert_eq!(app.count("SELECT count(*) FROM audit_logs WHERE action = 'invitation.created'").await, 1);
    assert_eq!(
        app.count(
            "SELECT count(*) FROM audit_logs WHERE action = 'invitation.accepted' AND organization_id IS NOT NULL"
        )
        .await,
        1
    );
    // A member cannot invite, list or revoke invitations.
    let (status, body) = invite(&app, &bob, org, "carl@acme.example", "member").await;
    assert_eq!((status, error_code(&body)), (StatusCode::FORBIDDEN, "insufficient_role"));
    let (status, body) = app.get(&format!("/v1/organizations/{org}/invitations"), Some(&bob)).await;
    assert_eq!((status, error_code(&body)), (StatusCode::FORBIDDEN, "insufficient_role"));
}

#[tokio::test]
async fn an_invitation_cannot_be_accepted_with_another_email() {
    let app = TestApp::start().await;
    let (org, _, owner) = owned(&app, "acme", "olga@acme.example").await;
    let (status, _) = invite(&app, &owner, org, "bob@acme.example", "admin").await;
    assert_eq!(status, StatusCode::CREATED);
    let token = mailed_token(&app, "bob@acme.example", None).await;
    let (_, mallory, _) = app.signed_in("mallory@acme.example").await;
    let (status, body) = accept(&app, &mallory, org, &token).await;
    assert_eq!((status, error_code(&body)), (StatusCode::FORBIDDEN, "invitation_email_mismatch"));
    assert_eq!(memberships(&app, org).await, 1, "nothing written");
    assert_eq!(app.count("SELECT count(*) FROM organization_invitations WHERE accepted_at IS NULL").await, 1);
    // The rightful invitee still can.
    let (_, bob, _) = app.signed_in("bob@acme.example").await;
    let (status, joined) = accept(&app, &bob, org, &token).await;
    assert_eq!(status, StatusCode::CREATED, "{joined}");
    assert_eq!(joined["role"], "admin");
}

#[tokio::test]
async fn expired_revoked_and_unknown_invitation_tokens_are_refused() {
    let app = TestApp::start().await;
    let (org, _, owner) = owned(&app, "acme", "olga@acme.example").await;
    let (_, bob, _) = app.signed_in("bob@acme.example").await;

    let (status, sent) = invite(&app, &owner, org, "bob@acme.example", "member").await;
    assert_eq!(status, StatusCode::CREATED);
    let revoked = mailed_token(&app, "bob@acme.example", None).await;
    let id = sent["id"].as_str().expect("id");
    let (status, _) = app.delete(&format!("/v1/organizations/{org}/invitations/{id}"), &owner).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = app.delete(&format!("/v1/organizations/{org}/invitations/{id}"), &owner).await;
    assert_eq!((status, error_code(&body)), (StatusCode::NOT_FOUND, "not_found"), "revoked once");
    let (status, body) = accept(&app, &bob, org, &revoked).await;
    assert_eq!((status, error_code(&body)), (StatusCode::GONE, "invitation_revoked"));
    assert_eq!(app.count("SELECT count(*) FROM audit_logs WHERE action = 'invitation.revoked'").await, 1);

    let (status, _) = invite(&app, &owner, org, "bob@acme.example", "member").await;
    assert_eq!(status, StatusCode::CREATED, "a revoked invitation frees the address");
    let expired = mailed_token(&app, "bob@acme.example", Some(&revoked)).await;
    exec(
        &app,
        "UPDATE organization_invitations SET created_at = now() - interval '8 days', expires_at = now() - interval '1 day'
          WHERE organization_id = $1 AND revoked_at IS NULL",
        org,
    )
    .await;
    let (status, body) = accept(&app, &bob, org, &expired).await;
    assert_eq!((status, error_code(&body)), (StatusCode::GONE, "invitation_expired"));

    let unknown = format!("cvi_{}", "A".repeat(43));
    let (status, body) = accept(&app, &bob, org, &unknown).await;
    assert_eq!((status, error_code(&body)), (StatusCode::NOT_FOUND, "not_found"));
    let (status, body) = accept(&app, &bob, org, "not-a-token").await;
    assert_eq!((status, error_code(&body)), (StatusCode::NOT_FOUND, "not_found"));
    assert_eq!(memberships(&app, org).await, 1);

    // An expired invitation is listed (flagged) and a new one for the address replaces it.
    let (_, open) = app.get(&format!("/v1/organizations/{org}/invitations"), Some(&owner)).await;
    assert_eq!(open[0]["expired"], true, "{open}");
    let (status, body) = invite(&app, &owner, org, "bob@acme.example", "member").await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = invite(&app, &owner, org, "bob@acme.example", "guest").await;
    assert_eq!((status, error_code(&body)), (StatusCode::CONFLICT, "invitation_exists"));
}

#[tokio::test]
async fn resending_an_operator_created_invitation_rotates_its_token() {
    let app = TestApp::start().await;
    let (org, _, owner) = owned(&app, "acme", "olga@acme.example").await;
    // The operator's initial-owner invitation: nobody knows its token.
    let id: Uuid = sqlx::query_scalar(
        "INSERT INTO organization_invitations (organization_id, email, role, token_hash, expires_at)
         VALUES ($1, 'founder@acme.example', 'owner', sha256('unknown'::bytea), now() + interval '7 days') RETURNING id",
    )
    .bind(org)
    .fetch_one(&app.db.owner)
    .await
    .expect("invitation");
    let (admin_id, admin, _) = app.signed_in("adam@acme.example").await;
    add_member(&app, org, admin_id, "admin").await;
    let path = format!("/v1/organizations/{org}/invitations/{id}/resend");
    let (status, body) = app.post(&path, json!({}), Some(&admin)).await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::FORBIDDEN, "insufficient_role"),
        "owner invitations are for owners"
    );

    let (status, body) = app.post(&path, json!({}), Some(&owner)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["role"], "owner");
    let first = mailed_token(&app, "founder@acme.example", None).await;
    let (status, _) = app.post(&path, json!({}), Some(&owner)).await;
    assert_eq!(status, StatusCode::OK);
    let second = mailed_token(&app, "founder@acme.example", Some(&first)).await;

    let (_, founder, _) = app.signed_in("founder@acme.example").await;
    let (status, body) = accept(&app, &founder, org, &first).await;
    assert_eq!((status, error_code(&body)), (StatusCode::NOT_FOUND, "not_found"), "the rotated token is dead");
    let (status, body) = accept(&app, &founder, org, &second).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["role"], "owner");
    assert_eq!(app.count("SELECT count(*) FROM audit_logs WHERE action = 'invitation.resent'").await, 2);
}

#[tokio::test]
async fn the_domain_policy_and_the_member_limit_refuse_with_clear_codes_and_write_nothing() {
    let app = TestApp::start().await;
    let (org, _, owner) = owned(&app, "acme", "olga@acme.example").await;
    exec(&app, "UPDATE organizations SET allowed_email_domains = '{acme.example}' WHERE id = $1", org).await;

    let (status, body) = invite(&app, &owner, org, "eve@evil.example", "member").await;
    assert_eq!((status, error_code(&body)), (StatusCode::UNPROCESSABLE_ENTITY, "email_domain_not_allowed"), "{body}");
    assert_eq!(body["error"]["details"]["field"], "email");
    let (status, body) = invite(&app, &owner, org, "not an email", "member").await;
    assert_eq!((status, error_code(&body)), (StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"));
    assert_eq!(body["error"]["details"]["field"], "email");
    let (status, body) = invite(&app, &owner, org, "bob@acme.example", "emperor").await;
    assert_eq!((status, error_code(&body)), (StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"));
    assert_eq!(body["error"]["details"]["field"], "role");
    assert_eq!(app.count("SELECT count(*) FROM organization_invitations").await, 0);

    // The policy is checked again at acceptance: it may have changed since.
    let (status, _) = invite(&app, &owner, org, "bob@acme.example", "member").await;
    assert_eq!(status, StatusCode::CREATED);
    let bob_token = mailed_token(&app, "bob@acme.example", None).await;
    let (status, _) = invite(&app, &owner, org, "carol@acme.example", "member").await;
    assert_eq!(status, StatusCode::CREATED);
    let carol_token = mailed_token(&app, "carol@acme.example", None).await;
    exec(&app, "UPDATE organizations SET allowed_email_domains = '{partner.example}' WHERE id = $1", org).await;
    let (_, bob, _) = app.signed_in("bob@acme.example").await;
    let (status, body) = accept(&app, &bob, org, &bob_token).await;
    assert_eq!((status, error_code(&body)), (StatusCode::UNPROCESSABLE_ENTITY, "email_domain_not_allowed"));
    assert_eq!(memberships(&app, org).await, 1);
    assert_eq!(app.count("SELECT count(*) FROM organization_invitations WHERE accepted_at IS NULL").await, 2);

    // The member limit: two seats, the owner holds one.
    exec(&app, "UPDATE organizations SET allowed_email_domains = '{}', max_members = 2 WHERE id = $1", org).await;
    let (status, body) = accept(&app, &bob, org, &bob_token).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (_, carol, _) = app.signed_in("carol@acme.example").await;
    let (status, body) = accept(&app, &carol, org, &carol_token).await;
    assert_eq!((status, error_code(&body)), (StatusCode::CONFLICT, "member_limit_reached"), "{body}");
    assert_eq!(body["error"]["details"]["max_members"], 2);
    assert_eq!(memberships(&app, org).await, 2);
    assert_eq!(app.count("SELECT count(*) FROM organization_invitations WHERE accepted_at IS NULL").await, 1);
    let (status, body) = invite(&app, &owner, org, "dave@acme.example", "member").await;
    assert_eq!((status, error_code(&body)), (StatusCode::CONFLICT, "member_limit_reached"));
    assert_eq!(app.count("SELECT count(*) FROM organization_invitations").await, 2);
    assert_eq!(app.count("SELECT count(*) FROM audit_logs WHERE action = 'invitation.accepted'").await, 1);
}

async fn patch_role(app: &TestApp, token: &str, org: Uuid, user: Uuid, role: &str) -> (StatusCode, Value) {
    call(
        app,
        reqwest::Method::PATCH,
        &format!("/v1/organizations/{org}/members/{user}"),
        Some(json!({ "role": role })),
        token,
    )
    .await
}

#[tokio::test]
async fn roles_change_by_the_rules_and_the_last_owner_always_stays() {
    let app = TestApp::start().await;
    let (org, owner_id, owner) = owned(&app, "acme", "olga@acme.example").await;
    let (admin_id, admin, _) = app.signed_in("adam@acme.example").await;
    let (member_id, member, _) = app.signed_in("mia@acme.example").await;
    let (guest_id, _guest, _) = app.signed_in("gus@acme.example").await;
    add_member(&app, org, admin_id, "admin").await;
    add_member(&app, org, member_id, "member").await;
    add_member(&app, org, guest_id, "guest").await;

    let (status, body) = patch_role(&app, &member, org, guest_id, "member").await;
    assert_eq!((status, error_code(&body)), (StatusCode::FORBIDDEN, "insufficient_role"));
    let (status, body) = patch_role(&app, &admin, org, member_id, "admin").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["role"], "admin");
    let (status, _) = patch_role(&app, &admin, org, member_id, "member").await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = patch_role(&app, &admin, org, member_id, "owner").await;
    assert_eq!((status, error_code(&body)), (StatusCode::FORBIDDEN, "insufficient_role"), "only owners grant owner");
    let (status, body) = patch_role(&app, &admin, org, owner_id, "member").await;
    assert_eq!((status, error_code(&body)), (StatusCode::FORBIDDEN, "insufficient_role"), "nor take it away");
    let (status, body) = patch_role(&app, &owner, org, owner_id, "admin").await;
    assert_eq!((status, error_code(&body)), (StatusCode::CONFLICT, "last_owner"));
    let (status, body) = patch_role(&app, &owner, org, member_id, "emperor").await;
    assert_eq!((status, error_code(&body)), (StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"));
    assert_eq!(body["error"]["details"]["field"], "role");
    let (status, body) = patch_role(&app, &owner, org, Uuid::new_v4(), "member").await;
    assert_eq!((status, error_code(&body)), (StatusCode::NOT_FOUND, "not_found"));

    let remove = |who: Uuid| format!("/v1/organizations/{org}/members/{who}");
    let (status, body) = app.delete(&remove(owner_id), &admin).await;
    assert_eq!((status, error_code(&body)), (StatusCode::FORBIDDEN, "insufficient_role"));
    let (status, body) = app.delete(&remove(owner_id), &owner).await;
    assert_eq!((status, error_code(&body)), (StatusCode::CONFLICT, "last_owner"), "the last owner cannot leave");
    let (status, body) = app.delete(&remove(guest_id), &member).await;
    assert_eq!((status, error_code(&body)), (StatusCode::FORBIDDEN, "insufficient_role"));

    // The guest's workspace membership goes with them.
    let ws = workspace(&app, org, "lobby", true).await;
    sqlx::query(
        "INSERT INTO workspace_memberships (organization_id, workspace_id, user_id, role) VALUES ($1, $2, $3, 'guest')",
    )
    .bind(org)
    .bind(ws)
    .bind(guest_id)
    .execute(&app.db.owner)
    .await
    .expect("workspace membership");
    let (status, _) = app.delete(&remove(guest_id), &admin).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(app.count("SELECT count(*) FROM workspace_memberships").await, 0);
    let (status, _) = app.delete(&remove(member_id), &member).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "a member may leave");
    let (status, body) = app.get(&format!("/v1/organizations/{org}"), Some(&member)).await;
    assert_eq!((status, error_code(&body)), (StatusCode::NOT_FOUND, "not_found"), "and is then a stranger");

    // Handing over: promote another owner, then the first may leave; the new one is now last.
    let (status, _) = patch_role(&app, &owner, org, admin_id, "owner").await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = app.delete(&remove(owner_id), &owner).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = patch_role(&app, &admin, org, admin_id, "admin").await;
    assert_eq!((status, error_code(&body)), (StatusCode::CONFLICT, "last_owner"));
    assert_eq!(memberships(&app, org).await, 1);

    assert_eq!(app.count("SELECT count(*) FROM audit_logs WHERE action = 'member.role_changed'").await, 3);
    assert_eq!(app.count("SELECT count(*) FROM audit_logs WHERE action = 'member.removed'").await, 3);
}

#[tokio::test]
async fn a_guest_cannot_join_a_workspace_without_guest_access() {
    let app = TestApp::start().await;
    let (org, _, _) = owned(&app, "acme", "olga@acme.example").await;
    let closed = workspace(&app, org, "engineering", false).await;
    let open = workspace(&app, org, "lobby", true).await;
    let (guest_id, guest, _) = app.signed_in("gus@acme.example").await;
    let (member_id, member, _) = app.signed_in("mia@acme.example").await;
    add_member(&app, org, guest_id, "guest").await;
    add_member(&app, org, member_id, "member").await;
    let ws = |id: Uuid, action: &str| format!("/v1/organizations/{org}/workspaces/{id}{action}");

    let (status, body) = app.post(&ws(closed, "/join"), json!({}), Some(&guest)).await;
    assert_eq!((status, error_code(&body)), (StatusCode::FORBIDDEN, "guest_access_disabled"));
    let (status, body) = app.get(&ws(closed, "/members"), Some(&guest)).await;
    assert_eq!((status, error_code(&body)), (StatusCode::FORBIDDEN, "insufficient_role"));
    let (status, body) = app.post(&ws(open, "/join"), json!({}), Some(&guest)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["joined"], true);
    let (status, _) = app.post(&ws(open, "/join"), json!({}), Some(&guest)).await;
    assert_eq!(status, StatusCode::OK, "joining twice is harmless");
    let (status, members) = app.get(&ws(open, "/members"), Some(&guest)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(members[0]["role"], "guest");

    let (status, body) = app.post(&ws(closed, "/join"), json!({}), Some(&member)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, list) = app.get(&format!("/v1/organizations/{org}/workspaces"), Some(&member)).await;
    assert_eq!(status, StatusCode::OK);
    let list = list.as_array().expect("array").clone();
    assert_eq!(list.len(), 2);
    assert!(list.iter().any(|w| w["id"] == closed.to_string() && w["joined"] == true && w["member_count"] == 1));
    assert!(list.iter().any(|w| w["id"] == open.to_string() && w["joined"] == false));
    let (status, shown) = app.get(&ws(open, ""), Some(&member)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(shown["guest_access"], true);

    let (status, _) = app.post(&ws(closed, "/leave"), json!({}), Some(&member)).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = app.post(&ws(closed, "/leave"), json!({}), Some(&member)).await;
    assert_eq!((status, error_code(&body)), (StatusCode::CONFLICT, "not_a_workspace_member"));
    let (status, body) = app.get(&ws(Uuid::new_v4(), ""), Some(&member)).await;
    assert_eq!((status, error_code(&body)), (StatusCode::NOT_FOUND, "not_found"));
    assert_eq!(
        app.count("SELECT count(*) FROM audit_logs WHERE action = 'workspace.joined' AND organization_id IS NOT NULL")
            .await,
        2
    );
    assert_eq!(app.count("SELECT count(*) FROM audit_logs WHERE action = 'workspace.left'").await, 1);
}

/// Every row of the tenant tables of one organization, as text, to compare before and after.
async fn snapshot(app: &TestApp, organization_id: Uuid) -> Vec<String> {
    let mut rows = Vec::new();
    for sql in [
        "SELECT coalesce(json_agg(t ORDER BY t.id)::text, '') FROM organizations t WHERE id = $1",
        "SELECT coalesce(json_agg(t ORDER BY t.id)::text, '') FROM organization_memberships t WHERE organization_id = $1",
        "SELECT coalesce(json_agg(t ORDER BY t.id)::text, '') FROM organization_invitations t WHERE organization_id = $1",
        "SELECT coalesce(json_agg(t ORDER BY t.id)::text, '') FROM workspaces t WHERE organization_id = $1",
        "SELECT coalesce(json_agg(t ORDER BY t.id)::text, '') FROM workspace_memberships t WHERE organization_id = $1",
        "SELECT coalesce(json_agg(t ORDER BY t.id)::text, '') FROM audit_logs t WHERE organization_id = $1",
    ] {
        let text: String =
            sqlx::query_scalar(sql).bind(organization_id).fetch_one(&app.db.owner).await.expect("snapshot");
        rows.push(text);
    }
    rows
}

#[tokio::test]
async fn every_organization_route_answers_another_tenants_ids_with_not_found() {
    use reqwest::Method;
    let app = TestApp::start().await;
    let one = conclave_testkit::seed_tenant(&app.db.owner, "one").await.expect("seed one");
    let two = conclave_testkit::seed_tenant(&app.db.owner, "two").await.expect("seed two");
    let (a, token, _) = app.signed_in("a@one.example").await;
    // The strongest role in organization 1, and nothing in organization 2.
    add_member(&app, one.organization_id, a, "owner").await;
    let (status, _) = app.get(&format!("/v1/organizations/{}", one.organization_id), Some(&token)).await;
    assert_eq!(status, StatusCode::OK, "A works in its own organization");
    let invitation_two: Uuid = sqlx::query_scalar("SELECT id FROM organization_invitations WHERE organization_id = $1")
        .bind(two.organization_id)
        .fetch_one(&app.db.owner)
        .await
        .expect("invitation of two");
    // A real token, of organization 1, presented to organization 2.
    let (status, _) = invite(&app, &token, one.organization_id, "x@one.example", "member").await;
    assert_eq!(status, StatusCode::CREATED);
    let token_one = mailed_token(&app, "x@one.example", None).await;

    let before_two = snapshot(&app, two.organization_id).await;
    let before_one = snapshot(&app, one.organization_id).await;
    let mails_before = app.mail.all().len();

    let (ws2, u2, i2) = (two.workspace_id, two.user_id, invitation_two);
    let mut calls: Vec<(Method, String, Option<Value>)> = Vec::new();
    // The organization of another tenant, with its own ids...
    let o2 = two.organization_id;
    // ...and A's own organization with the other tenant's ids inside it.
    let o1 = one.organization_id;
    for org in [o2, o1] {
        let base = format!("/v1/organizations/{org}");
        calls.extend([
            (Method::GET, format!("{base}/workspaces/{ws2}"), None),
            (Method::POST, format!("{base}/workspaces/{ws2}/join"), Some(json!({}))),
            (Method::POST, format!("{base}/workspaces/{ws2}/leave"), Some(json!({}))),
            (Method::GET, format!("{base}/workspaces/{ws2}/members"), None),
            (Method::PATCH, format!("{base}/members/{u2}"), Some(json!({ "role": "guest" }))),
            (Method::DELETE, format!("{base}/members/{u2}"), None),
            (Method::DELETE, format!("{base}/invitations/{i2}"), None),
            (Method::POST, format!("{base}/invitations/{i2}/resend"), Some(json!({}))),
        ]);
    }
    let base = format!("/v1/organizations/{o2}");
    calls.extend([
        (Method::GET, base.clone(), None),
        (Method::GET, format!("{base}/workspaces"), None),
        (Method::GET, format!("{base}/members"), None),
        (Method::GET, format!("{base}/invitations"), None),
        (Method::POST, format!("{base}/invitations"), Some(json!({ "email": "spy@one.example", "role": "owner" }))),
        (Method::POST, format!("{base}/invitations/accept"), Some(json!({ "token": token_one }))),
        (Method::PATCH, format!("{base}/members/{a}"), Some(json!({ "role": "owner" }))),
        (Method::DELETE, format!("{base}/members/{a}"), None),
    ]);
    for (method, path, body) in calls {
        let (status, response) = call(&app, method.clone(), &path, body, &token).await;
        assert_eq!(
            (status, error_code(&response)),
            (StatusCode::NOT_FOUND, "not_found"),
            "{method} {path} answered {response}"
        );
    }

    assert_eq!(snapshot(&app, two.organization_id).await, before_two, "organization 2 is untouched");
    assert_eq!(snapshot(&app, one.organization_id).await, before_one, "organization 1 too");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(app.mail.all().len(), mails_before, "no email went out");
}

#[tokio::test]
async fn a_member_demoted_to_guest_keeps_only_the_workspaces_that_admit_guests() {
    let app = TestApp::start().await;
    let (org, _, owner) = owned(&app, "acme", "olga@acme.example").await;
    let closed = workspace(&app, org, "engineering", false).await;
    let open = workspace(&app, org, "lobby", true).await;
    let (mia_id, mia, _) = app.signed_in("mia@acme.example").await;
    add_member(&app, org, mia_id, "member").await;
    for ws in [closed, open] {
        let (status, _) =
            app.post(&format!("/v1/organizations/{org}/workspaces/{ws}/join"), json!({}), Some(&mia)).await;
        assert_eq!(status, StatusCode::CREATED);
    }
    let (status, body) = patch_role(&app, &owner, org, mia_id, "guest").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let left: Vec<(Uuid, String)> =
        sqlx::query_as("SELECT workspace_id, role FROM workspace_memberships WHERE user_id = $1")
            .bind(mia_id)
            .fetch_all(&app.db.owner)
            .await
            .expect("memberships");
    assert_eq!(left, vec![(open, "guest".to_owned())]);
}

#[tokio::test]
async fn an_organizations_session_lifetime_sends_old_sessions_back_to_sign_in() {
    let app = TestApp::start().await;
    let person = app.person("olga@example.org").await;
    let (org, _) = app.organization("strict", &[&person]).await;
    sqlx::query("UPDATE organizations SET session_lifetime_seconds = 3600 WHERE id = $1")
        .bind(org)
        .execute(&app.db.owner)
        .await
        .expect("policy");
    let path = format!("/v1/organizations/{org}");
    assert_eq!(app.get(&path, Some(&person.access)).await.0, StatusCode::OK, "a fresh session is fine");
    // The session was opened two hours ago.
    sqlx::query("UPDATE session_tokens SET created_at = now() - interval '2 hours' WHERE user_id = $1")
        .bind(person.user_id)
        .execute(&app.db.owner)
        .await
        .expect("age the session");
    let (status, body) = app.get(&path, Some(&person.access)).await;
    assert_eq!((status, error_code(&body)), (StatusCode::UNAUTHORIZED, "session_expired_by_organization"));
    // Account routes are not the organization's to limit.
    assert_eq!(app.get("/v1/me", Some(&person.access)).await.0, StatusCode::OK);
    // A new sign-in is a new session.
    let fresh = app.login("olga@example.org", crate::support::PASSWORD).await;
    assert_eq!(app.get(&path, fresh["access_token"].as_str()).await.0, StatusCode::OK);
}
