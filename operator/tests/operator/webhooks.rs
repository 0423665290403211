use crate::support::{db, mk_org, mk_webhook, mk_workspace};
use conclave_credentials::seal;
use conclave_operator::conditions::reason;
use conclave_operator::plan::webhook::Secrets;
use conclave_operator::sync::webhook::{Inputs, SigningSecret, cleanup, provision};
use conclave_operator::sync::{organization, workspace};
use conclave_resources::webhook::WebhookEndpointStatus;
use conclave_resources::{DeletionPolicy, LocalRef, Organization, Workspace};
use conclave_testkit::TestDb;
use sqlx::Postgres;
use sqlx::pool::PoolConnection;
use uuid::Uuid;

const KEY: [u8; 32] = [42; 32];
/// Standard Webhooks secrets (`whsec_` and base64 of 24 to 64 bytes).
const FIRST: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const SECOND: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";

async fn provisioned(db: &TestDb) -> (PoolConnection<Postgres>, Organization, Workspace) {
    let mut conn = db.owner.acquire().await.expect("conn");
    let org = mk_org("acme", "acme", DeletionPolicy::Retain);
    organization::provision(&mut conn, &org).await.expect("org");
    let ws = mk_workspace("eng", "acme", &[], DeletionPolicy::Retain);
    workspace::provision(&mut conn, &ws, Some(&org)).await.expect("ws");
    (conn, org, ws)
}

fn inputs<'a>(ws: &'a Workspace, secret: &str, key: Option<&[u8]>) -> Inputs<'a> {
    Inputs {
        workspace: Some(ws),
        organization: None,
        signing_secret: SigningSecret::Value {
            secret_name: "hook-webhook-signing".into(),
            secrets: Secrets { current: secret.into(), previous: None },
        },
        at_rest_key: key.map(<[u8]>::to_vec),
    }
}

async fn sealed(db: &TestDb) -> (Uuid, Vec<u8>) {
    sqlx::query_as("SELECT id, signing_secret_sealed FROM webhook_endpoints").fetch_one(&db.owner).await.expect("row")
}

#[tokio::test]
async fn the_signing_secret_is_stored_sealed_bound_to_the_endpoint() {
    let db = db().await;
    let (mut conn, _org, ws) = provisioned(&db).await;
    let hook = mk_webhook("hook", "eng");
    let outcome = provision(&mut conn, &hook, inputs(&ws, FIRST, Some(&KEY))).await.expect("provision");
    assert!(outcome.readiness.ready, "{outcome:?}");
    assert_eq!(outcome.status.secret_name.as_deref(), Some("hook-webhook-signing"));
    let (id, bytes) = sealed(&db).await;
    assert!(!bytes.windows(FIRST.len()).any(|w| w == FIRST.as_bytes()), "the secret must not be stored in clear");
    let opened = seal::open(&KEY, &seal::webhook_context(id), &bytes).expect("opens with the key and the row's id");
    assert_eq!(opened, FIRST.as_bytes());
    assert!(seal::open(&KEY, &seal::webhook_context(Uuid::nil()), &bytes).is_err());
    let events: Vec<String> = sqlx::query_scalar("SELECT unnest(event_types) FROM webhook_endpoints ORDER BY 1")
        .fetch_all(&db.owner)
        .await
        .expect("events");
    assert_eq!(events, vec!["member.joined", "message.created"]);
}

#[tokio::test]
async fn a_rotated_secret_is_resealed_and_an_unchanged_one_is_left_alone() {
    let db = db().await;
    let (mut conn, _org, ws) = provisioned(&db).await;
    let hook = mk_webhook("hook", "eng");
    provision(&mut conn, &hook, inputs(&ws, FIRST, Some(&KEY))).await.expect("create");
    let (_, before) = sealed(&db).await;
    let same = provision(&mut conn, &hook, inputs(&ws, FIRST, Some(&KEY))).await.expect("again");
    assert!(same.notes.is_empty());
    assert_eq!(sealed(&db).await.1, before, "no reseal without a change");
    let rotated = provision(&mut conn, &hook, inputs(&ws, SECOND, Some(&KEY))).await.expect("rotate");
    assert!(rotated.notes[0].message.contains("signing_secret_sealed"), "{:?}", rotated.notes);
    let (id, after) = sealed(&db).await;
    assert_eq!(seal::open(&KEY, &seal::webhook_context(id), &after).expect("opens"), SECOND.as_bytes());
}

#[tokio::test]
async fn a_sealed_secret_replaced_behind_the_operators_back_is_repaired() {
    let db = db().await;
    let (mut conn, _org, ws) = provisioned(&db).await;
    let hook = mk_webhook("hook", "eng");
    provision(&mut conn, &hook, inputs(&ws, FIRST, Some(&KEY))).await.expect("create");
    sqlx::query(
        "UPDATE webhook_endpoints SET signing_secret_sealed = $1, url = 'https://evil.example/x', enabled = false",
    )
    .bind(vec![0u8; 40])
    .execute(&db.owner)
    .await
    .expect("tamper");
    let repaired = provision(&mut conn, &hook, inputs(&ws, FIRST, Some(&KEY))).await.expect("repair");
    assert_eq!(repaired.notes[0].reason, "Updated");
    let (id, bytes) = sealed(&db).await;
    assert_eq!(seal::open(&KEY, &seal::webhook_context(id), &bytes).expect("opens"), FIRST.as_bytes());
    let (url, enabled): (String, bool) =
        sqlx::query_as("SELECT url, enabled FROM webhook_endpoints").fetch_one(&db.owner).await.expect("row");
    assert_eq!((url.as_str(), enabled), ("https://hooks.example/conclave", true));
}

#[tokio::test]
async fn delivery_results_recorded_by_the_data_plane_reach_the_status() {
    let db = db().await;
    let (mut conn, _org, ws) = provisioned(&db).await;
    let hook = mk_webhook("hook", "eng");
    provision(&mut conn, &hook, inputs(&ws, FIRST, Some(&KEY))).await.expect("create");
    sqlx::query(
        "UPDATE webhook_endpoints SET last_delivery_at = now(), last_delivery_status = 'failed',
             last_delivery_error = 'HTTP 503', consecutive_failures = 4",
    )
    .execute(&db.owner)
    .await
    .expect("deliveries");
    let outcome = provision(&mut conn, &hook, inputs(&ws, FIRST, Some(&KEY))).await.expect("again");
    let WebhookEndpointStatus {
        last_delivery_status, last_delivery_error, consecutive_failures, last_delivery_at, ..
    } = outcome.status;
    assert_eq!(last_delivery_status.as_deref(), Some("failed"));
    assert_eq!(last_delivery_error.as_deref(), Some("HTTP 503"));
    assert_eq!(consecutive_failures, 4);
    assert!(last_delivery_at.is_some());

    // A delivery the data plane refused (an internal address) shows as such, with its reason.
    let reason = "refused: 10.0.0.7 is a private (RFC 1918) address (an in-cluster receiver must be on the DataPlane's spec.webhookAllowedTargets)";
    sqlx::query("UPDATE webhook_endpoints SET last_delivery_status = 'refused', last_delivery_error = $1")
        .bind(reason)
        .execute(&db.owner)
        .await
        .expect("refused");
    let status = provision(&mut conn, &hook, inputs(&ws, FIRST, Some(&KEY))).await.expect("again").status;
    assert_eq!(status.last_delivery_status.as_deref(), Some("refused"));
    assert_eq!(status.last_delivery_error.as_deref(), Some(reason));
}

#[tokio::test]
async fn missing_references_secrets_and_keys_each_have_their_reason() {
    let db = db().await;
    let (mut conn, org, ws) = provisioned(&db).await;
    let hook = mk_webhook("hook", "eng");

    let mut no_ws = inputs(&ws, FIRST, Some(&KEY));
    no_ws.workspace = None;
    assert_eq!(provision(&mut conn, &hook, no_ws).await.expect("r").readiness.reason, reason::WORKSPACE_NOT_FOUND);

    let mut no_secret = inputs(&ws, FIRST, Some(&KEY));
    no_secret.signing_secret = SigningSecret::SecretMissing { name: "mine".into() };
    let outcome = provision(&mut conn, &hook, no_secret).await.expect("r");
    assert_eq!(outcome.readiness.reason, reason::SECRET_NOT_FOUND);
    assert!(outcome.readiness.message.contains("mine"));

    let mut no_key = inputs(&ws, FIRST, Some(&KEY));
    no_key.signing_secret = SigningSecret::KeyMissing { name: "mine".into(), key: "hmac".into() };
    assert_eq!(provision(&mut conn, &hook, no_key).await.expect("r").readiness.reason, reason::SECRET_KEY_MISSING);

    let no_at_rest = inputs(&ws, FIRST, None);
    assert_eq!(provision(&mut conn, &hook, no_at_rest).await.expect("r").readiness.reason, reason::AT_REST_KEY_MISSING);

    let count: i64 =
        sqlx::query_scalar("SELECT count(*) FROM webhook_endpoints").fetch_one(&db.owner).await.expect("c");
    assert_eq!(count, 0, "nothing is written while an input is missing");

    let mut org_wide = mk_webhook("org-hook", "unused");
    org_wide.spec.workspace_ref = None;
    org_wide.spec.organization_ref = Some(LocalRef { name: "acme".into() });
    let mut org_inputs = inputs(&ws, FIRST, Some(&KEY));
    org_inputs.organization = Some(&org);
    let outcome = provision(&mut conn, &org_wide, org_inputs).await.expect("r");
    assert!(outcome.readiness.ready, "{outcome:?}");
    let scoped: Option<Uuid> =
        sqlx::query_scalar("SELECT workspace_id FROM webhook_endpoints WHERE k8s_name = 'org-hook'")
            .fetch_one(&db.owner)
            .await
            .expect("row");
    assert_eq!(scoped, None);
}

#[tokio::test]
async fn deleting_an_endpoint_removes_its_row() {
    let db = db().await;
    let (mut conn, _org, ws) = provisioned(&db).await;
    let hook = mk_webhook("hook", "eng");
    provision(&mut conn, &hook, inputs(&ws, FIRST, Some(&KEY))).await.expect("create");
    assert_eq!(cleanup(&mut conn, &hook).await.expect("cleanup").reason, "Deleted");
    let count: i64 =
        sqlx::query_scalar("SELECT count(*) FROM webhook_endpoints").fetch_one(&db.owner).await.expect("c");
    assert_eq!(count, 0);
    let note = cleanup(&mut conn, &hook).await.expect("a second cleanup is harmless");
    assert!(note.message.contains("no webhook endpoint row"));
}

#[tokio::test]
async fn during_an_overlap_the_previous_secret_is_stored_sealed_with_its_deadline_then_dropped() {
    let db = db().await;
    let (mut conn, _org, ws) = provisioned(&db).await;
    let hook = mk_webhook("hook", "eng");
    let until = chrono::DateTime::from_timestamp(1_900_000_000, 0).expect("time");
    let mut rotating = inputs(&ws, SECOND, Some(&KEY));
    rotating.signing_secret = SigningSecret::Value {
        secret_name: "hook-webhook-signing".into(),
        secrets: Secrets { current: SECOND.into(), previous: Some((FIRST.into(), until)) },
    };
    assert!(provision(&mut conn, &hook, rotating).await.expect("provision").readiness.ready);
    let (id, previous, expires): (Uuid, Option<Vec<u8>>, Option<chrono::DateTime<chrono::Utc>>) =
        sqlx::query_as("SELECT id, previous_signing_secret_sealed, previous_secret_expires_at FROM webhook_endpoints")
            .fetch_one(&db.owner)
            .await
            .expect("row");
    let previous = previous.expect("the previous secret is kept");
    assert_eq!(seal::open(&KEY, &seal::webhook_context(id), &previous).expect("opens"), FIRST.as_bytes());
    assert_eq!(expires, Some(until));

    provision(&mut conn, &hook, inputs(&ws, SECOND, Some(&KEY))).await.expect("overlap over");
    let (previous, expires): (Option<Vec<u8>>, Option<chrono::DateTime<chrono::Utc>>) =
        sqlx::query_as("SELECT previous_signing_secret_sealed, previous_secret_expires_at FROM webhook_endpoints")
            .fetch_one(&db.owner)
            .await
            .expect("row");
    assert_eq!((previous, expires), (None, None));
}

#[tokio::test]
async fn a_secret_of_your_own_not_in_the_standard_format_is_an_invalid_spec() {
    let db = db().await;
    let (mut conn, _org, ws) = provisioned(&db).await;
    let outcome =
        provision(&mut conn, &mk_webhook("hook", "eng"), inputs(&ws, "hunter2", Some(&KEY))).await.expect("r");
    assert_eq!(outcome.readiness.reason, reason::INVALID_SPEC);
    assert!(outcome.readiness.message.contains("whsec_"), "{outcome:?}");
    assert!(!outcome.readiness.message.contains("hunter2"), "the secret is not shown");
}

#[tokio::test]
async fn an_endpoint_the_data_plane_disabled_is_not_ready_until_its_spec_or_the_annotation_changes() {
    let db = db().await;
    let (mut conn, _org, ws) = provisioned(&db).await;
    let mut hook = mk_webhook("hook", "eng");
    hook.metadata.generation = Some(1);
    provision(&mut conn, &hook, inputs(&ws, FIRST, Some(&KEY))).await.expect("create");
    let disable = || {
        sqlx::query(
            "UPDATE webhook_endpoints SET disabled_at = now(), consecutive_failures = 15,
                    disabled_reason = '15 failed deliveries in a row since yesterday; the last: HTTP 503'",
        )
        .execute(&db.owner)
    };
    disable().await.expect("disable");
    let outcome = provision(&mut conn, &hook, inputs(&ws, FIRST, Some(&KEY))).await.expect("disabled");
    assert!(!outcome.readiness.ready);
    assert_eq!(outcome.readiness.reason, reason::AUTO_DISABLED);
    assert!(outcome.readiness.message.contains("HTTP 503"), "{outcome:?}");
    assert!(outcome.readiness.message.contains("conclave.io/re-enable"), "says how to enable it");
    assert!(outcome.notes.iter().any(|n| n.reason == reason::AUTO_DISABLED), "a Warning event, once");
    let again = provision(&mut conn, &hook, inputs(&ws, FIRST, Some(&KEY))).await.expect("still");
    assert_eq!(again.readiness.reason, reason::AUTO_DISABLED);
    assert!(again.notes.is_empty());

    // The annotation enables it, once per value.
    hook.metadata.annotations = Some([("conclave.io/re-enable".to_owned(), "1".to_owned())].into());
    let enabled = provision(&mut conn, &hook, inputs(&ws, FIRST, Some(&KEY))).await.expect("re-enabled");
    assert!(enabled.readiness.ready, "{enabled:?}");
    let row: (Option<String>, i32) =
        sqlx::query_as("SELECT disabled_reason, consecutive_failures FROM webhook_endpoints")
            .fetch_one(&db.owner)
            .await
            .expect("row");
    assert_eq!(row, (None, 0));
    disable().await.expect("disable");
    let same_value = provision(&mut conn, &hook, inputs(&ws, FIRST, Some(&KEY))).await.expect("disabled");
    assert_eq!(same_value.readiness.reason, reason::AUTO_DISABLED, "the same value is not a new request");

    // So does a change of the spec.
    hook.metadata.generation = Some(2);
    assert!(provision(&mut conn, &hook, inputs(&ws, FIRST, Some(&KEY))).await.expect("changed").readiness.ready);
}
