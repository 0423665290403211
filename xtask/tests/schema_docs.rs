use conclave_testkit::TestDb;
use std::path::Path;

#[tokio::test]
async fn committed_schema_diagrams_match_the_migrated_database() {
    let db = TestDb::new().await.expect("test database");
    let files = xtask::schema_docs::render(&db.owner).await.expect("render diagrams");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/schema");
    for (name, generated) in files {
        let committed = std::fs::read_to_string(dir.join(name)).unwrap_or_default();
        assert!(
            committed == generated,
            "docs/schema/{name} is stale: run `cargo xtask schema-docs` (with the stack's CONCLAVE_OWNER_DATABASE_URL) and commit the result"
        );
    }
}

#[tokio::test]
async fn the_diagrams_show_every_table_and_column() {
    let db = TestDb::new().await.expect("test database");
    let files = xtask::schema_docs::render(&db.owner).await.expect("render diagrams");
    let logical = &files.iter().find(|(n, _)| *n == "logical.md").expect("logical").1;
    let columns: Vec<(String, String)> = sqlx::query_as(
        "SELECT table_name::text, column_name::text FROM information_schema.columns
          WHERE table_schema = 'public' AND table_name <> '_sqlx_migrations'",
    )
    .fetch_all(&db.owner)
    .await
    .expect("columns");
    assert!(columns.len() > 300);
    for (table, column) in columns {
        assert!(logical.contains(&format!("    {table} {{")), "{table} missing");
        assert!(
            logical.contains(&format!(" {column} ")) || logical.contains(&format!(" {column}\n")),
            "{table}.{column} missing"
        );
    }
    let conceptual = &files.iter().find(|(n, _)| *n == "conceptual.md").expect("conceptual").1;
    for domain in [
        "Tenancy",
        "Users",
        "Security",
        "Devices",
        "Contacts",
        "Conversations",
        "Messages",
        "Calls",
        "Notifications",
        "Integrations",
        "Compliance",
    ] {
        assert!(conceptual.contains(&format!("## {domain}\n")), "domain {domain} missing");
    }
}
