mod totp;

use crate::support::{PASSWORD, TestApp, TestDevice, b64, error_code, new_device, read, unix_now};
use ed25519_dalek::Signer as _;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::time::Duration;
use uuid::Uuid;

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
async fn registering_a_taken_address_answers_as_a_free_one_and_tells_its_owner() {
    let app = TestApp::start().await;
    app.confirmed_user("bob@example.org", PASSWORD).await;
    let register = |email: &str| {
        let body = json!({ "email": email, "password": "another long passphrase 9", "display_name": "Someone" });
        let app = &app;
        async move { app.post("/v1/auth/register", body, None).await }
    };
    // The same status and the same body (but for the address) whether or not it is taken: the
    // answer does not say who has an account.
    let (taken_status, taken) = register("BOB@example.org").await;
    let (free_status, free) = register("dana@example.org").await;
    assert_eq!((taken_status, free_status), (StatusCode::CREATED, StatusCode::CREATED), "{taken} {free}");
    let keys = |v: &Value| v.as_object().map(|o| o.keys().cloned().collect::<Vec<_>>()).unwrap_or_default();
    assert_eq!(keys(&taken), keys(&free));
    assert_eq!(
        (taken["email"].as_str(), taken["confirmation_email_sent"].as_bool()),
        (Some("bob@example.org"), Some(true))
    );
    // Bob is told, nothing is created or changed, and his password still works.
    let note = app.mail.wait_for("bob@example.org", "already have an account", Duration::from_secs(10)).await;
    assert!(note.is_some_and(|m| !m.body.contains("cve_")), "a note, with no token to confirm anything");
    assert_eq!(app.count("SELECT count(*) FROM user_accounts WHERE email = 'bob@example.org'").await, 1);
    assert_eq!(app.count("SELECT count(*) FROM email_confirmation_tokens t JOIN user_accounts u ON u.id = t.user_id WHERE u.email = 'bob@example.org' AND t.consumed_at IS NULL").await, 0);
    let pair = app.login("bob@example.org", PASSWORD).await;
    assert!(pair["access_token"].is_string(), "{pair}");
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

/// One request from the source address `from` (the server trusts `X-Forwarded-For` in these
/// tests), its answer checked against the document when `documented`: (status, Retry-After, body).
async fn attempt(
    app: &TestApp,
    path: &str,
    body: &Value,
    from: &str,
    documented: bool,
) -> (StatusCode, Option<u64>, Value) {
    let response =
        app.http.post(app.url(path)).header("x-forwarded-for", from).json(body).send().await.expect("request");
    let retry = response.headers().get("retry-after").and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok());
    let content_type = response.headers().get("content-type").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let (status, body) = read(response).await;
    if documented {
        crate::contract::check(&Method::POST, path, status, content_type.as_deref(), &body);
    }
    (status, retry, body)
}

/// What the SDK sends: the device's signature over the login proof layout.
fn device_proof(device: &TestDevice, email: &str, device_id: Uuid, unix_seconds: u64) -> Value {
    let input = conclave_protocol::layout::login_proof_input(email, device_id, unix_seconds);
    json!({ "unix_seconds": unix_seconds, "signature": b64(&device.signing.sign(&input).to_bytes()) })
}

async fn failed_login_count(app: &TestApp, user_id: Uuid) -> i32 {
    sqlx::query_scalar("SELECT failed_login_count FROM user_security_states WHERE user_id = $1")
        .bind(user_id)
        .fetch_one(&app.db.owner)
        .await
        .expect("security state")
}

#[tokio::test]
async fn concurrent_wrong_passwords_are_each_counted_and_lock_the_account() {
    // The attack: wrong passwords sent at once were counted as one or two, so the lock never
    // engaged. With the threshold at N, N concurrent failures must count N and lock exactly once,
    // and guesses beyond N sent at the same moment must not be checked at all.
    const N: usize = 24;
    let threshold = N.to_string();
    let app = TestApp::start_with(&["--rate-limit-factor", "1000", "--lockout-threshold", &threshold]).await;
    let user_id = app.confirmed_user("olga@example.org", PASSWORD).await;
    let wrong = json!({ "email": "olga@example.org", "password": "not olga's password", "device": new_device("x") });
    // Sixteen more than the threshold at once: only N may have their password checked (each
    // attempt is counted before hashing), the rest are refused as locked without a check.
    const EXTRA: usize = 16;
    let answers =
        futures::future::join_all((0..N + EXTRA).map(|_| app.post("/v1/auth/login", wrong.clone(), None))).await;
    let checked = answers.iter().filter(|(_, body)| error_code(body) == "invalid_credentials").count();
    let refused = answers.iter().filter(|(_, body)| error_code(body) == "account_locked").count();
    assert_eq!((checked, refused), (N, EXTRA), "{answers:?}");
    assert_eq!(failed_login_count(&app, user_id).await, N as i32, "every concurrent failure is counted");
    assert_eq!(app.count("SELECT count(*) FROM audit_logs WHERE action = 'auth.login_failed'").await, N as i64);
    assert_eq!(app.count("SELECT count(*) FROM audit_logs WHERE action = 'auth.locked_out'").await, 1);
    let (status, body) = app
        .post(
            "/v1/auth/login",
            json!({ "email": "olga@example.org", "password": PASSWORD, "device": new_device("x") }),
            None,
        )
        .await;
    assert_eq!((status, error_code(&body)), (StatusCode::FORBIDDEN, "account_locked"), "the lock engaged");
}

#[tokio::test]
async fn a_locked_account_answers_exactly_like_an_unknown_email() {
    // The attack: after five wrong passwords an account answered 403 `account_locked` while an
    // unknown address kept answering 401, which told who is registered.
    let app = TestApp::start_with(&["--rate-limit-factor", "1000", "--trust-forwarded-for"]).await;
    app.confirmed_user("paula@example.org", PASSWORD).await;
    let mut known = Vec::new();
    let mut unknown = Vec::new();
    // Wrong passwords past the threshold (5), then the right one: a locked account refuses it
    // exactly as an unknown address refuses anything. Interleaved, so both locks start together.
    for i in 0..8 {
        let password = if i == 7 { PASSWORD } else { "a wrong password" };
        for (email, answers, from) in
            [("paula@example.org", &mut known, "192.0.2.1"), ("nobody-here@example.org", &mut unknown, "192.0.2.2")]
        {
            let body = json!({ "email": email, "password": password, "device": new_device("x") });
            answers.push(attempt(&app, "/v1/auth/login", &body, from, true).await);
        }
    }
    let codes: Vec<(StatusCode, &str)> = known.iter().map(|(s, _, b)| (*s, error_code(b))).collect();
    assert_eq!(codes[..5], [(StatusCode::UNAUTHORIZED, "invalid_credentials"); 5]);
    assert_eq!(codes[5..], [(StatusCode::FORBIDDEN, "account_locked"); 3]);
    assert_same_answers(&known, &unknown);
}

/// Answer for answer, the same status, body and `Retry-After` (counted from moments a few
/// milliseconds apart, so at most a second boundary apart).
fn assert_same_answers(known: &[(StatusCode, Option<u64>, Value)], unknown: &[(StatusCode, Option<u64>, Value)]) {
    assert_eq!(known.len(), unknown.len());
    for (i, ((ks, kr, kb), (us, ur, ub))) in known.iter().zip(unknown).enumerate() {
        assert_eq!((ks, kb, kr.is_some()), (us, ub, ur.is_some()), "answer {i}");
        assert!(kr.unwrap_or(0).abs_diff(ur.unwrap_or(0)) <= 1, "answer {i}: Retry-After {kr:?} vs {ur:?}");
    }
}

#[tokio::test]
async fn a_password_reset_answers_alike_for_registered_and_unknown_addresses() {
    let app = TestApp::start_with(&["--rate-limit-factor", "1", "--trust-forwarded-for"]).await;
    app.confirmed_user("quinn@example.org", PASSWORD).await;
    // Past the per-address limit (5 an hour), from two sources so the per-source limit is the same.
    let mut known = Vec::new();
    let mut unknown = Vec::new();
    for _ in 0..7 {
        let body = json!({ "email": "quinn@example.org" });
        known.push(attempt(&app, "/v1/auth/password-reset", &body, "192.0.2.3", false).await);
        let body = json!({ "email": "nobody-at-all@example.org" });
        unknown.push(attempt(&app, "/v1/auth/password-reset", &body, "192.0.2.4", false).await);
    }
    let statuses: Vec<StatusCode> = known.iter().map(|(s, _, _)| *s).collect();
    assert_eq!(statuses[..5], [StatusCode::ACCEPTED; 5]);
    assert_eq!(statuses[5..], [StatusCode::TOO_MANY_REQUESTS; 2]);
    assert_same_answers(&known, &unknown);
    assert!(app.mail.wait_for("quinn@example.org", "Reset", Duration::from_secs(10)).await.is_some());
    assert!(app.mail.wait_for("nobody-at-all@example.org", "Reset", Duration::from_millis(200)).await.is_none());
}

#[tokio::test]
async fn strangers_failures_do_not_lock_the_owner_out_of_a_device_that_proves_itself() {
    // The attack: wrong passwords from anywhere refused the owner's right password too. Limits
    // here are production's (factor 1).
    let app = TestApp::start_with(&["--rate-limit-factor", "1", "--trust-forwarded-for"]).await;
    let owner = app.person("rosa@example.org").await;
    // The per-source limit counts in fixed five-minute windows: start well inside one.
    let into_window = unix_now() % 300;
    if into_window > 280 {
        tokio::time::sleep(Duration::from_secs(301 - into_window)).await;
    }
    let mut stranger = Vec::new();
    for _ in 0..30 {
        let body = json!({ "email": "rosa@example.org", "password": "guessing again", "device": new_device("x") });
        stranger.push(attempt(&app, "/v1/auth/login", &body, "203.0.113.9", true).await.0);
    }
    assert_eq!(stranger[..5], [StatusCode::UNAUTHORIZED; 5], "counted");
    assert_eq!(stranger[5..20], [StatusCode::FORBIDDEN; 15], "then the address is locked");
    assert_eq!(stranger[20..], [StatusCode::TOO_MANY_REQUESTS; 10], "and the source is limited");

    // A device id without its proof is not a sign-in at all (a password and a device id are
    // not enough)...
    let plain = json!({ "email": "rosa@example.org", "password": PASSWORD, "device_id": owner.device_id });
    let (status, _, body) = attempt(&app, "/v1/auth/login", &plain, "198.51.100.7", true).await;
    assert_eq!((status, error_code(&body)), (StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"));
    assert_eq!(body["error"]["details"]["field"], "device_proof");
    // ...the owner's right password on a new device waits for the lock to end...
    let new = json!({ "email": "rosa@example.org", "password": PASSWORD, "device": new_device("phone") });
    let (status, retry, body) = attempt(&app, "/v1/auth/login", &new, "198.51.100.7", true).await;
    assert_eq!((status, error_code(&body)), (StatusCode::FORBIDDEN, "account_locked"));
    assert!(retry.is_some_and(|r| r > 800), "{retry:?}");

    // ...but the device that signed in before proves it and signs in.
    let mut proven = plain.clone();
    proven["device_proof"] = device_proof(&owner.device, "rosa@example.org", owner.device_id, unix_now());
    let (status, _, body) = attempt(&app, "/v1/auth/login", &proven, "198.51.100.7", true).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["device_id"], json!(owner.device_id));
    assert_eq!(app.count("SELECT count(*) FROM audit_logs WHERE action = 'auth.login'").await, 2);
}

#[tokio::test]
async fn forged_or_stale_device_proofs_are_refused_and_counted_as_failures() {
    let app = TestApp::start().await;
    let owner = app.person("sven@example.org").await;
    let other = app.person("tara@example.org").await;
    let login = |device_id: Uuid, proof: Value| {
        let mut body = json!({ "email": "sven@example.org", "password": PASSWORD, "device_id": device_id });
        body["device_proof"] = proof;
        body
    };
    let now = unix_now();
    let refused = [
        // Signed by another key.
        (owner.device_id, device_proof(&TestDevice::new(), "sven@example.org", owner.device_id, now)),
        // A real device, properly signed, but another account's.
        (other.device_id, device_proof(&other.device, "sven@example.org", other.device_id, now)),
        // Too old, and too far ahead.
        (owner.device_id, device_proof(&owner.device, "sven@example.org", owner.device_id, now - 600)),
        (owner.device_id, device_proof(&owner.device, "sven@example.org", owner.device_id, now + 600)),
        // Made for another address.
        (owner.device_id, device_proof(&owner.device, "tara@example.org", owner.device_id, now)),
    ];
    for (i, (device_id, proof)) in refused.into_iter().enumerate() {
        let (status, body) = app.post("/v1/auth/login", login(device_id, proof), None).await;
        assert_eq!((status, error_code(&body)), (StatusCode::UNAUTHORIZED, "invalid_credentials"), "proof {i}");
    }
    assert_eq!(failed_login_count(&app, owner.user_id).await, 5, "each refused proof is a failed sign-in");
    // Five failures lock the address: now only a valid proof gets through.
    let new_device_login = json!({ "email": "sven@example.org", "password": PASSWORD, "device": new_device("x") });
    let (status, body) = app.post("/v1/auth/login", new_device_login, None).await;
    assert_eq!((status, error_code(&body)), (StatusCode::FORBIDDEN, "account_locked"));
    let proof = device_proof(&owner.device, "sven@example.org", owner.device_id, now);
    let (status, body) = app.post("/v1/auth/login", login(owner.device_id, proof), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn the_per_source_limit_counts_an_ipv6_64_as_one_source() {
    // The attack: a client holding a /64 sends each attempt from another of its addresses, so a
    // limit per address never fills. Production limits (factor 1): 20 sign-ins per 5 minutes.
    let app = TestApp::start_with(&["--rate-limit-factor", "1", "--trust-forwarded-for"]).await;
    let into_window = unix_now() % 300;
    if into_window > 280 {
        tokio::time::sleep(Duration::from_secs(301 - into_window)).await;
    }
    let login = |i: usize| {
        // Unknown addresses, one each, so no lockout is involved: only the per-source limit.
        json!({ "email": format!("nobody-{i}@example.org"), "password": "a guess", "device": new_device("x") })
    };
    for i in 0..20 {
        let from = format!("2001:db8:16:1:{i:x}::{:x}", (i * 7919 + 1) % 0xffff);
        let (status, _, body) = attempt(&app, "/v1/auth/login", &login(i), &from, true).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "attempt {i} from {from}: {body}");
    }
    let (status, retry, _) = attempt(&app, "/v1/auth/login", &login(20), "2001:db8:16:1:ffff::1", true).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "a 21st address of the same /64 is the same source");
    assert!(retry.is_some());
    let (status, _, _) = attempt(&app, "/v1/auth/login", &login(21), "2001:db8:16:2::1", true).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "the next /64 is another source");

    // An IPv4 address counts the same written plainly or IPv4-mapped.
    for i in 0..20 {
        let from = if i % 2 == 0 { "198.51.100.20" } else { "::ffff:198.51.100.20" };
        assert_eq!(attempt(&app, "/v1/auth/login", &login(100 + i), from, true).await.0, StatusCode::UNAUTHORIZED);
    }
    let (status, _, _) = attempt(&app, "/v1/auth/login", &login(200), "198.51.100.20", true).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    let (status, _, _) = attempt(&app, "/v1/auth/login", &login(201), "198.51.100.21", true).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "a neighbouring IPv4 address is its own source");
}

#[tokio::test]
async fn a_replayed_device_proof_is_refused_inside_its_window() {
    // The attack: a proof captured on the way (a log, a proxy) signed in again within its
    // 300-second window. Each proof serves one sign-in.
    let app = TestApp::start().await;
    let owner = app.person("ulla@example.org").await;
    let now = unix_now();
    let mut login = json!({ "email": "ulla@example.org", "password": PASSWORD, "device_id": owner.device_id });
    login["device_proof"] = device_proof(&owner.device, "ulla@example.org", owner.device_id, now);
    let (status, body) = app.post("/v1/auth/login", login.clone(), None).await;
    assert_eq!(status, StatusCode::OK, "the first use: {body}");
    let (status, body) = app.post("/v1/auth/login", login.clone(), None).await;
    assert_eq!((status, error_code(&body)), (StatusCode::UNAUTHORIZED, "invalid_credentials"), "the replay");
    assert_eq!(failed_login_count(&app, owner.user_id).await, 1, "a replay is a failed sign-in");
    // A proof of another second is a new proof.
    login["device_proof"] = device_proof(&owner.device, "ulla@example.org", owner.device_id, now - 1);
    let (status, body) = app.post("/v1/auth/login", login, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // Remembered until it could not hold anyway, not for ever.
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{}:used:login-proof:*", app.state.config.redis_namespace))
        .query_async(&mut app.state.redis.clone())
        .await
        .expect("keys");
    assert_eq!(keys.len(), 2, "{keys:?}");
    for key in keys {
        let ttl: i64 = redis::cmd("TTL").arg(&key).query_async(&mut app.state.redis.clone()).await.expect("ttl");
        assert!((1..=301).contains(&ttl), "{key}: {ttl}");
    }
}

#[tokio::test]
async fn a_password_reset_lifts_the_sign_in_locks_of_the_account() {
    // The owner who proves the address by a reset must be able to sign in with the new password,
    // on a new device as on one whose own lock engaged.
    let app = TestApp::start().await;
    let owner = app.person("vera@example.org").await;
    let now = unix_now();
    for i in 0..5 {
        // Failures with the device's own (fresh, distinct) proofs lock that device.
        let mut guess = json!({ "email": "vera@example.org", "password": "a wrong one", "device_id": owner.device_id });
        guess["device_proof"] = device_proof(&owner.device, "vera@example.org", owner.device_id, now - i);
        assert_eq!(app.post("/v1/auth/login", guess, None).await.0, StatusCode::UNAUTHORIZED);
        // Failures without one lock the address.
        let guess = json!({ "email": "vera@example.org", "password": "a wrong one", "device": new_device("x") });
        assert_eq!(app.post("/v1/auth/login", guess, None).await.0, StatusCode::UNAUTHORIZED);
    }
    let on_new_device =
        |password: &str| json!({ "email": "vera@example.org", "password": password, "device": new_device("x") });
    let on_own_device = |password: &str, at: u64| {
        let mut body = json!({ "email": "vera@example.org", "password": password, "device_id": owner.device_id });
        body["device_proof"] = device_proof(&owner.device, "vera@example.org", owner.device_id, at);
        body
    };
    let (status, body) = app.post("/v1/auth/login", on_new_device(PASSWORD), None).await;
    assert_eq!((status, error_code(&body)), (StatusCode::FORBIDDEN, "account_locked"), "the address is locked");
    let (status, body) = app.post("/v1/auth/login", on_own_device(PASSWORD, now - 10), None).await;
    assert_eq!((status, error_code(&body)), (StatusCode::FORBIDDEN, "account_locked"), "so is the device");

    let (status, _) = app.post("/v1/auth/password-reset", json!({ "email": "vera@example.org" }), None).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let mail = app.mail.wait_for("vera@example.org", "Reset", Duration::from_secs(10)).await.expect("email");
    let token = mail.token("cvp_").expect("token");
    let new_password = "a fresh passphrase 7 for her";
    let (status, body) = app
        .post("/v1/auth/password-reset/confirm", json!({ "token": token, "new_password": new_password }), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");

    let (status, body) = app.post("/v1/auth/login", on_new_device(new_password), None).await;
    assert_eq!(status, StatusCode::OK, "the address's lock is lifted: {body}");
    let (status, body) = app.post("/v1/auth/login", on_own_device(new_password, now - 11), None).await;
    assert_eq!(status, StatusCode::OK, "the device's lock is lifted: {body}");
    // The failures were forgotten too: one more wrong password does not lock again at once.
    let (status, _) = app.post("/v1/auth/login", on_new_device("wrong again"), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(app.post("/v1/auth/login", on_new_device(new_password), None).await.0, StatusCode::OK);
}
