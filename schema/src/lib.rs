//! The Conclave database, as every program sees it.
//!
//! The schema lives in `migrations/` at the repository root (plain SQL, applied by sqlx) and is
//! embedded here so the data plane, the operator and the tests all apply exactly the same files.
//! Three things belong to the schema rather than to any one program:
//!
//! * [`MIGRATOR`]: the embedded migrations; applying them twice is a no-op.
//! * [`TenantContext`]: how a transaction declares the organization (and user) it acts for, which
//!   row-level security then enforces for the [`APP_ROLE`].
//! * [`Violation`]: a database constraint error turned into something a person can read, so each
//!   caller maps it to its own surface (an HTTP error, a `Ready=False` reason) in one place.

mod tenant;
mod violation;

pub use tenant::TenantContext;
pub use violation::{Violation, ViolationKind};

/// The migrations in `migrations/`, embedded at build time.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

/// The role the data plane works as; row-level security applies to it.
pub const APP_ROLE: &str = "conclave_app";

/// Applies every pending migration. Safe to run concurrently from several processes: sqlx takes
/// an advisory lock for the duration.
pub async fn migrate(pool: &sqlx::PgPool) -> Result<(), sqlx::migrate::MigrateError> {
    MIGRATOR.run(pool).await
}

/// The version of the newest migration embedded in this build (what a fully migrated database
/// reports as its schema version).
pub fn latest_version() -> i64 {
    MIGRATOR.iter().map(|m| m.version).max().unwrap_or(0)
}
