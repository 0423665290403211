//! An Organization in PostgreSQL: [`provision`] and [`cleanup`].

use super::{Note, Outcome, SyncError, applied_note, violation_or};
use crate::conditions::{Readiness, reason};
use crate::db::{self, Applied};
use crate::plan::{self, K8sRef};
use conclave_resources::organization::OrganizationStatus;
use conclave_resources::{DeletionPolicy, Organization};
use kube::ResourceExt;
use sqlx::PgConnection;

pub fn k8s_ref(org: &Organization) -> K8sRef {
    K8sRef::new(org.namespace().unwrap_or_default(), org.name_any())
}

/// Creates or repairs the organization, invites initial owners not invited yet, and reads the
/// counts for the status. The caller commits the transaction.
pub async fn provision(conn: &mut PgConnection, org: &Organization) -> Result<Outcome<OrganizationStatus>, SyncError> {
    let desired = match plan::organization::desired(org) {
        Ok(desired) => desired,
        Err(invalid) => return Ok(Outcome::blocked(reason::INVALID_SPEC, invalid.0)),
    };
    let me = k8s_ref(org);
    let applied = match db::organization::apply(conn, &desired, &me).await {
        Ok(applied) => applied,
        Err(err) => return violation_or(err),
    };
    let id = match &applied {
        Applied::Conflict(message) => {
            return Ok(Outcome::blocked(reason::CONFLICT, format!("slug {:?}: {message}", desired.slug)));
        }
        other => other.id().unwrap_or_default(),
    };
    let mut notes: Vec<Note> = applied_note("organization", &applied).into_iter().collect();
    let known = db::organization::known_emails(conn, id).await?;
    for email in plan::organization::owners_to_invite(org, &known) {
        db::organization::invite_owner(conn, id, &email).await?;
        notes.push(Note::normal("OwnerInvited", format!("invited {email} as an owner")));
    }
    let (members, workspaces) = db::organization::counts(conn, id).await?;
    let pending = db::organization::open_invitations(conn, id).await?;
    Ok(Outcome {
        readiness: Readiness::ready(reason::PROVISIONED, format!("organization {} is provisioned", desired.slug)),
        status: OrganizationStatus {
            organization_id: Some(id.to_string()),
            member_count: Some(members),
            workspace_count: Some(workspaces),
            pending_invitations: Some(pending),
            ..Default::default()
        },
        notes,
    })
}

/// Applies the deletion policy. Returns the event to publish.
pub async fn cleanup(conn: &mut PgConnection, org: &Organization) -> Result<Note, SyncError> {
    let me = k8s_ref(org);
    Ok(match org.spec.deletion_policy {
        DeletionPolicy::Delete => match db::organization::delete(conn, &me).await? {
            Some(id) => Note::normal("Deleted", format!("organization {id} and all its data deleted (audited)")),
            None => Note::normal("Deleted", "no organization row to delete"),
        },
        DeletionPolicy::Retain => match db::organization::detach(conn, &me).await? {
            Some(id) => Note::normal("Detached", format!("organization {id} retained in PostgreSQL and detached")),
            None => Note::normal("Detached", "no organization row to detach"),
        },
    })
}
