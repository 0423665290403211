//! A Workspace in PostgreSQL: [`provision`] and [`cleanup`].

use super::{Note, Outcome, SyncError, applied_note, violation_or};
use crate::conditions::{Readiness, reason};
use crate::db::{self, Applied};
use crate::plan::{self, K8sRef};
use conclave_resources::workspace::WorkspaceStatus;
use conclave_resources::{DeletionPolicy, Organization, Workspace};
use kube::ResourceExt;
use sqlx::PgConnection;
use uuid::Uuid;

pub fn k8s_ref(ws: &Workspace) -> K8sRef {
    K8sRef::new(ws.namespace().unwrap_or_default(), ws.name_any())
}

/// The organization id of a referenced Organization, or the outcome that explains why there is
/// none (not found in Kubernetes, or not provisioned yet).
pub async fn resolve_organization<S: Default>(
    conn: &mut PgConnection,
    namespace: &str,
    name: &str,
    organization: Option<&Organization>,
) -> Result<Result<Uuid, Outcome<S>>, SyncError> {
    if organization.is_none() {
        return Ok(Err(Outcome::blocked(
            reason::ORGANIZATION_NOT_FOUND,
            format!("Organization {name} does not exist in namespace {namespace}"),
        )));
    }
    match db::organization::find_by_ref(conn, &K8sRef::new(namespace, name)).await? {
        Some(found) => Ok(Ok(found.id)),
        None => Ok(Err(Outcome::blocked(
            reason::ORGANIZATION_NOT_READY,
            format!("Organization {name} is not provisioned yet"),
        ))),
    }
}

/// Creates or repairs the workspace and its default channels. `organization` is the
/// referenced Organization as found in Kubernetes (`None`: it does not exist).
pub async fn provision(
    conn: &mut PgConnection,
    ws: &Workspace,
    organization: Option<&Organization>,
) -> Result<Outcome<WorkspaceStatus>, SyncError> {
    let desired = match plan::workspace::desired(ws) {
        Ok(desired) => desired,
        Err(invalid) => return Ok(Outcome::blocked(reason::INVALID_SPEC, invalid.0)),
    };
    let me = k8s_ref(ws);
    let organization_id =
        match resolve_organization(conn, &me.namespace, &ws.spec.organization_ref.name, organization).await? {
            Ok(id) => id,
            Err(outcome) => return Ok(outcome),
        };
    let applied = match db::workspace::apply(conn, organization_id, &desired, &me).await {
        Ok(applied) => applied,
        Err(err) => return violation_or(err),
    };
    let id = match &applied {
        Applied::Conflict(message) => {
            return Ok(Outcome::blocked(reason::CONFLICT, format!("workspace {:?}: {message}", desired.slug)));
        }
        other => other.id().unwrap_or_default(),
    };
    let mut notes: Vec<Note> = applied_note("workspace", &applied).into_iter().collect();
    let existing = db::workspace::channel_names(conn, id).await?;
    for channel in plan::workspace::channels_to_create(ws, &existing) {
        db::workspace::create_channel(conn, organization_id, id, &channel).await?;
        notes.push(Note::normal("ChannelCreated", format!("created the default channel {channel}")));
    }
    Ok(Outcome {
        readiness: Readiness::ready(reason::PROVISIONED, format!("workspace {} is provisioned", desired.slug)),
        status: WorkspaceStatus {
            workspace_id: Some(id.to_string()),
            organization_id: Some(organization_id.to_string()),
            ..Default::default()
        },
        notes,
    })
}

/// Applies the deletion policy. Returns the event to publish.
pub async fn cleanup(conn: &mut PgConnection, ws: &Workspace) -> Result<Note, SyncError> {
    let me = k8s_ref(ws);
    Ok(match ws.spec.deletion_policy {
        DeletionPolicy::Delete => match db::workspace::delete(conn, &me).await? {
            Some(id) => Note::normal("Deleted", format!("workspace {id} and its conversations deleted (audited)")),
            None => Note::normal("Deleted", "no workspace row to delete"),
        },
        DeletionPolicy::Retain => match db::workspace::detach(conn, &me).await? {
            Some(id) => Note::normal("Detached", format!("workspace {id} retained in PostgreSQL and detached")),
            None => Note::normal("Detached", "no workspace row to detach"),
        },
    })
}
