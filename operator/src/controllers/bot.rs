//! The BotAgent controller: the token Secret first (the source of truth), then PostgreSQL, then
//! (with `spec.deployment`) the claim holding the bot's state (with `storage`) and the Deployment
//! that runs the bot with that Secret mounted.

use super::secret::{self, Layout};
use super::{Context, Error, Wake, api_for, cleanup, error_policy, finish, publish};
use crate::plan;
use crate::plan::bot::{PREVIOUS_TOKEN_KEY, TOKEN_KEY, secret_name};
use crate::plan::rotation::{self, SecretPlan};
use crate::secrets;
use crate::sync::{self, Note};
use chrono::{Duration, Utc};
use conclave_resources::{ANNOTATION_ROTATE_TOKEN, BotAgent, FIELD_MANAGER, FINALIZER, Workspace};
use futures::Stream;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Secret};
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{Event, finalizer};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{Controller, watcher};
use kube::{Api, Resource, ResourceExt};
use std::sync::Arc;

const LAYOUT: Layout = Layout::Fixed { current: TOKEN_KEY, previous: PREVIOUS_TOKEN_KEY };

pub fn controller(
    ctx: Arc<Context>,
    namespace: Option<&str>,
) -> impl Stream<Item = Result<(ObjectRef<BotAgent>, Action), impl std::fmt::Display>> {
    let bots = api_for::<BotAgent>(&ctx.client, namespace);
    let workspaces = api_for::<Workspace>(&ctx.client, namespace);
    let secrets = api_for::<Secret>(&ctx.client, namespace);
    let controller = Controller::new(bots, watcher::Config::default()).with_config(ctx.controller_config());
    let store = controller.store();
    let wake = Wake::new(super::workspace_part);
    controller
        .owns(secrets, watcher::Config::default().labels("app.kubernetes.io/managed-by=conclave-operator"))
        .watches(workspaces, watcher::Config::default(), move |ws: Workspace| {
            if !wake.changed(&ws) {
                return Vec::new();
            }
            let ns = ws.namespace().unwrap_or_default();
            let name = ws.name_any();
            store
                .state()
                .into_iter()
                .filter(|b| b.namespace().as_deref() == Some(&ns) && b.spec.workspace_ref.name == name)
                .map(|b| ObjectRef::from_obj(&*b))
                .collect::<Vec<_>>()
        })
        .shutdown_on_signal()
        .run(reconcile, error_policy, ctx)
}

async fn reconcile(bot: Arc<BotAgent>, ctx: Arc<Context>) -> Result<Action, Error> {
    let _timer = ctx.metrics.start("BotAgent");
    let api: Api<BotAgent> = Api::namespaced(ctx.client.clone(), &bot.namespace().unwrap_or_default());
    finalizer(&api, FINALIZER, bot, |event| async {
        match event {
            Event::Apply(bot) => apply(&bot, &ctx).await,
            Event::Cleanup(bot) => {
                let target = bot.clone();
                cleanup(&ctx, &*bot, |mut conn| async move {
                    let mut tx = sqlx::Connection::begin(&mut *conn).await?;
                    let note = sync::bot::cleanup(&mut tx, &target).await?;
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

async fn apply(bot: &BotAgent, ctx: &Context) -> Result<Action, Error> {
    let ns = bot.namespace().unwrap_or_default();
    let secrets_api: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
    let name = secret_name(&bot.name_any());
    let existing = secrets_api.get_opt(&name).await?;
    let now = Utc::now();
    let plan = rotation::plan(
        secret::read(existing.as_ref(), LAYOUT),
        bot.annotations().get(ANNOTATION_ROTATE_TOKEN).map(String::as_str),
        Duration::seconds(bot.spec.token_overlap_seconds),
        now,
        || secrets::token(secrets::BOT_TOKEN_PREFIX),
    )
    .map_err(|e| Error::Other(e.into()))?;
    if let SecretPlan::Write { state, why } = &plan {
        let (data, annotations) = secret::render(state, LAYOUT);
        secret::apply(&secrets_api, &name, bot.controller_owner_ref(&()), data, annotations).await?;
        publish(ctx, bot, &Note::normal(why.reason(), format!("bot token in Secret {name}: {why:?}"))).await;
    }
    let token = plan.state();
    let workspaces: Api<Workspace> = Api::namespaced(ctx.client.clone(), &ns);
    let ws = super::get_reference(&workspaces, &bot.spec.workspace_ref.name).await?;
    let mut tx = ctx.pool.begin().await?;
    let mut outcome = sync::bot::provision(&mut tx, bot, ws.as_ref(), token).await?;
    tx.commit().await?;
    if outcome.readiness.ready {
        // The claim first: the Deployment's pod mounts it.
        outcome.status.state_claim_name = keep_state(bot, ctx, &ns).await?;
        outcome.status.deployment_name = run(bot, ctx, &ns).await?;
    }
    finish(ctx, bot, outcome, rotation::next_deadline(token, now)).await
}

/// Keeps the Deployment that runs the bot in step with `spec.deployment`. Returns its name.
async fn run(bot: &BotAgent, ctx: &Context, ns: &str) -> Result<Option<String>, Error> {
    let name = plan::bot::deployment_name(&bot.name_any());
    let why = "spec.deployment is gone";
    owned::<Deployment>(bot, ctx, ns, &name, plan::bot::deployment(bot), ("Stopped", why)).await
}

/// Keeps the claim holding the bot's state in step with `spec.deployment.storage`. Returns its
/// name. Without `storage` the claim this operator made is deleted, and the state with it.
async fn keep_state(bot: &BotAgent, ctx: &Context, ns: &str) -> Result<Option<String>, Error> {
    let name = plan::bot::state_claim_name(&bot.name_any());
    let why = "spec.deployment.storage is gone: the bot's state with it";
    owned::<PersistentVolumeClaim>(bot, ctx, ns, &name, plan::bot::state_claim(bot), ("StateDeleted", why)).await
}

/// Applies `doc` as `name`, owned by the bot (server-side apply), or, when the spec no longer
/// asks for it (`doc` is `None`), deletes the one this operator made for this bot, saying so with
/// `note` (reason, why). Returns the name while it is wanted.
async fn owned<K>(
    bot: &BotAgent,
    ctx: &Context,
    ns: &str,
    name: &str,
    doc: Option<serde_json::Value>,
    (reason, why): (&'static str, &str),
) -> Result<Option<String>, Error>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope> + Clone + std::fmt::Debug,
    K: serde::de::DeserializeOwned + serde::Serialize,
    K::DynamicType: Default,
{
    let api: Api<K> = Api::namespaced(ctx.client.clone(), ns);
    let Some(mut doc) = doc else {
        let ours = api
            .get_opt(name)
            .await?
            .is_some_and(|d| d.owner_references().iter().any(|o| Some(o.uid.as_str()) == bot.metadata.uid.as_deref()));
        if ours {
            api.delete(name, &DeleteParams::default()).await?;
            let kind = K::kind(&K::DynamicType::default()).into_owned();
            publish(ctx, bot, &Note::normal(reason, format!("{kind} {name} deleted: {why}"))).await;
        }
        return Ok(None);
    };
    doc["metadata"]["ownerReferences"] = serde_json::json!([bot.controller_owner_ref(&())]);
    api.patch(name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&doc)).await?;
    Ok(Some(name.to_owned()))
}
