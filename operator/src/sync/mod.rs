//! Each kind's database step, with the Kubernetes inputs already fetched: `provision` brings
//! PostgreSQL to what the resource declares and reads back what its status reports; `cleanup`
//! applies its deletion policy.
//!
//! The controllers fetch what a resource refers to (the Organization a Workspace names, the
//! Secret holding a signing secret), call `provision` with it and a connection inside one
//! transaction, and turn the [`Outcome`] into a status, events and a requeue. Keeping the Kubernetes I/O out
//! means every path, the error paths included, is tested against a real PostgreSQL without a
//! cluster (`tests/operator`).

pub mod bot;
pub mod organization;
pub mod webhook;
pub mod workspace;

use crate::conditions::{Readiness, reason};
use crate::db::Applied;
use conclave_schema::Violation;

/// A Kubernetes event to publish about the resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    pub warning: bool,
    pub reason: &'static str,
    pub message: String,
}

impl Note {
    pub fn normal(reason: &'static str, message: impl Into<String>) -> Self {
        Self { warning: false, reason, message: message.into() }
    }

    pub fn warning(reason: &'static str, message: impl Into<String>) -> Self {
        Self { warning: true, reason, message: message.into() }
    }
}

/// What a `provision` concluded.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome<S> {
    pub readiness: Readiness,
    /// The status fields other than `conditions` and `observedGeneration`.
    pub status: S,
    pub notes: Vec<Note>,
}

impl<S: Default> Outcome<S> {
    /// Not ready, with a Warning event saying the same.
    pub fn blocked(reason: &'static str, message: impl Into<String>) -> Self {
        let message = message.into();
        Self {
            readiness: Readiness::not_ready(reason, message.clone()),
            status: S::default(),
            notes: vec![Note::warning(reason, message)],
        }
    }
}

/// Errors a `provision` or `cleanup` cannot turn into a condition by itself: the controller retries them with
/// back-off and reports `Ready=False, reason=DatabaseError`.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("{0}")]
    Other(#[from] anyhow::Error),
}

/// A constraint violation becomes a condition (the spec must change); anything else is retried.
pub(crate) fn violation_or<S: Default>(err: sqlx::Error) -> Result<Outcome<S>, SyncError> {
    match Violation::from_sqlx(&err) {
        Some(v) => Ok(Outcome::blocked(reason::CONFLICT, v.message)),
        None => Err(SyncError::Database(err)),
    }
}

/// The event for what an apply did, if it did anything.
pub(crate) fn applied_note(kind: &str, applied: &Applied) -> Option<Note> {
    match applied {
        Applied::Created(id) => Some(Note::normal("Provisioned", format!("{kind} {id} created in PostgreSQL"))),
        Applied::Adopted { id, .. } => {
            Some(Note::normal("Adopted", format!("took over the existing {kind} {id} (left by deletionPolicy Retain)")))
        }
        Applied::Updated { id, changed } => Some(Note::normal(
            "Updated",
            format!("{kind} {id}: brought {} back to the declared state", changed.join(", ")),
        )),
        Applied::UpToDate(_) | Applied::Conflict(_) => None,
    }
}
