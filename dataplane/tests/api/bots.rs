//! A bot authenticates with the token from its Secret: only the digest is in the database, and
//! a rotation's previous token works until its overlap ends.

use crate::support::{TestApp, error_code};
use reqwest::StatusCode;
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
