//! When an object is reconciled again: after a failure (the [`error_policy`] shared by every
//! controller, with its back-off and its quiet retries) and after a success ([`next_action`]).

use super::status::{StatusResource, publish, write_status};
use super::{Context, Error};
use crate::conditions::{Readiness, reason};
use crate::sync::Note;
use kube::ResourceExt;
use kube::runtime::controller::Action;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

/// How soon a write made against a stale copy of an object is retried.
const STALE_RETRY: Duration = Duration::from_secs(1);

/// How soon an object that is not Ready is looked at again when nothing else triggers it. The
/// watches on what it waits for should wake it first; this bounds the wait when a trigger is
/// missed (for example an Organization provisioned while the Workspace controller's cache was
/// still filling) to seconds instead of the 5-minute resync.
const NOT_READY_RECHECK: Duration = Duration::from_secs(15);

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
pub fn error_policy<K: StatusResource + Send + Sync + 'static>(
    obj: Arc<K>,
    error: &Error,
    ctx: Arc<Context>,
) -> Action {
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

/// What comes after a reconcile: the reconcile's own deadline when it is sooner than the
/// resync (or the object is not Ready), a re-check soon for an object that is not Ready, and
/// otherwise the periodic resync.
pub(super) fn next_action(requeue: Option<Duration>, ready: bool, resync_seconds: u64) -> Action {
    let resync = Duration::from_secs(resync_seconds.max(10));
    match requeue {
        Some(soon) if !ready || soon < resync => Action::requeue(soon),
        _ if !ready => Action::requeue(NOT_READY_RECHECK.min(resync)),
        _ => Action::requeue(resync),
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
}
