//! The `Ready` condition, built by one helper for every kind.

use conclave_resources::{Condition, ConditionStatus};

/// The reasons the operator reports, as stable CamelCase words (also used as event reasons).
pub mod reason {
    /// Everything declared exists as declared.
    pub const PROVISIONED: &str = "Provisioned";
    /// The DataPlane's Deployment has all replicas ready on the declared version.
    pub const AVAILABLE: &str = "Available";
    pub const INVALID_SPEC: &str = "InvalidSpec";
    /// A WebhookEndpoint the data plane disabled after its failure budget.
    pub const AUTO_DISABLED: &str = "AutoDisabled";
    /// A WebhookEndpoint enabled again after it was disabled (an event reason).
    pub const RE_ENABLED: &str = "ReEnabled";
    pub const ORGANIZATION_NOT_FOUND: &str = "OrganizationNotFound";
    pub const ORGANIZATION_NOT_READY: &str = "OrganizationNotReady";
    pub const WORKSPACE_NOT_FOUND: &str = "WorkspaceNotFound";
    pub const WORKSPACE_NOT_READY: &str = "WorkspaceNotReady";
    pub const SECRET_NOT_FOUND: &str = "SecretNotFound";
    pub const SECRET_KEY_MISSING: &str = "SecretKeyMissing";
    pub const AT_REST_KEY_MISSING: &str = "AtRestKeyMissing";
    /// The slug (or Kubernetes name) is already taken by a tenant another resource manages.
    pub const CONFLICT: &str = "Conflict";
    pub const LEGAL_HOLD_TARGET_NOT_FOUND: &str = "LegalHoldTargetNotFound";
    pub const DATABASE_ERROR: &str = "DatabaseError";
    pub const KUBERNETES_ERROR: &str = "KubernetesError";
    pub const MIGRATING: &str = "Migrating";
    pub const MIGRATION_FAILED: &str = "MigrationFailed";
    pub const ROLLING_OUT: &str = "RollingOut";
    pub const DELETING: &str = "Deleting";
    pub const WAITING_FOR_WORKSPACES: &str = "WaitingForWorkspaces";
}

/// What a reconcile concluded about readiness.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Readiness {
    pub ready: bool,
    pub reason: &'static str,
    pub message: String,
}

impl Readiness {
    pub fn ready(reason: &'static str, message: impl Into<String>) -> Self {
        Self { ready: true, reason, message: message.into() }
    }

    pub fn not_ready(reason: &'static str, message: impl Into<String>) -> Self {
        Self { ready: false, reason, message: message.into() }
    }
}

/// The conditions after this reconcile: `previous` with its `Ready` condition replaced. The
/// transition time moves only when the status flips, so an unchanged outcome produces equal
/// conditions and therefore no status write.
pub fn with_ready(previous: &[Condition], generation: Option<i64>, readiness: &Readiness, now: &str) -> Vec<Condition> {
    let status = if readiness.ready { ConditionStatus::True } else { ConditionStatus::False };
    let old = previous.iter().find(|c| c.type_ == conclave_resources::common::READY);
    let last_transition_time = match old {
        Some(old) if old.status == status => old.last_transition_time.clone(),
        _ => now.to_owned(),
    };
    let ready = Condition {
        type_: conclave_resources::common::READY.to_owned(),
        status,
        reason: readiness.reason.to_owned(),
        message: readiness.message.clone(),
        last_transition_time,
        observed_generation: generation,
    };
    let mut out: Vec<Condition> =
        previous.iter().filter(|c| c.type_ != conclave_resources::common::READY).cloned().collect();
    out.insert(0, ready);
    out
}

/// The `Ready` condition among `conditions`, if any.
pub fn ready_of(conditions: &[Condition]) -> Option<&Condition> {
    conditions.iter().find(|c| c.type_ == conclave_resources::common::READY)
}

/// Whether a status's `Ready` condition is `True`.
pub fn ready_in(conditions: &[Condition]) -> bool {
    ready_of(conditions).is_some_and(|c| c.status == ConditionStatus::True)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unchanged_outcome_keeps_the_transition_time() {
        let first = with_ready(&[], Some(1), &Readiness::ready(reason::PROVISIONED, "ok"), "2026-01-01T00:00:00Z");
        let second = with_ready(&first, Some(1), &Readiness::ready(reason::PROVISIONED, "ok"), "2026-01-02T00:00:00Z");
        assert_eq!(first, second);
    }

    #[test]
    fn a_flip_moves_the_transition_time_and_carries_reason_and_message() {
        let first = with_ready(&[], Some(1), &Readiness::ready(reason::PROVISIONED, "ok"), "t1");
        let flipped = with_ready(
            &first,
            Some(2),
            &Readiness::not_ready(reason::ORGANIZATION_NOT_FOUND, "Organization acme does not exist"),
            "t2",
        );
        let ready = ready_of(&flipped).expect("a Ready condition");
        assert_eq!(ready.status, ConditionStatus::False);
        assert_eq!(ready.reason, "OrganizationNotFound");
        assert_eq!(ready.message, "Organization acme does not exist");
        assert_eq!(ready.last_transition_time, "t2");
        assert_eq!(ready.observed_generation, Some(2));
        assert_eq!(flipped.len(), 1);
    }

    #[test]
    fn other_conditions_are_kept() {
        let other = Condition {
            type_: "Synced".into(),
            status: ConditionStatus::True,
            reason: "X".into(),
            message: String::new(),
            last_transition_time: "t0".into(),
            observed_generation: None,
        };
        let out = with_ready(std::slice::from_ref(&other), None, &Readiness::ready(reason::PROVISIONED, ""), "t1");
        assert_eq!(out.len(), 2);
        assert!(out.contains(&other));
    }
}
