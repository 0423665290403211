use conclave_schema::TenantContext;
use conclave_testkit::{TestDb, seed_tenant};
use uuid::Uuid;

async fn append(db: &TestDb, organization: Uuid, user: Uuid, action: &str) {
    let mut tx = db.app.begin().await.expect("begin");
    TenantContext::organization(organization).with_user(user).apply(&mut tx).await.expect("ctx");
    sqlx::query(
        "INSERT INTO audit_logs (organization_id, actor_kind, actor_user_id, action) VALUES ($1, 'user', $2, $3)",
    )
    .bind(organization)
    .bind(user)
    .bind(action)
    .execute(&mut *tx)
    .await
    .expect("append");
    tx.commit().await.expect("commit");
}

async fn problems(db: &TestDb, organization: Option<Uuid>) -> Vec<(i64, String)> {
    sqlx::query_as("SELECT chain_seq, problem FROM conclave_audit_verify($1)")
        .bind(organization)
        .fetch_all(&db.owner)
        .await
        .expect("verify")
}

#[tokio::test]
async fn the_audit_trail_is_a_hash_chain_per_organization() {
    let db = TestDb::new().await.expect("test database");
    let t = seed_tenant(&db.owner, "acme").await.expect("seed");
    for action in ["member.role_changed", "member.removed", "device.revoked"] {
        append(&db, t.organization_id, t.user_id, action).await;
    }
    let seqs: Vec<i64> =
        sqlx::query_scalar("SELECT chain_seq FROM audit_logs WHERE organization_id = $1 ORDER BY chain_seq")
            .bind(t.organization_id)
            .fetch_all(&db.owner)
            .await
            .expect("seqs");
    assert_eq!(seqs, vec![1, 2, 3, 4]);
    assert!(problems(&db, Some(t.organization_id)).await.is_empty());
}

#[tokio::test]
async fn the_app_role_cannot_alter_or_erase_the_audit_trail() {
    let db = TestDb::new().await.expect("test database");
    let t = seed_tenant(&db.owner, "acme").await.expect("seed");
    let mut tx = db.app.begin().await.expect("begin");
    TenantContext::organization(t.organization_id).apply(&mut tx).await.expect("ctx");
    let err =
        sqlx::query("UPDATE audit_logs SET action = 'nothing.happened'").execute(&mut *tx).await.expect_err("update");
    assert_eq!(err.as_database_error().and_then(|e| e.code()).as_deref(), Some("42501"));
    tx.rollback().await.expect("rollback");
    let mut tx = db.app.begin().await.expect("begin");
    TenantContext::organization(t.organization_id).apply(&mut tx).await.expect("ctx");
    let err = sqlx::query("DELETE FROM audit_logs").execute(&mut *tx).await.expect_err("delete");
    assert_eq!(err.as_database_error().and_then(|e| e.code()).as_deref(), Some("42501"));
    // Not even the owner may rewrite history in place.
    let err = sqlx::query("UPDATE audit_logs SET action = 'nothing.happened'")
        .execute(&db.owner)
        .await
        .expect_err("owner update");
    assert!(err.to_string().contains("append-only"), "{err}");
}

#[tokio::test]
async fn tampering_behind_the_triggers_back_is_detected() {
    let db = TestDb::new().await.expect("test database");
    let t = seed_tenant(&db.owner, "acme").await.expect("seed");
    append(&db, t.organization_id, t.user_id, "member.removed").await;
    append(&db, t.organization_id, t.user_id, "device.revoked").await;
    // A superuser-like actor disables the guard and edits the middle entry.
    let mut tx = db.owner.begin().await.expect("begin");
    sqlx::query("ALTER TABLE audit_logs DISABLE TRIGGER audit_logs_append_only")
        .execute(&mut *tx)
        .await
        .expect("disable");
    sqlx::query("UPDATE audit_logs SET action = 'member.added' WHERE organization_id = $1 AND chain_seq = 2")
        .bind(t.organization_id)
        .execute(&mut *tx)
        .await
        .expect("tamper");
    sqlx::query("ALTER TABLE audit_logs ENABLE TRIGGER audit_logs_append_only")
        .execute(&mut *tx)
        .await
        .expect("enable");
    tx.commit().await.expect("commit");
    assert_eq!(problems(&db, Some(t.organization_id)).await, vec![(2, "hash mismatch".to_owned())]);

    // Deleting an entry leaves a gap that is reported too.
    sqlx::query("DELETE FROM audit_logs WHERE organization_id = $1 AND chain_seq = 2")
        .bind(t.organization_id)
        .execute(&db.owner)
        .await
        .expect("delete");
    assert_eq!(problems(&db, Some(t.organization_id)).await, vec![(3, "gap before this entry".to_owned())]);
}
