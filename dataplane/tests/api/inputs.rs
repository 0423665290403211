//! A sweep of malformed requests: each gets a 4xx with a JSON error body and a stable code, and
//! the database is exactly as it was.

use crate::support::{PASSWORD, TestApp, new_device};
use reqwest::StatusCode;
use serde_json::{Value, json};

async fn snapshot(app: &TestApp) -> String {
    sqlx::query_scalar(
        "SELECT string_agg(format('%s=%s', relname, n_live), ',' ORDER BY relname) FROM (
            SELECT c.relname, (xpath('/row/c/text()', query_to_xml(format('SELECT count(*) AS c FROM %I', c.relname), false, true, '')))[1]::text AS n_live
              FROM pg_class c WHERE c.relkind = 'r' AND c.relnamespace = 'public'::regnamespace) s",
    )
    .fetch_one(&app.db.owner)
    .await
    .expect("snapshot")
}

#[tokio::test]
async fn malformed_input_gets_a_precise_4xx_and_writes_nothing() {
    let app = TestApp::start().await;
    let (_, access, _) = app.signed_in("sweep@example.org").await;
    let before = snapshot(&app).await;
    let cases: Vec<(&str, Option<&str>, Value, StatusCode, &str)> = vec![
        (
            "/v1/auth/register",
            None,
            json!({ "email": "x@example.org" }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            "/v1/auth/register",
            None,
            json!({ "email": "not-an-email", "password": PASSWORD, "display_name": "X" }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        (
            "/v1/auth/register",
            None,
            json!({ "email": "w@example.org", "password": "weak", "display_name": "X" }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "weak_password",
        ),
        (
            "/v1/auth/register",
            None,
            json!({ "email": "u@example.org", "password": PASSWORD, "display_name": "X", "admin": true }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            "/v1/auth/register",
            None,
            json!({ "email": "e@example.org", "password": PASSWORD, "display_name": "  " }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        (
            "/v1/auth/register",
            None,
            json!({ "email": 42, "password": PASSWORD, "display_name": "X" }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            "/v1/auth/login",
            None,
            json!({ "email": "sweep@example.org", "password": PASSWORD }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        (
            "/v1/auth/login",
            None,
            json!({ "email": "sweep@example.org", "password": PASSWORD, "device": { "name": "x", "platform": "toaster", "ed25519_public_key": "", "key_signature": "" } }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            "/v1/auth/confirm-email",
            None,
            json!({ "token": "cve_nope" }),
            StatusCode::BAD_REQUEST,
            "invalid_emailed_token",
        ),
        (
            "/v1/auth/password-reset/confirm",
            None,
            json!({ "token": "cvp_nope", "new_password": PASSWORD }),
            StatusCode::BAD_REQUEST,
            "invalid_emailed_token",
        ),
        (
            "/v1/auth/refresh",
            None,
            json!({ "refresh_token": "garbage" }),
            StatusCode::UNAUTHORIZED,
            "invalid_refresh_token",
        ),
        (
            "/v1/devices",
            Some(&access),
            json!({ "name": "", "platform": "cli", "ed25519_public_key": "AA", "key_signature": "AA" }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            "/v1/devices",
            Some(&access),
            json!({ "name": "x", "platform": "cli", "ed25519_public_key": "!!!", "key_signature": "AA" }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
    ];
    // Keys of the wrong size and unknown platforms are refused as the body is read; a name that
    // is only spaces by the server's validation.
    let mut fridge = new_device("ok");
    fridge["platform"] = json!("fridge");
    let cases = cases.into_iter().chain([
        ("/v1/devices", Some(access.as_str()), fridge, StatusCode::UNPROCESSABLE_ENTITY, "invalid_body"),
        ("/v1/devices", Some(access.as_str()), new_device("  "), StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"),
    ]);
    for (path, token, body, status, code) in cases {
        let (got, response) = app.post(path, body.clone(), token).await;
        assert_eq!(got, status, "{path} {body} -> {response}");
        assert_eq!(response["error"]["code"], code, "{path} {body} -> {response}");
        assert!(response["error"]["message"].as_str().is_some_and(|m| !m.is_empty()));
    }

    // Not JSON at all, the wrong content type, an oversized body, an unknown route.
    let raw = |body: &'static str, content_type: &'static str| {
        app.http.post(app.url("/v1/auth/register")).header("content-type", content_type).body(body).send()
    };
    let response = raw("{not json", "application/json").await.expect("request");
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(response.json::<Value>().await.expect("json")["error"]["code"], "malformed_json");
    let response = raw("{}", "text/plain").await.expect("request");
    assert_eq!(response.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(response.json::<Value>().await.expect("json")["error"]["code"], "unsupported_media_type");
    let huge = format!("{{\"email\": \"{}\"}}", "a".repeat(conclave_dataplane::MAX_BODY_BYTES + 10));
    let response = app
        .http
        .post(app.url("/v1/auth/register"))
        .header("content-type", "application/json")
        .body(huge)
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(response.json::<Value>().await.expect("json")["error"]["code"], "payload_too_large");
    let (status, body) = app.get("/v1/nothing-here", None).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::NOT_FOUND, Some("not_found")));
    let (status, body) = app.delete("/v1/devices/not-a-uuid", &access).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::NOT_FOUND, Some("not_found")));

    assert_eq!(snapshot(&app).await, before, "a refused request changed the database");
}
