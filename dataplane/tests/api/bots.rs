//! A bot authenticates with the token from its Secret: only the digest is in the database, and
//! a rotation's previous token works until its overlap ends. With it the bot opens sessions as a
//! member device of its own, held to its scopes on every endpoint.

use crate::support::{Person, TestApp, TestDevice, b64, error_code, exchange, unix_now};
use ed25519_dalek::Signer as _;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use uuid::Uuid;

async fn bot(app: &TestApp, token: &str, previous: Option<(&str, &str)>, enabled: bool) -> (Uuid, Uuid) {
    let (org, workspace) = app.organization(&format!("bots-{}", &Uuid::new_v4().simple().to_string()[..8]), &[]).await;
    let (previous_hash, previous_expiry) = match previous {
        Some((token, interval)) => (Some(Sha256::digest(token.as_bytes()).to_vec()), Some(interval.to_owned())),
        None => (None, None),
    };
    let id: Uuid = sqlx::query_scalar(
        "INSERT INTO bot_agents (organization_id, workspace_id, display_name, scopes, token_hash, previous_token_hash,
                                 previous_token_expires_at, enabled)
         VALUES ($1, $2, 'Helper', ARRAY['messages:read'], $3, $4, now() + $5::interval, $6) RETURNING id",
    )
    .bind(org)
    .bind(workspace)
    .bind(Sha256::digest(token.as_bytes()).to_vec())
    .bind(previous_hash)
    .bind(previous_expiry)
    .bind(enabled)
    .fetch_one(&app.db.owner)
    .await
    .expect("bot");
    (org, id)
}

#[tokio::test]
async fn a_bot_authenticates_with_its_token_and_nothing_else() {
    let app = TestApp::start().await;
    let token = "cbot_0123456789abcdefghijklmnopqrstuvwxyzABCDEFG";
    let (org, id) = bot(&app, token, None, true).await;
    let (status, me) = app.get("/v1/bot", Some(token)).await;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(
        (me["bot_id"].as_str(), me["organization_id"].as_str()),
        (Some(id.to_string().as_str()), Some(org.to_string().as_str()))
    );
    assert_eq!(me["scopes"], serde_json::json!(["messages:read"]));
    assert_eq!(me["previous_token"], false);
    for wrong in ["cbot_wrong", "not-a-bot-token", &format!("{token}x")] {
        let (status, body) = app.get("/v1/bot", Some(wrong)).await;
        assert_eq!((status, error_code(&body)), (StatusCode::UNAUTHORIZED, "invalid_bot_token"), "{wrong}");
    }
    // A user's access token is not a bot token.
    let (_, access, _) = app.signed_in("user@example.org").await;
    assert_eq!(app.get("/v1/bot", Some(&access)).await.0, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn the_previous_token_works_during_the_overlap_and_not_after() {
    let app = TestApp::start().await;
    bot(&app, "cbot_new_one", Some(("cbot_old_one", "1 hour")), true).await;
    let (status, me) = app.get("/v1/bot", Some("cbot_old_one")).await;
    assert_eq!((status, me["previous_token"].as_bool()), (StatusCode::OK, Some(true)));
    bot(&app, "cbot_newer", Some(("cbot_expired", "-1 second")), true).await;
    assert_eq!(app.get("/v1/bot", Some("cbot_expired")).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(app.get("/v1/bot", Some("cbot_newer")).await.0, StatusCode::OK);
}

#[tokio::test]
async fn a_disabled_bot_is_refused() {
    let app = TestApp::start().await;
    bot(&app, "cbot_disabled", None, false).await;
    let (status, body) = app.get("/v1/bot", Some("cbot_disabled")).await;
    assert_eq!((status, error_code(&body)), (StatusCode::UNAUTHORIZED, "invalid_bot_token"));
}

/// A BotAgent of `org`'s workspace with `scopes` and this token, as the operator would create it.
async fn agent(app: &TestApp, org: Uuid, workspace: Uuid, token: &str, scopes: &[&str]) -> Uuid {
    conclave_testkit::seed_bot_agent(&app.db.owner, org, workspace, "Reminder bot", scopes, token).await.expect("bot")
}

/// A device registration for a bot: keys the test generated, as the bot process does.
fn bot_device(device: &TestDevice) -> Value {
    let mut registration = device.registration("bot");
    registration["platform"] = json!("bot");
    registration
}

/// Opens a session for the bot with `token` on a new device; the bot as a [`Person`].
async fn session(app: &TestApp, token: &str) -> Person {
    let device = TestDevice::new();
    let (status, body) = app.post("/v1/bot/sessions", json!({ "device": bot_device(&device) }), Some(token)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    Person {
        user_id: body["user_id"].as_str().and_then(|s| s.parse().ok()).expect("user id"),
        device_id: body["device_id"].as_str().and_then(|s| s.parse().ok()).expect("device id"),
        access: body["access_token"].as_str().expect("token").to_owned(),
        device,
    }
}

/// A registered device's `device_proof` for a bot session, signed by `device` at `unix_seconds`.
fn bot_proof(device: &TestDevice, device_id: Uuid, unix_seconds: u64) -> Value {
    let input = conclave_protocol::layout::bot_session_proof_input(device_id, unix_seconds);
    json!({ "unix_seconds": unix_seconds, "signature": b64(&device.signing.sign(&input).to_bytes()) })
}

/// A session request on the registered device `device_id`, proven by `device` now.
fn on_device(device: &TestDevice, device_id: Uuid) -> Value {
    json!({ "device_id": device_id, "device_proof": bot_proof(device, device_id, unix_now()) })
}

/// The path of a new group conversation of `owner` with `members` (user ids).
async fn group_path(app: &TestApp, owner: &Person, org: Uuid, workspace: Uuid, members: Value) -> String {
    let (status, conversation) = app
        .post(
            &format!("/v1/organizations/{org}/workspaces/{workspace}/conversations"),
            json!({ "kind": "group", "member_user_ids": members }),
            Some(&owner.access),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{conversation}");
    format!("/v1/organizations/{org}/conversations/{}", conversation["id"].as_str().expect("id"))
}

fn slug() -> String {
    format!("bots-{}", &Uuid::new_v4().simple().to_string()[..8])
}

#[tokio::test]
async fn a_bot_opens_sessions_as_a_member_device_of_its_own() {
    let app = TestApp::start().await;
    let owner = app.person("owner@example.org").await;
    let (org, workspace) = app.organization(&slug(), &[&owner]).await;
    let token = "cbot_sessions_0123456789abcdefghijklmnopqrstuvwxyz";
    let bot_id = agent(&app, org, workspace, token, &["messages:read"]).await;
    let bot = session(&app, token).await;
    let (status, me) = app.get("/v1/me", Some(&bot.access)).await;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(me["device_id"], json!(bot.device_id));
    assert_eq!(me["display_name"], "Reminder bot");
    // The bot is a member of its organization, as the principal the BotAgent declares.
    assert_eq!(app.get(&format!("/v1/organizations/{org}"), Some(&bot.access)).await.0, StatusCode::OK);
    let role: String = sqlx::query_scalar(
        "SELECT m.role FROM organization_memberships m JOIN user_accounts u ON u.id = m.user_id
          WHERE u.bot_id = $1 AND m.organization_id = $2",
    )
    .bind(bot_id)
    .bind(org)
    .fetch_one(&app.db.owner)
    .await
    .expect("membership");
    assert_eq!(role, "member");
    // Again on the same device, proven by its key: the same account; on a device that is not
    // the bot's, even proven by that device's own key: 404.
    let (status, again) = app.post("/v1/bot/sessions", on_device(&bot.device, bot.device_id), Some(token)).await;
    assert_eq!((status, again["user_id"].clone()), (StatusCode::CREATED, json!(bot.user_id)), "{again}");
    let (status, body) = app.post("/v1/bot/sessions", on_device(&owner.device, owner.device_id), Some(token)).await;
    assert_eq!((status, error_code(&body)), (StatusCode::NOT_FOUND, "not_found"));
    // Exactly one of the two, a registered device with its proof and a new one without, and a
    // bot's device says so.
    let device = bot_device(&TestDevice::new());
    let proof = bot_proof(&bot.device, bot.device_id, unix_now());
    for wrong in [
        json!({}),
        json!({ "device_id": bot.device_id, "device": device }),
        json!({ "device_id": bot.device_id }),
        json!({ "device": device, "device_proof": proof }),
    ] {
        let (status, body) = app.post("/v1/bot/sessions", wrong, Some(token)).await;
        assert_eq!((status, error_code(&body)), (StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"), "{body}");
    }
    let (status, body) =
        app.post("/v1/bot/sessions", json!({ "device": TestDevice::new().registration("cli") }), Some(token)).await;
    assert_eq!((status, error_code(&body)), (StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"), "{body}");
    // A token and a device id do not open a session on the device without its key: a proof by
    // another key, one made too long ago or ahead, one for another device, and a replayed one are
    // refused alike, and none opens a session.
    let sessions = |device: Uuid| {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM session_tokens WHERE device_id = $1")
            .bind(device)
            .fetch_one(&app.db.owner)
    };
    let before = sessions(bot.device_id).await.expect("sessions");
    let other = TestDevice::new();
    let now = unix_now();
    // (A second no proof above used: the same device, id and second make the same signature.)
    let replayed =
        json!({ "device_id": bot.device_id, "device_proof": bot_proof(&bot.device, bot.device_id, now + 2) });
    let (status, body) = app.post("/v1/bot/sessions", replayed.clone(), Some(token)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    for wrong in [
        json!({ "device_id": bot.device_id, "device_proof": bot_proof(&other, bot.device_id, now) }),
        json!({ "device_id": bot.device_id, "device_proof": bot_proof(&bot.device, bot.device_id, now - 310) }),
        json!({ "device_id": bot.device_id, "device_proof": bot_proof(&bot.device, bot.device_id, now + 310) }),
        json!({ "device_id": bot.device_id, "device_proof": bot_proof(&bot.device, Uuid::new_v4(), now) }),
        replayed,
    ] {
        let (status, body) = app.post("/v1/bot/sessions", wrong.clone(), Some(token)).await;
        assert_eq!((status, error_code(&body)), (StatusCode::UNAUTHORIZED, "invalid_device_proof"), "{wrong}");
    }
    // A login proof (another label) by the right key does not serve either.
    let input = conclave_protocol::layout::login_proof_input("bot@example.org", bot.device_id, now);
    let login_proof = json!({ "unix_seconds": now, "signature": b64(&bot.device.signing.sign(&input).to_bytes()) });
    let (status, body) = app
        .post("/v1/bot/sessions", json!({ "device_id": bot.device_id, "device_proof": login_proof }), Some(token))
        .await;
    assert_eq!((status, error_code(&body)), (StatusCode::UNAUTHORIZED, "invalid_device_proof"), "{body}");
    assert_eq!(sessions(bot.device_id).await.expect("sessions"), before + 1, "only the proven request opened one");
    // No password signs the bot's account in.
    let email: String = sqlx::query_scalar("SELECT email FROM user_accounts WHERE bot_id = $1")
        .bind(bot_id)
        .fetch_one(&app.db.owner)
        .await
        .expect("email");
    let login =
        json!({ "email": email, "password": "any-password-at-all", "device": TestDevice::new().registration("x") });
    let (status, body) = app.post("/v1/auth/login", login, None).await;
    assert_eq!((status, error_code(&body)), (StatusCode::UNAUTHORIZED, "invalid_credentials"), "{body}");
    // A person's access token opens no bot session.
    let (status, body) =
        app.post("/v1/bot/sessions", json!({ "device": bot_device(&TestDevice::new()) }), Some(&owner.access)).await;
    assert_eq!((status, error_code(&body)), (StatusCode::UNAUTHORIZED, "invalid_bot_token"));
}

#[tokio::test]
async fn each_missing_scope_is_a_403_naming_it_and_other_endpoints_refuse_bots() {
    let app = TestApp::start().await;
    let owner = app.person("owner@example.org").await;
    let (org, workspace) = app.organization(&slug(), &[&owner]).await;
    let bare = "cbot_bare_0123456789abcdefghijklmnopqrstuvwxyzABCD";
    let full = "cbot_full_0123456789abcdefghijklmnopqrstuvwxyzABCD";
    agent(&app, org, workspace, bare, &[]).await;
    agent(&app, org, workspace, full, &conclave_protocol::bots::SCOPES).await;
    let (bare, full) = (session(&app, bare).await, session(&app, full).await);
    let c = group_path(&app, &owner, org, workspace, json!([])).await;
    let message = Uuid::now_v7();
    let http = reqwest::Client::new();
    let cases: Vec<(reqwest::Method, String, Value, &str)> = vec![
        (reqwest::Method::POST, "/v1/key-packages".into(), json!({ "key_packages": [] }), "messages:read"),
        (reqwest::Method::GET, format!("{c}/messages"), Value::Null, "messages:read"),
        (reqwest::Method::GET, format!("{c}/welcome"), Value::Null, "messages:read"),
        (reqwest::Method::GET, format!("{c}/commits"), Value::Null, "messages:read"),
        (reqwest::Method::GET, format!("{c}/group-info"), Value::Null, "messages:read"),
        (reqwest::Method::GET, c.clone(), Value::Null, "messages:read"),
        (
            reqwest::Method::POST,
            format!("{c}/messages"),
            json!({ "client_message_id": Uuid::now_v7(), "key_generation": 1, "ciphertext": b64(b"x") }),
            "messages:write",
        ),
        (reqwest::Method::POST, format!("{c}/messages/{message}/reactions"), json!({}), "reactions:write"),
        (reqwest::Method::GET, format!("/v1/organizations/{org}/conversations"), Value::Null, "conversations:read"),
        (reqwest::Method::POST, format!("{c}/members"), json!({ "user_id": owner.user_id }), "conversations:write"),
        (reqwest::Method::GET, format!("/v1/organizations/{org}/members"), Value::Null, "members:read"),
        (reqwest::Method::GET, format!("{c}/attachments/{message}"), Value::Null, "files:read"),
        (reqwest::Method::POST, format!("{c}/pins"), json!({ "message_id": message }), "pins:write"),
        (reqwest::Method::DELETE, format!("{c}/pins/{message}"), Value::Null, "pins:write"),
        (reqwest::Method::GET, format!("{c}/calls"), Value::Null, "calls:read"),
    ];
    for (method, path, body, scope) in &cases {
        let mut request = http.request(method.clone(), app.url(path)).bearer_auth(&bare.access);
        if !body.is_null() {
            request = request.json(body);
        }
        let (status, answer) = exchange(request).await;
        assert_eq!((status, error_code(&answer)), (StatusCode::FORBIDDEN, "bot_scope_missing"), "{method} {path}");
        let text = answer["error"]["message"].as_str().unwrap_or_default();
        assert!(text.contains(scope), "{method} {path}: {text}");
        // With every scope the same call passes the gate: whatever it answers, it is not a 403.
        let mut request = http.request(method.clone(), app.url(path)).bearer_auth(&full.access);
        if !body.is_null() {
            request = request.json(body);
        }
        let (status, answer) = exchange(request).await;
        assert_ne!(status, StatusCode::FORBIDDEN, "{method} {path}: {answer}");
    }
    // Endpoints no bot may use, whatever its scopes.
    for path in [
        "/v1/contacts".to_owned(),
        format!("/v1/organizations/{org}/invitations"),
        format!("/v1/organizations/{org}/audit"),
    ] {
        let (status, body) = app.get(&path, Some(&full.access)).await;
        assert_eq!((status, error_code(&body)), (StatusCode::FORBIDDEN, "bot_not_allowed"), "{path}");
    }
    // The WebSocket needs the read scope too.
    let url = format!("{}/v1/ws?access_token={}", app.base.replace("http://", "ws://"), bare.access);
    match tokio_tungstenite::connect_async(url).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => assert_eq!(response.status(), 403),
        other => panic!("expected a 403, got {other:?}"),
    }
    crate::realtime::connect(&app.base, &full).await;
    // And a bot's own session and device need none.
    assert_eq!(app.get("/v1/me", Some(&bare.access)).await.0, StatusCode::OK);
    assert_eq!(app.get("/v1/devices", Some(&bare.access)).await.0, StatusCode::OK);
}

#[tokio::test]
async fn a_bot_session_lasts_as_long_as_the_token_that_opened_it() {
    let app = TestApp::start().await;
    let owner = app.person("owner@example.org").await;
    let (org, workspace) = app.organization(&slug(), &[&owner]).await;
    let old = "cbot_old_0123456789abcdefghijklmnopqrstuvwxyzABCDE";
    let new = "cbot_new_0123456789abcdefghijklmnopqrstuvwxyzABCDE";
    let bot_id = agent(&app, org, workspace, old, &["messages:read"]).await;
    let first = session(&app, old).await;
    // The operator rotates: the old token works through the overlap, and so does its session.
    conclave_testkit::rotate_bot_token(&app.db.owner, bot_id, new, 3600.0).await.expect("rotate");
    assert_eq!(app.get("/v1/me", Some(&first.access)).await.0, StatusCode::OK);
    // The bot reloads its Secret and opens a session on the same device with the new token.
    let (status, second) = app.post("/v1/bot/sessions", on_device(&first.device, first.device_id), Some(new)).await;
    assert_eq!(status, StatusCode::CREATED, "{second}");
    let second = second["access_token"].as_str().expect("token").to_owned();
    // The overlap ends: the old token's session with it, the new one's lives on.
    conclave_testkit::end_bot_token_overlap(&app.db.owner, bot_id).await.expect("overlap ends");
    let (status, body) = app.get("/v1/me", Some(&first.access)).await;
    assert_eq!((status, error_code(&body)), (StatusCode::UNAUTHORIZED, "session_revoked"));
    assert_eq!(app.get("/v1/me", Some(&second)).await.0, StatusCode::OK);
    // Disabling the bot ends its sessions at once, sends included.
    sqlx::query("UPDATE bot_agents SET enabled = false WHERE id = $1")
        .bind(bot_id)
        .execute(&app.db.owner)
        .await
        .expect("disable");
    let (status, body) = app.get("/v1/me", Some(&second)).await;
    assert_eq!((status, error_code(&body)), (StatusCode::UNAUTHORIZED, "session_revoked"));
}

#[tokio::test]
async fn an_admin_adds_the_bot_to_a_conversation_and_removing_it_requires_a_rotation() {
    let app = TestApp::start().await;
    let owner = app.person("owner@example.org").await;
    let member = app.person("member@example.org").await;
    let (org, workspace) = app.organization(&slug(), &[&owner, &member]).await;
    let token = "cbot_member_0123456789abcdefghijklmnopqrstuvwxyzAB";
    agent(&app, org, workspace, token, &["messages:read", "messages:write"]).await;
    let bot = session(&app, token).await;
    let c = group_path(&app, &owner, org, workspace, json!([member.user_id])).await;
    // A plain member of a group cannot add the bot; the owner can, through the ordinary path.
    let (status, body) =
        app.post(&format!("{c}/members"), json!({ "user_id": bot.user_id }), Some(&member.access)).await;
    assert_eq!((status, error_code(&body)), (StatusCode::FORBIDDEN, "insufficient_role"));
    let (status, body) =
        app.post(&format!("{c}/members"), json!({ "user_id": bot.user_id }), Some(&owner.access)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    // The bot's device is among those the next epoch must welcome, and the bot reads the
    // conversation as a member.
    let (status, devices) = app.get(&format!("{c}/devices"), Some(&owner.access)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(devices.as_array().expect("devices").iter().any(|d| d["device_id"] == json!(bot.device_id)), "{devices}");
    assert_eq!(app.get(&format!("{c}/messages"), Some(&bot.access)).await.0, StatusCode::OK);
    // Removing it requires a new epoch, as any member's removal does.
    let (status, body) = app.delete(&format!("{c}/members/{}", bot.user_id), &owner.access).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let (_, conversation) = app.get(&c, Some(&owner.access)).await;
    assert_eq!(conversation["rotation_required"], true, "{conversation}");
    assert_eq!(app.get(&format!("{c}/messages"), Some(&bot.access)).await.0, StatusCode::NOT_FOUND);
}

/// Frames `socket` receives within `window` (the socket stays open).
async fn frames_within(socket: &mut crate::realtime::Socket, window: std::time::Duration) -> Vec<Value> {
    use futures::StreamExt as _;
    let mut frames = Vec::new();
    let deadline = tokio::time::Instant::now() + window;
    while let Ok(Some(Ok(frame))) = tokio::time::timeout_at(deadline, socket.next()).await {
        if let tokio_tungstenite::tungstenite::Message::Text(text) = frame {
            frames.push(serde_json::from_str(&text).expect("json"));
        }
    }
    frames
}

#[tokio::test]
async fn call_events_and_pins_need_scopes_of_their_own() {
    let app = TestApp::start().await;
    let owner = app.person("owner@example.org").await;
    let (org, workspace) = app.organization(&slug(), &[&owner]).await;
    let listening = "cbot_calls_0123456789abcdefghijklmnopqrstuvwxyzABC";
    let deaf = "cbot_deaf_0123456789abcdefghijklmnopqrstuvwxyzABCD";
    agent(&app, org, workspace, listening, &["messages:read", "calls:read", "pins:write"]).await;
    agent(&app, org, workspace, deaf, &["messages:read", "messages:write"]).await;
    let (listening, deaf) = (session(&app, listening).await, session(&app, deaf).await);
    let c = group_path(&app, &owner, org, workspace, json!([listening.user_id, deaf.user_id])).await;
    let mut with_scope = crate::realtime::connect(&app.base, &listening).await;
    let mut without = crate::realtime::connect(&app.base, &deaf).await;

    // The owner's call rings on the socket of the bot holding `calls:read`, and only there.
    let (status, call) = app.post(&format!("{c}/calls"), json!({ "kind": "audio" }), Some(&owner.access)).await;
    assert_eq!(status, StatusCode::CREATED, "{call}");
    let ring = crate::realtime::next_of(&mut with_scope, "call_updated").await;
    assert_eq!(ring["call"]["id"], call["id"]);
    let heard = frames_within(&mut without, std::time::Duration::from_millis(1500)).await;
    assert!(heard.iter().all(|f| f["type"] != "call_updated" && f["type"] != "call_signal"), "{heard:?}");
    // The call records likewise.
    let (status, records) = app.get(&format!("{c}/calls"), Some(&listening.access)).await;
    assert_eq!(status, StatusCode::OK, "{records}");
    assert_eq!(records[0]["id"], call["id"]);
    let (status, body) = app.get(&format!("{c}/calls"), Some(&deaf.access)).await;
    assert_eq!((status, error_code(&body)), (StatusCode::FORBIDDEN, "bot_scope_missing"));
    assert!(body["error"]["message"].as_str().unwrap_or_default().contains("calls:read"), "{body}");
    // Taking part stays closed to every bot.
    let (status, body) = app.post(&format!("{c}/calls"), json!({ "kind": "audio" }), Some(&listening.access)).await;
    assert_eq!((status, error_code(&body)), (StatusCode::FORBIDDEN, "bot_not_allowed"));

    // Pinning is `pins:write`, not `messages:write`: the bot that may send may not pin.
    let message = Uuid::now_v7();
    for (method, path) in
        [(reqwest::Method::POST, format!("{c}/pins")), (reqwest::Method::DELETE, format!("{c}/pins/{message}"))]
    {
        let request = reqwest::Client::new().request(method.clone(), app.url(&path)).bearer_auth(&deaf.access);
        let (status, body) = exchange(request.json(&json!({ "message_id": message }))).await;
        assert_eq!((status, error_code(&body)), (StatusCode::FORBIDDEN, "bot_scope_missing"), "{method} {path}");
        assert!(body["error"]["message"].as_str().unwrap_or_default().contains("pins:write"), "{body}");
        let request = reqwest::Client::new().request(method.clone(), app.url(&path)).bearer_auth(&listening.access);
        let (status, body) = exchange(request.json(&json!({ "message_id": message }))).await;
        assert_eq!(
            (status, error_code(&body)),
            (StatusCode::NOT_FOUND, "not_found"),
            "{method} {path}: past the gate, no such message"
        );
    }
}
