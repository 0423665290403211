//! The WebhookEndpoint controller.

use super::secret::{self, Layout};
use super::{Context, Error, Wake, api_for, cleanup, error_policy, finish, publish};
use crate::plan::rotation::{self, SecretPlan};
use crate::plan::webhook::{GENERATED_KEY, Secrets, generated_secret_name};
use crate::sync::webhook::{Inputs, SigningSecret};
use crate::sync::{self, Note};
use base64::Engine;
use chrono::{Duration, Utc};
use conclave_credentials::webhook_secret;
use conclave_resources::{ANNOTATION_ROTATE_SECRET, FINALIZER, Organization, WebhookEndpoint, Workspace};
use futures::Stream;
use k8s_openapi::api::core::v1::Secret;
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{Event, finalizer};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{Controller, watcher};
use kube::{Api, Resource, ResourceExt};
use std::sync::Arc;

const LAYOUT: Layout = Layout::Fixed { current: GENERATED_KEY, previous: "previous-signing-secret" };

pub fn controller(
    ctx: Arc<Context>,
    namespace: Option<&str>,
) -> impl Stream<Item = Result<(ObjectRef<WebhookEndpoint>, Action), impl std::fmt::Display>> {
    let endpoints = api_for::<WebhookEndpoint>(&ctx.client, namespace);
    let controller = Controller::new(endpoints, watcher::Config::default()).with_config(ctx.controller_config());
    let (s1, s2, s3) = (controller.store(), controller.store(), controller.store());
    let (wake_ws, wake_org) = (Wake::new(super::workspace_part), Wake::new(super::organization_part));
    controller
        .owns(
            api_for::<Secret>(&ctx.client, namespace),
            watcher::Config::default().labels("app.kubernetes.io/managed-by=conclave-operator"),
        )
        .watches(api_for::<Workspace>(&ctx.client, namespace), watcher::Config::default(), move |ws: Workspace| {
            if !wake_ws.changed(&ws) {
                return Vec::new();
            }
            let (ns, name) = (ws.namespace(), ws.name_any());
            s1.state()
                .into_iter()
                .filter(|e| e.namespace() == ns && e.spec.workspace_ref.as_ref().is_some_and(|r| r.name == name))
                .map(|e| ObjectRef::from_obj(&*e))
                .collect::<Vec<_>>()
        })
        .watches(
            api_for::<Organization>(&ctx.client, namespace),
            watcher::Config::default(),
            move |org: Organization| {
                if !wake_org.changed(&org) {
                    return Vec::new();
                }
                let (ns, name) = (org.namespace(), org.name_any());
                s2.state()
                    .into_iter()
                    .filter(|e| e.namespace() == ns && e.spec.organization_ref.as_ref().is_some_and(|r| r.name == name))
                    .map(|e| ObjectRef::from_obj(&*e))
                    .collect::<Vec<_>>()
            },
        )
        // A user-managed signing Secret: its creation or change resolves the endpoint.
        .watches(api_for::<Secret>(&ctx.client, namespace), watcher::Config::default(), move |s: Secret| {
            let (ns, name) = (s.namespace(), s.name_any());
            s3.state()
                .into_iter()
                .filter(|e| e.namespace() == ns && e.spec.signing_secret_ref.as_ref().is_some_and(|r| r.name == name))
                .map(|e| ObjectRef::from_obj(&*e))
                .collect::<Vec<_>>()
        })
        .shutdown_on_signal()
        .run(reconcile, error_policy, ctx)
}

async fn reconcile(endpoint: Arc<WebhookEndpoint>, ctx: Arc<Context>) -> Result<Action, Error> {
    let _timer = ctx.metrics.start("WebhookEndpoint");
    let api: Api<WebhookEndpoint> = Api::namespaced(ctx.client.clone(), &endpoint.namespace().unwrap_or_default());
    finalizer(&api, FINALIZER, endpoint, |event| async {
        match event {
            Event::Apply(endpoint) => apply(&endpoint, &ctx).await,
            Event::Cleanup(endpoint) => {
                let target = endpoint.clone();
                cleanup(&ctx, &*endpoint, |mut conn| async move {
                    let mut tx = sqlx::Connection::begin(&mut *conn).await?;
                    let note = sync::webhook::cleanup(&mut tx, &target).await?;
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

/// The data plane's at-rest key, from the Secret named by `--at-rest-key-secret`.
pub async fn at_rest_key(ctx: &Context) -> Result<Option<Vec<u8>>, Error> {
    let Some((ns, name)) = ctx.config.at_rest_key_secret.as_deref().and_then(|s| s.split_once('/')) else {
        return Ok(None);
    };
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), ns);
    let Some(secret) = api.get_opt(name).await? else { return Ok(None) };
    let text = secret.data.as_ref().and_then(|d| d.get(crate::plan::dataplane::AT_REST_KEY)).map(|b| b.0.clone());
    let key =
        text.and_then(|t| base64::engine::general_purpose::STANDARD.decode(String::from_utf8_lossy(&t).trim()).ok());
    Ok(key.filter(|k| k.len() == conclave_resources::seal::KEY_LEN))
}

async fn apply(endpoint: &WebhookEndpoint, ctx: &Context) -> Result<Action, Error> {
    let ns = endpoint.namespace().unwrap_or_default();
    let secrets_api: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
    let now = Utc::now();
    let mut overlap_ends = None;
    let signing_secret = match &endpoint.spec.signing_secret_ref {
        Some(r) => match secrets_api.get_opt(&r.name).await? {
            None => SigningSecret::SecretMissing { name: r.name.clone() },
            Some(s) => match s.data.as_ref().and_then(|d| d.get(&r.key)) {
                Some(v) => SigningSecret::Value {
                    secret_name: r.name.clone(),
                    secrets: Secrets { current: String::from_utf8_lossy(&v.0).trim().to_owned(), previous: None },
                },
                None => SigningSecret::KeyMissing { name: r.name.clone(), key: r.key.clone() },
            },
        },
        None => {
            let name = generated_secret_name(&endpoint.name_any());
            let existing = secrets_api.get_opt(&name).await?;
            let plan = rotation::plan(
                secret::read(existing.as_ref(), LAYOUT),
                endpoint.annotations().get(ANNOTATION_ROTATE_SECRET).map(String::as_str),
                Duration::seconds(endpoint.spec.secret_overlap_seconds),
                now,
                webhook_secret::generate,
            )
            .map_err(|e| Error::Other(e.into()))?;
            if let SecretPlan::Write { state, why } = &plan {
                let (data, annotations) = secret::render(state, LAYOUT);
                secret::apply(&secrets_api, &name, endpoint.controller_owner_ref(&()), data, annotations).await?;
                publish(
                    ctx,
                    endpoint,
                    &Note::normal(why.reason(), format!("signing secret in Secret {name}: {why:?}")),
                )
                .await;
            }
            let state = plan.state();
            overlap_ends = rotation::next_deadline(state, now);
            let previous = state.previous.clone().zip(state.previous_expires_at);
            SigningSecret::Value { secret_name: name, secrets: Secrets { current: state.current.clone(), previous } }
        }
    };
    let workspace = match &endpoint.spec.workspace_ref {
        Some(r) => Api::<Workspace>::namespaced(ctx.client.clone(), &ns).get_opt(&r.name).await?,
        None => None,
    };
    let organization = match &endpoint.spec.organization_ref {
        Some(r) => Api::<Organization>::namespaced(ctx.client.clone(), &ns).get_opt(&r.name).await?,
        None => None,
    };
    let inputs = Inputs {
        workspace: workspace.as_ref(),
        organization: organization.as_ref(),
        signing_secret,
        at_rest_key: at_rest_key(ctx).await?,
    };
    let mut tx = ctx.pool.begin().await?;
    let outcome = sync::webhook::provision(&mut tx, endpoint, inputs).await?;
    tx.commit().await?;
    // Delivery results change without any Kubernetes event: read them back every minute (or
    // sooner, when a rotation's overlap ends).
    let minute = std::time::Duration::from_secs(60);
    finish(ctx, endpoint, outcome, Some(overlap_ends.map_or(minute, |at| at.min(minute)))).await
}
