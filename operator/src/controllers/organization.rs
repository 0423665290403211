//! The Organization controller.

use super::{Context, Error, Wake, api_for, cleanup, error_policy, finish};
use crate::sync;
use crate::sync::Outcome;
use conclave_resources::organization::OrganizationStatus;
use conclave_resources::{FINALIZER, Organization, Workspace};
use futures::Stream;
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{Event, finalizer};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{Controller, watcher};
use kube::{Api, ResourceExt};
use std::sync::Arc;

pub fn controller(
    ctx: Arc<Context>,
    namespace: Option<&str>,
) -> impl Stream<Item = Result<(ObjectRef<Organization>, Action), impl std::fmt::Display>> {
    let orgs = api_for::<Organization>(&ctx.client, namespace);
    let workspaces = api_for::<Workspace>(&ctx.client, namespace);
    // A Workspace's provisioning or deletion changes its Organization's counts and unblocks its
    // deletion: reconcile the Organization it names. Its other writes do not.
    let wake = Wake::new(super::workspace_part);
    Controller::new(orgs, watcher::Config::default())
        .with_config(ctx.controller_config())
        .watches(workspaces, watcher::Config::default(), move |ws: Workspace| {
            let ns = ws.namespace().unwrap_or_default();
            wake.changed(&ws).then(|| ObjectRef::new(&ws.spec.organization_ref.name).within(&ns))
        })
        .shutdown_on_signal()
        .run(reconcile, error_policy, ctx)
}

async fn reconcile(org: Arc<Organization>, ctx: Arc<Context>) -> Result<Action, Error> {
    let _timer = ctx.metrics.start("Organization");
    let api: Api<Organization> = Api::namespaced(ctx.client.clone(), &org.namespace().unwrap_or_default());
    finalizer(&api, FINALIZER, org, |event| async {
        match event {
            Event::Apply(org) => apply(&org, &ctx).await,
            Event::Cleanup(org) => delete(&org, &ctx).await,
        }
    })
    .await
    .map_err(Error::from)
}

async fn apply(org: &Organization, ctx: &Context) -> Result<Action, Error> {
    let mut tx = ctx.pool.begin().await?;
    let mut outcome = sync::organization::provision(&mut tx, org).await?;
    if let Some(id) = outcome.status.organization_id.as_deref().and_then(|id| id.parse().ok()) {
        let last = org.status.as_ref().and_then(|s| s.audit_chain.as_ref());
        let every = ctx.config.audit_verify_seconds;
        let (chain, note) = sync::organization::audit_chain(&mut tx, id, last, chrono::Utc::now(), every).await?;
        outcome.status.audit_chain = chain;
        outcome.notes.extend(note);
    }
    tx.commit().await?;
    let uid = org.uid().unwrap_or_default();
    if only_counts_changed(org, &outcome)
        && let Some(wait) = ctx.counts_wait(&uid)
    {
        ctx.clear_failures(&uid);
        return Ok(Action::requeue(wait));
    }
    finish(ctx, org, outcome, None).await
}

/// Whether the reconcile changes nothing of the Organization's status but its counts: it is and
/// stays Ready, for this generation, with the same id, and publishes nothing.
fn only_counts_changed(org: &Organization, outcome: &Outcome<OrganizationStatus>) -> bool {
    let Some(current) = org.status.as_ref() else { return false };
    let counts = |s: &OrganizationStatus| (s.member_count, s.workspace_count, s.pending_invitations);
    outcome.readiness.ready
        && outcome.notes.is_empty()
        && crate::conditions::ready_in(&current.conditions)
        && current.observed_generation == org.metadata.generation
        && current.organization_id == outcome.status.organization_id
        && current.audit_chain == outcome.status.audit_chain
        && counts(current) != counts(&outcome.status)
}

/// Waits for the Workspaces that name this Organization to be gone (their finalizers run their
/// own deletion policy first), then applies this one's.
async fn delete(org: &Organization, ctx: &Context) -> Result<Action, Error> {
    let ns = org.namespace().unwrap_or_default();
    let workspaces: Api<Workspace> = Api::namespaced(ctx.client.clone(), &ns);
    let left: Vec<String> = workspaces
        .list(&Default::default())
        .await?
        .into_iter()
        .filter(|ws| ws.spec.organization_ref.name == org.name_any())
        .map(|ws| ws.name_any())
        .collect();
    if !left.is_empty() && !org.annotations().contains_key(conclave_resources::ANNOTATION_FORCE_DETACH) {
        return Err(Error::Waiting(format!("waiting for its workspaces to be deleted first: {}", left.join(", "))));
    }
    cleanup(ctx, org, |mut conn| async move {
        let mut tx = sqlx::Connection::begin(&mut *conn).await?;
        let note = sync::organization::cleanup(&mut tx, org).await?;
        tx.commit().await?;
        Ok(note)
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conditions::Readiness;
    use serde_json::json;

    fn ready_org(workspaces: i64) -> Organization {
        serde_json::from_value(json!({
            "apiVersion": "conclave.io/v1alpha1", "kind": "Organization",
            "metadata": {"name": "acme", "namespace": "t", "uid": "u", "generation": 2},
            "spec": {"slug": "acme", "displayName": "Acme"},
            "status": {
                "organizationId": "id", "workspaceCount": workspaces, "memberCount": 0, "observedGeneration": 2,
                "conditions": [{"type": "Ready", "status": "True", "reason": "Provisioned", "message": "",
                                "lastTransitionTime": "2026-01-01T00:00:00Z"}],
            },
        }))
        .expect("a valid fixture")
    }

    fn outcome(workspaces: i64) -> Outcome<OrganizationStatus> {
        Outcome {
            readiness: Readiness::ready("Provisioned", "organization acme is provisioned"),
            status: OrganizationStatus {
                organization_id: Some("id".into()),
                workspace_count: Some(workspaces),
                member_count: Some(0),
                ..Default::default()
            },
            notes: vec![],
        }
    }

    #[test]
    fn a_change_of_counts_alone_is_told_apart_from_any_other() {
        assert!(only_counts_changed(&ready_org(1), &outcome(2)));
        assert!(!only_counts_changed(&ready_org(2), &outcome(2)), "nothing changed: finish skips the write");
        let mut new_generation = ready_org(1);
        new_generation.metadata.generation = Some(3);
        assert!(!only_counts_changed(&new_generation, &outcome(2)), "a spec change is written at once");
        let mut not_ready = outcome(2);
        not_ready.readiness = Readiness::not_ready("Conflict", "x");
        assert!(!only_counts_changed(&ready_org(1), &not_ready));
        let mut with_event = outcome(2);
        with_event.notes.push(crate::sync::Note::normal("OwnerInvited", "x"));
        assert!(!only_counts_changed(&ready_org(1), &with_event));
        let mut unprovisioned = ready_org(1);
        unprovisioned.status = None;
        assert!(!only_counts_changed(&unprovisioned, &outcome(2)), "the first status is written at once");
    }
}
