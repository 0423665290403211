//! `organizations` and the initial owners' invitations.

use super::{Applied, audit, k8s_ref};
use crate::plan::organization::OrganizationRow;
use crate::plan::{K8sRef, Observed, RowAction, plan_row};
use crate::secrets;
use serde_json::json;
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};
use std::collections::BTreeSet;
use uuid::Uuid;

const COLUMNS: &str = "id, slug, display_name, max_members, max_workspaces, attachment_quota_bytes,
    message_retention_days, require_totp, allowed_email_domains, session_lifetime_seconds, k8s_namespace, k8s_name";

fn observed(row: PgRow) -> Result<Observed<OrganizationRow>, sqlx::Error> {
    Ok(Observed {
        id: row.try_get("id")?,
        managed_by: k8s_ref(row.try_get("k8s_namespace")?, row.try_get("k8s_name")?),
        row: OrganizationRow {
            slug: row.try_get("slug")?,
            display_name: row.try_get("display_name")?,
            max_members: row.try_get("max_members")?,
            max_workspaces: row.try_get("max_workspaces")?,
            attachment_quota_bytes: row.try_get("attachment_quota_bytes")?,
            message_retention_days: row.try_get("message_retention_days")?,
            require_totp: row.try_get("require_totp")?,
            allowed_email_domains: row.try_get("allowed_email_domains")?,
            session_lifetime_seconds: row.try_get("session_lifetime_seconds")?,
        },
    })
}

pub async fn find_by_ref(
    conn: &mut PgConnection,
    me: &K8sRef,
) -> Result<Option<Observed<OrganizationRow>>, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} FROM organizations WHERE k8s_namespace = $1 AND k8s_name = $2");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(&me.namespace).bind(&me.name).fetch_optional(conn).await?;
    row.map(observed).transpose()
}

pub async fn find_by_slug(
    conn: &mut PgConnection,
    slug: &str,
) -> Result<Option<Observed<OrganizationRow>>, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} FROM organizations WHERE slug = $1");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(slug).fetch_optional(conn).await?;
    row.map(observed).transpose()
}

/// Brings the organization declared by `me` to `desired`: creates, adopts a retained row with
/// the same slug, repairs drift, or reports a conflict.
pub async fn apply(conn: &mut PgConnection, desired: &OrganizationRow, me: &K8sRef) -> Result<Applied, sqlx::Error> {
    let ours = find_by_ref(conn, me).await?;
    let same_slug = find_by_slug(conn, &desired.slug).await?;
    let action = plan_row(desired, me, ours.as_ref(), same_slug.as_ref());
    let created = match &action {
        RowAction::Create => {
            let id: Uuid = sqlx::query_scalar(
                "INSERT INTO organizations (slug, display_name, max_members, max_workspaces, attachment_quota_bytes,
                     message_retention_days, require_totp, allowed_email_domains, session_lifetime_seconds,
                     k8s_namespace, k8s_name)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING id",
            )
            .bind(&desired.slug)
            .bind(&desired.display_name)
            .bind(desired.max_members)
            .bind(desired.max_workspaces)
            .bind(desired.attachment_quota_bytes)
            .bind(desired.message_retention_days)
            .bind(desired.require_totp)
            .bind(&desired.allowed_email_domains)
            .bind(desired.session_lifetime_seconds)
            .bind(&me.namespace)
            .bind(&me.name)
            .fetch_one(&mut *conn)
            .await?;
            let details = json!({"k8s_namespace": me.namespace, "k8s_name": me.name, "slug": desired.slug});
            audit::record(conn, Some(id), "organization.provisioned", "organization", id, details).await?;
            Some(id)
        }
        RowAction::Adopt { id, .. } | RowAction::Update { id, .. } => {
            sqlx::query(
                "UPDATE organizations SET slug = $2, display_name = $3, max_members = $4, max_workspaces = $5,
                     attachment_quota_bytes = $6, message_retention_days = $7, require_totp = $8,
                     allowed_email_domains = $9, session_lifetime_seconds = $10, k8s_namespace = $11, k8s_name = $12
                 WHERE id = $1",
            )
            .bind(id)
            .bind(&desired.slug)
            .bind(&desired.display_name)
            .bind(desired.max_members)
            .bind(desired.max_workspaces)
            .bind(desired.attachment_quota_bytes)
            .bind(desired.message_retention_days)
            .bind(desired.require_totp)
            .bind(&desired.allowed_email_domains)
            .bind(desired.session_lifetime_seconds)
            .bind(&me.namespace)
            .bind(&me.name)
            .execute(&mut *conn)
            .await?;
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

/// Members and workspaces, for the status.
pub async fn counts(conn: &mut PgConnection, id: Uuid) -> Result<(i64, i64), sqlx::Error> {
    sqlx::query_as(
        "SELECT (SELECT count(*) FROM organization_memberships WHERE organization_id = $1),
                (SELECT count(*) FROM workspaces WHERE organization_id = $1)",
    )
    .bind(id)
    .fetch_one(conn)
    .await
}

/// Addresses that already have a membership or any invitation in the organization.
pub async fn known_emails(conn: &mut PgConnection, id: Uuid) -> Result<BTreeSet<String>, sqlx::Error> {
    let emails: Vec<String> = sqlx::query_scalar(
        "SELECT email::text FROM organization_invitations WHERE organization_id = $1
         UNION
         SELECT u.email::text FROM organization_memberships m JOIN user_accounts u ON u.id = m.user_id
          WHERE m.organization_id = $1",
    )
    .bind(id)
    .fetch_all(conn)
    .await?;
    Ok(emails.into_iter().collect())
}

/// Open invitations, for the status.
pub async fn open_invitations(conn: &mut PgConnection, id: Uuid) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT count(*) FROM organization_invitations
          WHERE organization_id = $1 AND accepted_at IS NULL AND revoked_at IS NULL AND expires_at > now()",
    )
    .bind(id)
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
    let id: Uuid = sqlx::query_scalar(
        "INSERT INTO organization_invitations (organization_id, email, role, token_hash, expires_at)
         VALUES ($1, $2, 'owner', $3, now() + make_interval(days => $4)) RETURNING id",
    )
    .bind(organization_id)
    .bind(email)
    .bind(secrets::digest(&token))
    .bind(INVITATION_DAYS)
    .fetch_one(&mut *conn)
    .await?;
    let recipient: Option<Uuid> = sqlx::query_scalar("SELECT id FROM user_accounts WHERE email = $1")
        .bind(email)
        .fetch_optional(&mut *conn)
        .await?;
    if let Some(user_id) = recipient {
        sqlx::query(
            "INSERT INTO outbound_notifications (organization_id, channel, event_type, recipient_user_id, payload)
             VALUES ($1, 'email', 'organization.invitation_created', $2, $3)",
        )
        .bind(organization_id)
        .bind(user_id)
        .bind(json!({"invitation_id": id, "email": email, "role": "owner"}))
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
    sqlx::query("DELETE FROM organizations WHERE id = $1").bind(found.id).execute(conn).await?;
    Ok(Some(found.id))
}

/// `deletionPolicy: Retain`: leaves the data and forgets the Kubernetes reference, so a new
/// resource with the same slug adopts it later.
pub async fn detach(conn: &mut PgConnection, me: &K8sRef) -> Result<Option<Uuid>, sqlx::Error> {
    let Some(found) = find_by_ref(conn, me).await? else { return Ok(None) };
    sqlx::query("UPDATE organizations SET k8s_namespace = NULL, k8s_name = NULL WHERE id = $1")
        .bind(found.id)
        .execute(&mut *conn)
        .await?;
    let details = json!({"k8s_namespace": me.namespace, "k8s_name": me.name});
    audit::record(conn, Some(found.id), "organization.detached", "organization", found.id, details).await?;
    Ok(Some(found.id))
}
