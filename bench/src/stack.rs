//! What a run stands on: a database of its own (created and migrated as the owner role, dropped
//! at the end), a Redis namespace of its own, and data plane processes started from the release
//! binary, exactly as `conclave-dataplane serve` runs in production.

use anyhow::{Context, Result, bail};
use base64::Engine as _;
use conclave_testkit::replace_database;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{AssertSqlSafe, ConnectOptions, PgPool};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::str::FromStr;
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};
use uuid::Uuid;

/// The local stack's settings, as `scripts/stack.sh env` prints them.
#[derive(Debug, Clone)]
pub struct StackEnv {
    pub owner_url: String,
    pub app_url: String,
    pub redis_url: String,
}

impl StackEnv {
    pub fn from_env() -> Result<Self> {
        let var = |name: &str| {
            std::env::var(name)
                .with_context(|| format!("{name} is not set: run `eval \"$(scripts/stack.sh env)\"` first"))
        };
        Ok(Self {
            owner_url: var("CONCLAVE_OWNER_DATABASE_URL")?,
            app_url: var("CONCLAVE_DATABASE_URL")?,
            redis_url: std::env::var("CONCLAVE_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/".into()),
        })
    }

    /// `(host, port)` of Redis, for `redis-benchmark`.
    pub fn redis_host_port(&self) -> (String, u16) {
        let rest = self.redis_url.trim_start_matches("redis://");
        let authority = rest.split('/').next().unwrap_or("127.0.0.1:6379");
        let authority = authority.rsplit('@').next().unwrap_or(authority);
        let (host, port) = authority.rsplit_once(':').unwrap_or((authority, "6379"));
        (host.to_owned(), port.parse().unwrap_or(6379))
    }
}

/// A database a run created as the owner role and marked as this process's, so a sweep drops it
/// only once the run has ended without dropping it (`--keep-database`, or killed).
pub struct RunDatabase {
    pub name: String,
    /// The owner role on the `postgres` database, where databases are created and dropped.
    maintenance: PgConnectOptions,
}

impl RunDatabase {
    /// `CREATE DATABASE "name" <options>` as the owner role, then the mark.
    pub async fn create(env: &StackEnv, name: String, options: &str) -> Result<Self> {
        let maintenance = PgConnectOptions::from_str(&env.owner_url)?.database("postgres").disable_statement_logging();
        let mut conn = maintenance.connect().await.context("connecting as the owner role (is the stack up?)")?;
        sqlx::raw_sql(AssertSqlSafe(format!("CREATE DATABASE \"{name}\" {options}")))
            .execute(&mut conn)
            .await
            .with_context(|| format!("creating database {name}"))?;
        conclave_testkit::owner::mark_database(&mut conn, &name).await?;
        Ok(Self { name, maintenance })
    }

    /// Leaves the database for the user: its owner mark is replaced, so no sweep ever takes it
    /// for abandoned.
    pub async fn keep(&self, by: &str) -> Result<()> {
        self.maintain(format!("COMMENT ON DATABASE \"{}\" IS 'kept by {by}'", self.name)).await
    }

    /// Drops the database, closing whatever sessions are still on it.
    pub async fn drop_database(&self) -> Result<()> {
        self.maintain(format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name)).await
    }

    async fn maintain(&self, sql: String) -> Result<()> {
        let mut conn = self.maintenance.connect().await?;
        sqlx::raw_sql(AssertSqlSafe(sql)).execute(&mut conn).await?;
        Ok(())
    }
}

/// The run's own database, migrated, with a pool on it as the owner role.
pub struct BenchDb {
    pub name: String,
    pub owner: PgPool,
    pub owner_url: String,
    pub app_url: String,
    database: RunDatabase,
}

impl BenchDb {
    pub async fn create(env: &StackEnv, run_id: &str) -> Result<Self> {
        let database = RunDatabase::create(env, format!("conclave_bench_{run_id}"), "").await?;
        let name = database.name.clone();
        let owner_url = replace_database(&env.owner_url, &name);
        let owner = PgPoolOptions::new()
            .max_connections(8)
            .connect_with(PgConnectOptions::from_str(&owner_url)?.disable_statement_logging())
            .await?;
        conclave_schema::migrate(&owner).await.context("migrating the benchmark database")?;
        Ok(Self { app_url: replace_database(&env.app_url, &name), owner_url, name, owner, database })
    }

    /// Leaves the database for the user (`--keep-database`).
    pub async fn keep(self) -> Result<()> {
        self.owner.close().await;
        self.database.keep("conclave-bench --keep-database").await
    }

    pub async fn drop_database(self) -> Result<()> {
        self.owner.close().await;
        self.database.drop_database().await
    }
}

/// Builds the release data plane (unless a binary is given) and returns its path.
pub async fn dataplane_binary(given: Option<PathBuf>) -> Result<PathBuf> {
    if let Some(path) = given {
        return Ok(path);
    }
    let root = workspace_root();
    eprintln!("[bench] cargo build --release -p conclave-dataplane (waits for cargo's lock if others build)");
    let status = Command::new("cargo")
        .args(["build", "--release", "--quiet", "-p", "conclave-dataplane"])
        .current_dir(&root)
        .status()
        .await
        .context("running cargo")?;
    if !status.success() {
        bail!("building the data plane failed");
    }
    let target = std::env::var("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|_| root.join("target"));
    Ok(target.join("release").join("conclave-dataplane"))
}

/// Builds the release operator (run as the e2e harness runs it: next to this binary, in
/// `target/release`) and returns its path.
pub async fn operator_binary() -> Result<PathBuf> {
    let root = workspace_root();
    eprintln!("[bench] cargo build --release -p conclave-operator (waits for cargo's lock if others build)");
    let status = Command::new("cargo")
        .args(["build", "--release", "--quiet", "-p", "conclave-operator"])
        .current_dir(&root)
        .status()
        .await
        .context("running cargo")?;
    if !status.success() {
        bail!("building the operator failed");
    }
    conclave_e2e::tools::our_binary("conclave-operator")
}

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(Path::to_path_buf).unwrap_or_default()
}

/// Writes an Ed25519 signing key as PKCS#8 PEM (RFC 8410), which every replica loads, so
/// tokens from one are accepted by the others.
pub fn write_jwt_key(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    write_ed25519_key(&dir.join("bench-1.pem"))
}

/// A new Ed25519 key as PKCS#8 PEM (what the JWT signing and MLS removal keys are).
fn write_ed25519_key(path: &Path) -> Result<()> {
    // PKCS#8 v1 PrivateKeyInfo for Ed25519: a fixed 16-byte header, then the 32-byte seed.
    let mut der = vec![0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20];
    der.extend_from_slice(Uuid::new_v4().as_bytes());
    der.extend_from_slice(Uuid::new_v4().as_bytes());
    let pem = format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
        base64::engine::general_purpose::STANDARD.encode(&der)
    );
    std::fs::write(path, pem)?;
    Ok(())
}

/// Settings shared by the data plane processes of a run.
#[derive(Debug, Clone)]
pub struct DataplaneSettings {
    pub binary: PathBuf,
    pub db_connections: u32,
    pub outbox_poll_ms: u64,
    /// Accept push subscriptions at `http://` loopback endpoints (the test push service).
    pub push_loopback: bool,
    /// More `serve` arguments (a mode's own settings).
    pub extra_args: Vec<String>,
}

/// A running data plane; killed when dropped.
pub struct Dataplane {
    pub base: String,
    pub port: u16,
    pub child: Child,
    pub log: PathBuf,
}

impl Dataplane {
    pub fn pid(&self) -> u32 {
        self.child.id().unwrap_or(0)
    }
}

pub fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Starts `count` replicas on one database, Redis namespace and JWT key, and waits until each
/// answers `/readyz`.
pub async fn start_dataplanes(
    settings: &DataplaneSettings,
    env: &StackEnv,
    db: &BenchDb,
    work_dir: &Path,
    namespace: &str,
    count: usize,
) -> Result<Vec<Dataplane>> {
    // Replicas started later in the same run share the first ones' signing key and log beside them.
    let keys = work_dir.join("jwt");
    let removal_key = work_dir.join("mls-removal.pem");
    if !removal_key.exists() {
        write_ed25519_key(&removal_key)?;
    }
    if !keys.join("bench-1.pem").exists() {
        write_jwt_key(&keys)?;
    }
    let started = std::fs::read_dir(work_dir)?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("dataplane-"))
        .count();
    let mut planes = Vec::new();
    for i in started..started + count {
        let port = free_port()?;
        let base = format!("http://127.0.0.1:{port}");
        let log = work_dir.join(format!("dataplane-{i}.log"));
        let mut command = Command::new(&settings.binary);
        command
            .arg("serve")
            .args(["--listen", &format!("127.0.0.1:{port}"), "--public-url", &base])
            .args(["--database-url", &db.app_url, "--redis-url", &env.redis_url, "--redis-namespace", namespace])
            .args(["--database-max-connections", &settings.db_connections.to_string()])
            .args(["--jwt-keys-dir", &keys.to_string_lossy()])
            .args(["--mls-removal-key-file", &removal_key.to_string_lossy()])
            .args(["--rate-limit-factor", "1000000", "--outbox-poll-ms", &settings.outbox_poll_ms.to_string()])
            // Every simulated client connects from loopback: the per-address cap would stop the
            // load at 1,024 sockets.
            .args(["--max-connections-per-address", "0"])
            .args(settings.push_loopback.then_some("--push-allow-loopback-http"))
            .args(&settings.extra_args);
        let child =
            spawn_logged(&mut command, &log).with_context(|| format!("starting {}", settings.binary.display()))?;
        planes.push(Dataplane { base, port, child, log });
    }
    let http = reqwest::Client::new();
    for plane in &mut planes {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = plane.child.try_wait()? {
                bail!("the data plane exited ({status}); see {}", plane.log.display());
            }
            let ready = http.get(format!("{}/readyz", plane.base)).send().await.is_ok_and(|r| r.status().is_success());
            if ready {
                break;
            }
            if Instant::now() > deadline {
                bail!("the data plane did not become ready in 30 s; see {}", plane.log.display());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(planes)
}

/// Starts `command` with no input, its output and errors to `log`, killed if its handle is dropped.
pub fn spawn_logged(command: &mut Command, log: &Path) -> Result<Child> {
    let file = std::fs::File::create(log)?;
    Ok(command.stdin(Stdio::null()).stdout(file.try_clone()?).stderr(file).kill_on_drop(true).spawn()?)
}

/// Stops the replicas with SIGTERM-free kill (the figures are taken before).
pub async fn stop_dataplanes(planes: Vec<Dataplane>) {
    for mut plane in planes {
        let _ = plane.child.kill().await;
    }
}

/// PostgreSQL's version, `synchronous_commit` and `fsync` as the data plane's role sees them.
pub async fn postgres_settings(app_url: &str) -> Result<(String, String, String)> {
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect_with(PgConnectOptions::from_str(app_url)?.disable_statement_logging())
        .await?;
    let version: String = sqlx::query_scalar("SHOW server_version").fetch_one(&pool).await?;
    let sync: String = sqlx::query_scalar("SHOW synchronous_commit").fetch_one(&pool).await?;
    let fsync: String = sqlx::query_scalar("SHOW fsync").fetch_one(&pool).await?;
    pool.close().await;
    Ok((version, sync, fsync))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redis_host_and_port_come_from_the_url() {
        let env =
            StackEnv { owner_url: String::new(), app_url: String::new(), redis_url: "redis://127.0.0.1:6380/".into() };
        assert_eq!(env.redis_host_port(), ("127.0.0.1".to_owned(), 6380));
    }
}
