use crate::support::{db, mk_bot, mk_org, mk_workspace};
use chrono::{Duration, Utc};
use conclave_operator::conditions::reason;
use conclave_operator::plan::rotation::{self, SecretPlan, Why};
use conclave_operator::secrets;
use conclave_operator::sync::bot::{cleanup, provision};
use conclave_operator::sync::{organization, workspace};
use conclave_resources::{DeletionPolicy, Workspace};
use conclave_testkit::TestDb;
use sqlx::Postgres;
use sqlx::pool::PoolConnection;

async fn provisioned(db: &TestDb) -> (PoolConnection<Postgres>, Workspace) {
    let mut conn = db.owner.acquire().await.expect("conn");
    let org = mk_org("acme", "acme", DeletionPolicy::Retain);
    organization::provision(&mut conn, &org).await.expect("org");
    let ws = mk_workspace("eng", "acme", &[], DeletionPolicy::Retain);
    workspace::provision(&mut conn, &ws, Some(&org)).await.expect("ws");
    (conn, ws)
}

fn generate() -> rotation::Rotating {
    let plan = rotation::plan(None, None, Duration::hours(1), Utc::now(), || secrets::token(secrets::BOT_TOKEN_PREFIX))
        .expect("a token");
    plan.state().clone()
}

type Hashes = (Vec<u8>, Option<Vec<u8>>, Option<chrono::DateTime<Utc>>);

async fn hashes(db: &TestDb) -> Hashes {
    sqlx::query_as("SELECT token_hash, previous_token_hash, previous_token_expires_at FROM bot_agents")
        .fetch_one(&db.owner)
        .await
        .expect("row")
}

#[tokio::test]
async fn only_the_digest_of_the_generated_token_reaches_postgresql() {
    let db = db().await;
    let (mut conn, ws) = provisioned(&db).await;
    let token = generate();
    let outcome = provision(&mut conn, &mk_bot("helper", "eng"), Some(&ws), &token).await.expect("provision");
    assert!(outcome.readiness.ready, "{outcome:?}");
    assert_eq!(outcome.status.secret_name.as_deref(), Some("helper-bot-token"));
    let (hash, previous, _) = hashes(&db).await;
    assert_eq!(hash, secrets::digest(&token.current));
    assert_eq!(previous, None);
    let leaked: i64 =
        sqlx::query_scalar("SELECT count(*) FROM bot_agents WHERE position($1 in row_to_json(bot_agents.*)::text) > 0")
            .bind(&token.current)
            .fetch_one(&db.owner)
            .await
            .expect("search");
    assert_eq!(leaked, 0);
    let scopes: Vec<String> =
        sqlx::query_scalar("SELECT scopes FROM bot_agents").fetch_one(&db.owner).await.expect("row");
    assert_eq!(scopes, vec!["messages:read", "messages:write"]);
}

#[tokio::test]
async fn a_rotation_keeps_the_previous_token_valid_for_the_overlap_then_drops_it() {
    let db = db().await;
    let (mut conn, ws) = provisioned(&db).await;
    let bot = mk_bot("helper", "eng");
    let first = generate();
    provision(&mut conn, &bot, Some(&ws), &first).await.expect("create");

    let now = Utc::now();
    let plan = rotation::plan(Some(first.clone()), Some("2026-11-26"), Duration::hours(1), now, || {
        secrets::token(secrets::BOT_TOKEN_PREFIX)
    })
    .expect("rotate");
    let SecretPlan::Write { state: rotated, why: Why::Rotated } = plan else { panic!("expected a rotation") };
    provision(&mut conn, &bot, Some(&ws), &rotated).await.expect("rotate");
    let (hash, previous, expires) = hashes(&db).await;
    assert_eq!(hash, secrets::digest(&rotated.current));
    assert_eq!(previous, Some(secrets::digest(&first.current)));
    assert_eq!(expires.map(|t| t.timestamp()), Some((now + Duration::hours(1)).timestamp()));
    let audited: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_logs WHERE action = 'bot.token_rotated'")
        .fetch_one(&db.owner)
        .await
        .expect("audit");
    assert_eq!(audited, 1);

    let later = rotation::plan(Some(rotated), Some("2026-11-26"), Duration::hours(1), now + Duration::hours(2), || {
        secrets::token(secrets::BOT_TOKEN_PREFIX)
    })
    .expect("expire");
    let SecretPlan::Write { state: settled, why: Why::OverlapEnded } = later else {
        panic!("expected the overlap to end")
    };
    provision(&mut conn, &bot, Some(&ws), &settled).await.expect("settle");
    let (hash, previous, expires) = hashes(&db).await;
    assert_eq!(hash, secrets::digest(&settled.current));
    assert_eq!((previous, expires), (None, None));
}

#[tokio::test]
async fn a_token_hash_changed_behind_the_operators_back_is_restored() {
    let db = db().await;
    let (mut conn, ws) = provisioned(&db).await;
    let bot = mk_bot("helper", "eng");
    let token = generate();
    provision(&mut conn, &bot, Some(&ws), &token).await.expect("create");
    sqlx::query("UPDATE bot_agents SET token_hash = $1, enabled = false")
        .bind(secrets::digest("an attacker's token"))
        .execute(&db.owner)
        .await
        .expect("tamper");
    let repaired = provision(&mut conn, &bot, Some(&ws), &token).await.expect("repair");
    assert!(repaired.notes[0].message.contains("enabled, token_hash"), "{:?}", repaired.notes);
    assert_eq!(hashes(&db).await.0, secrets::digest(&token.current));
}

#[tokio::test]
async fn a_bot_of_a_missing_or_unprovisioned_workspace_is_not_ready() {
    let db = db().await;
    let mut conn = db.owner.acquire().await.expect("conn");
    let bot = mk_bot("helper", "eng");
    let token = generate();
    let missing = provision(&mut conn, &bot, None, &token).await.expect("provision");
    assert_eq!(missing.readiness.reason, reason::WORKSPACE_NOT_FOUND);
    let ws = mk_workspace("eng", "acme", &[], DeletionPolicy::Retain);
    let pending = provision(&mut conn, &bot, Some(&ws), &token).await.expect("provision");
    assert_eq!(pending.readiness.reason, reason::WORKSPACE_NOT_READY);
    assert!(pending.notes[0].warning);
}

#[tokio::test]
async fn deleting_a_bot_removes_its_row_so_its_token_stops_working() {
    let db = db().await;
    let (mut conn, ws) = provisioned(&db).await;
    let bot = mk_bot("helper", "eng");
    provision(&mut conn, &bot, Some(&ws), &generate()).await.expect("create");
    assert_eq!(cleanup(&mut conn, &bot).await.expect("cleanup").reason, "Deleted");
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM bot_agents").fetch_one(&db.owner).await.expect("c");
    assert_eq!(count, 0);
}

/// The rows the data plane writes when the bot opens a session with `token` (docs/bots.md).
async fn bot_session(db: &TestDb, token: &str) {
    let mut tx = db.owner.begin().await.expect("tx");
    let user: uuid::Uuid = sqlx::query_scalar(
        "INSERT INTO user_accounts (email, password_hash, email_confirmed_at, bot_id)
         SELECT 'bot-' || replace(id::text, '-', '') || '@bots.conclave.invalid', '$argon2id$unusable', now(), id
           FROM bot_agents ON CONFLICT (bot_id) DO UPDATE SET status = 'active' RETURNING id",
    )
    .fetch_one(&mut *tx)
    .await
    .expect("account");
    let device: uuid::Uuid = sqlx::query_scalar(
        "INSERT INTO devices (user_id, name, platform, ed25519_public_key, key_signature)
         VALUES ($1, 'bot', 'bot', $2, $3) RETURNING id",
    )
    .bind(user)
    .bind(secrets::digest(token))
    .bind(vec![0u8; 64])
    .fetch_one(&mut *tx)
    .await
    .expect("device");
    sqlx::query(
        "INSERT INTO session_tokens (user_id, device_id, token_hash, expires_at, bot_token_hash)
         VALUES ($1, $2, $3, now() + interval '1 day', $4)",
    )
    .bind(user)
    .bind(device)
    .bind(secrets::digest(&format!("refresh-{token}")))
    .bind(secrets::digest(token))
    .execute(&mut *tx)
    .await
    .expect("session");
    tx.commit().await.expect("commit");
}

#[tokio::test]
async fn the_status_says_whether_the_bot_holds_a_session_its_token_still_allows() {
    let db = db().await;
    let (mut conn, ws) = provisioned(&db).await;
    let bot = mk_bot("helper", "eng");
    let token = generate();
    let outcome = provision(&mut conn, &bot, Some(&ws), &token).await.expect("provision");
    assert_eq!(outcome.status.connected, Some(false), "no session yet");
    bot_session(&db, &token.current).await;
    let outcome = provision(&mut conn, &bot, Some(&ws), &token).await.expect("provision");
    assert_eq!(outcome.status.connected, Some(true));
    // A rotation: the session of the old token counts through the overlap, not after it.
    let now = Utc::now();
    let rotated = rotation::plan(Some(token.clone()), Some("now"), Duration::hours(1), now, || {
        secrets::token(secrets::BOT_TOKEN_PREFIX)
    })
    .expect("rotation");
    let rotated = rotated.state().clone();
    assert!(rotated.previous.is_some(), "{rotated:?}");
    let outcome = provision(&mut conn, &bot, Some(&ws), &rotated).await.expect("provision");
    assert_eq!(outcome.status.connected, Some(true), "during the overlap");
    let mut expired = rotated.clone();
    expired.previous_expires_at = Some(now - Duration::seconds(1));
    let outcome = provision(&mut conn, &bot, Some(&ws), &expired).await.expect("provision");
    assert_eq!(outcome.status.connected, Some(false), "the overlap is over: the old token's session is not alive");
}
