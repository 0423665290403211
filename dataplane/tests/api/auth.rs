use crate::support::{PASSWORD, TestApp, error_code, new_device};
use reqwest::StatusCode;
use serde_json::json;
use std::time::Duration;

#[tokio::test]
async fn a_person_registers_confirms_by_email_and_signs_in() {
    let app = TestApp::start().await;
    let (status, body) = app
        .post(
            "/v1/auth/register",
            json!({ "email": " Alice@Example.org ", "password": PASSWORD, "display_name": "Alice" }),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["email"], "alice@example.org");
    assert_eq!(body["confirmation_email_sent"], true);

    // Not before the email is confirmed.
    let (status, body) = app
        .post(
            "/v1/auth/login",
            json!({ "email": "alice@example.org", "password": PASSWORD, "device": new_device("phone") }),
            None,
        )
        .await;
    assert_eq!((status, error_code(&body)), (StatusCode::FORBIDDEN, "email_not_confirmed"));

    let mail = app.mail.wait_for("alice@example.org", "Confirm", Duration::from_secs(10)).await.expect("email");
    let token = mail.token("cve_").expect("token");
    // The database keeps only the digest of the token.
    let stored: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM email_confirmation_tokens WHERE token_hash = sha256(convert_to($1, 'UTF8'))",
    )
    .bind(&token)
    .fetch_one(&app.db.owner)
    .await
    .expect("count");
    assert_eq!(stored, 1);
    let (status, _) = app.post("/v1/auth/confirm-email", json!({ "token": token }), None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = app.post("/v1/auth/confirm-email", json!({ "token": token }), None).await;
    assert_eq!((status, error_code(&body)), (StatusCode::BAD_REQUEST, "invalid_emailed_token"), "single use");

    let pair = app.login("alice@example.org", PASSWORD).await;
    let access = pair["access_token"].as_str().expect("access");
    let (status, me) = app.get("/v1/me", Some(access)).await;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(me["email"], "alice@example.org");
    assert_eq!(me["display_name"], "Alice");
    assert_eq!(me["device_id"], pair["device_id"]);
    assert_eq!(app.count("SELECT count(*) FROM audit_logs WHERE action = 'auth.login'").await, 1);
}

#[tokio::test]
async fn registering_an_email_twice_is_a_conflict() {
    let app = TestApp::start().await;
    app.confirmed_user("bob@example.org", PASSWORD).await;
    let (status, body) = app
        .post(
            "/v1/auth/register",
            json!({ "email": "BOB@example.org", "password": PASSWORD, "display_name": "Bob 2" }),
            None,
        )
        .await;
    assert_eq!((status, error_code(&body)), (StatusCode::CONFLICT, "email_taken"));
    assert_eq!(app.count("SELECT count(*) FROM user_accounts").await, 1);
}

#[tokio::test]
async fn repeated_failures_lock_the_account_and_are_audited() {
    let app =
        TestApp::start_with(&["--rate-limit-factor", "1000", "--lockout-threshold", "3", "--lockout-seconds", "600"])
            .await;
    app.confirmed_user("carol@example.org", PASSWORD).await;
    for _ in 0..3 {
        let (status, body) = app
            .post(
                "/v1/auth/login",
                json!({ "email": "carol@example.org", "password": "wrong password here", "device": new_device("x") }),
                None,
            )
            .await;
        assert_eq!((status, error_code(&body)), (StatusCode::UNAUTHORIZED, "invalid_credentials"));
    }
    // Now even the right password is refused, with how long to wait.
    let response = app
        .http
        .post(app.url("/v1/auth/login"))
        .json(&json!({ "email": "carol@example.org", "password": PASSWORD, "device": new_device("x") }))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let retry: u64 = response.headers()["retry-after"].to_str().expect("header").parse().expect("seconds");
    assert!(retry > 500 && retry <= 600, "{retry}");
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(error_code(&body), "account_locked");
    assert_eq!(app.count("SELECT count(*) FROM audit_logs WHERE action = 'auth.login_failed'").await, 3);
    assert_eq!(app.count("SELECT count(*) FROM audit_logs WHERE action = 'auth.locked_out'").await, 1);
    assert_eq!(app.count("SELECT count(*) FROM session_tokens").await, 0);
}

#[tokio::test]
async fn an_unknown_email_and_a_wrong_password_answer_the_same() {
    let app = TestApp::start().await;
    app.confirmed_user("dave@example.org", PASSWORD).await;
    let (s1, b1) = app
        .post(
            "/v1/auth/login",
            json!({ "email": "nobody@example.org", "password": PASSWORD, "device": new_device("x") }),
            None,
        )
        .await;
    let (s2, b2) = app
        .post(
            "/v1/auth/login",
            json!({ "email": "dave@example.org", "password": "not the password", "device": new_device("x") }),
            None,
        )
        .await;
    assert_eq!((s1, &b1), (s2, &b2));
}

#[tokio::test]
async fn refresh_rotates_and_reuse_of_a_rotated_token_kills_the_family() {
    let app = TestApp::start().await;
    let (_, _, pair) = app.signed_in("erin@example.org").await;
    let first = pair["refresh_token"].as_str().expect("refresh").to_owned();
    let (status, second) = app.post("/v1/auth/refresh", json!({ "refresh_token": first }), None).await;
    assert_eq!(status, StatusCode::OK, "{second}");
    assert_ne!(second["refresh_token"], pair["refresh_token"]);
    assert_eq!(second["session_id"], pair["session_id"]);
    let access = second["access_token"].as_str().expect("access").to_owned();
    assert_eq!(app.get("/v1/me", Some(&access)).await.0, StatusCode::OK);

    // The first token again: someone else has it. The whole family dies, audited.
    let (status, body) = app.post("/v1/auth/refresh", json!({ "refresh_token": first }), None).await;
    assert_eq!((status, error_code(&body)), (StatusCode::UNAUTHORIZED, "refresh_token_reused"));
    let (status, body) = app.post("/v1/auth/refresh", json!({ "refresh_token": second["refresh_token"] }), None).await;
    assert_eq!((status, error_code(&body)), (StatusCode::UNAUTHORIZED, "invalid_refresh_token"));
    let (status, body) = app.get("/v1/me", Some(&access)).await;
    assert_eq!((status, error_code(&body)), (StatusCode::UNAUTHORIZED, "session_revoked"));
    assert_eq!(app.count("SELECT count(*) FROM audit_logs WHERE action = 'auth.refresh_token_reused'").await, 1);
    assert_eq!(
        app.count("SELECT count(*) FROM refresh_tokens WHERE revoked_reason = 'reuse_detected'").await,
        2,
        "both the rotated token and its successor"
    );
}

#[tokio::test]
async fn logout_ends_the_session_at_once() {
    let app = TestApp::start().await;
    let (_, access, pair) = app.signed_in("frank@example.org").await;
    let (status, _) = app.post("/v1/auth/logout", json!({}), Some(&access)).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(app.get("/v1/me", Some(&access)).await.0, StatusCode::UNAUTHORIZED);
    let (status, _) = app.post("/v1/auth/refresh", json!({ "refresh_token": pair["refresh_token"] }), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_password_reset_by_email_ends_every_session() {
    let app = TestApp::start().await;
    let (_, access, _) = app.signed_in("gina@example.org").await;
    let (_, second_access, _) =
        (0, app.login("gina@example.org", PASSWORD).await["access_token"].as_str().expect("t").to_owned(), 0);
    let (status, _) = app.post("/v1/auth/password-reset", json!({ "email": "gina@example.org" }), None).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    // Unknown addresses get the same answer and no email.
    let (status, _) = app.post("/v1/auth/password-reset", json!({ "email": "ghost@example.org" }), None).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let mail = app.mail.wait_for("gina@example.org", "Reset", Duration::from_secs(10)).await.expect("email");
    let token = mail.token("cvp_").expect("token");
    let (status, body) =
        app.post("/v1/auth/password-reset/confirm", json!({ "token": token, "new_password": "short" }), None).await;
    assert_eq!((status, error_code(&body)), (StatusCode::UNPROCESSABLE_ENTITY, "weak_password"));
    let new_password = "a brand new passphrase 42";
    let (status, body) = app
        .post("/v1/auth/password-reset/confirm", json!({ "token": token, "new_password": new_password }), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    assert_eq!(app.get("/v1/me", Some(&access)).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(app.get("/v1/me", Some(&second_access)).await.0, StatusCode::UNAUTHORIZED);
    let (status, _) = app
        .post(
            "/v1/auth/password-reset/confirm",
            json!({ "token": token, "new_password": "another passphrase 43" }),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "the token works once");
    app.login("gina@example.org", new_password).await;
    assert!(app.mail.wait_for("ghost@example.org", "Reset", Duration::from_millis(200)).await.is_none());
    assert_eq!(app.count("SELECT count(*) FROM audit_logs WHERE action = 'auth.password_reset'").await, 1);
}

#[tokio::test]
async fn a_password_change_keeps_this_session_and_ends_the_others() {
    let app = TestApp::start().await;
    let (_, access, _) = app.signed_in("hank@example.org").await;
    let other = app.login("hank@example.org", PASSWORD).await["access_token"].as_str().expect("t").to_owned();
    let (status, body) = app
        .post(
            "/v1/auth/password",
            json!({ "current_password": "wrong one entirely", "new_password": "x" }),
            Some(&access),
        )
        .await;
    assert_eq!((status, error_code(&body)), (StatusCode::UNAUTHORIZED, "invalid_credentials"));
    let (status, body) = app
        .post(
            "/v1/auth/password",
            json!({ "current_password": PASSWORD, "new_password": "fresh passphrase for h4nk twice" }),
            Some(&access),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    assert_eq!(app.get("/v1/me", Some(&access)).await.0, StatusCode::OK);
    assert_eq!(app.get("/v1/me", Some(&other)).await.0, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn the_jwks_publishes_the_key_that_signs_access_tokens() {
    let app = TestApp::start().await;
    let (_, access, _) = app.signed_in("ivy@example.org").await;
    let (status, jwks) = app.get("/.well-known/jwks.json", None).await;
    assert_eq!(status, StatusCode::OK);
    let header = jsonwebtoken::decode_header(&access).expect("header");
    assert_eq!(jwks["keys"][0]["kid"].as_str(), header.kid.as_deref());
    assert_eq!(jwks["keys"][0]["alg"], "EdDSA");
    assert_eq!(format!("{:?}", header.alg), "EdDSA");
}

#[tokio::test]
async fn requests_without_a_valid_token_are_refused() {
    let app = TestApp::start().await;
    let (status, body) = app.get("/v1/me", None).await;
    assert_eq!((status, error_code(&body)), (StatusCode::UNAUTHORIZED, "missing_token"));
    let (status, body) = app.get("/v1/me", Some("eyJhbGciOiJub25lIn0.e30.")).await;
    assert_eq!((status, error_code(&body)), (StatusCode::UNAUTHORIZED, "invalid_token"));
}

#[tokio::test]
async fn registration_is_rate_limited_with_retry_after() {
    let app = TestApp::start_with(&["--rate-limit-factor", "1"]).await;
    let mut last = None;
    for i in 0..11 {
        let response = app
            .http
            .post(app.url("/v1/auth/register"))
            .json(&json!({ "email": format!("user{i}@example.org"), "password": PASSWORD, "display_name": "U" }))
            .send()
            .await
            .expect("request");
        last = Some(response);
    }
    let response = last.expect("response");
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(response.headers().contains_key("retry-after"));
    assert_eq!(app.count("SELECT count(*) FROM user_accounts").await, 10, "the refused attempt wrote nothing");
}
