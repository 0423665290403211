//! An Organization in PostgreSQL: [`provision`], [`audit_chain`] and [`cleanup`].

use super::{Note, Outcome, SyncError, applied_note, violation_or};
use crate::conditions::{Readiness, reason};
use crate::db::{self, Applied};
use crate::plan::{self, K8sRef};
use chrono::{DateTime, Utc};
use conclave_resources::organization::{AuditChainStatus, LegalHoldSpec, OrganizationStatus};
use conclave_resources::{DeletionPolicy, Organization};
use kube::ResourceExt;
use sqlx::PgConnection;
use uuid::Uuid;

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
    let unheld = legal_holds(conn, id, &org.spec.legal_holds, &mut notes).await?;
    let (members, workspaces) = db::organization::counts(conn, id).await?;
    let pending = db::organization::open_invitations(conn, id).await?;
    let standing = db::organization::standing_holds(conn, id).await?;
    let readiness = if unheld.is_empty() {
        Readiness::ready(reason::PROVISIONED, format!("organization {} is provisioned", desired.slug))
    } else {
        Readiness::not_ready(reason::LEGAL_HOLD_TARGET_NOT_FOUND, unheld.join("; "))
    };
    Ok(Outcome {
        readiness,
        status: OrganizationStatus {
            organization_id: Some(id.to_string()),
            member_count: Some(members),
            workspace_count: Some(workspaces),
            pending_invitations: Some(pending),
            standing_legal_holds: Some(standing),
            ..Default::default()
        },
        notes,
    })
}

/// Makes the standing declared holds what `spec.legalHolds` lists: places the new ones, lifts
/// those no longer listed, and replaces (lifts, then places) one whose scope, target or reason
/// changed. Returns the holds whose target does not exist (Ready turns False): such a hold is
/// not placed, and one placed before (its target gone or renamed since) stays standing.
async fn legal_holds(
    conn: &mut PgConnection,
    org: Uuid,
    declared: &[LegalHoldSpec],
    notes: &mut Vec<Note>,
) -> Result<Vec<String>, SyncError> {
    let standing = db::organization::declared_holds(conn, org).await?;
    let mut unheld = Vec::new();
    for hold in &standing {
        if !declared.iter().any(|d| d.name == hold.name) {
            db::organization::lift_hold(conn, org, hold).await?;
            notes.push(Note::normal("LegalHoldLifted", format!("legal hold {} lifted", hold.name)));
        }
    }
    for spec in declared {
        let target = match spec.target.as_deref() {
            Some(target) => db::organization::hold_target(conn, org, spec.scope, target).await?,
            None => None,
        };
        let current = standing.iter().find(|h| h.name == spec.name);
        if let (Some(what), None) = (spec.target.as_deref(), target) {
            let kept = if current.is_some() { " (the hold placed before still stands)" } else { "" };
            unheld.push(format!(
                "legal hold {}: no {} {what:?} in this organization{kept}",
                spec.name,
                spec.scope.as_str()
            ));
            continue;
        }
        let same =
            current.is_some_and(|h| h.scope == spec.scope.as_str() && h.reason == spec.reason && h.target_id == target);
        if same {
            continue;
        }
        if let Some(current) = current {
            db::organization::lift_hold(conn, org, current).await?;
        }
        db::organization::place_hold(conn, org, &spec.name, spec.scope, target, &spec.reason).await?;
        let verb = if current.is_some() { "replaced" } else { "placed" };
        notes.push(Note::normal("LegalHoldPlaced", format!("legal hold {} {verb}", spec.name)));
    }
    Ok(unheld)
}

/// The organization's audit chain for its status: verified again when the `last` verification
/// is older than `every_seconds` (or there is none), else `last` as it was; with a Warning when
/// the chain is found broken and was not known to be.
pub async fn audit_chain(
    conn: &mut PgConnection,
    id: Uuid,
    last: Option<&AuditChainStatus>,
    now: DateTime<Utc>,
    every_seconds: u64,
) -> Result<(Option<AuditChainStatus>, Option<Note>), SyncError> {
    if !audit_check_due(last, now, every_seconds) {
        return Ok((last.cloned(), None));
    }
    let chain = db::organization::audit_chain(conn, id, now).await?;
    let note = (!chain.intact && last.is_none_or(|last| last.intact)).then(|| {
        let at = chain.first_broken_seq.unwrap_or_default();
        let problem = chain.problem.as_deref().unwrap_or("broken");
        Note::warning(
            "AuditChainBroken",
            format!("the audit trail was altered: entry {at} of {}: {problem}", chain.entries),
        )
    });
    Ok((Some(chain), note))
}

fn audit_check_due(last: Option<&AuditChainStatus>, now: DateTime<Utc>, every_seconds: u64) -> bool {
    if every_seconds == 0 {
        return false;
    }
    let verified = last.and_then(|l| DateTime::parse_from_rfc3339(&l.verified_at).ok());
    verified.is_none_or(|at| {
        let age = now.signed_duration_since(at).num_seconds();
        u64::try_from(age).is_ok_and(|age| age >= every_seconds)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_audit_chain_is_verified_again_once_its_interval_has_passed() {
        let now = DateTime::parse_from_rfc3339("2026-12-03T12:00:00Z").expect("time").to_utc();
        let at = |verified_at: &str| AuditChainStatus {
            verified_at: verified_at.into(),
            intact: true,
            ..Default::default()
        };
        assert!(audit_check_due(None, now, 3600), "never verified");
        assert!(!audit_check_due(Some(&at("2026-12-03T11:30:00Z")), now, 3600));
        assert!(audit_check_due(Some(&at("2026-12-03T11:00:00Z")), now, 3600));
        assert!(audit_check_due(Some(&at("not a time")), now, 3600), "an unreadable time is verified again");
        assert!(!audit_check_due(None, now, 0), "0 turns verification off");
        assert!(!audit_check_due(Some(&at("2026-12-03T13:00:00Z")), now, 3600), "a clock gone back waits");
    }
}
