//! The Organization controller.

use super::{Context, Error, api_for, cleanup, error_policy, finish};
use crate::sync;
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
    // A Workspace's change (or deletion) changes its Organization's counts and unblocks its
    // deletion: reconcile the Organization it names.
    Controller::new(orgs, watcher::Config::default())
        .with_config(ctx.controller_config())
        .watches(workspaces, watcher::Config::default(), |ws: Workspace| {
            let ns = ws.namespace().unwrap_or_default();
            Some(ObjectRef::new(&ws.spec.organization_ref.name).within(&ns))
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
    let outcome = sync::organization::reconcile(&mut tx, org).await?;
    tx.commit().await?;
    finish(ctx, org, outcome, None).await
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
