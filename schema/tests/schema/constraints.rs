use conclave_schema::{Violation, ViolationKind};
use conclave_testkit::{TestDb, seed_tenant};
use uuid::Uuid;

fn violation(err: sqlx::Error) -> Violation {
    Violation::from_sqlx(&err).unwrap_or_else(|| panic!("not a constraint violation: {err}"))
}

#[tokio::test]
async fn a_duplicate_membership_is_refused_with_a_readable_message() {
    let db = TestDb::new().await.expect("test database");
    let t = seed_tenant(&db.owner, "acme").await.expect("seed");
    let err =
        sqlx::query("INSERT INTO organization_memberships (organization_id, user_id, role) VALUES ($1, $2, 'member')")
            .bind(t.organization_id)
            .bind(t.user_id)
            .execute(&db.owner)
            .await
            .expect_err("duplicate membership");
    let v = violation(err);
    assert_eq!(v.kind, ViolationKind::Duplicate);
    assert_eq!(v.message, "this person is already a member of the organization");
    assert_eq!(v.table.as_deref(), Some("organization_memberships"));
}

#[tokio::test]
async fn roles_and_statuses_outside_their_sets_are_refused() {
    let db = TestDb::new().await.expect("test database");
    let t = seed_tenant(&db.owner, "acme").await.expect("seed");
    let err = sqlx::query("UPDATE organization_memberships SET role = 'emperor' WHERE user_id = $1")
        .bind(t.user_id)
        .execute(&db.owner)
        .await
        .expect_err("invalid role");
    let v = violation(err);
    assert_eq!(v.kind, ViolationKind::Invalid);
    assert_eq!(v.message, "role must be one of owner, admin, member, guest");

    for (sql, what) in [
        ("UPDATE user_accounts SET status = 'zombie' WHERE id = $1", "account status"),
        ("UPDATE devices SET platform = 'toaster' WHERE user_id = $1", "device platform"),
        ("UPDATE call_sessions SET status = 'paused' WHERE started_by = $1", "call status"),
        (
            "UPDATE outbound_notifications SET status = 'lost' WHERE organization_id IN (SELECT organization_id FROM organization_memberships WHERE user_id = $1)",
            "outbox status",
        ),
    ] {
        let err = sqlx::query(sql).bind(t.user_id).execute(&db.owner).await.expect_err(what);
        assert_eq!(violation(err).kind, ViolationKind::Invalid, "{what}");
    }
    // Nothing was changed by the refused writes.
    let role: String = sqlx::query_scalar("SELECT role FROM organization_memberships WHERE user_id = $1")
        .bind(t.user_id)
        .fetch_one(&db.owner)
        .await
        .expect("role");
    assert_eq!(role, "owner");
}

#[tokio::test]
async fn orphan_rows_are_refused() {
    let db = TestDb::new().await.expect("test database");
    let t = seed_tenant(&db.owner, "acme").await.expect("seed");
    let err =
        sqlx::query("INSERT INTO workspace_memberships (organization_id, workspace_id, user_id) VALUES ($1, $2, $3)")
            .bind(t.organization_id)
            .bind(Uuid::now_v7())
            .bind(t.user_id)
            .execute(&db.owner)
            .await
            .expect_err("membership of a workspace that does not exist");
    let v = violation(err);
    assert_eq!(v.kind, ViolationKind::Reference);
    assert_eq!(v.message, "the workspace does not exist in this organization");

    let err = sqlx::query("INSERT INTO devices (user_id, name, platform, ed25519_public_key, key_signature) VALUES ($1, 'x', 'cli', $2, $3)")
        .bind(Uuid::now_v7())
        .bind(vec![0u8; 32])
        .bind(vec![0u8; 64])
        .execute(&db.owner)
        .await
        .expect_err("device of no one");
    assert_eq!(violation(err).kind, ViolationKind::Reference);
}

#[tokio::test]
async fn rows_cannot_point_across_organizations() {
    let db = TestDb::new().await.expect("test database");
    let a = seed_tenant(&db.owner, "acme").await.expect("seed a");
    let b = seed_tenant(&db.owner, "globex").await.expect("seed b");
    // Even the owner role cannot create a conversation in A that lives in B's workspace.
    let err = sqlx::query("INSERT INTO conversations (organization_id, workspace_id, kind) VALUES ($1, $2, 'group')")
        .bind(a.organization_id)
        .bind(b.workspace_id)
        .execute(&db.owner)
        .await
        .expect_err("cross-tenant reference");
    assert_eq!(violation(err).kind, ViolationKind::Reference);
    // Nor join someone to a conversation of an organization they do not belong to.
    let err =
        sqlx::query("INSERT INTO conversation_members (organization_id, conversation_id, user_id) VALUES ($1, $2, $3)")
            .bind(a.organization_id)
            .bind(a.conversation_id)
            .bind(b.user_id)
            .execute(&db.owner)
            .await
            .expect_err("non-member joins");
    let v = violation(err);
    assert_eq!(v.message, "only members of the organization can join its conversations");
}

#[tokio::test]
async fn message_invariants_hold() {
    let db = TestDb::new().await.expect("test database");
    let t = seed_tenant(&db.owner, "acme").await.expect("seed");
    let insert = |seq: i64, generation: i32, ciphertext: Option<Vec<u8>>| {
        sqlx::query("INSERT INTO messages (organization_id, conversation_id, seq, sender_user_id, sender_device_id, client_message_id, key_generation, ciphertext)
                     VALUES ($1, $2, $3, $4, $5, gen_random_uuid(), $6, $7)")
            .bind(t.organization_id)
            .bind(t.conversation_id)
            .bind(seq)
            .bind(t.user_id)
            .bind(t.device_id)
            .bind(generation)
            .bind(ciphertext.clone())
            .execute(&db.owner)
    };
    let v = violation(insert(1, 1, Some(vec![1; 32])).await.expect_err("sequence reuse"));
    assert_eq!(v.message, "this sequence number is already taken");
    let v = violation(insert(2, 9, Some(vec![1; 32])).await.expect_err("unknown generation"));
    assert_eq!(v.message, "the key generation does not exist for this conversation");
    let v = violation(insert(2, 1, None).await.expect_err("a live message needs ciphertext"));
    assert_eq!(v.kind, ViolationKind::Invalid);
    let v = violation(insert(2, 1, Some(vec![1; 300_000])).await.expect_err("oversized ciphertext"));
    assert_eq!(v.kind, ViolationKind::Invalid);
    insert(2, 1, Some(vec![1; 32])).await.expect("a valid message is accepted");
}

#[tokio::test]
async fn every_constraint_with_its_own_message_exists_in_the_schema() {
    let db = TestDb::new().await.expect("test database");
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT conname::text FROM pg_constraint WHERE connamespace = 'public'::regnamespace
         UNION SELECT indexname::text FROM pg_indexes WHERE schemaname = 'public'",
    )
    .fetch_all(&db.owner)
    .await
    .expect("constraints");
    for known in Violation::known_constraints() {
        assert!(names.iter().any(|n| n == known), "no constraint or index named {known}");
    }
}
