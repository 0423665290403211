//! Spacing out status writes that change only an object's counts.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The least time between two status writes of an object that change only its counts.
pub(super) const COUNTS_INTERVAL: Duration = Duration::from_secs(10);

/// Spaces out writes per object: at most one per interval. Provisioning a thousand Workspaces
/// moves their Organizations' counts a thousand times; written at most every few seconds per
/// Organization, they cost the API server a fraction of the writes and are never staler than
/// the interval.
pub struct Pacer {
    interval: Duration,
    /// When each object's last paced write was let through, by uid.
    last: Mutex<HashMap<String, Instant>>,
}

impl Pacer {
    pub fn new(interval: Duration) -> Self {
        Self { interval, last: Mutex::new(HashMap::new()) }
    }

    /// `None`: write now (remembered as the last write); or how long to wait, because the last
    /// one was less than the interval before `now`.
    pub fn wait(&self, uid: &str, now: Instant) -> Option<Duration> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn count_only_writes_are_spaced_out_per_object() {
        let pacer = Pacer::new(Duration::from_secs(10));
        let t0 = Instant::now();
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
}
