//! Generated credentials kept in a Secret, rotated on request with an overlap window.
//!
//! The Secret is the source of truth for the credential; the database only mirrors it (a digest,
//! or a sealed copy). So a crash between writing the Secret and writing the database repairs
//! itself on the next reconcile, and a row tampered with behind the operator's back is put
//! back from the Secret.
//!
//! A rotation is requested by changing an annotation on the resource to any new value. The
//! Secret records the request it last answered (annotation `conclave.io/rotation-handled`), so
//! the same request is never answered twice, even across operator restarts.

use chrono::{DateTime, Duration, Utc};

/// The state of one rotating credential, as kept in its Secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rotating {
    pub current: String,
    /// The credential before the last rotation, still accepted until `previous_expires_at`.
    pub previous: Option<String>,
    pub previous_expires_at: Option<DateTime<Utc>>,
    /// When `current` was issued.
    pub issued_at: Option<DateTime<Utc>>,
    /// The last rotation request answered (the annotation's value).
    pub rotation_handled: Option<String>,
}

/// What to do with the Secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretPlan {
    /// It is as it should be.
    Keep(Rotating),
    /// Write this (a first credential, a rotation, or the end of an overlap).
    Write { state: Rotating, why: Why },
}

impl SecretPlan {
    pub fn state(&self) -> &Rotating {
        match self {
            Self::Keep(s) | Self::Write { state: s, .. } => s,
        }
    }
}

/// Why the Secret is written (also the event's reason).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    Generated,
    Rotated,
    OverlapEnded,
}

impl Why {
    pub fn reason(self) -> &'static str {
        match self {
            Self::Generated => "SecretGenerated",
            Self::Rotated => "SecretRotated",
            Self::OverlapEnded => "PreviousSecretExpired",
        }
    }
}

/// Decides the Secret's next state. `fresh` makes a new credential, and is called only when one
/// is needed. With `overlap` zero the previous credential stops working at once.
pub fn plan<E>(
    existing: Option<Rotating>,
    rotate_request: Option<&str>,
    overlap: Duration,
    now: DateTime<Utc>,
    fresh: impl FnOnce() -> Result<String, E>,
) -> Result<SecretPlan, E> {
    let Some(existing) = existing else {
        let state = Rotating {
            current: fresh()?,
            previous: None,
            previous_expires_at: None,
            issued_at: Some(now),
            rotation_handled: rotate_request.map(str::to_owned),
        };
        return Ok(SecretPlan::Write { state, why: Why::Generated });
    };
    if let Some(request) = rotate_request
        && existing.rotation_handled.as_deref() != Some(request)
    {
        let keep_previous = overlap > Duration::zero();
        let state = Rotating {
            current: fresh()?,
            previous: keep_previous.then(|| existing.current.clone()),
            previous_expires_at: keep_previous.then(|| now + overlap),
            issued_at: Some(now),
            rotation_handled: Some(request.to_owned()),
        };
        return Ok(SecretPlan::Write { state, why: Why::Rotated });
    }
    let expired = existing.previous.is_some() && existing.previous_expires_at.is_none_or(|at| at <= now);
    if expired {
        let state = Rotating { previous: None, previous_expires_at: None, ..existing };
        return Ok(SecretPlan::Write { state, why: Why::OverlapEnded });
    }
    Ok(SecretPlan::Keep(existing))
}

/// When the next reconcile must happen for the overlap to end on time.
pub fn next_deadline(state: &Rotating, now: DateTime<Utc>) -> Option<std::time::Duration> {
    let at = state.previous_expires_at?;
    Some((at - now).to_std().unwrap_or_default() + std::time::Duration::from_secs(1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;

    fn t(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + secs, 0).expect("a valid time")
    }

    fn fresh(value: &'static str) -> impl FnOnce() -> Result<String, Infallible> {
        move || Ok(value.to_owned())
    }

    fn state(current: &str, handled: Option<&str>) -> Rotating {
        Rotating {
            current: current.into(),
            previous: None,
            previous_expires_at: None,
            issued_at: Some(t(0)),
            rotation_handled: handled.map(Into::into),
        }
    }

    #[test]
    fn a_missing_secret_is_generated_and_remembers_a_pending_request() {
        let plan = plan(None, Some("r1"), Duration::hours(1), t(0), fresh("new")).expect("plan");
        assert_eq!(plan, SecretPlan::Write { state: state("new", Some("r1")), why: Why::Generated });
    }

    #[test]
    fn an_existing_secret_without_a_new_request_is_kept() {
        let existing = state("old", Some("r1"));
        let plan =
            plan(Some(existing.clone()), Some("r1"), Duration::hours(1), t(10), || -> Result<String, Infallible> {
                panic!("no new credential may be made")
            })
            .expect("plan");
        assert_eq!(plan, SecretPlan::Keep(existing));
    }

    #[test]
    fn a_new_request_rotates_and_keeps_the_old_credential_for_the_overlap() {
        let plan =
            plan(Some(state("old", Some("r1"))), Some("r2"), Duration::hours(1), t(10), fresh("new")).expect("plan");
        let SecretPlan::Write { state, why } = plan else { panic!("expected a write") };
        assert_eq!(why, Why::Rotated);
        assert_eq!(state.current, "new");
        assert_eq!(state.previous.as_deref(), Some("old"));
        assert_eq!(state.previous_expires_at, Some(t(3610)));
        assert_eq!(state.rotation_handled.as_deref(), Some("r2"));
    }

    #[test]
    fn a_rotation_without_overlap_forgets_the_old_credential() {
        let plan = plan(Some(state("old", None)), Some("r1"), Duration::zero(), t(10), fresh("new")).expect("plan");
        assert_eq!(plan.state().previous, None);
        assert_eq!(plan.state().previous_expires_at, None);
    }

    #[test]
    fn the_previous_credential_is_dropped_once_the_overlap_ends() {
        let mut existing = state("new", Some("r2"));
        existing.previous = Some("old".into());
        existing.previous_expires_at = Some(t(100));
        let before = plan(Some(existing.clone()), Some("r2"), Duration::hours(1), t(99), fresh("x")).expect("plan");
        assert_eq!(before, SecretPlan::Keep(existing.clone()));
        assert_eq!(next_deadline(before.state(), t(99)), Some(std::time::Duration::from_secs(2)));
        let after = plan(Some(existing), Some("r2"), Duration::hours(1), t(100), fresh("x")).expect("plan");
        let SecretPlan::Write { state, why } = after else { panic!("expected a write") };
        assert_eq!(why, Why::OverlapEnded);
        assert_eq!((state.current.as_str(), state.previous), ("new", None));
    }

    #[test]
    fn a_failing_generator_is_an_error_not_a_plan() {
        let result = plan(None, None, Duration::zero(), t(0), || Err("no randomness"));
        assert_eq!(result, Err("no randomness"));
    }
}
