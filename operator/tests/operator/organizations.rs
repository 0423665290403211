use crate::support::{NS, db, mk_org};
use conclave_operator::conditions::reason;
use conclave_operator::sync::organization::{cleanup, provision};
use conclave_resources::DeletionPolicy;
use sqlx::Row;
use uuid::Uuid;

async fn org_row(pool: &sqlx::PgPool, slug: &str) -> Option<sqlx::postgres::PgRow> {
    sqlx::query("SELECT * FROM organizations WHERE slug = $1").bind(slug).fetch_optional(pool).await.expect("query")
}

#[tokio::test]
async fn provisioning_an_organization_writes_every_declared_setting() {
    let db = db().await;
    let mut conn = db.owner.acquire().await.expect("conn");
    let org = mk_org("acme", "acme", DeletionPolicy::Retain);
    let outcome = provision(&mut conn, &org).await.expect("provision");
    assert!(outcome.readiness.ready, "{outcome:?}");
    assert_eq!(outcome.notes[0].reason, "Provisioned");
    let row = org_row(&db.owner, "acme").await.expect("a row");
    let id: Uuid = row.get("id");
    assert_eq!(outcome.status.organization_id, Some(id.to_string()));
    assert_eq!(row.get::<String, _>("display_name"), "acme Inc.");
    assert_eq!(row.get::<Option<i32>, _>("max_members"), Some(100));
    assert_eq!(row.get::<Option<i64>, _>("attachment_quota_bytes"), Some(1 << 30));
    assert_eq!(row.get::<Option<i32>, _>("message_retention_days"), Some(90));
    assert!(row.get::<bool, _>("require_totp"));
    assert_eq!(row.get::<Vec<String>, _>("allowed_email_domains"), vec!["acme.example"]);
    assert_eq!(row.get::<Option<i32>, _>("session_lifetime_seconds"), Some(86_400));
    assert_eq!(row.get::<Option<String>, _>("k8s_namespace").as_deref(), Some(NS));
    assert_eq!(row.get::<Option<String>, _>("k8s_name").as_deref(), Some("acme"));
    let audited: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM audit_logs WHERE organization_id = $1 AND action = 'organization.provisioned'",
    )
    .bind(id)
    .fetch_one(&db.owner)
    .await
    .expect("audit");
    assert_eq!(audited, 1);
}

#[tokio::test]
async fn a_second_reconcile_of_an_unchanged_organization_writes_nothing() {
    let db = db().await;
    let mut conn = db.owner.acquire().await.expect("conn");
    let org = mk_org("acme", "acme", DeletionPolicy::Retain);
    provision(&mut conn, &org).await.expect("first");
    let before: chrono::DateTime<chrono::Utc> =
        sqlx::query_scalar("SELECT updated_at FROM organizations").fetch_one(&db.owner).await.expect("row");
    let again = provision(&mut conn, &org).await.expect("second");
    assert!(again.notes.is_empty(), "{:?}", again.notes);
    let after: chrono::DateTime<chrono::Utc> =
        sqlx::query_scalar("SELECT updated_at FROM organizations").fetch_one(&db.owner).await.expect("row");
    assert_eq!(before, after);
}

#[tokio::test]
async fn a_spec_change_updates_the_row() {
    let db = db().await;
    let mut conn = db.owner.acquire().await.expect("conn");
    let mut org = mk_org("acme", "acme", DeletionPolicy::Retain);
    provision(&mut conn, &org).await.expect("create");
    org.spec.display_name = "Acme Renamed".into();
    org.spec.security = None;
    let outcome = provision(&mut conn, &org).await.expect("update");
    assert_eq!(outcome.notes[0].reason, "Updated");
    let row = org_row(&db.owner, "acme").await.expect("a row");
    assert_eq!(row.get::<String, _>("display_name"), "Acme Renamed");
    assert!(!row.get::<bool, _>("require_totp"));
    assert!(row.get::<Vec<String>, _>("allowed_email_domains").is_empty());
    assert_eq!(row.get::<Option<i32>, _>("session_lifetime_seconds"), None);
}

#[tokio::test]
async fn a_row_changed_behind_the_operators_back_is_restored() {
    let db = db().await;
    let mut conn = db.owner.acquire().await.expect("conn");
    let org = mk_org("acme", "acme", DeletionPolicy::Retain);
    provision(&mut conn, &org).await.expect("create");
    sqlx::query("UPDATE organizations SET display_name = 'Tampered', require_totp = false, max_members = NULL")
        .execute(&db.owner)
        .await
        .expect("tamper");
    let outcome = provision(&mut conn, &org).await.expect("repair");
    assert!(outcome.notes[0].message.contains("display_name, max_members, require_totp"), "{:?}", outcome.notes);
    let row = org_row(&db.owner, "acme").await.expect("a row");
    assert_eq!(row.get::<String, _>("display_name"), "acme Inc.");
    assert!(row.get::<bool, _>("require_totp"));
    assert_eq!(row.get::<Option<i32>, _>("max_members"), Some(100));
}

#[tokio::test]
async fn a_row_deleted_behind_the_operators_back_is_recreated() {
    let db = db().await;
    let mut conn = db.owner.acquire().await.expect("conn");
    let org = mk_org("acme", "acme", DeletionPolicy::Retain);
    let first = provision(&mut conn, &org).await.expect("create");
    sqlx::query("DELETE FROM organizations").execute(&db.owner).await.expect("remove");
    let second = provision(&mut conn, &org).await.expect("recreate");
    assert!(second.readiness.ready);
    assert_ne!(first.status.organization_id, second.status.organization_id);
    assert!(org_row(&db.owner, "acme").await.is_some());
}

#[tokio::test]
async fn initial_owners_are_invited_once_and_known_accounts_get_an_email_queued() {
    let db = db().await;
    let mut conn = db.owner.acquire().await.expect("conn");
    sqlx::query(
        "INSERT INTO user_accounts (email, password_hash)
         VALUES ('known@acme.example', '$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo')",
    )
    .execute(&db.owner)
    .await
    .expect("a user");
    let mut org = mk_org("acme", "acme", DeletionPolicy::Retain);
    org.spec.initial_owners = vec!["Known@Acme.example".into(), "new@acme.example".into()];
    let outcome = provision(&mut conn, &org).await.expect("provision");
    assert_eq!(outcome.notes.iter().filter(|n| n.reason == "OwnerInvited").count(), 2);
    assert_eq!(outcome.status.pending_invitations, Some(2));
    let invitations: Vec<(String, String)> =
        sqlx::query_as("SELECT email::text, role FROM organization_invitations ORDER BY email")
            .fetch_all(&db.owner)
            .await
            .expect("invitations");
    assert_eq!(
        invitations,
        vec![("known@acme.example".into(), "owner".into()), ("new@acme.example".into(), "owner".into())]
    );
    let emails: Vec<String> = sqlx::query_scalar(
        "SELECT u.email::text FROM outbound_notifications n JOIN user_accounts u ON u.id = n.recipient_user_id
          WHERE n.channel = 'email'",
    )
    .fetch_all(&db.owner)
    .await
    .expect("outbox");
    assert_eq!(emails, vec!["known@acme.example"]);

    sqlx::query("UPDATE organization_invitations SET revoked_at = now()").execute(&db.owner).await.expect("revoke");
    let again = provision(&mut conn, &org).await.expect("again");
    assert!(again.notes.iter().all(|n| n.reason != "OwnerInvited"), "{:?}", again.notes);
    assert_eq!(again.status.pending_invitations, Some(0));
}

#[tokio::test]
async fn deletion_policy_delete_removes_every_row_of_the_tenant_and_audits_it() {
    let db = db().await;
    let tenant = conclave_testkit::seed_tenant(&db.owner, "acme").await.expect("seed");
    let other = conclave_testkit::seed_tenant(&db.owner, "other").await.expect("seed");
    let mut conn = db.owner.acquire().await.expect("conn");
    let org = mk_org("acme", "acme", DeletionPolicy::Delete);
    let outcome = provision(&mut conn, &org).await.expect("adopt");
    assert_eq!(outcome.notes[0].reason, "Adopted");
    assert_eq!(outcome.status.organization_id, Some(tenant.organization_id.to_string()));
    assert_eq!(outcome.status.member_count, Some(1));
    assert_eq!(outcome.status.workspace_count, Some(1));

    let note = cleanup(&mut conn, &org).await.expect("cleanup");
    assert_eq!(note.reason, "Deleted");
    for table in ["organizations", "workspaces", "conversations", "messages", "organization_memberships"] {
        let left: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT count(*) FROM {table} WHERE {} = $1",
            if table == "organizations" { "id" } else { "organization_id" }
        )))
        .bind(tenant.organization_id)
        .fetch_one(&db.owner)
        .await
        .expect("count");
        assert_eq!(left, 0, "{table} still has rows of the deleted tenant");
    }
    let others: i64 = sqlx::query_scalar("SELECT count(*) FROM messages WHERE organization_id = $1")
        .bind(other.organization_id)
        .fetch_one(&db.owner)
        .await
        .expect("count");
    assert_eq!(others, 1, "another tenant's data must survive");
    let audited: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM audit_logs WHERE organization_id = $1 AND action = 'organization.deleted' AND actor_kind = 'operator'",
    )
    .bind(tenant.organization_id)
    .fetch_one(&db.owner)
    .await
    .expect("audit");
    assert_eq!(audited, 1);
}

#[tokio::test]
async fn deletion_policy_retain_keeps_the_data_and_a_new_resource_adopts_it() {
    let db = db().await;
    let mut conn = db.owner.acquire().await.expect("conn");
    let org = mk_org("acme", "acme", DeletionPolicy::Retain);
    let created = provision(&mut conn, &org).await.expect("create");
    let note = cleanup(&mut conn, &org).await.expect("cleanup");
    assert_eq!(note.reason, "Detached");
    let row = org_row(&db.owner, "acme").await.expect("the row is kept");
    assert_eq!(row.get::<Option<String>, _>("k8s_name"), None);

    let mut recreated = mk_org("acme-again", "acme", DeletionPolicy::Retain);
    recreated.metadata.namespace = Some("elsewhere".into());
    let adopted = provision(&mut conn, &recreated).await.expect("adopt");
    assert_eq!(adopted.notes[0].reason, "Adopted");
    assert_eq!(adopted.status.organization_id, created.status.organization_id);
    let row = org_row(&db.owner, "acme").await.expect("a row");
    assert_eq!(row.get::<Option<String>, _>("k8s_namespace").as_deref(), Some("elsewhere"));
}

#[tokio::test]
async fn a_slug_managed_by_another_resource_is_a_conflict_not_a_takeover() {
    let db = db().await;
    let mut conn = db.owner.acquire().await.expect("conn");
    provision(&mut conn, &mk_org("acme", "acme", DeletionPolicy::Retain)).await.expect("first");
    let intruder = mk_org("copycat", "acme", DeletionPolicy::Delete);
    let outcome = provision(&mut conn, &intruder).await.expect("second");
    assert!(!outcome.readiness.ready);
    assert_eq!(outcome.readiness.reason, reason::CONFLICT);
    assert!(outcome.readiness.message.contains("tenants/acme"), "{}", outcome.readiness.message);
    let row = org_row(&db.owner, "acme").await.expect("a row");
    assert_eq!(row.get::<Option<String>, _>("k8s_name").as_deref(), Some("acme"));
    let note = cleanup(&mut conn, &intruder).await.expect("cleanup of the loser");
    assert!(note.message.contains("no organization row"), "{note:?}");
    assert!(org_row(&db.owner, "acme").await.is_some(), "deleting the loser must not delete the winner's tenant");
}

#[tokio::test]
async fn an_invalid_spec_is_reported_and_writes_nothing() {
    let db = db().await;
    let mut conn = db.owner.acquire().await.expect("conn");
    let mut org = mk_org("acme", "acme", DeletionPolicy::Retain);
    org.spec.initial_owners = vec!["nobody".into()];
    let outcome = provision(&mut conn, &org).await.expect("provision");
    assert_eq!(outcome.readiness.reason, reason::INVALID_SPEC);
    assert!(outcome.notes[0].warning);
    assert!(org_row(&db.owner, "acme").await.is_none());
}

#[tokio::test]
async fn the_audit_chain_is_verified_for_the_status_and_an_altered_entry_raises_a_warning() {
    use conclave_operator::sync::organization::audit_chain;
    let db = db().await;
    let mut conn = db.owner.acquire().await.expect("conn");
    let org = mk_org("acme", "acme", DeletionPolicy::Retain);
    let outcome = provision(&mut conn, &org).await.expect("provision");
    let id: Uuid = outcome.status.organization_id.as_deref().expect("id").parse().expect("uuid");
    let hour = 3600;
    let now = chrono::Utc::now();

    let (chain, note) = audit_chain(&mut conn, id, None, now, hour).await.expect("verify");
    let intact = chain.expect("verified: never was before");
    assert!(intact.intact && intact.first_broken_seq.is_none(), "{intact:?}");
    assert!(intact.entries >= 1, "provisioning is audited: {intact:?}");
    assert!(note.is_none());
    // Within the hour the last verification stands, without reading the chain again.
    let later = now + chrono::Duration::minutes(10);
    let (kept, _) = audit_chain(&mut conn, id, Some(&intact), later, hour).await.expect("not due");
    assert_eq!(kept.as_ref(), Some(&intact));

    // Someone with the owner's rights edits history behind the append-only trigger's back.
    sqlx::query("ALTER TABLE audit_logs DISABLE TRIGGER audit_logs_append_only")
        .execute(&mut *conn)
        .await
        .expect("off");
    sqlx::query("UPDATE audit_logs SET action = 'organization.nothing' WHERE organization_id = $1 AND chain_seq = 1")
        .bind(id)
        .execute(&mut *conn)
        .await
        .expect("alter");
    sqlx::query("ALTER TABLE audit_logs ENABLE TRIGGER audit_logs_append_only").execute(&mut *conn).await.expect("on");

    let due = now + chrono::Duration::hours(2);
    let (chain, note) = audit_chain(&mut conn, id, Some(&intact), due, hour).await.expect("verify again");
    let broken = chain.expect("verified");
    assert!(!broken.intact, "{broken:?}");
    assert_eq!((broken.first_broken_seq, broken.problem.as_deref()), (Some(1), Some("hash mismatch")));
    assert_eq!(broken.entries, intact.entries);
    let note = note.expect("a warning");
    assert!(note.warning);
    assert_eq!(note.reason, "AuditChainBroken");
    assert!(note.message.contains("entry 1"), "{}", note.message);
    // Known broken: the next verification says so in the status, without a second warning.
    let (again, note) =
        audit_chain(&mut conn, id, Some(&broken), due + chrono::Duration::hours(2), hour).await.expect("again");
    assert!(!again.expect("verified").intact);
    assert!(note.is_none());
}

/// The standing holds the operator placed: (name, scope, target, reason), by name.
async fn declared(pool: &sqlx::PgPool, org: Uuid) -> Vec<(String, String, Option<Uuid>, String)> {
    sqlx::query_as(
        "SELECT k8s_name, scope, target_id, reason FROM legal_holds
          WHERE organization_id = $1 AND k8s_name IS NOT NULL AND lifted_at IS NULL ORDER BY k8s_name",
    )
    .bind(org)
    .fetch_all(pool)
    .await
    .expect("holds")
}

async fn audited(pool: &sqlx::PgPool, org: Uuid, action: &str) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM audit_logs WHERE organization_id = $1 AND action = $2 AND actor_kind = 'operator'",
    )
    .bind(org)
    .bind(action)
    .fetch_one(pool)
    .await
    .expect("audit")
}

#[tokio::test]
async fn legal_holds_declared_on_the_resource_are_placed_kept_replaced_and_lifted_as_the_list_says() {
    use conclave_resources::organization::{LegalHoldScope, LegalHoldSpec};
    let db = db().await;
    // An organization with a member, a workspace and a conversation, which the resource adopts.
    let t = conclave_testkit::seed_tenant(&db.owner, "acme").await.expect("seed");
    let hold = |name: &str, scope, target: Option<&str>, reason: &str| LegalHoldSpec {
        name: name.into(),
        scope,
        target: target.map(Into::into),
        reason: reason.into(),
    };
    let conversation = t.conversation_id.to_string();
    // The seed places one hold through the API's table already.
    let api_holds = |pool: sqlx::PgPool| async move {
        sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM legal_holds WHERE organization_id = $1 AND k8s_name IS NULL AND lifted_at IS NULL",
        )
        .bind(t.organization_id)
        .fetch_one(&pool)
        .await
        .expect("count")
    };
    let seeded = api_holds(db.owner.clone()).await;
    let mut org = mk_org("acme", "acme", DeletionPolicy::Retain);
    org.spec.legal_holds = vec![
        hold("everything", LegalHoldScope::Organization, None, "matter 1"),
        hold("general", LegalHoldScope::Workspace, Some("general"), "matter 2"),
        hold("thread", LegalHoldScope::Conversation, Some(&conversation), "matter 3"),
        hold("owner", LegalHoldScope::User, Some("Owner@Acme.Example"), "matter 4"),
    ];
    let mut conn = db.owner.acquire().await.expect("conn");
    let outcome = provision(&mut conn, &org).await.expect("provision");
    assert!(outcome.readiness.ready, "{outcome:?}");
    assert_eq!(outcome.status.standing_legal_holds, Some(4 + seeded));
    let org_id = t.organization_id;
    let expected = vec![
        ("everything".to_owned(), "organization".to_owned(), None, "matter 1".to_owned()),
        ("general".into(), "workspace".into(), Some(t.workspace_id), "matter 2".into()),
        ("owner".into(), "user".into(), Some(t.user_id), "matter 4".into()),
        ("thread".into(), "conversation".into(), Some(t.conversation_id), "matter 3".into()),
    ];
    assert_eq!(declared(&db.owner, org_id).await, expected);
    assert_eq!(audited(&db.owner, org_id, "legal_hold.placed").await, 4);

    // Unchanged: nothing is written again.
    let again = provision(&mut conn, &org).await.expect("again");
    assert!(again.notes.iter().all(|n| !n.reason.starts_with("LegalHold")), "{:?}", again.notes);
    assert_eq!(audited(&db.owner, org_id, "legal_hold.placed").await, 4);

    // A hold placed through the API is not the operator's to lift.
    sqlx::query("INSERT INTO legal_holds (organization_id, scope, reason) VALUES ($1, 'organization', 'by an admin')")
        .bind(org_id)
        .execute(&db.owner)
        .await
        .expect("an API hold");
    // One hold leaves the list, one changes its reason, one names a workspace that does not exist.
    org.spec.legal_holds = vec![
        hold("everything", LegalHoldScope::Organization, None, "matter 1, widened"),
        hold("general", LegalHoldScope::Workspace, Some("general"), "matter 2"),
        hold("owner", LegalHoldScope::User, Some("owner@acme.example"), "matter 4"),
        hold("typo", LegalHoldScope::Workspace, Some("genral"), "matter 5"),
    ];
    let outcome = provision(&mut conn, &org).await.expect("changed");
    assert!(!outcome.readiness.ready);
    assert_eq!(outcome.readiness.reason, "LegalHoldTargetNotFound");
    assert!(
        outcome.readiness.message.contains(r#"legal hold typo: no workspace "genral""#),
        "{}",
        outcome.readiness.message
    );
    let now: Vec<_> =
        declared(&db.owner, org_id).await.into_iter().map(|(name, _, _, reason)| (name, reason)).collect();
    assert_eq!(
        now,
        vec![
            ("everything".to_owned(), "matter 1, widened".to_owned()),
            ("general".into(), "matter 2".into()),
            ("owner".into(), "matter 4".into()),
        ]
    );
    assert_eq!(audited(&db.owner, org_id, "legal_hold.lifted").await, 2, "thread lifted, everything replaced");
    assert_eq!(outcome.status.standing_legal_holds, Some(3 + seeded + 1), "three declared and the admin's");
    assert_eq!(api_holds(db.owner.clone()).await, seeded + 1, "the admin's hold stands");

    // The list emptied: every declared hold is lifted, the admin's stays.
    org.spec.legal_holds.clear();
    let outcome = provision(&mut conn, &org).await.expect("emptied");
    assert!(outcome.readiness.ready, "{outcome:?}");
    assert!(declared(&db.owner, org_id).await.is_empty());
    assert_eq!(outcome.status.standing_legal_holds, Some(seeded + 1));
}
