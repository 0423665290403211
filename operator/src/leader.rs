//! Leader election with a `coordination.k8s.io/v1` Lease, so two replicas never both write.
//!
//! A replica takes the Lease when it is free, expired (not renewed for `leaseDurationSeconds`)
//! or already its own, by replacing it at the `resourceVersion` it read: if another replica
//! wrote in between, the API server answers 409 and this one stays a standby. The leader
//! renews every few seconds; if a renewal fails past the lease duration, it stops (the process
//! exits and is restarted as a standby) rather than risk two writers.

use chrono::{DateTime, Utc};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};
use std::time::Duration;

pub const LEASE_SECONDS: i32 = 15;
const RENEW_EVERY: Duration = Duration::from_secs(5);
const RETRY_EVERY: Duration = Duration::from_secs(3);

/// Whether `me` may take (or keep) a Lease in this state at `now`.
pub fn may_hold(spec: Option<&LeaseSpec>, me: &str, now: DateTime<Utc>) -> bool {
    let Some(spec) = spec else { return true };
    match spec.holder_identity.as_deref() {
        None | Some("") => true,
        Some(holder) if holder == me => true,
        Some(_) => {
            let duration = i64::from(spec.lease_duration_seconds.unwrap_or(LEASE_SECONDS));
            let renewed = spec.renew_time.as_ref().or(spec.acquire_time.as_ref()).map(microtime_to_chrono);
            renewed.is_none_or(|t| t + chrono::Duration::seconds(duration) < now)
        }
    }
}

fn microtime_to_chrono(t: &MicroTime) -> DateTime<Utc> {
    DateTime::from_timestamp(t.0.as_second(), t.0.subsec_nanosecond().max(0) as u32).unwrap_or_default()
}

fn now_micro() -> MicroTime {
    MicroTime(k8s_openapi::jiff::Timestamp::now())
}

/// The state after `me` takes or renews the Lease.
pub fn held_by(spec: Option<&LeaseSpec>, me: &str) -> LeaseSpec {
    let now = now_micro();
    let mut next = spec.cloned().unwrap_or_default();
    let changed_hands = next.holder_identity.as_deref() != Some(me);
    if changed_hands {
        next.acquire_time = Some(now.clone());
        next.lease_transitions = Some(next.lease_transitions.unwrap_or(0) + 1);
    }
    next.holder_identity = Some(me.to_owned());
    next.lease_duration_seconds = Some(LEASE_SECONDS);
    next.renew_time = Some(now);
    next
}

pub struct Elector {
    api: Api<Lease>,
    name: String,
    identity: String,
}

impl Elector {
    pub fn new(client: Client, namespace: &str, name: &str, identity: &str) -> Self {
        Self { api: Api::namespaced(client, namespace), name: name.to_owned(), identity: identity.to_owned() }
    }

    /// One attempt: `Ok(true)` when this replica holds the Lease afterwards.
    pub async fn try_hold(&self) -> Result<bool, kube::Error> {
        match self.api.get_opt(&self.name).await? {
            None => {
                let lease = Lease {
                    metadata: ObjectMeta { name: Some(self.name.clone()), ..Default::default() },
                    spec: Some(held_by(None, &self.identity)),
                };
                match self.api.create(&PostParams::default(), &lease).await {
                    Ok(_) => Ok(true),
                    Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
                    Err(e) => Err(e),
                }
            }
            Some(mut lease) => {
                if !may_hold(lease.spec.as_ref(), &self.identity, Utc::now()) {
                    return Ok(false);
                }
                lease.spec = Some(held_by(lease.spec.as_ref(), &self.identity));
                match self.api.replace(&self.name, &PostParams::default(), &lease).await {
                    Ok(_) => Ok(true),
                    Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
                    Err(e) => Err(e),
                }
            }
        }
    }

    /// Waits until this replica is the leader.
    pub async fn acquire(&self) {
        loop {
            match self.try_hold().await {
                Ok(true) => return,
                Ok(false) => tracing::debug!(lease = %self.name, "another replica leads; standing by"),
                Err(err) => tracing::warn!(error = %err, "leader election failed; retrying"),
            }
            tokio::time::sleep(RETRY_EVERY).await;
        }
    }

    /// Renews the Lease until it is lost (another holder, or no successful renewal within the
    /// lease duration); then returns.
    pub async fn keep(&self) {
        let mut last_ok = tokio::time::Instant::now();
        loop {
            tokio::time::sleep(RENEW_EVERY).await;
            match self.try_hold().await {
                Ok(true) => last_ok = tokio::time::Instant::now(),
                Ok(false) => return,
                Err(err) => {
                    tracing::warn!(error = %err, "renewing the Lease failed");
                    if last_ok.elapsed() > Duration::from_secs(LEASE_SECONDS as u64) {
                        return;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(holder: &str, renewed_secs_ago: i64) -> LeaseSpec {
        let renewed =
            k8s_openapi::jiff::Timestamp::now() - k8s_openapi::jiff::SignedDuration::from_secs(renewed_secs_ago);
        LeaseSpec {
            holder_identity: Some(holder.into()),
            lease_duration_seconds: Some(LEASE_SECONDS),
            renew_time: Some(MicroTime(renewed)),
            ..Default::default()
        }
    }

    #[test]
    fn a_free_or_own_lease_may_be_held() {
        assert!(may_hold(None, "a", Utc::now()));
        assert!(may_hold(Some(&LeaseSpec::default()), "a", Utc::now()));
        assert!(may_hold(Some(&spec("a", 1)), "a", Utc::now()));
    }

    #[test]
    fn a_lease_renewed_by_another_is_respected_until_it_expires() {
        assert!(!may_hold(Some(&spec("b", 1)), "a", Utc::now()));
        assert!(may_hold(Some(&spec("b", 60)), "a", Utc::now()));
    }

    #[test]
    fn taking_a_lease_counts_a_transition_and_renewing_does_not() {
        let taken = held_by(Some(&spec("b", 60)), "a");
        assert_eq!(taken.holder_identity.as_deref(), Some("a"));
        assert_eq!(taken.lease_transitions, Some(1));
        let renewed = held_by(Some(&taken), "a");
        assert_eq!(renewed.lease_transitions, Some(1));
        assert_eq!(renewed.acquire_time, taken.acquire_time);
    }
}
