use conclave_schema::{TenantContext, Violation, ViolationKind};
use conclave_testkit::{TestDb, seed_tenant};
use sqlx::{AssertSqlSafe, PgPool};
use uuid::Uuid;

/// Every table that carries an organization_id, read from the live schema rather than a list.
async fn tenant_tables(pool: &PgPool) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT c.relname::text FROM pg_class c
          WHERE c.relkind = 'r' AND c.relnamespace = 'public'::regnamespace
            AND EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attname = 'organization_id' AND NOT a.attisdropped)
          ORDER BY 1",
    )
    .fetch_all(pool)
    .await
    .expect("tenant tables")
}

async fn count_for(db: &TestDb, ctx: TenantContext, table: &str, organization: Uuid) -> i64 {
    let mut tx = db.app.begin().await.expect("begin");
    ctx.apply(&mut tx).await.expect("tenant context");
    let sql = format!("SELECT count(*) FROM \"{table}\" WHERE organization_id = $1");
    let count = sqlx::query_scalar(AssertSqlSafe(sql))
        .bind(organization)
        .fetch_one(&mut *tx)
        .await
        .unwrap_or_else(|e| panic!("counting {table}: {e}"));
    tx.rollback().await.expect("rollback");
    count
}

#[tokio::test]
async fn the_app_role_sees_only_the_organization_set_on_its_transaction() {
    let db = TestDb::new().await.expect("test database");
    let a = seed_tenant(&db.owner, "acme").await.expect("seed a");
    let b = seed_tenant(&db.owner, "globex").await.expect("seed b");
    let tables = tenant_tables(&db.owner).await;
    assert!(tables.len() >= 20, "{tables:?}");
    let as_a = TenantContext::organization(a.organization_id);
    for table in &tables {
        // The fixture wrote rows for both tenants, so a zero here means isolation, not emptiness.
        assert!(count_for(&db, as_a, table, a.organization_id).await > 0, "{table}: A sees none of its own rows");
        assert_eq!(count_for(&db, as_a, table, b.organization_id).await, 0, "{table}: A sees B's rows");
    }
    let mut tx = db.app.begin().await.expect("begin");
    as_a.apply(&mut tx).await.expect("ctx");
    let visible: Vec<Uuid> =
        sqlx::query_scalar("SELECT id FROM organizations").fetch_all(&mut *tx).await.expect("orgs");
    assert_eq!(visible, vec![a.organization_id]);
}

#[tokio::test]
async fn without_a_tenant_context_no_tenant_row_is_visible() {
    let db = TestDb::new().await.expect("test database");
    let a = seed_tenant(&db.owner, "acme").await.expect("seed");
    for table in tenant_tables(&db.owner).await {
        let count = count_for(&db, TenantContext::default(), &table, a.organization_id).await;
        assert_eq!(count, 0, "{table} is visible without a tenant context");
    }
}

#[tokio::test]
async fn the_app_role_cannot_write_rows_for_another_organization() {
    let db = TestDb::new().await.expect("test database");
    let a = seed_tenant(&db.owner, "acme").await.expect("seed a");
    let b = seed_tenant(&db.owner, "globex").await.expect("seed b");
    for table in tenant_tables(&db.owner).await {
        // Take one of B's rows as the owner, give it a fresh id, and try to insert it as A.
        let row: serde_json::Value = sqlx::query_scalar(AssertSqlSafe(format!(
            "SELECT to_jsonb(t) FROM \"{table}\" t WHERE organization_id = $1 LIMIT 1"
        )))
        .bind(b.organization_id)
        .fetch_one(&db.owner)
        .await
        .unwrap_or_else(|e| panic!("reading a row of {table}: {e}"));
        let mut row = row;
        if row.get("id").is_some() {
            row["id"] = serde_json::json!(Uuid::now_v7());
        }
        let mut tx = db.app.begin().await.expect("begin");
        TenantContext::organization(a.organization_id).apply(&mut tx).await.expect("ctx");
        let err = sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO \"{table}\" SELECT * FROM jsonb_populate_record(NULL::\"{table}\", $1)"
        )))
        .bind(&row)
        .execute(&mut *tx)
        .await
        .expect_err(&format!("{table}: A inserted a row for B"));
        let violation = Violation::from_sqlx(&err).unwrap_or_else(|| panic!("{table}: unexpected error {err}"));
        assert_eq!(violation.kind, ViolationKind::Forbidden, "{table}: {err}");
    }
}

#[tokio::test]
async fn the_app_role_cannot_move_a_row_into_another_organization() {
    let db = TestDb::new().await.expect("test database");
    let a = seed_tenant(&db.owner, "acme").await.expect("seed a");
    let b = seed_tenant(&db.owner, "globex").await.expect("seed b");
    let mut tx = db.app.begin().await.expect("begin");
    TenantContext::organization(a.organization_id).apply(&mut tx).await.expect("ctx");
    let err = sqlx::query("UPDATE conversation_members SET organization_id = $1 WHERE organization_id = $2")
        .bind(b.organization_id)
        .bind(a.organization_id)
        .execute(&mut *tx)
        .await
        .expect_err("moving rows across tenants is refused");
    assert_eq!(Violation::from_sqlx(&err).map(|v| v.kind), Some(ViolationKind::Forbidden));
    tx.rollback().await.expect("rollback");
    // And B's rows cannot be touched at all from A: the update matches nothing.
    let mut tx = db.app.begin().await.expect("begin");
    TenantContext::organization(a.organization_id).apply(&mut tx).await.expect("ctx");
    let touched = sqlx::query("DELETE FROM messages WHERE organization_id = $1")
        .bind(b.organization_id)
        .execute(&mut *tx)
        .await
        .expect("delete runs")
        .rows_affected();
    assert_eq!(touched, 0);
    tx.commit().await.expect("commit");
    let still: i64 = sqlx::query_scalar("SELECT count(*) FROM messages WHERE organization_id = $1")
        .bind(b.organization_id)
        .fetch_one(&db.owner)
        .await
        .expect("count");
    assert_eq!(still, 1);
}

#[tokio::test]
async fn a_user_sees_their_own_memberships_across_organizations_and_no_one_elses() {
    let db = TestDb::new().await.expect("test database");
    let a = seed_tenant(&db.owner, "acme").await.expect("seed a");
    let b = seed_tenant(&db.owner, "globex").await.expect("seed b");
    // A's owner also joins B as a member.
    sqlx::query("INSERT INTO organization_memberships (organization_id, user_id, role) VALUES ($1, $2, 'member')")
        .bind(b.organization_id)
        .bind(a.user_id)
        .execute(&db.owner)
        .await
        .expect("join b");
    let mut tx = db.app.begin().await.expect("begin");
    TenantContext::default().with_user(a.user_id).apply(&mut tx).await.expect("ctx");
    let mut orgs: Vec<Uuid> = sqlx::query_scalar("SELECT organization_id FROM organization_memberships")
        .fetch_all(&mut *tx)
        .await
        .expect("memberships");
    orgs.sort();
    let mut expected = vec![a.organization_id, b.organization_id];
    expected.sort();
    assert_eq!(orgs, expected, "own memberships in both organizations, and B's owner's membership stays hidden");
    let names: i64 = sqlx::query_scalar("SELECT count(*) FROM organizations").fetch_one(&mut *tx).await.expect("orgs");
    assert_eq!(names, 2);
}
