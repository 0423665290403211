//! The Workspace controller.

use super::{Context, Error, Wake, api_for, cleanup, error_policy, finish};
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
) -> impl Stream<Item = Result<(ObjectRef<Workspace>, Action), impl std::fmt::Display>> {
    let workspaces = api_for::<Workspace>(&ctx.client, namespace);
    let orgs = api_for::<Organization>(&ctx.client, namespace);
    let controller = Controller::new(workspaces, watcher::Config::default()).with_config(ctx.controller_config());
    let store = controller.store();
    // When an Organization appears (or is provisioned), the Workspaces waiting for it resolve.
    // Its other changes (its counts, which each Workspace's provisioning moves) wake nobody.
    let wake = Wake::new(super::organization_part);
    controller
        .watches(orgs, watcher::Config::default(), move |org: Organization| {
            if !wake.changed(&org) {
                return Vec::new();
            }
            let ns = org.namespace().unwrap_or_default();
            let name = org.name_any();
            store
                .state()
                .into_iter()
                .filter(|ws| ws.namespace().as_deref() == Some(&ns) && ws.spec.organization_ref.name == name)
                .map(|ws| ObjectRef::from_obj(&*ws))
                .collect::<Vec<_>>()
        })
        .shutdown_on_signal()
        .run(reconcile, error_policy, ctx)
}

async fn reconcile(ws: Arc<Workspace>, ctx: Arc<Context>) -> Result<Action, Error> {
    let _timer = ctx.metrics.start("Workspace");
    let api: Api<Workspace> = Api::namespaced(ctx.client.clone(), &ws.namespace().unwrap_or_default());
    finalizer(&api, FINALIZER, ws, |event| async {
        match event {
            Event::Apply(ws) => apply(&ws, &ctx).await,
            Event::Cleanup(ws) => {
                let target = ws.clone();
                cleanup(&ctx, &*ws, |mut conn| async move {
                    let mut tx = sqlx::Connection::begin(&mut *conn).await?;
                    let note = sync::workspace::cleanup(&mut tx, &target).await?;
                    tx.commit().await?;
                    Ok(note)
                })
                .await
            }
        }
    })
    .await
    .map_err(Error::from)
}

async fn apply(ws: &Workspace, ctx: &Context) -> Result<Action, Error> {
    let orgs: Api<Organization> = Api::namespaced(ctx.client.clone(), &ws.namespace().unwrap_or_default());
    let org = super::get_reference(&orgs, &ws.spec.organization_ref.name).await?;
    let mut tx = ctx.pool.begin().await?;
    let outcome = sync::workspace::provision(&mut tx, ws, org.as_ref()).await?;
    tx.commit().await?;
    finish(ctx, ws, outcome, None).await
}
