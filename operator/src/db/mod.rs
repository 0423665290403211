//! The PostgreSQL side: small functions taking `&mut PgConnection`, run as the schema owner
//! (row-level security does not apply to it). Each kind's `apply` reads what is there, asks the
//! [`plan`](crate::plan) what to do, and writes it; the caller owns the transaction. Every query
//! is a `sqlx::query!` macro, checked against the migrated schema when the crate compiles (its
//! offline data is in the repository's `.sqlx/`).

pub mod audit;
pub mod bot;
pub mod organization;
pub mod webhook;
pub mod workspace;

use crate::plan::{K8sRef, RowAction};
use sqlx::PgConnection;
use uuid::Uuid;

/// What an `apply` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    Created(Uuid),
    Adopted {
        id: Uuid,
        changed: Vec<&'static str>,
    },
    Updated {
        id: Uuid,
        changed: Vec<&'static str>,
    },
    UpToDate(Uuid),
    /// Nothing was written: the identity belongs to another resource.
    Conflict(String),
}

impl Applied {
    pub fn id(&self) -> Option<Uuid> {
        match self {
            Self::Created(id) | Self::Adopted { id, .. } | Self::Updated { id, .. } | Self::UpToDate(id) => Some(*id),
            Self::Conflict(_) => None,
        }
    }

    pub(crate) fn from_action(action: &RowAction, created: Option<Uuid>) -> Self {
        match action {
            RowAction::Create => Self::Created(created.unwrap_or_default()),
            RowAction::Adopt { id, changed } => Self::Adopted { id: *id, changed: changed.clone() },
            RowAction::Update { id, changed } => Self::Updated { id: *id, changed: changed.clone() },
            RowAction::UpToDate { id } => Self::UpToDate(*id),
            RowAction::Conflict { message } => Self::Conflict(message.clone()),
        }
    }
}

pub(crate) fn k8s_ref(namespace: Option<String>, name: Option<String>) -> Option<K8sRef> {
    Some(K8sRef { namespace: namespace?, name: name? })
}

/// The newest migration applied to the database, if any.
pub async fn schema_version(conn: &mut PgConnection) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query_scalar!("SELECT max(version) FROM _sqlx_migrations WHERE success").fetch_one(conn).await
}
