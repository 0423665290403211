//! What every reconcile gets: the clients, the configuration, and the per-object memory of
//! failures and paced writes that outlives a single reconcile.

use super::pacing::{COUNTS_INTERVAL, Pacer};
use crate::config::Config;
use crate::metrics::Metrics;
use conclave_resources::FIELD_MANAGER;
use kube::Client;
use kube::runtime::events::{Recorder, Reporter};
use sqlx::PgPool;
use std::collections::HashMap;
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

    /// Drops everything remembered about an object whose deletion completed.
    pub(super) fn forget(&self, uid: &str) {
        self.clear_failures(uid);
        self.counts.forget(uid);
    }

    pub(super) fn failures_of(&self, uid: &str) -> u32 {
        self.failures.lock().map(|m| m.get(uid).copied().unwrap_or(0)).unwrap_or(0)
    }

    pub(super) fn count_failure(&self, uid: &str) -> u32 {
        bump(&self.failures, uid).unwrap_or(0)
    }

    /// After a reconcile that succeeded: the next failure starts the back-off over.
    pub(super) fn clear_failures(&self, uid: &str) {
        if let Ok(mut map) = self.failures.lock() {
            map.remove(uid);
        }
        if let Ok(mut map) = self.throttled.lock() {
            map.remove(uid);
        }
    }

    pub(super) fn count_throttled(&self, uid: &str) -> u32 {
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
