//! `organizations` and the initial owners' invitations.

use super::{Applied, audit, k8s_ref};
use crate::plan::organization::OrganizationRow;
use crate::plan::{K8sRef, Observed, RowAction, plan_row};
use crate::secrets;
use conclave_resources::organization::{AuditChainStatus, LegalHoldScope};
use serde_json::json;
use sqlx::PgConnection;
use std::collections::BTreeSet;
use uuid::Uuid;

/// An `organizations` row as the operator reads it.
struct Record {
    id: Uuid,
    slug: String,
    display_name: String,
    max_members: Option<i32>,
    max_workspaces: Option<i32>,
    attachment_quota_bytes: Option<i64>,
    message_retention_days: Option<i32>,
    require_totp: bool,
    allowed_email_domains: Vec<String>,
    session_lifetime_seconds: Option<i32>,
    k8s_namespace: Option<String>,
    k8s_name: Option<String>,
}

impl From<Record> for Observed<OrganizationRow> {
    fn from(r: Record) -> Self {
        Observed {
            id: r.id,
            managed_by: k8s_ref(r.k8s_namespace, r.k8s_name),
            row: OrganizationRow {
                slug: r.slug,
                display_name: r.display_name,
                max_members: r.max_members,
                max_workspaces: r.max_workspaces,
                attachment_quota_bytes: r.attachment_quota_bytes,
                message_retention_days: r.message_retention_days,
                require_totp: r.require_totp,
                allowed_email_domains: r.allowed_email_domains,
                session_lifetime_seconds: r.session_lifetime_seconds,
            },
        }
    }
}

pub async fn find_by_ref(
    conn: &mut PgConnection,
    me: &K8sRef,
) -> Result<Option<Observed<OrganizationRow>>, sqlx::Error> {
    let found = sqlx::query_as!(
        Record,
        r#"SELECT id, slug::text AS "slug!", display_name, max_members, max_workspaces, attachment_quota_bytes,
                  message_retention_days, require_totp, allowed_email_domains, session_lifetime_seconds,
                  k8s_namespace, k8s_name
             FROM organizations WHERE k8s_namespace = $1 AND k8s_name = $2"#,
        me.namespace,
        me.name
    )
    .fetch_optional(conn)
    .await?;
    Ok(found.map(Observed::from))
}

pub async fn find_by_slug(
    conn: &mut PgConnection,
    slug: &str,
) -> Result<Option<Observed<OrganizationRow>>, sqlx::Error> {
    let found = sqlx::query_as!(
        Record,
        r#"SELECT id, slug::text AS "slug!", display_name, max_members, max_workspaces, attachment_quota_bytes,
                  message_retention_days, require_totp, allowed_email_domains, session_lifetime_seconds,
                  k8s_namespace, k8s_name
             FROM organizations WHERE slug = $1"#,
        slug
    )
    .fetch_optional(conn)
    .await?;
    Ok(found.map(Observed::from))
}

/// Brings the organization declared by `me` to `desired`: creates, adopts a retained row with
/// the same slug, repairs drift, or reports a conflict.
pub async fn apply(conn: &mut PgConnection, desired: &OrganizationRow, me: &K8sRef) -> Result<Applied, sqlx::Error> {
    let ours = find_by_ref(conn, me).await?;
    let same_slug = find_by_slug(conn, &desired.slug).await?;
    let action = plan_row(desired, me, ours.as_ref(), same_slug.as_ref());
    let created = match &action {
        RowAction::Create => {
            let id = write(conn, None, desired, me).await?;
            let details = json!({"k8s_namespace": me.namespace, "k8s_name": me.name, "slug": desired.slug});
            audit::record(conn, Some(id), "organization.provisioned", "organization", id, details).await?;
            Some(id)
        }
        RowAction::Adopt { id, .. } | RowAction::Update { id, .. } => {
            write(conn, Some(*id), desired, me).await?;
            if let RowAction::Adopt { .. } = action {
                let details = json!({"k8s_namespace": me.namespace, "k8s_name": me.name});
                audit::record(conn, Some(*id), "organization.adopted", "organization", *id, details).await?;
            }
            None
        }
        RowAction::UpToDate { .. } | RowAction::Conflict { .. } => None,
    };
    Ok(Applied::from_action(&action, created))
}

/// Writes the declared row, managed by `me`: a new one (`id` is `None`), or over row `id`. One
/// statement for both, so the columns are listed once. Returns the row's id.
async fn write(
    conn: &mut PgConnection,
    id: Option<Uuid>,
    desired: &OrganizationRow,
    me: &K8sRef,
) -> Result<Uuid, sqlx::Error> {
    sqlx::query_scalar!(
        "INSERT INTO organizations (id, slug, display_name, max_members, max_workspaces, attachment_quota_bytes,
             message_retention_days, require_totp, allowed_email_domains, session_lifetime_seconds,
             k8s_namespace, k8s_name)
         VALUES (coalesce($1, conclave_uuid_v7()), $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
         ON CONFLICT (id) DO UPDATE SET slug = EXCLUDED.slug, display_name = EXCLUDED.display_name,
             max_members = EXCLUDED.max_members, max_workspaces = EXCLUDED.max_workspaces,
             attachment_quota_bytes = EXCLUDED.attachment_quota_bytes,
             message_retention_days = EXCLUDED.message_retention_days, require_totp = EXCLUDED.require_totp,
             allowed_email_domains = EXCLUDED.allowed_email_domains,
             session_lifetime_seconds = EXCLUDED.session_lifetime_seconds,
             k8s_namespace = EXCLUDED.k8s_namespace, k8s_name = EXCLUDED.k8s_name
         RETURNING id",
        id,
        desired.slug,
        desired.display_name,
        desired.max_members,
        desired.max_workspaces,
        desired.attachment_quota_bytes,
        desired.message_retention_days,
        desired.require_totp,
        &desired.allowed_email_domains,
        desired.session_lifetime_seconds,
        me.namespace,
        me.name
    )
    .fetch_one(conn)
    .await
}

/// Members and workspaces, for the status.
pub async fn counts(conn: &mut PgConnection, id: Uuid) -> Result<(i64, i64), sqlx::Error> {
    let counts = sqlx::query!(
        r#"SELECT (SELECT count(*) FROM organization_memberships WHERE organization_id = $1) AS "members!",
                  (SELECT count(*) FROM workspaces WHERE organization_id = $1) AS "workspaces!""#,
        id
    )
    .fetch_one(conn)
    .await?;
    Ok((counts.members, counts.workspaces))
}

/// The organization's audit chain as `conclave_audit_check` finds it now.
pub async fn audit_chain(
    conn: &mut PgConnection,
    id: Uuid,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<AuditChainStatus, sqlx::Error> {
    let check =
        sqlx::query!(r#"SELECT entries AS "entries!", first_broken_seq, problem FROM conclave_audit_check($1)"#, id)
            .fetch_one(conn)
            .await?;
    Ok(AuditChainStatus {
        verified_at: now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        intact: check.first_broken_seq.is_none(),
        entries: check.entries,
        first_broken_seq: check.first_broken_seq,
        problem: check.problem,
    })
}

/// A standing hold the operator placed from the Organization's `spec.legalHolds`.
#[derive(Debug, Clone, PartialEq)]
pub struct DeclaredHold {
    pub id: Uuid,
    pub name: String,
    pub scope: String,
    pub target_id: Option<Uuid>,
    pub reason: String,
}

/// The standing holds the operator placed in the organization.
pub async fn declared_holds(conn: &mut PgConnection, org: Uuid) -> Result<Vec<DeclaredHold>, sqlx::Error> {
    sqlx::query_as!(
        DeclaredHold,
        r#"SELECT id, k8s_name AS "name!", scope, target_id, reason FROM legal_holds
            WHERE organization_id = $1 AND k8s_name IS NOT NULL AND lifted_at IS NULL ORDER BY k8s_name"#,
        org
    )
    .fetch_all(conn)
    .await
}

/// How many holds stand on the organization, declared or placed through the API.
pub async fn standing_holds(conn: &mut PgConnection, org: Uuid) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar!(
        r#"SELECT count(*) AS "n!" FROM legal_holds WHERE organization_id = $1 AND lifted_at IS NULL"#,
        org
    )
    .fetch_one(conn)
    .await
}

/// The id of what a declared hold names in the organization: a workspace by slug, a
/// conversation by id, a member by email address. `None` when there is no such thing.
pub async fn hold_target(
    conn: &mut PgConnection,
    org: Uuid,
    scope: LegalHoldScope,
    target: &str,
) -> Result<Option<Uuid>, sqlx::Error> {
    match scope {
        LegalHoldScope::Organization => Ok(None),
        LegalHoldScope::Workspace => {
            sqlx::query_scalar!("SELECT id FROM workspaces WHERE organization_id = $1 AND slug = $2", org, target)
                .fetch_optional(conn)
                .await
        }
        LegalHoldScope::Conversation => {
            let Ok(id) = target.parse::<Uuid>() else { return Ok(None) };
            sqlx::query_scalar!("SELECT id FROM conversations WHERE organization_id = $1 AND id = $2", org, id)
                .fetch_optional(conn)
                .await
        }
        LegalHoldScope::User => {
            sqlx::query_scalar!(
                "SELECT u.id FROM user_accounts u
                   JOIN organization_memberships m ON m.user_id = u.id AND m.organization_id = $1
                  WHERE u.email = lower($2)",
                org,
                target
            )
            .fetch_optional(conn)
            .await
        }
    }
}

/// Places a declared hold, after the retention batches and erasures of the organization that
/// started before it (`conclave_lock_holds`), and audits it.
pub async fn place_hold(
    conn: &mut PgConnection,
    org: Uuid,
    name: &str,
    scope: LegalHoldScope,
    target_id: Option<Uuid>,
    reason: &str,
) -> Result<Uuid, sqlx::Error> {
    sqlx::query!("SELECT conclave_lock_holds($1, false)", org).execute(&mut *conn).await?;
    let id = sqlx::query_scalar!(
        "INSERT INTO legal_holds (organization_id, scope, target_id, reason, k8s_name)
         VALUES ($1, $2, $3, $4, $5) RETURNING id",
        org,
        scope.as_str(),
        target_id,
        reason,
        name
    )
    .fetch_one(&mut *conn)
    .await?;
    let details = json!({ "scope": scope.as_str(), "target_id": target_id, "declared_as": name });
    audit::record(conn, Some(org), "legal_hold.placed", "legal_hold", id, details).await?;
    Ok(id)
}

/// Lifts a hold the operator placed, and audits it.
pub async fn lift_hold(conn: &mut PgConnection, org: Uuid, hold: &DeclaredHold) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE legal_holds SET lifted_at = now() WHERE organization_id = $1 AND id = $2 AND lifted_at IS NULL",
        org,
        hold.id
    )
    .execute(&mut *conn)
    .await?;
    let details = json!({ "scope": hold.scope, "target_id": hold.target_id, "declared_as": hold.name });
    audit::record(conn, Some(org), "legal_hold.lifted", "legal_hold", hold.id, details).await
}

/// Addresses that already have a membership or any invitation in the organization.
pub async fn known_emails(conn: &mut PgConnection, id: Uuid) -> Result<BTreeSet<String>, sqlx::Error> {
    let emails = sqlx::query_scalar!(
        r#"SELECT email::text AS "email!" FROM organization_invitations WHERE organization_id = $1
           UNION
           SELECT u.email::text FROM organization_memberships m JOIN user_accounts u ON u.id = m.user_id
            WHERE m.organization_id = $1"#,
        id
    )
    .fetch_all(conn)
    .await?;
    Ok(emails.into_iter().collect())
}

/// Open invitations, for the status.
pub async fn open_invitations(conn: &mut PgConnection, id: Uuid) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar!(
        r#"SELECT count(*) AS "count!" FROM organization_invitations
            WHERE organization_id = $1 AND accepted_at IS NULL AND revoked_at IS NULL AND expires_at > now()"#,
        id
    )
    .fetch_one(conn)
    .await
}

/// How long an owner invitation stays open.
pub const INVITATION_DAYS: i32 = 14;

/// Invites `email` as an owner. The token is random and thrown away: the data plane mints the
/// token it emails (replacing `token_hash`) when it sends the invitation. When the address
/// already has an account, an `email` row is queued in the outbox for the data plane to send.
pub async fn invite_owner(conn: &mut PgConnection, organization_id: Uuid, email: &str) -> Result<Uuid, anyhow::Error> {
    let token = secrets::token(secrets::INVITATION_PREFIX)?;
    let id = sqlx::query_scalar!(
        "INSERT INTO organization_invitations (organization_id, email, role, token_hash, expires_at)
         VALUES ($1, $2, 'owner', $3, now() + make_interval(days => $4)) RETURNING id",
        organization_id,
        email,
        secrets::digest(&token),
        INVITATION_DAYS
    )
    .fetch_one(&mut *conn)
    .await?;
    let recipient =
        sqlx::query_scalar!("SELECT id FROM user_accounts WHERE email = $1", email).fetch_optional(&mut *conn).await?;
    if let Some(user_id) = recipient {
        sqlx::query!(
            "INSERT INTO outbound_notifications (organization_id, channel, event_type, recipient_user_id, payload)
             VALUES ($1, 'email', 'organization.invitation_created', $2, $3)",
            organization_id,
            user_id,
            json!({"invitation_id": id, "email": email, "role": "owner"})
        )
        .execute(&mut *conn)
        .await?;
    }
    audit::record(
        conn,
        Some(organization_id),
        "organization.owner_invited",
        "organization_invitation",
        id,
        json!({"email": email}),
    )
    .await?;
    Ok(id)
}

/// `deletionPolicy: Delete`: records the deletion in the organization's audit chain (which
/// outlives it), then deletes the organization and, by cascade, everything in it.
pub async fn delete(conn: &mut PgConnection, me: &K8sRef) -> Result<Option<Uuid>, sqlx::Error> {
    let Some(found) = find_by_ref(conn, me).await? else { return Ok(None) };
    let details = json!({"k8s_namespace": me.namespace, "k8s_name": me.name, "slug": found.row.slug});
    audit::record(conn, Some(found.id), "organization.deleted", "organization", found.id, details).await?;
    sqlx::query!("DELETE FROM organizations WHERE id = $1", found.id).execute(conn).await?;
    Ok(Some(found.id))
}

/// `deletionPolicy: Retain`: leaves the data and forgets the Kubernetes reference, so a new
/// resource with the same slug adopts it later.
pub async fn detach(conn: &mut PgConnection, me: &K8sRef) -> Result<Option<Uuid>, sqlx::Error> {
    let Some(found) = find_by_ref(conn, me).await? else { return Ok(None) };
    sqlx::query!("UPDATE organizations SET k8s_namespace = NULL, k8s_name = NULL WHERE id = $1", found.id)
        .execute(&mut *conn)
        .await?;
    let details = json!({"k8s_namespace": me.namespace, "k8s_name": me.name});
    audit::record(conn, Some(found.id), "organization.detached", "organization", found.id, details).await?;
    Ok(Some(found.id))
}
