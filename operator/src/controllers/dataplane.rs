//! The DataPlane controller: keys, migrations, then the Deployment and its companions.

use super::secret::{self, Layout};
use super::{Context, Error, api_for, error_policy, finish, publish};
use crate::conditions::{Readiness, reason};
use crate::plan::dataplane::{self as plan, JobState};
use crate::plan::rotation::{self, SecretPlan};
use crate::secrets;
use crate::sync::{Note, Outcome};
use base64::Engine;
use chrono::{Duration, Utc};
use conclave_resources::dataplane::DataPlaneStatus;
use conclave_resources::{ANNOTATION_ROTATE_KEYS, DataPlane, FIELD_MANAGER};
use futures::Stream;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service, ServiceAccount};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{Controller, watcher};
use kube::{Api, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::sync::Arc;

const VAPID_LAYOUT: Layout = Layout::Fixed { current: plan::VAPID_KEY, previous: "previous-private-key" };
const MLS_REMOVAL_LAYOUT: Layout =
    Layout::Fixed { current: plan::MLS_REMOVAL_KEY, previous: plan::MLS_REMOVAL_PREVIOUS_KEY };

pub fn controller(
    ctx: Arc<Context>,
    namespace: Option<&str>,
) -> impl Stream<Item = Result<(ObjectRef<DataPlane>, Action), impl std::fmt::Display>> {
    let c = &ctx.client;
    let wc = || watcher::Config::default().labels("app.kubernetes.io/managed-by=conclave-operator");
    let controller = Controller::new(api_for::<DataPlane>(c, namespace), watcher::Config::default())
        .with_config(ctx.controller_config());
    let store = controller.store();
    controller
        .owns(api_for::<Deployment>(c, namespace), wc())
        .owns(api_for::<Job>(c, namespace), wc())
        .owns(api_for::<Secret>(c, namespace), wc())
        .owns(api_for::<ConfigMap>(c, namespace), wc())
        .owns(api_for::<Service>(c, namespace), wc())
        .owns(api_for::<ServiceAccount>(c, namespace), wc())
        .owns(api_for::<PodDisruptionBudget>(c, namespace), wc())
        .owns(api_for::<HorizontalPodAutoscaler>(c, namespace), wc())
        // The Secrets it refers to (PostgreSQL, Redis, TURN): their appearance resolves it.
        .watches(api_for::<Secret>(c, namespace), watcher::Config::default(), move |s: Secret| {
            let (ns, name) = (s.namespace(), s.name_any());
            store
                .state()
                .into_iter()
                .filter(|d| d.namespace() == ns && d.spec.referenced_secrets().iter().any(|(n, _)| *n == name))
                .map(|d| ObjectRef::from_obj(&*d))
                .collect::<Vec<_>>()
        })
        .shutdown_on_signal()
        .run(reconcile, error_policy, ctx)
}

async fn ssa<K>(ctx: &Context, ns: &str, doc: &Value) -> Result<K, kube::Error>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
{
    let name = doc["metadata"]["name"].as_str().unwrap_or_default().to_owned();
    let api: Api<K> = Api::namespaced(ctx.client.clone(), ns);
    api.patch(&name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(doc)).await
}

/// Makes sure one generated key Secret exists (rotating it on request) and returns its state.
async fn key_secret(
    ctx: &Context,
    dp: &DataPlane,
    name: &str,
    layout: Layout,
    overlap: Duration,
    fresh: fn() -> Result<String, secrets::NoRandomness>,
) -> Result<rotation::Rotating, Error> {
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), &dp.namespace().unwrap_or_default());
    let existing = api.get_opt(name).await?;
    let request = dp.annotations().get(ANNOTATION_ROTATE_KEYS).map(String::as_str);
    let plan = rotation::plan(secret::read(existing.as_ref(), layout), request, overlap, Utc::now(), fresh)
        .map_err(|e| Error::Other(e.into()))?;
    if let SecretPlan::Write { state, why } = &plan {
        let (data, annotations) = secret::render(state, layout);
        secret::apply(&api, name, dp.controller_owner_ref(&()), data, annotations).await?;
        publish(ctx, dp, &Note::normal(why.reason(), format!("Secret {name}: {why:?}"))).await;
    }
    Ok(plan.state().clone())
}

fn at_rest_key() -> Result<String, secrets::NoRandomness> {
    Ok(base64::engine::general_purpose::STANDARD.encode(secrets::random_bytes(32)?))
}

fn job_state(job: Option<&Job>) -> JobState {
    let Some(status) = job.and_then(|j| j.status.as_ref()) else {
        return if job.is_some() { JobState::Running } else { JobState::Absent };
    };
    let has = |t: &str| status.conditions.iter().flatten().any(|c| c.type_ == t && c.status == "True");
    if status.succeeded.unwrap_or(0) > 0 || has("Complete") {
        JobState::Succeeded
    } else if has("Failed") {
        JobState::Failed
    } else {
        JobState::Running
    }
}

/// Whether a Secret exists and holds `key`: `None` if so, else the outcome that says what is missing.
async fn check_secret(
    ctx: &Context,
    ns: &str,
    name: &str,
    key: &str,
) -> Result<Option<Outcome<DataPlaneStatus>>, Error> {
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), ns);
    Ok(secret_problem(api.get_opt(name).await?.as_ref(), name, key)
        .map(|(reason, message)| Outcome::blocked(reason, message)))
}

/// What is wrong with a referenced Secret, as a `Ready=False` reason and message, or `None`.
fn secret_problem(secret: Option<&Secret>, name: &str, key: &str) -> Option<(&'static str, String)> {
    match secret {
        None => Some((reason::SECRET_NOT_FOUND, format!("Secret {name} does not exist"))),
        Some(s) if !s.data.as_ref().is_some_and(|d| d.contains_key(key)) => {
            Some((reason::SECRET_KEY_MISSING, format!("Secret {name} has no key {key}")))
        }
        Some(_) => None,
    }
}

async fn reconcile(dp: Arc<DataPlane>, ctx: Arc<Context>) -> Result<Action, Error> {
    let _timer = ctx.metrics.start("DataPlane");
    let dp = &*dp;
    let ctx = &*ctx;
    let ns = dp.namespace().unwrap_or_default();
    let soon = Some(std::time::Duration::from_secs(15));
    if let Err(invalid) = dp.spec.validate() {
        return finish(ctx, dp, Outcome::<DataPlaneStatus>::blocked(reason::INVALID_SPEC, invalid.0), None).await;
    }
    for (name, key) in dp.spec.referenced_secrets() {
        if let Some(outcome) = check_secret(ctx, &ns, name, key).await? {
            return finish(ctx, dp, outcome, None).await;
        }
    }
    let names = plan::names(&dp.name_any());
    let overlap = Duration::seconds(dp.spec.key_rotation_overlap_seconds);
    let jwt = key_secret(ctx, dp, &names.jwt_secret, Layout::KeyIds, overlap, secrets::ed25519_pkcs8_pem).await?;
    let vapid =
        key_secret(ctx, dp, &names.vapid_secret, VAPID_LAYOUT, Duration::zero(), secrets::vapid_private_key).await?;
    // Rotated with the others, with the same overlap: groups made with the previous key keep
    // getting removal proposals they can verify until their members move them to the new one.
    let removal =
        key_secret(ctx, dp, &names.mls_removal_secret, MLS_REMOVAL_LAYOUT, overlap, secrets::ed25519_pkcs8_pem).await?;
    // The at-rest key is never rotated by the operator: every sealed secret depends on it.
    let at_rest_layout = Layout::Fixed { current: plan::AT_REST_KEY, previous: "unused" };
    let secrets_api: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
    if secret::read(secrets_api.get_opt(&names.at_rest_secret).await?.as_ref(), at_rest_layout).is_none() {
        let state = rotation::Rotating {
            current: at_rest_key().map_err(|e| Error::Other(e.into()))?,
            previous: None,
            previous_expires_at: None,
            issued_at: Some(Utc::now()),
            rotation_handled: None,
        };
        let (data, annotations) = secret::render(&state, at_rest_layout);
        secret::apply(&secrets_api, &names.at_rest_secret, dp.controller_owner_ref(&()), data, annotations).await?;
        publish(ctx, dp, &Note::normal("SecretGenerated", format!("at-rest key in Secret {}", names.at_rest_secret)))
            .await;
    }

    let config_map = plan::config_map(dp);
    ssa::<ConfigMap>(ctx, &ns, &config_map).await?;
    ssa::<ServiceAccount>(ctx, &ns, &plan::service_account(dp)).await?;
    ssa::<Service>(ctx, &ns, &plan::service(dp)).await?;
    ssa::<PodDisruptionBudget>(ctx, &ns, &plan::pod_disruption_budget(dp)).await?;
    let hpa_api: Api<HorizontalPodAutoscaler> = Api::namespaced(ctx.client.clone(), &ns);
    match plan::horizontal_pod_autoscaler(dp) {
        Some(hpa) => {
            ssa::<HorizontalPodAutoscaler>(ctx, &ns, &hpa).await?;
        }
        None => {
            if hpa_api.get_opt(&names.base).await?.is_some() {
                hpa_api.delete(&names.base, &DeleteParams::default()).await?;
            }
        }
    }

    let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), &ns);
    let job = jobs.get_opt(&plan::migration_job_name(&names.base, &dp.spec.image)).await?;
    let deployments: Api<Deployment> = Api::namespaced(ctx.client.clone(), &ns);
    let current = deployments.get_opt(&names.base).await?;
    let running_image = current
        .as_ref()
        .and_then(|d| d.spec.as_ref())
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|s| s.containers.first())
        .and_then(|c| c.image.clone());
    let migrated = dp.status.as_ref().and_then(|s| s.migrated_image.clone());
    let rollout = plan::rollout(&dp.spec.image, migrated.as_deref(), job_state(job.as_ref()), running_image.as_deref());
    if rollout.run_migration {
        ssa::<Job>(ctx, &ns, &plan::migration_job(dp, &dp.spec.image)).await?;
        publish(ctx, dp, &Note::normal(reason::MIGRATING, format!("running the migrations of {}", dp.spec.image)))
            .await;
    }
    let jwt_kid = crate::secrets::key_id(&jwt.current);
    let revision = format!(
        "{jwt_kid}-{}-{}-{}",
        crate::secrets::key_id(&vapid.current),
        crate::secrets::key_id(&removal.current),
        plan::config_hash(&config_map)
    );
    let deployment = match &rollout.deploy_image {
        Some(image) => Some(ssa::<Deployment>(ctx, &ns, &plan::deployment(dp, image, &revision, &jwt_kid)).await?),
        None => current,
    };

    let dstatus = deployment.as_ref().and_then(|d| d.status.clone()).unwrap_or_default();
    let want = deployment.as_ref().and_then(|d| d.spec.as_ref()).and_then(|s| s.replicas).unwrap_or(0);
    let observed_latest = deployment
        .as_ref()
        .is_some_and(|d| d.status.as_ref().and_then(|s| s.observed_generation) == d.metadata.generation);
    let ready = dstatus.ready_replicas.unwrap_or(0);
    let updated = dstatus.updated_replicas.unwrap_or(0);
    let schema_version = {
        let mut conn = ctx.pool.acquire().await?;
        crate::db::schema_version(&mut conn).await.ok().flatten()
    };
    let status = DataPlaneStatus {
        replicas: dstatus.replicas,
        ready_replicas: dstatus.ready_replicas,
        version: rollout.deploy_image.clone().filter(|_| observed_latest && updated >= want && ready >= want),
        schema_version,
        migrated_image: rollout.migrated_image.clone(),
        jwt_key_id: Some(jwt_kid),
        ..Default::default()
    };
    let readiness = match &rollout.blocked {
        Some((reason, message)) => Readiness::not_ready(reason, message.clone()),
        None if observed_latest && want > 0 && ready >= want && updated >= want => {
            Readiness::ready(reason::AVAILABLE, format!("{ready} of {want} replicas ready on {}", dp.spec.image))
        }
        None => {
            Readiness::not_ready(reason::ROLLING_OUT, format!("{ready} of {want} replicas ready, {updated} updated"))
        }
    };
    let notes = match &rollout.blocked {
        Some((reason::MIGRATION_FAILED, message)) => vec![Note::warning(reason::MIGRATION_FAILED, message.clone())],
        _ => vec![],
    };
    let wait = rotation::next_deadline(&jwt, Utc::now()).map(|d| d.min(std::time::Duration::from_secs(300)));
    finish(ctx, dp, Outcome { readiness, status, notes }, if rollout.blocked.is_some() { soon } else { wait.or(soon) })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use conclave_resources::DataPlaneSpec;
    use k8s_openapi::ByteString;

    fn spec_with_turn() -> DataPlaneSpec {
        serde_json::from_value(serde_json::json!({
            "image": "conclave:1",
            "postgres": {"secretName": "pg-app"},
            "redis": {"secretName": "redis"},
            "turn": {"urls": ["turn:turn.example.org:3478"], "sharedSecretName": "turn"}
        }))
        .expect("a spec")
    }

    #[test]
    fn the_turn_and_smtp_secrets_are_waited_for_like_the_database_secrets() {
        let spec = spec_with_turn();
        assert_eq!(spec.referenced_secrets(), [("pg-app", "uri"), ("redis", "url"), ("turn", "shared-secret")]);
        let (reason, message) = secret_problem(None, "turn", "shared-secret").expect("missing");
        assert_eq!((reason, message.as_str()), (reason::SECRET_NOT_FOUND, "Secret turn does not exist"));
        let with = |key: &str| Secret {
            data: Some([(key.to_owned(), ByteString(b"x".to_vec()))].into()),
            ..Default::default()
        };
        let secret = with("other");
        let (reason, _) = secret_problem(Some(&secret), "turn", "shared-secret").expect("no key");
        assert_eq!(reason, reason::SECRET_KEY_MISSING);
        assert_eq!(secret_problem(Some(&with("shared-secret")), "turn", "shared-secret"), None);
        let mut spec = spec_with_turn();
        spec.smtp = Some(
            serde_json::from_value(
                serde_json::json!({"host": "mail", "from": "a@b.c", "credentialsSecretName": "smtp-login"}),
            )
            .expect("smtp"),
        );
        assert_eq!(
            spec.referenced_secrets()[3..],
            [("smtp-login", "username"), ("smtp-login", "password")],
            "the SMTP login is waited for too: the pods would not start without it"
        );
    }
}
