use crate::support::{db, mk_org, mk_workspace};
use conclave_operator::conditions::reason;
use conclave_operator::sync::{organization, workspace};
use conclave_resources::DeletionPolicy;
use uuid::Uuid;

#[tokio::test]
async fn a_workspace_waits_for_its_organization_and_resolves_once_it_appears() {
    let db = db().await;
    let mut conn = db.owner.acquire().await.expect("conn");
    let ws = mk_workspace("eng", "acme", &[], DeletionPolicy::Retain);
    let missing = workspace::provision(&mut conn, &ws, None).await.expect("provision");
    assert_eq!(missing.readiness.reason, reason::ORGANIZATION_NOT_FOUND);
    assert!(missing.readiness.message.contains("acme"));

    let org = mk_org("acme", "acme", DeletionPolicy::Retain);
    let not_yet = workspace::provision(&mut conn, &ws, Some(&org)).await.expect("provision");
    assert_eq!(not_yet.readiness.reason, reason::ORGANIZATION_NOT_READY);

    organization::provision(&mut conn, &org).await.expect("org");
    let ready = workspace::provision(&mut conn, &ws, Some(&org)).await.expect("provision");
    assert!(ready.readiness.ready, "{ready:?}");
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM workspaces WHERE slug = 'eng' AND k8s_name = 'eng'")
        .fetch_one(&db.owner)
        .await
        .expect("count");
    assert_eq!(count, 1);
}

#[tokio::test]
async fn default_channels_are_created_once() {
    let db = db().await;
    let mut conn = db.owner.acquire().await.expect("conn");
    let org = mk_org("acme", "acme", DeletionPolicy::Retain);
    organization::provision(&mut conn, &org).await.expect("org");
    let ws = mk_workspace("eng", "acme", &["general", "random"], DeletionPolicy::Retain);
    let first = workspace::provision(&mut conn, &ws, Some(&org)).await.expect("provision");
    assert_eq!(first.notes.iter().filter(|n| n.reason == "ChannelCreated").count(), 2);
    sqlx::query("UPDATE conversations SET archived_at = now() WHERE name = 'random'")
        .execute(&db.owner)
        .await
        .expect("archive");
    let second = workspace::provision(&mut conn, &ws, Some(&org)).await.expect("provision");
    assert!(second.notes.is_empty(), "{:?}", second.notes);
    let names: Vec<String> =
        sqlx::query_scalar("SELECT name::text FROM conversations WHERE kind = 'channel' ORDER BY name")
            .fetch_all(&db.owner)
            .await
            .expect("channels");
    assert_eq!(names, vec!["general", "random"]);
}

#[tokio::test]
async fn a_workspace_changed_behind_the_operators_back_is_restored() {
    let db = db().await;
    let mut conn = db.owner.acquire().await.expect("conn");
    let org = mk_org("acme", "acme", DeletionPolicy::Retain);
    organization::provision(&mut conn, &org).await.expect("org");
    let ws = mk_workspace("eng", "acme", &[], DeletionPolicy::Retain);
    workspace::provision(&mut conn, &ws, Some(&org)).await.expect("create");
    sqlx::query("UPDATE workspaces SET guest_access = true, message_retention_days = NULL")
        .execute(&db.owner)
        .await
        .expect("tamper");
    let repaired = workspace::provision(&mut conn, &ws, Some(&org)).await.expect("repair");
    assert_eq!(repaired.notes[0].reason, "Updated");
    let (guests, retention): (bool, Option<i32>) =
        sqlx::query_as("SELECT guest_access, message_retention_days FROM workspaces")
            .fetch_one(&db.owner)
            .await
            .expect("row");
    assert_eq!((guests, retention), (false, Some(30)));
}

#[tokio::test]
async fn deleting_a_workspace_with_policy_delete_removes_its_conversations_but_not_the_organization() {
    let db = db().await;
    let mut conn = db.owner.acquire().await.expect("conn");
    let org = mk_org("acme", "acme", DeletionPolicy::Retain);
    let org_out = organization::provision(&mut conn, &org).await.expect("org");
    let ws = mk_workspace("eng", "acme", &["general"], DeletionPolicy::Delete);
    let ws_out = workspace::provision(&mut conn, &ws, Some(&org)).await.expect("ws");
    let ws_id: Uuid = ws_out.status.workspace_id.as_deref().and_then(|s| s.parse().ok()).expect("an id");
    let note = workspace::cleanup(&mut conn, &ws).await.expect("cleanup");
    assert_eq!(note.reason, "Deleted");
    let (workspaces, conversations, orgs): (i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM workspaces), (SELECT count(*) FROM conversations), (SELECT count(*) FROM organizations)",
    )
    .fetch_one(&db.owner)
    .await
    .expect("counts");
    assert_eq!((workspaces, conversations, orgs), (0, 0, 1));
    let org_id: Uuid = org_out.status.organization_id.as_deref().and_then(|s| s.parse().ok()).expect("an id");
    let audited: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM audit_logs WHERE organization_id = $1 AND action = 'workspace.deleted' AND target_id = $2",
    )
    .bind(org_id)
    .bind(ws_id)
    .fetch_one(&db.owner)
    .await
    .expect("audit");
    assert_eq!(audited, 1);
}

#[tokio::test]
async fn deleting_a_workspace_with_policy_retain_detaches_it() {
    let db = db().await;
    let mut conn = db.owner.acquire().await.expect("conn");
    let org = mk_org("acme", "acme", DeletionPolicy::Retain);
    organization::provision(&mut conn, &org).await.expect("org");
    let ws = mk_workspace("eng", "acme", &["general"], DeletionPolicy::Retain);
    workspace::provision(&mut conn, &ws, Some(&org)).await.expect("ws");
    let note = workspace::cleanup(&mut conn, &ws).await.expect("cleanup");
    assert_eq!(note.reason, "Detached");
    let (count, managed): (i64, i64) =
        sqlx::query_as("SELECT count(*), count(k8s_name) FROM workspaces").fetch_one(&db.owner).await.expect("counts");
    assert_eq!((count, managed), (1, 0));
}
