use conclave_testkit::TestDb;
use sqlx::PgPool;

/// The tables DESIGN.md names, domain by domain.
const DESIGN_TABLES: &[&str] = &[
    "organizations",
    "organization_memberships",
    "workspaces",
    "workspace_memberships",
    "user_accounts",
    "user_profiles",
    "user_security_states",
    "email_confirmation_tokens",
    "password_reset_tokens",
    "refresh_tokens",
    "totp_secrets",
    "devices",
    "session_tokens",
    "push_subscriptions",
    "contact_links",
    "contact_invitations",
    "conversations",
    "conversation_members",
    "conversation_encryption_keys",
    "member_key_wraps",
    "conversation_invites",
    "messages",
    "message_deliveries",
    "message_attachments",
    "message_reactions",
    "message_pins",
    "call_sessions",
    "call_participants",
    "notification_preferences",
    "outbound_notifications",
    "webhook_endpoints",
    "bot_agents",
    "audit_logs",
    "privacy_requests",
];

/// Tables the features need beyond the design's list.
const SUPPORTING_TABLES: &[&str] = &[
    "organization_invitations",
    "totp_recovery_codes",
    "device_key_packages",
    "identity_keys",
    "identity_transfers",
    "unsubscribe_tokens",
    "message_mentions",
    "legal_holds",
    "worker_leases",
    "audit_pseudonyms",
    "webhook_delivery_attempts",
];

async fn public_tables(pool: &PgPool) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT c.relname::text FROM pg_class c
          WHERE c.relkind = 'r' AND c.relnamespace = 'public'::regnamespace AND c.relname <> '_sqlx_migrations'
          ORDER BY 1",
    )
    .fetch_all(pool)
    .await
    .expect("list tables")
}

/// A fingerprint of everything the migrations define: columns, constraints, indexes, policies,
/// triggers, functions and grants.
async fn schema_fingerprint(pool: &PgPool) -> String {
    sqlx::query_scalar(
        "SELECT md5(string_agg(line, E'\\n' ORDER BY line)) FROM (
            SELECT format('col %s.%s %s %s %s', table_name, column_name, data_type, is_nullable, column_default) AS line
              FROM information_schema.columns WHERE table_schema = 'public'
            UNION ALL SELECT format('con %s %s', conrelid::regclass, pg_get_constraintdef(oid)) FROM pg_constraint WHERE connamespace = 'public'::regnamespace
            UNION ALL SELECT format('idx %s', indexdef) FROM pg_indexes WHERE schemaname = 'public'
            UNION ALL SELECT format('pol %s %s %s %s', tablename, policyname, qual, with_check) FROM pg_policies WHERE schemaname = 'public'
            UNION ALL SELECT format('trg %s %s', tgrelid::regclass, tgname) FROM pg_trigger WHERE NOT tgisinternal
            UNION ALL SELECT format('fn %s %s', proname, md5(prosrc)) FROM pg_proc WHERE pronamespace = 'public'::regnamespace
            UNION ALL SELECT format('acl %s %s %s', table_name, grantee, privilege_type) FROM information_schema.role_table_grants WHERE table_schema = 'public'
        ) s",
    )
    .fetch_one(pool)
    .await
    .expect("fingerprint")
}

#[tokio::test]
async fn every_design_table_exists_and_nothing_unexplained() {
    let db = TestDb::new().await.expect("test database");
    let tables = public_tables(&db.owner).await;
    for table in DESIGN_TABLES.iter().chain(SUPPORTING_TABLES) {
        assert!(tables.iter().any(|t| t == table), "missing table {table}");
    }
    assert_eq!(DESIGN_TABLES.len(), 34);
    assert_eq!(tables.len(), DESIGN_TABLES.len() + SUPPORTING_TABLES.len(), "unexpected tables: {tables:?}");
}

#[tokio::test]
async fn a_second_migration_run_changes_nothing() {
    let db = TestDb::new().await.expect("test database");
    let before = schema_fingerprint(&db.owner).await;
    let applied_before: i64 =
        sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations").fetch_one(&db.owner).await.expect("count");
    conclave_schema::migrate(&db.owner).await.expect("second run succeeds");
    let after = schema_fingerprint(&db.owner).await;
    let applied_after: i64 =
        sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations").fetch_one(&db.owner).await.expect("count");
    assert_eq!(before, after);
    assert_eq!(applied_before, applied_after);
    assert_eq!(applied_after, conclave_schema::MIGRATOR.iter().count() as i64);
}

#[tokio::test]
async fn single_column_primary_keys_are_time_ordered_uuids() {
    let db = TestDb::new().await.expect("test database");
    let rows: Vec<(String, String, Option<String>)> = sqlx::query_as(
        "SELECT c.table_name::text, c.data_type::text, c.column_default::text
           FROM information_schema.table_constraints tc
           JOIN information_schema.key_column_usage k USING (constraint_schema, constraint_name)
           JOIN information_schema.columns c ON c.table_schema = k.table_schema AND c.table_name = k.table_name AND c.column_name = k.column_name
          WHERE tc.constraint_type = 'PRIMARY KEY' AND tc.table_schema = 'public' AND k.column_name = 'id'",
    )
    .fetch_all(&db.owner)
    .await
    .expect("primary keys");
    assert!(rows.len() >= 30, "expected most tables to have an id key, got {}", rows.len());
    for (table, data_type, default) in rows {
        assert_eq!(data_type, "uuid", "{table}.id");
        assert_eq!(default.as_deref(), Some("conclave_uuid_v7()"), "{table}.id default");
    }
    // Version 7 and increasing in time order.
    let ids: Vec<uuid::Uuid> = sqlx::query_scalar("SELECT conclave_uuid_v7() FROM generate_series(1, 50) ORDER BY 1")
        .fetch_all(&db.owner)
        .await
        .expect("ids");
    assert!(ids.iter().all(|id| id.get_version_num() == 7));
    let first: uuid::Uuid = sqlx::query_scalar("SELECT conclave_uuid_v7()").fetch_one(&db.owner).await.expect("id");
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let second: uuid::Uuid = sqlx::query_scalar("SELECT conclave_uuid_v7()").fetch_one(&db.owner).await.expect("id");
    assert!(second > first, "a later id sorts after an earlier one");
}

#[tokio::test]
async fn every_timestamp_carries_a_time_zone() {
    let db = TestDb::new().await.expect("test database");
    let naive: Vec<String> = sqlx::query_scalar(
        "SELECT table_name || '.' || column_name FROM information_schema.columns
          WHERE table_schema = 'public' AND data_type IN ('timestamp without time zone', 'time without time zone', 'date')",
    )
    .fetch_all(&db.owner)
    .await
    .expect("columns");
    assert!(naive.is_empty(), "columns without a time zone: {naive:?}");
}

#[tokio::test]
async fn tokens_are_stored_as_digests_and_content_as_bytes() {
    let db = TestDb::new().await.expect("test database");
    let columns: Vec<(String, String, String, Option<String>)> = sqlx::query_as(
        "SELECT table_name::text, column_name::text, data_type::text, domain_name::text FROM information_schema.columns
          WHERE table_schema = 'public'",
    )
    .fetch_all(&db.owner)
    .await
    .expect("columns");
    for (table, column, data_type, domain) in &columns {
        let name = column.as_str();
        if name.ends_with("_hash") && name != "password_hash" && name != "hash" && name != "prev_hash" {
            assert_eq!(domain.as_deref(), Some("conclave_sha256"), "{table}.{column} must hold a SHA-256 digest");
        }
        assert!(
            !matches!(name, "token" | "secret" | "code" | "password" | "plaintext" | "body" | "content"),
            "{table}.{column} looks like a plaintext secret or message"
        );
        if matches!(name, "ciphertext" | "wrapped_key" | "encapsulated_key" | "secret_sealed" | "signing_secret_sealed")
        {
            assert_eq!(data_type, "bytea", "{table}.{column}");
        }
    }
}

#[tokio::test]
async fn tenant_tables_have_row_level_security_and_global_tables_do_not_need_it() {
    let db = TestDb::new().await.expect("test database");
    let rows: Vec<(String, bool, i64)> = sqlx::query_as(
        "SELECT c.relname::text, c.relrowsecurity,
                (SELECT count(*) FROM pg_policies p WHERE p.schemaname = 'public' AND p.tablename = c.relname)
           FROM pg_class c
          WHERE c.relkind = 'r' AND c.relnamespace = 'public'::regnamespace
            AND (c.relname = 'organizations' OR EXISTS (
                 SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attname = 'organization_id' AND NOT a.attisdropped))",
    )
    .fetch_all(&db.owner)
    .await
    .expect("tenant tables");
    assert!(rows.len() >= 20, "expected the tenant tables, got {}", rows.len());
    for (table, rls, policies) in rows {
        assert!(rls, "{table} carries organization_id but has no row-level security");
        assert!(policies >= 1, "{table} has row-level security but no policy");
    }
}

#[tokio::test]
async fn the_app_role_owns_nothing_and_cannot_change_the_schema() {
    let db = TestDb::new().await.expect("test database");
    let owned: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_class WHERE relnamespace = 'public'::regnamespace AND relowner = 'conclave_app'::regrole",
    )
    .fetch_one(&db.owner)
    .await
    .expect("owned");
    assert_eq!(owned, 0);
    let err = sqlx::query("DROP TABLE messages").execute(&db.app).await.expect_err("the app role may not drop tables");
    assert_eq!(err.as_database_error().and_then(|e| e.code()).as_deref(), Some("42501"));
    let err = sqlx::query("CREATE TABLE sneaky (id int)").execute(&db.app).await.expect_err("nor create them");
    assert_eq!(err.as_database_error().and_then(|e| e.code()).as_deref(), Some("42501"));
}
