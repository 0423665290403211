//! What an object is told after a reconcile: its status (conditions and `observedGeneration`
//! filled in, written only when it changed) and its events.

use super::requeue::next_action;
use super::{Context, Error};
use crate::conditions::{self, Readiness, ready_in};
use crate::sync::{Note, Outcome};
use conclave_resources::{Condition, FIELD_MANAGER};
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::{Api, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use std::fmt::Debug;
use std::time::Duration;

/// A namespaced resource whose status the operator writes: every kind it reconciles.
pub trait StatusResource:
    Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope> + Clone + Serialize + DeserializeOwned + Debug
{
}

impl<K> StatusResource for K where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + Serialize
        + DeserializeOwned
        + Debug
{
}

/// Publishes one event about `obj` (failures to publish are logged, never fatal).
pub async fn publish<K: Resource<DynamicType = ()>>(ctx: &Context, obj: &K, note: &Note) {
    let event = Event {
        type_: if note.warning { EventType::Warning } else { EventType::Normal },
        reason: note.reason.to_owned(),
        note: Some(note.message.chars().take(1000).collect()),
        action: "Reconcile".to_owned(),
        secondary: None,
    };
    if let Err(err) = ctx.recorder.publish(&event, &obj.object_ref(&())).await {
        tracing::debug!(error = %err, "publishing an event failed");
    }
}

/// Writes `status` (its `conditions` and `observedGeneration` filled in from `readiness`)
/// through the status subresource, unless it equals the current status. Returns whether it wrote.
pub async fn write_status<K: StatusResource>(
    ctx: &Context,
    obj: &K,
    readiness: &Readiness,
    fields: Value,
) -> Result<bool, kube::Error> {
    let current = serde_json::to_value(obj).ok().and_then(|v| v.get("status").cloned()).unwrap_or(Value::Null);
    let previous: Vec<Condition> =
        current.get("conditions").and_then(|c| serde_json::from_value(c.clone()).ok()).unwrap_or_default();
    let generation = obj.meta().generation;
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let conditions = conditions::with_ready(&previous, generation, readiness, &now);
    let mut status = match fields {
        Value::Object(map) => map,
        _ => serde_json::Map::new(),
    };
    status.insert("conditions".into(), serde_json::to_value(&conditions).unwrap_or_default());
    if let Some(generation) = generation {
        status.insert("observedGeneration".into(), json!(generation));
    }
    let status = Value::Object(status);
    if status_equal(&current, &status) {
        return Ok(false);
    }
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &obj.namespace().unwrap_or_default());
    let patch = json!({"apiVersion": K::api_version(&()), "kind": K::kind(&()), "status": status});
    api.patch_status(&obj.name_any(), &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&patch)).await?;
    Ok(true)
}

/// Two statuses are equal when they hold the same fields with the same values (`null` counts
/// as absent). The operator owns the whole status, so a field it stopped writing is a change.
pub fn status_equal(current: &Value, desired: &Value) -> bool {
    let fields = |v: &Value| -> serde_json::Map<String, Value> {
        v.as_object()
            .map(|m| m.iter().filter(|(_, v)| !v.is_null()).map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default()
    };
    desired.is_object() && fields(current) == fields(desired)
}

/// Finishes an Apply: status, events, requeue.
pub async fn finish<K: StatusResource, S: Serialize>(
    ctx: &Context,
    obj: &K,
    outcome: Outcome<S>,
    requeue: Option<Duration>,
) -> Result<Action, Error> {
    let fields = serde_json::to_value(&outcome.status).unwrap_or_default();
    let fields = strip_nulls_and_managed(fields);
    let wrote = write_status(ctx, obj, &outcome.readiness, fields).await?;
    for note in &outcome.notes {
        publish(ctx, obj, note).await;
    }
    let became_ready = wrote
        && outcome.readiness.ready
        && !conditions_ready(obj)
        && outcome.notes.iter().all(|n| n.reason != outcome.readiness.reason);
    if became_ready {
        publish(ctx, obj, &Note::normal(outcome.readiness.reason, outcome.readiness.message.clone())).await;
    }
    ctx.clear_failures(&obj.uid().unwrap_or_default());
    Ok(next_action(requeue, outcome.readiness.ready, ctx.config.resync_seconds))
}

fn conditions_ready<K: Serialize>(obj: &K) -> bool {
    let status = serde_json::to_value(obj).ok().and_then(|v| v.get("status").cloned());
    let conditions: Vec<Condition> = status
        .and_then(|s| s.get("conditions").cloned())
        .and_then(|c| serde_json::from_value(c).ok())
        .unwrap_or_default();
    ready_in(&conditions)
}

fn strip_nulls_and_managed(value: Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter().filter(|(k, v)| !v.is_null() && k != "conditions" && k != "observedGeneration").collect(),
        ),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unchanged_status_is_not_written_again() {
        let current = json!({"conditions": [1], "observedGeneration": 2, "organizationId": "x", "gone": null});
        assert!(status_equal(&current, &json!({"conditions": [1], "observedGeneration": 2, "organizationId": "x"})));
        assert!(!status_equal(&current, &json!({"conditions": [1], "observedGeneration": 3, "organizationId": "x"})));
        assert!(
            !status_equal(&current, &json!({"conditions": [1], "observedGeneration": 2})),
            "a dropped field is a change"
        );
        assert!(!status_equal(&Value::Null, &json!({"conditions": []})));
    }
}
