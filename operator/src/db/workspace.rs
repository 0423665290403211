//! `workspaces` and their default channels.

use super::{Applied, audit, k8s_ref};
use crate::plan::workspace::WorkspaceRow;
use crate::plan::{K8sRef, Observed, RowAction, plan_row};
use serde_json::json;
use sqlx::PgConnection;
use std::collections::BTreeSet;
use uuid::Uuid;

/// A workspace row with the organization it belongs to.
pub type Found = (Uuid, Observed<WorkspaceRow>);

/// A `workspaces` row as the operator reads it.
struct Record {
    id: Uuid,
    organization_id: Uuid,
    slug: String,
    display_name: String,
    message_retention_days: Option<i32>,
    guest_access: bool,
    k8s_namespace: Option<String>,
    k8s_name: Option<String>,
}

impl From<Record> for Found {
    fn from(r: Record) -> Self {
        let row = WorkspaceRow {
            slug: r.slug,
            display_name: r.display_name,
            message_retention_days: r.message_retention_days,
            guest_access: r.guest_access,
        };
        (r.organization_id, Observed { id: r.id, managed_by: k8s_ref(r.k8s_namespace, r.k8s_name), row })
    }
}

pub async fn find_by_ref(conn: &mut PgConnection, me: &K8sRef) -> Result<Option<Found>, sqlx::Error> {
    let found = sqlx::query_as!(
        Record,
        r#"SELECT id, organization_id, slug::text AS "slug!", display_name, message_retention_days, guest_access,
                  k8s_namespace, k8s_name
             FROM workspaces WHERE k8s_namespace = $1 AND k8s_name = $2"#,
        me.namespace,
        me.name
    )
    .fetch_optional(conn)
    .await?;
    Ok(found.map(Found::from))
}

async fn find_by_slug(
    conn: &mut PgConnection,
    organization_id: Uuid,
    slug: &str,
) -> Result<Option<Found>, sqlx::Error> {
    let found = sqlx::query_as!(
        Record,
        r#"SELECT id, organization_id, slug::text AS "slug!", display_name, message_retention_days, guest_access,
                  k8s_namespace, k8s_name
             FROM workspaces WHERE organization_id = $1 AND slug = $2"#,
        organization_id,
        slug
    )
    .fetch_optional(conn)
    .await?;
    Ok(found.map(Found::from))
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
            let id = write(conn, None, organization_id, desired, me).await?;
            let details = json!({"k8s_namespace": me.namespace, "k8s_name": me.name, "slug": desired.slug});
            audit::record(conn, Some(organization_id), "workspace.provisioned", "workspace", id, details).await?;
            Some(id)
        }
        RowAction::Adopt { id, .. } | RowAction::Update { id, .. } => {
            write(conn, Some(*id), organization_id, desired, me).await?;
            None
        }
        RowAction::UpToDate { .. } | RowAction::Conflict { .. } => None,
    };
    Ok(Applied::from_action(&action, created))
}

/// Writes the declared row, managed by `me`: a new one in `organization_id` (`id` is `None`), or
/// over row `id` (whose organization never changes). One statement for both, so the columns are
/// listed once. Returns the row's id.
async fn write(
    conn: &mut PgConnection,
    id: Option<Uuid>,
    organization_id: Uuid,
    desired: &WorkspaceRow,
    me: &K8sRef,
) -> Result<Uuid, sqlx::Error> {
    sqlx::query_scalar!(
        "INSERT INTO workspaces (id, organization_id, slug, display_name, message_retention_days, guest_access,
             k8s_namespace, k8s_name)
         VALUES (coalesce($1, conclave_uuid_v7()), $2, $3, $4, $5, $6, $7, $8)
         ON CONFLICT (id) DO UPDATE SET slug = EXCLUDED.slug, display_name = EXCLUDED.display_name,
             message_retention_days = EXCLUDED.message_retention_days, guest_access = EXCLUDED.guest_access,
             k8s_namespace = EXCLUDED.k8s_namespace, k8s_name = EXCLUDED.k8s_name
         RETURNING id",
        id,
        organization_id,
        desired.slug,
        desired.display_name,
        desired.message_retention_days,
        desired.guest_access,
        me.namespace,
        me.name
    )
    .fetch_one(conn)
    .await
}

/// Names of the channels the workspace has (archived ones included).
pub async fn channel_names(conn: &mut PgConnection, workspace_id: Uuid) -> Result<BTreeSet<String>, sqlx::Error> {
    let names = sqlx::query_scalar!(
        r#"SELECT name::text AS "name!" FROM conversations WHERE workspace_id = $1 AND kind = 'channel'"#,
        workspace_id
    )
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
    sqlx::query_scalar!(
        "INSERT INTO conversations (organization_id, workspace_id, kind, name) VALUES ($1, $2, 'channel', $3)
         RETURNING id",
        organization_id,
        workspace_id,
        name
    )
    .fetch_one(conn)
    .await
}

/// `deletionPolicy: Delete`: audits, then deletes the workspace and (by cascade) its
/// conversations, memberships, webhooks and bots.
pub async fn delete(conn: &mut PgConnection, me: &K8sRef) -> Result<Option<Uuid>, sqlx::Error> {
    let Some((organization_id, found)) = find_by_ref(conn, me).await? else { return Ok(None) };
    let details = json!({"k8s_namespace": me.namespace, "k8s_name": me.name, "slug": found.row.slug});
    audit::record(conn, Some(organization_id), "workspace.deleted", "workspace", found.id, details).await?;
    sqlx::query!("DELETE FROM workspaces WHERE id = $1", found.id).execute(conn).await?;
    Ok(Some(found.id))
}

/// `deletionPolicy: Retain`: keeps the workspace and forgets the Kubernetes reference.
pub async fn detach(conn: &mut PgConnection, me: &K8sRef) -> Result<Option<Uuid>, sqlx::Error> {
    let Some((organization_id, found)) = find_by_ref(conn, me).await? else { return Ok(None) };
    sqlx::query!("UPDATE workspaces SET k8s_namespace = NULL, k8s_name = NULL WHERE id = $1", found.id)
        .execute(&mut *conn)
        .await?;
    let details = json!({"k8s_namespace": me.namespace, "k8s_name": me.name});
    audit::record(conn, Some(organization_id), "workspace.detached", "workspace", found.id, details).await?;
    Ok(Some(found.id))
}
