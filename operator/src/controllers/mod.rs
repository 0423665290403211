//! The Kubernetes side: one controller per kind, run behind the leader Lease.
//!
//! Every controller follows the same shape: a free `reconcile(obj, ctx)` that fetches what the
//! object refers to, runs the kind's [`sync`](crate::sync) step in one database transaction,
//! writes the status through the status subresource (server-side apply, only when it changed)
//! and publishes an event per state change; and the shared [`error_policy`] that backs off.
//! Finalizers (kube-runtime's `finalizer` helper) run the deletion policy before an object
//! goes; see [`cleanup`] for what happens when the database cannot be reached.

mod bot;
mod dataplane;
mod organization;
pub mod secret;
mod webhook;
mod workspace;

use crate::conditions::{self, Readiness, reason};
use crate::config::Config;
use crate::metrics::Metrics;
use crate::sync::{Note, Outcome, SyncError};
use conclave_resources::{ANNOTATION_FORCE_DETACH, Condition, FIELD_MANAGER};
use futures::StreamExt;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Api, Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use sqlx::PgPool;
use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What every reconcile gets.
pub struct Context {
    /// The Kubernetes client.
    pub client: Client,
    /// Connections to PostgreSQL as the schema owner.
    pub pool: PgPool,
    /// The operator's configuration.
    pub config: Config,
    /// Publishes events as `conclave-operator`.
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    /// Consecutive failures per object uid: the back-off, and the count that releases a
    /// finalizer when the database stays unreachable during a deletion.
    failures: Mutex<HashMap<String, u32>>,
    /// Requests turned away for load in a row, per object uid: the quiet retry's back-off.
    throttled: Mutex<HashMap<String, u32>>,
    /// Paces status writes that change only an object's counts.
    counts: Pacer,
}

impl Context {
    pub fn new(client: Client, pool: PgPool, config: Config, metrics: Arc<Metrics>, instance: String) -> Self {
        let reporter = Reporter { controller: FIELD_MANAGER.to_owned(), instance: Some(instance) };
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            pool,
            config,
            metrics,
            failures: Mutex::new(HashMap::new()),
            throttled: Mutex::new(HashMap::new()),
            counts: Pacer::new(COUNTS_INTERVAL),
        }
    }

    /// For a status write that changes only the object's counts: `None` to write it now, or
    /// how long it waits because one was written less than the interval (10 s) ago.
    pub fn counts_wait(&self, uid: &str) -> Option<Duration> {
        self.counts.wait(uid, std::time::Instant::now())
    }

    fn forget(&self, uid: &str) {
        self.clear_failures(uid);
        self.counts.forget(uid);
    }

    fn failures_of(&self, uid: &str) -> u32 {
        self.failures.lock().map(|m| m.get(uid).copied().unwrap_or(0)).unwrap_or(0)
    }

    fn count_failure(&self, uid: &str) -> u32 {
        bump(&self.failures, uid).unwrap_or(0)
    }

    fn clear_failures(&self, uid: &str) {
        if let Ok(mut map) = self.failures.lock() {
            map.remove(uid);
        }
        if let Ok(mut map) = self.throttled.lock() {
            map.remove(uid);
        }
    }

    fn count_throttled(&self, uid: &str) -> u32 {
        bump(&self.throttled, uid).unwrap_or(1)
    }

    /// Each controller's settings: at most `--reconcile-concurrency` reconciles at once, so a
    /// start (or resync) against thousands of objects queues them in the controller instead of
    /// piling thousands of futures onto a database pool of a few connections.
    pub fn controller_config(&self) -> kube::runtime::controller::Config {
        kube::runtime::controller::Config::default().concurrency(self.config.reconcile_concurrency)
    }
}

/// Adds one to `uid`'s count in a per-object counter and returns it (`None` if the lock is
/// poisoned).
fn bump(counts: &Mutex<HashMap<String, u32>>, uid: &str) -> Option<u32> {
    let mut map = counts.lock().ok()?;
    let n = map.entry(uid.to_owned()).or_insert(0);
    *n = n.saturating_add(1);
    Some(*n)
}

/// Why a reconcile failed. The variants double as metric labels.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Sync(#[from] SyncError),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("kubernetes: {0}")]
    Kube(#[from] kube::Error),
    #[error("finalizer: {0}")]
    Finalizer(Box<kube::runtime::finalizer::Error<Error>>),
    /// Deletion waits for something else to go first (an Organization for its Workspaces).
    #[error("{0}")]
    Waiting(String),
    #[error("{0}")]
    Other(#[from] anyhow::Error),
}

impl Error {
    /// The API server's answer, when that is what failed (directly or in the finalizer's patch).
    fn api_status(&self) -> Option<&kube::core::Status> {
        use kube::runtime::finalizer::Error as F;
        match self {
            Self::Kube(kube::Error::Api(status)) => Some(status),
            Self::Finalizer(inner) => match &**inner {
                F::AddFinalizer(kube::Error::Api(status)) | F::RemoveFinalizer(kube::Error::Api(status)) => {
                    Some(status)
                }
                _ => None,
            },
            _ => None,
        }
    }

    /// The write was made against a copy of the object older than the API server's: a JSON
    /// patch whose `test` no longer holds (422, how the finalizer helper guards its patch) or a
    /// conflict (409). The watch brings the current object shortly; this is no failure of the
    /// object's and must not back off like one.
    pub fn is_stale_object(&self) -> bool {
        self.api_status()
            .is_some_and(|status| status.code == 409 || (status.code == 422 && matches!(self, Self::Finalizer(_))))
    }

    /// The API server turned the request away for load (429 Too Many Requests, 503, 504), not
    /// because of anything about the object. Retrying after a pause is the whole remedy; a
    /// `Ready=False` status and a Warning event would be two more writes to a server that just
    /// said it has too many.
    pub fn is_throttled(&self) -> bool {
        self.api_status().is_some_and(|status| matches!(status.code, 429 | 503 | 504))
    }

    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::Sync(SyncError::Database(_)) | Self::Database(_) => "database",
            Self::Sync(SyncError::Other(_)) | Self::Other(_) => "other",
            Self::Kube(_) => "kubernetes",
            Self::Finalizer(_) => "finalizer",
            Self::Waiting(_) => "waiting",
        }
    }
}

impl From<kube::runtime::finalizer::Error<Error>> for Error {
    /// The reconcile's own error comes back out, so its back-off and label stay its own.
    fn from(err: kube::runtime::finalizer::Error<Error>) -> Self {
        use kube::runtime::finalizer::Error as F;
        match err {
            F::ApplyFailed(inner) | F::CleanupFailed(inner) => inner,
            other => Self::Finalizer(Box::new(other)),
        }
    }
}

/// Spaces out writes per object: at most one per interval. Provisioning a thousand Workspaces
/// moves their Organizations' counts a thousand times; written at most every few seconds per
/// Organization, they cost the API server a fraction of the writes and are never staler than
/// the interval.
pub struct Pacer {
    interval: Duration,
    /// When each object's last paced write was let through, by uid.
    last: Mutex<HashMap<String, std::time::Instant>>,
}

impl Pacer {
    pub fn new(interval: Duration) -> Self {
        Self { interval, last: Mutex::new(HashMap::new()) }
    }

    /// `None`: write now (remembered as the last write); or how long to wait, because the last
    /// one was less than the interval before `now`.
    pub fn wait(&self, uid: &str, now: std::time::Instant) -> Option<Duration> {
        let Ok(mut last) = self.last.lock() else { return None };
        if let Some(wait) = last.get(uid).map(|at| self.interval.saturating_sub(now.saturating_duration_since(*at)))
            && !wait.is_zero()
        {
            return Some(wait);
        }
        last.insert(uid.to_owned(), now);
        None
    }

    pub fn forget(&self, uid: &str) {
        if let Ok(mut last) = self.last.lock() {
            last.remove(uid);
        }
    }
}

/// The least time between two status writes of an object that change only its counts.
const COUNTS_INTERVAL: Duration = Duration::from_secs(10);

/// How soon a write made against a stale copy of an object is retried.
const STALE_RETRY: Duration = Duration::from_secs(1);

/// How soon a request the API server turned away for load is retried, the `attempt`th time in
/// a row: 1 s doubling to 32 s, plus up to 2 s more spread by the object's uid, so the objects
/// turned away together do not all come back in the same instant, and an API server that
/// stays overloaded (or a webhook of its answering 503) is not asked every second forever.
fn throttled_retry(uid: &str, attempt: u32) -> Duration {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    uid.hash(&mut hasher);
    Duration::from_secs(1 << attempt.saturating_sub(1).min(5)) + Duration::from_millis(hasher.finish() % 2000)
}

/// Back-off: 5 s after the first failure, doubling to at most 5 minutes; 5 s while waiting.
pub fn backoff(failures: u32, error: &Error) -> Duration {
    if matches!(error, Error::Waiting(_)) {
        return Duration::from_secs(5);
    }
    Duration::from_secs((5u64 << failures.saturating_sub(1).min(6)).min(300))
}

/// The error policy of every controller: count, log, report `Ready=False`, and back off.
pub fn error_policy<K>(obj: Arc<K>, error: &Error, ctx: Arc<Context>) -> Action
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + Serialize
        + DeserializeOwned
        + Debug
        + Send
        + Sync
        + 'static,
{
    if error.is_stale_object() {
        // Retried soon and quietly: no Ready=False, no Warning event (each one more write to
        // an API server that is already behind), no growing back-off.
        ctx.metrics.failed(&K::kind(&()), "stale");
        tracing::debug!(kind = %K::kind(&()), name = %obj.name_any(), error = %error, "wrote against a stale copy; retrying");
        return Action::requeue(STALE_RETRY);
    }
    let uid = obj.uid().unwrap_or_default();
    if error.is_throttled() {
        ctx.metrics.failed(&K::kind(&()), "throttled");
        tracing::debug!(kind = %K::kind(&()), name = %obj.name_any(), error = %error, "the API server is busy; retrying");
        return Action::requeue(throttled_retry(&uid, ctx.count_throttled(&uid)));
    }
    let failures = ctx.count_failure(&uid);
    ctx.metrics.failed(&K::kind(&()), error.metric_label());
    tracing::warn!(kind = %K::kind(&()), name = %obj.name_any(), namespace = ?obj.namespace(), failures, error = %error, "reconcile failed");
    let ctx2 = ctx.clone();
    let message = error.to_string();
    let why = match error {
        Error::Waiting(_) => reason::WAITING_FOR_WORKSPACES,
        Error::Kube(_) | Error::Finalizer(_) => reason::KUBERNETES_ERROR,
        _ => reason::DATABASE_ERROR,
    };
    tokio::spawn(async move {
        let (reason, note) = if why == reason::WAITING_FOR_WORKSPACES {
            (why, message)
        } else {
            (why, format!("reconcile failed, retrying: {message}"))
        };
        let readiness = Readiness::not_ready(reason, note.clone());
        let _ = write_status(&ctx2, &*obj, &readiness, json!({})).await;
        publish(&ctx2, &*obj, &Note::warning(reason, note)).await;
    });
    Action::requeue(backoff(failures, error))
}

/// Reads a referenced object from the API server's watch cache (`resourceVersion=0`, no etcd
/// round trip), confirming with a consistent read only when the cache does not have it, so a
/// cache that lags never makes an existing reference look missing. For references whose
/// existence is what matters (what they hold is read from the database), this keeps thousands
/// of reconciles from turning into thousands of quorum reads.
pub async fn get_reference<K>(api: &Api<K>, name: &str) -> Result<Option<K>, kube::Error>
where
    K: Clone + DeserializeOwned + Debug,
{
    match api.get_with(name, &kube::api::GetParams::any()).await {
        Ok(object) => Ok(Some(object)),
        Err(kube::Error::Api(status)) if status.code == 404 => api.get_opt(name).await,
        Err(other) => Err(other),
    }
}

/// Decides which events of a watched kind wake the objects that depend on it: those that change
/// what the dependents read (`part` of the object, its deletion, a new uid), not every write to
/// it. Without it, each status write of an Organization (its counts change as each of its
/// Workspaces is provisioned) re-ran every one of its Workspaces, whose status writes re-ran the
/// Organization: thousands of reconciles that changed nothing.
pub struct Wake<K, S> {
    part: fn(&K) -> S,
    /// The part last seen, by uid. An object's entry goes when its deletion completes.
    seen: Mutex<HashMap<String, (bool, S)>>,
}

/// Objects a [`Wake`] remembers before it starts over.
const MAX_SEEN: usize = 100_000;

impl<K: Resource, S: PartialEq> Wake<K, S> {
    pub fn new(part: fn(&K) -> S) -> Self {
        Self { part, seen: Mutex::new(HashMap::new()) }
    }

    /// Whether this event of `obj` should wake its dependents: the first sight of it, a change
    /// of its part, its deletion starting, or its deletion finishing (no finalizers left).
    pub fn changed(&self, obj: &K) -> bool {
        let meta = obj.meta();
        let key = meta.uid.clone().unwrap_or_else(|| format!("{:?}/{:?}", meta.namespace, meta.name));
        let deleting = meta.deletion_timestamp.is_some();
        let Ok(mut seen) = self.seen.lock() else { return true };
        if deleting && meta.finalizers.as_ref().is_none_or(Vec::is_empty) {
            seen.remove(&key);
            return true;
        }
        if seen.len() >= MAX_SEEN && !seen.contains_key(&key) {
            // Objects whose deletion was never seen (deleted before they had a finalizer, or
            // while the watch was re-listing) would otherwise stay forever; starting over costs
            // one wake of each dependent.
            seen.clear();
        }
        let part = (self.part)(obj);
        let unchanged = seen.get(&key).is_some_and(|(was_deleting, was)| *was_deleting == deleting && *was == part);
        if !unchanged {
            seen.insert(key, (deleting, part));
        }
        !unchanged
    }
}

/// What the kinds that depend on an Organization read of it: its id in PostgreSQL and whether
/// it is Ready.
pub fn organization_part(org: &conclave_resources::Organization) -> (Option<String>, bool) {
    let status = org.status.as_ref();
    (status.and_then(|s| s.organization_id.clone()), status.is_some_and(|s| ready_in(&s.conditions)))
}

/// What the kinds that depend on a Workspace read of it: the Organization it names, its id in
/// PostgreSQL and whether it is Ready.
pub fn workspace_part(ws: &conclave_resources::Workspace) -> (String, Option<String>, bool) {
    let status = ws.status.as_ref();
    (
        ws.spec.organization_ref.name.clone(),
        status.and_then(|s| s.workspace_id.clone()),
        status.is_some_and(|s| ready_in(&s.conditions)),
    )
}

/// Whether a status's `Ready` condition is `True`.
pub fn ready_in(conditions: &[Condition]) -> bool {
    conditions::ready_of(conditions).is_some_and(|c| c.status == conclave_resources::ConditionStatus::True)
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
pub async fn write_status<K>(ctx: &Context, obj: &K, readiness: &Readiness, fields: Value) -> Result<bool, kube::Error>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + Serialize
        + DeserializeOwned
        + Debug,
{
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
pub async fn finish<K, S>(
    ctx: &Context,
    obj: &K,
    outcome: Outcome<S>,
    requeue: Option<Duration>,
) -> Result<Action, Error>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + Serialize
        + DeserializeOwned
        + Debug,
    S: Serialize,
{
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

/// How soon an object that is not Ready is looked at again when nothing else triggers it. The
/// watches on what it waits for should wake it first; this bounds the wait when a trigger is
/// missed (for example an Organization provisioned while the Workspace controller's cache was
/// still filling) to seconds instead of the 5-minute resync.
const NOT_READY_RECHECK: Duration = Duration::from_secs(15);

/// What comes after a reconcile: the reconcile's own deadline when it is sooner than the
/// resync (or the object is not Ready), a re-check soon for an object that is not Ready, and
/// otherwise the periodic resync.
fn next_action(requeue: Option<Duration>, ready: bool, resync_seconds: u64) -> Action {
    let resync = Duration::from_secs(resync_seconds.max(10));
    match requeue {
        Some(soon) if !ready || soon < resync => Action::requeue(soon),
        _ if !ready => Action::requeue(NOT_READY_RECHECK.min(resync)),
        _ => Action::requeue(resync),
    }
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

/// Runs a deletion's database step, with the escape hatches that keep a lost database from
/// wedging a namespace deletion:
///
/// * with the annotation `conclave.io/force-detach` set, the database is not touched at all;
/// * after `--delete-max-failures` failed attempts in a row (default 10, about 20 minutes with
///   the back-off), the finalizer is released anyway.
///
/// Both leave the rows in PostgreSQL as they were (still carrying the Kubernetes reference, so
/// a resource of the same namespace and name adopts them again) and publish a Warning event.
pub async fn cleanup<K, F, Fut>(ctx: &Context, obj: &K, step: F) -> Result<Action, Error>
where
    K: Resource<DynamicType = ()>,
    F: FnOnce(sqlx::pool::PoolConnection<sqlx::Postgres>) -> Fut,
    Fut: Future<Output = Result<Note, Error>>,
{
    if obj.annotations().contains_key(ANNOTATION_FORCE_DETACH) {
        let note = Note::warning(
            "ForceDetached",
            format!(
                "{ANNOTATION_FORCE_DETACH} is set: finalizer released without touching PostgreSQL; rows are left as they were"
            ),
        );
        publish(ctx, obj, &note).await;
        ctx.forget(&obj.uid().unwrap_or_default());
        return Ok(Action::await_change());
    }
    let uid = obj.uid().unwrap_or_default();
    let attempt = async {
        let conn = ctx.pool.acquire().await?;
        step(conn).await
    };
    match attempt.await {
        Ok(note) => {
            publish(ctx, obj, &note).await;
            ctx.forget(&uid);
            Ok(Action::await_change())
        }
        Err(err) => {
            let failures = ctx.failures_of(&uid) + 1;
            let max = ctx.config.delete_max_failures;
            if max > 0 && failures >= max && !matches!(err, Error::Waiting(_)) {
                let note = Note::warning(
                    "FinalizerReleased",
                    format!(
                        "gave up after {failures} failed attempts to reach PostgreSQL ({err}); rows are left as they were"
                    ),
                );
                publish(ctx, obj, &note).await;
                ctx.forget(&uid);
                return Ok(Action::await_change());
            }
            Err(err)
        }
    }
}

/// Runs every controller until shutdown or until the Lease is lost; see [`crate::run`].
pub async fn run_controllers(ctx: Arc<Context>) {
    let watch_ns = ctx.config.watch_namespace.clone();
    futures::join!(
        organization::controller(ctx.clone(), watch_ns.as_deref()).for_each(log_result),
        workspace::controller(ctx.clone(), watch_ns.as_deref()).for_each(log_result),
        webhook::controller(ctx.clone(), watch_ns.as_deref()).for_each(log_result),
        bot::controller(ctx.clone(), watch_ns.as_deref()).for_each(log_result),
        dataplane::controller(ctx.clone(), watch_ns.as_deref()).for_each(log_result),
    );
}

async fn log_result<T: Debug, E: std::fmt::Display>(result: Result<T, E>) {
    match result {
        Ok(done) => tracing::debug!(?done, "reconciled"),
        Err(err) => tracing::debug!(error = %err, "controller"),
    }
}

/// An `Api` for `K` in every namespace, or only the watched one.
pub fn api_for<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backoff_doubles_up_to_five_minutes() {
        let err = Error::Other(anyhow::anyhow!("x"));
        let waits: Vec<u64> = (1..=9).map(|n| backoff(n, &err).as_secs()).collect();
        assert_eq!(waits, vec![5, 10, 20, 40, 80, 160, 300, 300, 300]);
        assert_eq!(backoff(9, &Error::Waiting("w".into())).as_secs(), 5);
    }

    #[test]
    fn objects_that_are_not_ready_are_looked_at_again_soon() {
        let minute = Duration::from_secs(60);
        assert_eq!(next_action(None, true, 300), Action::requeue(Duration::from_secs(300)));
        assert_eq!(next_action(None, false, 300), Action::requeue(NOT_READY_RECHECK));
        assert_eq!(next_action(Some(minute), false, 300), Action::requeue(minute));
        assert_eq!(next_action(Some(minute), true, 300), Action::requeue(minute), "a deadline before the resync");
        assert_eq!(next_action(Some(Duration::from_secs(900)), true, 300), Action::requeue(Duration::from_secs(300)));
    }

    #[test]
    fn a_write_against_a_stale_copy_is_told_apart_from_a_real_failure() {
        use kube::runtime::finalizer::Error as F;
        let api = |code: u16| kube::Error::Api(kube::core::Status::failure("x", "Invalid").with_code(code).boxed());
        assert!(Error::Finalizer(Box::new(F::AddFinalizer(api(422)))).is_stale_object(), "the patch's test failed");
        assert!(Error::Finalizer(Box::new(F::RemoveFinalizer(api(409)))).is_stale_object());
        assert!(Error::Kube(api(409)).is_stale_object(), "a conflict");
        assert!(!Error::Kube(api(422)).is_stale_object(), "an invalid object is a real failure");
        assert!(!Error::Finalizer(Box::new(F::AddFinalizer(api(403)))).is_stale_object());
        assert!(!Error::Other(anyhow::anyhow!("x")).is_stale_object());
    }

    #[test]
    fn a_request_turned_away_for_load_is_retried_quietly_and_spread_out() {
        use kube::runtime::finalizer::Error as F;
        let api =
            |code: u16| kube::Error::Api(kube::core::Status::failure("x", "TooManyRequests").with_code(code).boxed());
        assert!(Error::Kube(api(429)).is_throttled());
        assert!(Error::Finalizer(Box::new(F::AddFinalizer(api(429)))).is_throttled(), "the finalizer's patch");
        assert!(Error::Kube(api(503)).is_throttled() && Error::Kube(api(504)).is_throttled());
        assert!(!Error::Kube(api(500)).is_throttled() && !Error::Kube(api(403)).is_throttled());
        assert!(!Error::Other(anyhow::anyhow!("x")).is_throttled());
        let waits: std::collections::BTreeSet<Duration> =
            (0..50).map(|i| throttled_retry(&format!("uid-{i}"), 1)).collect();
        assert!(waits.iter().all(|w| (Duration::from_secs(1)..Duration::from_secs(3)).contains(w)), "{waits:?}");
        assert!(waits.len() > 40, "spread, not all at once: {waits:?}");
        assert_eq!(throttled_retry("same", 1), throttled_retry("same", 1));
        let jitter = throttled_retry("same", 1) - Duration::from_secs(1);
        let backoff: Vec<u64> = (1..=8).map(|n| (throttled_retry("same", n) - jitter).as_secs()).collect();
        assert_eq!(backoff, [1, 2, 4, 8, 16, 32, 32, 32], "doubling while it lasts, capped");
    }

    fn organization(uid: &str, organization_id: Option<&str>) -> conclave_resources::Organization {
        serde_json::from_value(json!({
            "apiVersion": "conclave.io/v1alpha1", "kind": "Organization",
            "metadata": {"name": "acme", "namespace": "t", "uid": uid, "finalizers": ["conclave.io/cleanup"]},
            "spec": {"slug": "acme", "displayName": "Acme"},
            "status": {"organizationId": organization_id, "memberCount": 1},
        }))
        .expect("a valid fixture")
    }

    #[test]
    fn only_changes_that_dependents_read_wake_them() {
        let wake = Wake::new(organization_part);
        let mut org = organization("u1", None);
        assert!(wake.changed(&org), "first sight");
        assert!(!wake.changed(&org), "the same again (a relist)");
        org.status.as_mut().expect("a status").member_count = Some(2);
        assert!(!wake.changed(&org), "a count is not what Workspaces read");
        org.status.as_mut().expect("a status").organization_id = Some("id".into());
        assert!(wake.changed(&org), "provisioned");
        org.status.as_mut().expect("a status").conditions = vec![serde_json::from_value(json!({
            "type": "Ready", "status": "True", "reason": "Provisioned", "message": "", "lastTransitionTime": "2026-01-01T00:00:00Z"
        }))
        .expect("a valid fixture")];
        assert!(wake.changed(&org), "became Ready");
        assert!(!wake.changed(&org));
        assert!(wake.changed(&organization("u2", Some("id"))), "re-created under the same name: a new uid");
        org.metadata.deletion_timestamp =
            serde_json::from_value(json!("2026-01-01T00:00:00Z")).expect("a valid fixture");
        assert!(wake.changed(&org), "its deletion started");
        assert!(!wake.changed(&org));
        org.metadata.finalizers = None;
        assert!(wake.changed(&org), "its deletion finished");
        assert!(!wake.seen.lock().expect("not poisoned").contains_key("u1"), "and it is forgotten");
    }

    #[test]
    fn count_only_writes_are_spaced_out_per_object() {
        let pacer = Pacer::new(Duration::from_secs(10));
        let t0 = std::time::Instant::now();
        let at = |secs: u64| t0 + Duration::from_secs(secs);
        assert_eq!(pacer.wait("a", t0), None, "the first goes at once");
        assert_eq!(pacer.wait("b", at(1)), None, "per object");
        assert_eq!(pacer.wait("a", at(3)), Some(Duration::from_secs(7)));
        assert_eq!(pacer.wait("a", at(8)), Some(Duration::from_secs(2)), "later changes do not push it back");
        assert_eq!(pacer.wait("a", at(10)), None, "due");
        assert_eq!(pacer.wait("a", at(11)), Some(Duration::from_secs(9)));
        pacer.forget("a");
        assert_eq!(pacer.wait("a", at(12)), None, "forgotten with its object");
    }

    #[test]
    fn a_cleanup_error_comes_out_of_the_finalizer_as_itself() {
        let err: Error = kube::runtime::finalizer::Error::CleanupFailed(Error::Waiting("ws".into())).into();
        assert!(matches!(err, Error::Waiting(_)));
        assert_eq!(err.metric_label(), "waiting");
    }

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
