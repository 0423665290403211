//! TOTP through the API, with codes computed here by an independent RFC 6238 implementation.

use crate::support::{PASSWORD, TestApp, error_code, new_device};
use crate::tenancy::{add_member, organization};
use reqwest::StatusCode;
use serde_json::{Value, json};
use totp_rs::{Algorithm, Builder, Secret};

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock after 1970").as_secs()
}

/// The code of `secret` (base32) at `unix_seconds`.
fn code(secret: &str, unix_seconds: u64) -> String {
    let seed = Secret::try_from_base32(secret).expect("base32 secret");
    Builder::new()
        .with_algorithm(Algorithm::SHA1)
        .with_digits(6)
        .with_skew(1)
        .with_step_duration(30)
        .with_secret(seed)
        .build_noncompliant()
        .generate(unix_seconds)
        .to_string()
}

async fn login(app: &TestApp, email: &str, extra: Value) -> (StatusCode, Value) {
    let mut body = json!({ "email": email, "password": PASSWORD, "device": new_device("phone") });
    if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
        body.extend(extra.clone());
    }
    app.post("/v1/auth/login", body, None).await
}

/// Enrols and confirms TOTP at `at`; returns (secret, recovery codes).
async fn enable(app: &TestApp, token: &str, at: u64) -> (String, Vec<String>) {
    let (status, enrolment) = app.post("/v1/auth/totp", json!({}), Some(token)).await;
    assert_eq!(status, StatusCode::CREATED, "{enrolment}");
    let secret = enrolment["secret"].as_str().expect("secret").to_owned();
    let uri = enrolment["otpauth_uri"].as_str().expect("uri");
    assert!(uri.starts_with("otpauth://totp/") && uri.contains(&format!("secret={secret}")), "{uri}");
    let (status, confirmed) =
        app.post("/v1/auth/totp/confirm", json!({ "code": code(&secret, at) }), Some(token)).await;
    assert_eq!(status, StatusCode::OK, "{confirmed}");
    let recovery: Vec<String> = confirmed["recovery_codes"]
        .as_array()
        .expect("recovery codes")
        .iter()
        .map(|c| c.as_str().expect("code").to_owned())
        .collect();
    assert_eq!(recovery.len(), 10);
    (secret, recovery)
}

#[tokio::test]
async fn with_totp_on_login_needs_a_code_that_cannot_be_replayed_and_recovery_codes_work_once() {
    let app = TestApp::start().await;
    let (_, token, _) = app.signed_in("tess@example.org").await;
    let t0 = now();
    let (secret, recovery) = enable(&app, &token, t0).await;
    let (_, me) = app.get("/v1/me", Some(&token)).await;
    assert_eq!(me["totp_enabled"], true);

    let (status, body) = login(&app, "tess@example.org", json!({})).await;
    assert_eq!((status, error_code(&body)), (StatusCode::UNAUTHORIZED, "totp_required"));
    // The code that confirmed enrolment was used: inside its window it is refused.
    let (status, body) = login(&app, "tess@example.org", json!({ "totp_code": code(&secret, t0) })).await;
    assert_eq!((status, error_code(&body)), (StatusCode::UNAUTHORIZED, "invalid_totp"));
    let (status, body) = login(&app, "tess@example.org", json!({ "totp_code": "000000x" })).await;
    assert_eq!((status, error_code(&body)), (StatusCode::UNAUTHORIZED, "invalid_totp"));

    let (status, body) = login(&app, "tess@example.org", json!({ "recovery_code": recovery[0] })).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = login(&app, "tess@example.org", json!({ "recovery_code": recovery[0].to_uppercase() })).await;
    assert_eq!((status, error_code(&body)), (StatusCode::UNAUTHORIZED, "invalid_totp"), "a recovery code works once");

    // The next step's code is fresh (accepted with one step of skew), once.
    let next = code(&secret, t0 + 30);
    let (status, body) = login(&app, "tess@example.org", json!({ "totp_code": next })).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = login(&app, "tess@example.org", json!({ "totp_code": next })).await;
    assert_eq!((status, error_code(&body)), (StatusCode::UNAUTHORIZED, "invalid_totp"), "replayed");

    // Turning it off needs a fresh factor: not a used code, nothing at all, but a recovery code.
    let (status, body) = app.post("/v1/auth/totp/disable", json!({ "code": next }), Some(&token)).await;
    assert_eq!((status, error_code(&body)), (StatusCode::UNAUTHORIZED, "invalid_totp"));
    let (status, body) = app.post("/v1/auth/totp/disable", json!({}), Some(&token)).await;
    assert_eq!((status, error_code(&body)), (StatusCode::UNAUTHORIZED, "totp_required"));
    let (status, body) = app.post("/v1/auth/totp/disable", json!({ "recovery_code": recovery[1] }), Some(&token)).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let (status, body) = login(&app, "tess@example.org", json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(app.count("SELECT count(*) FROM totp_secrets").await, 0);
}

#[tokio::test]
async fn disabling_totp_takes_a_fresh_code() {
    let app = TestApp::start().await;
    let (_, token, _) = app.signed_in("tom@example.org").await;
    let t0 = now();
    let (secret, _) = enable(&app, &token, t0).await;
    let (status, body) = app.post("/v1/auth/totp/disable", json!({ "code": code(&secret, t0) }), Some(&token)).await;
    assert_eq!((status, error_code(&body)), (StatusCode::UNAUTHORIZED, "invalid_totp"), "the enrolment code is spent");
    let (status, body) =
        app.post("/v1/auth/totp/disable", json!({ "code": code(&secret, t0 + 30) }), Some(&token)).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let (_, me) = app.get("/v1/me", Some(&token)).await;
    assert_eq!(me["totp_enabled"], false);
    assert_eq!(app.count("SELECT count(*) FROM audit_logs WHERE action = 'auth.totp_disabled'").await, 1);
}

#[tokio::test]
async fn an_organization_that_requires_totp_refuses_members_without_it() {
    let app = TestApp::start().await;
    let org = organization(&app, "vault").await;
    sqlx::query("UPDATE organizations SET require_totp = true WHERE id = $1")
        .bind(org)
        .execute(&app.db.owner)
        .await
        .expect("policy");
    let (user, token, _) = app.signed_in("vera@example.org").await;
    add_member(&app, org, user, "owner").await;
    for path in [
        format!("/v1/organizations/{org}"),
        format!("/v1/organizations/{org}/members"),
        format!("/v1/organizations/{org}/workspaces"),
        format!("/v1/organizations/{org}/invitations"),
    ] {
        let (status, body) = app.get(&path, Some(&token)).await;
        assert_eq!((status, error_code(&body)), (StatusCode::FORBIDDEN, "totp_required_by_organization"), "{path}");
    }
    // The organization is still listed, so the person knows what asks for it.
    let (status, list) = app.get("/v1/organizations", Some(&token)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list[0]["require_totp"], true);

    enable(&app, &token, now()).await;
    let (status, body) = app.get(&format!("/v1/organizations/{org}/members"), Some(&token)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}
