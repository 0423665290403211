//! `workspaces` and their default channels.

use super::{Applied, audit, k8s_ref};
use crate::plan::workspace::WorkspaceRow;
use crate::plan::{K8sRef, Observed, RowAction, plan_row};
use serde_json::json;
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};
use std::collections::BTreeSet;
use uuid::Uuid;

/// A workspace row with the organization it belongs to.
pub type Found = (Uuid, Observed<WorkspaceRow>);

const COLUMNS: &str =
    "id, organization_id, slug, display_name, message_retention_days, guest_access, k8s_namespace, k8s_name";

fn observed(row: PgRow) -> Result<Found, sqlx::Error> {
    Ok((
        row.try_get("organization_id")?,
        Observed {
            id: row.try_get("id")?,
            managed_by: k8s_ref(row.try_get("k8s_namespace")?, row.try_get("k8s_name")?),
            row: WorkspaceRow {
                slug: row.try_get("slug")?,
                display_name: row.try_get("display_name")?,
                message_retention_days: row.try_get("message_retention_days")?,
                guest_access: row.try_get("guest_access")?,
            },
        },
    ))
}

pub async fn find_by_ref(conn: &mut PgConnection, me: &K8sRef) -> Result<Option<Found>, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} FROM workspaces WHERE k8s_namespace = $1 AND k8s_name = $2");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(&me.namespace).bind(&me.name).fetch_optional(conn).await?;
    row.map(observed).transpose()
}

async fn find_by_slug(
    conn: &mut PgConnection,
    organization_id: Uuid,
    slug: &str,
) -> Result<Option<Found>, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} FROM workspaces WHERE organization_id = $1 AND slug = $2");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(organization_id).bind(slug).fetch_optional(conn).await?;
    row.map(observed).transpose()
}

/// Brings the workspace declared by `me`, in `organization_id`, to `desired`.
pub async fn apply(
    conn: &mut PgConnection,
    organization_id: Uuid,
    desired: &WorkspaceRow,
    me: &K8sRef,
) -> Result<Applied, sqlx::Error> {
    let ours = find_by_ref(conn, me).await?;
    if let Some((other_org, found)) = &ours
        && *other_org != organization_id
    {
        return Ok(Applied::Conflict(format!(
            "the workspace row {} belongs to another organization ({other_org}); organizationRef cannot change",
            found.id
        )));
    }
    let same_slug = find_by_slug(conn, organization_id, &desired.slug).await?;
    let action = plan_row(desired, me, ours.as_ref().map(|(_, o)| o), same_slug.as_ref().map(|(_, o)| o));
    let created = match &action {
        RowAction::Create => {
            let id: Uuid = sqlx::query_scalar(
                "INSERT INTO workspaces (organization_id, slug, display_name, message_retention_days, guest_access,
                     k8s_namespace, k8s_name)
                 VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
            )
            .bind(organization_id)
            .bind(&desired.slug)
            .bind(&desired.display_name)
            .bind(desired.message_retention_days)
            .bind(desired.guest_access)
            .bind(&me.namespace)
            .bind(&me.name)
            .fetch_one(&mut *conn)
            .await?;
            let details = json!({"k8s_namespace": me.namespace, "k8s_name": me.name, "slug": desired.slug});
            audit::record(conn, Some(organization_id), "workspace.provisioned", "workspace", id, details).await?;
            Some(id)
        }
        RowAction::Adopt { id, .. } | RowAction::Update { id, .. } => {
            sqlx::query(
                "UPDATE workspaces SET slug = $2, display_name = $3, message_retention_days = $4, guest_access = $5,
                     k8s_namespace = $6, k8s_name = $7
                 WHERE id = $1",
            )
            .bind(id)
            .bind(&desired.slug)
            .bind(&desired.display_name)
            .bind(desired.message_retention_days)
            .bind(desired.guest_access)
            .bind(&me.namespace)
            .bind(&me.name)
            .execute(&mut *conn)
            .await?;
            None
        }
        RowAction::UpToDate { .. } | RowAction::Conflict { .. } => None,
    };
    Ok(Applied::from_action(&action, created))
}

/// Names of the channels the workspace has (archived ones included).
pub async fn channel_names(conn: &mut PgConnection, workspace_id: Uuid) -> Result<BTreeSet<String>, sqlx::Error> {
    let names: Vec<String> =
        sqlx::query_scalar("SELECT name::text FROM conversations WHERE workspace_id = $1 AND kind = 'channel'")
            .bind(workspace_id)
            .fetch_all(conn)
            .await?;
    Ok(names.into_iter().collect())
}

/// Creates a channel with no members and no key generation yet (its first member's client
/// uploads generation 1).
pub async fn create_channel(
    conn: &mut PgConnection,
    organization_id: Uuid,
    workspace_id: Uuid,
    name: &str,
) -> Result<Uuid, sqlx::Error> {
    sqlx::query_scalar(
        "INSERT INTO conversations (organization_id, workspace_id, kind, name) VALUES ($1, $2, 'channel', $3)
         RETURNING id",
    )
    .bind(organization_id)
    .bind(workspace_id)
    .bind(name)
    .fetch_one(conn)
    .await
}

/// `deletionPolicy: Delete`: audits, then deletes the workspace and (by cascade) its
/// conversations, memberships, webhooks and bots.
pub async fn delete(conn: &mut PgConnection, me: &K8sRef) -> Result<Option<Uuid>, sqlx::Error> {
    let Some((organization_id, found)) = find_by_ref(conn, me).await? else { return Ok(None) };
    let details = json!({"k8s_namespace": me.namespace, "k8s_name": me.name, "slug": found.row.slug});
    audit::record(conn, Some(organization_id), "workspace.deleted", "workspace", found.id, details).await?;
    sqlx::query("DELETE FROM workspaces WHERE id = $1").bind(found.id).execute(conn).await?;
    Ok(Some(found.id))
}

/// `deletionPolicy: Retain`: keeps the workspace and forgets the Kubernetes reference.
pub async fn detach(conn: &mut PgConnection, me: &K8sRef) -> Result<Option<Uuid>, sqlx::Error> {
    let Some((organization_id, found)) = find_by_ref(conn, me).await? else { return Ok(None) };
    sqlx::query("UPDATE workspaces SET k8s_namespace = NULL, k8s_name = NULL WHERE id = $1")
        .bind(found.id)
        .execute(&mut *conn)
        .await?;
    let details = json!({"k8s_namespace": me.namespace, "k8s_name": me.name});
    audit::record(conn, Some(organization_id), "workspace.detached", "workspace", found.id, details).await?;
    Ok(Some(found.id))
}
