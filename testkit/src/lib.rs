//! Test support shared by every crate's integration tests.
//!
//! [`TestDb::new`] gives each test its own database, copied from a template that was migrated
//! once (keyed by a digest of `migrations/`, so a changed migration makes a new template). Tests
//! therefore never share rows, never depend on order, and a copy costs milliseconds instead of
//! a full migration. The database is dropped when the [`TestDb`] is; one whose process died
//! before it could drop it is found by [`owner::sweep_abandoned`] (the `conclave-test-sweep`
//! binary that `scripts/test.sh` runs), which never touches a database whose process still runs.
//!
//! Configuration comes from the environment that `scripts/stack.sh env` prints:
//! `CONCLAVE_TEST_OWNER_URL` (a role that may create databases and owns the schema) and
//! `CONCLAVE_TEST_APP_URL` (a `conclave_app` login, subject to row-level security). The paths of
//! those URLs are ignored; each test connects to its own database.

pub mod accounts;
mod fixtures;
pub mod owner;
pub mod smtp;
pub mod turn;
pub mod webpush;

pub use fixtures::{
    Organization, Tenant, end_bot_token_overlap, rotate_bot_token, seed_bot_agent, seed_organization, seed_tenant,
};

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{AssertSqlSafe, ConnectOptions, Connection, PgConnection, PgPool};
use std::str::FromStr;
use tokio::sync::OnceCell;

/// A database of one's own for one test.
pub struct TestDb {
    pub name: String,
    /// Connected as the schema owner: bypasses row-level security (seeding, assertions).
    pub owner: PgPool,
    /// Connected as `conclave_app`: what the data plane sees.
    pub app: PgPool,
    owner_options: PgConnectOptions,
    app_options: PgConnectOptions,
}

static TEMPLATE: OnceCell<String> = OnceCell::const_new();

fn env_options(var: &str) -> Result<PgConnectOptions> {
    let url = std::env::var(var).with_context(|| {
        format!("{var} is not set: run the tests through scripts/test.sh, or `eval \"$(scripts/stack.sh env)\"` first")
    })?;
    PgConnectOptions::from_str(&url).with_context(|| format!("{var} is not a valid PostgreSQL URL"))
}

/// A digest of every migration, so a template is rebuilt exactly when the schema changes.
fn migrations_digest() -> String {
    let mut hasher = Sha256::new();
    for migration in conclave_schema::MIGRATOR.iter() {
        hasher.update(migration.version.to_le_bytes());
        hasher.update(migration.checksum.as_ref());
    }
    hex::encode(&hasher.finalize()[..8])
}

pub(crate) async fn maintenance(owner: &PgConnectOptions) -> Result<PgConnection> {
    owner
        .clone()
        .database("postgres")
        .connect()
        .await
        .context("connecting to the maintenance database as the owner role (is the stack up? scripts/stack.sh up)")
}

/// Creates (once per schema version, safely across concurrent test processes) a migrated
/// template database and returns its name.
async fn template(owner: &PgConnectOptions) -> Result<String> {
    let name = format!("conclave_tpl_{}", migrations_digest());
    let mut conn = maintenance(owner).await?;
    // One creator at a time across processes; the others wait and then find it ready.
    sqlx::raw_sql("SELECT pg_advisory_lock(7263510)").execute(&mut conn).await?;
    let result = async {
        let exists: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1 AND datistemplate)")
                .bind(&name)
                .fetch_one(&mut conn)
                .await?;
        if !exists {
            sqlx::raw_sql(AssertSqlSafe(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)")))
                .execute(&mut conn)
                .await?;
            sqlx::raw_sql(AssertSqlSafe(format!("CREATE DATABASE \"{name}\""))).execute(&mut conn).await?;
            let pool = PgPoolOptions::new().max_connections(1).connect_with(owner.clone().database(&name)).await?;
            conclave_schema::migrate(&pool).await.context("migrating the template database")?;
            pool.close().await;
            sqlx::raw_sql(AssertSqlSafe(format!("ALTER DATABASE \"{name}\" WITH IS_TEMPLATE true")))
                .execute(&mut conn)
                .await?;
        }
        anyhow::Ok(())
    }
    .await;
    sqlx::raw_sql("SELECT pg_advisory_unlock(7263510)").execute(&mut conn).await?;
    result?;
    Ok(name)
}

/// The name prefix of the tests' databases.
pub const TEST_PREFIX: &str = "conclave_test";

impl TestDb {
    /// A new, fully migrated database with pools for the owner and the app role.
    pub async fn new() -> Result<Self> {
        Self::with_prefix(TEST_PREFIX).await
    }

    /// [`TestDb::new`] with a name of its own kind, `<prefix>_<random>` (the demo's is
    /// `conclave_demo`), so that what it is can be told from its name.
    pub async fn with_prefix(prefix: &str) -> Result<Self> {
        if !prefix.starts_with("conclave_") || !prefix.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') {
            bail!("a database prefix is `conclave_` and lowercase letters, not {prefix:?}");
        }
        let owner_options = env_options("CONCLAVE_TEST_OWNER_URL")?.disable_statement_logging();
        let app_options = env_options("CONCLAVE_TEST_APP_URL")?.disable_statement_logging();
        let template = TEMPLATE.get_or_try_init(|| template(&owner_options)).await?.clone();
        let name = format!("{prefix}_{}", uuid::Uuid::new_v4().simple());
        let mut conn = maintenance(&owner_options).await?;
        sqlx::raw_sql(AssertSqlSafe(format!("CREATE DATABASE \"{name}\" TEMPLATE \"{template}\"")))
            .execute(&mut conn)
            .await
            .with_context(|| format!("creating {name} from {template}"))?;
        // Until it is marked, a sweep keeps it (no mark, no proof that it is abandoned).
        if let Err(e) = owner::mark_database(&mut conn, &name).await {
            let _ = sqlx::raw_sql(AssertSqlSafe(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)")))
                .execute(&mut conn)
                .await;
            return Err(e);
        }
        conn.close().await?;
        let owner = PgPoolOptions::new().max_connections(4).connect_with(owner_options.clone().database(&name)).await?;
        let app = PgPoolOptions::new().max_connections(8).connect_with(app_options.clone().database(&name)).await?;
        let role: String = sqlx::query_scalar("SELECT current_user::text").fetch_one(&app).await?;
        if role != conclave_schema::APP_ROLE {
            bail!("CONCLAVE_TEST_APP_URL logs in as {role}, expected {}", conclave_schema::APP_ROLE);
        }
        Ok(Self { name, owner, app, owner_options, app_options })
    }

    /// A PostgreSQL URL for this database as the app role (for configuring a data plane).
    pub fn app_url(&self) -> String {
        replace_database(&std::env::var("CONCLAVE_TEST_APP_URL").unwrap_or_default(), &self.name)
    }

    /// A PostgreSQL URL for this database as the owner role.
    pub fn owner_url(&self) -> String {
        replace_database(&std::env::var("CONCLAVE_TEST_OWNER_URL").unwrap_or_default(), &self.name)
    }

    /// Connection options for this database as the app role (for starting a data plane on it).
    pub fn app_options(&self) -> PgConnectOptions {
        self.app_options.clone().database(&self.name)
    }

    /// Connection options for this database as the owner role (for the operator, migrations).
    pub fn owner_options(&self) -> PgConnectOptions {
        self.owner_options.clone().database(&self.name)
    }
}

/// `postgres://user:pw@host:port/anything?x` with its database replaced by `name`.
pub fn replace_database(url: &str, name: &str) -> String {
    let (base, query) = url.split_once('?').map(|(b, q)| (b, Some(q))).unwrap_or((url, None));
    let authority_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let path_start = base[authority_end..].find('/').map(|i| i + authority_end).unwrap_or(base.len());
    let mut out = format!("{}/{}", &base[..path_start], name);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

impl Drop for TestDb {
    fn drop(&mut self) {
        // The test's runtime may be shutting down, so drop the database from a thread of our own.
        // FORCE ends the pools' connections; a failure here only leaves a database behind, which
        // the next sweep (scripts/test.sh) drops once this process has ended.
        let options = self.owner_options.clone();
        let name = self.name.clone();
        let _ = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
                return;
            };
            runtime.block_on(async move {
                if let Ok(mut conn) = maintenance(&options).await {
                    let _ = sqlx::raw_sql(AssertSqlSafe(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)")))
                        .execute(&mut conn)
                        .await;
                }
            });
        })
        .join();
    }
}

#[cfg(test)]
mod tests {
    use super::replace_database;

    #[test]
    fn the_database_of_a_url_is_replaced() {
        assert_eq!(replace_database("postgres://u:p@h:5432/conclave", "b"), "postgres://u:p@h:5432/b");
        assert_eq!(replace_database("postgres://u:p@h/c?sslmode=disable", "b"), "postgres://u:p@h/b?sslmode=disable");
        assert_eq!(replace_database("postgres://u:p@h:5432", "b"), "postgres://u:p@h:5432/b");
    }
}
