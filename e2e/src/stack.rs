//! PostgreSQL and Redis from `scripts/stack.sh`, and the Secrets that hand them to Kubernetes.
//!
//! Each run gets a database of its own (testkit's [`TestDb`]: a copy of the migrated template,
//! named with the run's kind: `conclave_test_…` for the suite, `conclave_demo_…` for the demo),
//! so it never collides with other runs; it is dropped with the [`Stack`].

use anyhow::{Context, Result};
use conclave_testkit::TestDb;
use serde_json::{Value, json};

pub struct Stack {
    pub db: TestDb,
    pub redis_url: String,
}

/// The parts of a `postgres://user:password@host:port/dbname` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgUrl {
    pub username: String,
    pub password: String,
    pub host: String,
    pub port: String,
    pub dbname: String,
}

pub fn parse_pg_url(url: &str) -> Result<PgUrl> {
    let rest = url.split_once("://").map(|(_, r)| r).context("no scheme in the PostgreSQL URL")?;
    let (auth, rest) = rest.rsplit_once('@').context("no credentials in the PostgreSQL URL")?;
    let (username, password) = auth.split_once(':').unwrap_or((auth, ""));
    let (hostport, db) = rest.split_once('/').unwrap_or((rest, ""));
    let dbname = db.split('?').next().unwrap_or_default();
    let (host, port) = hostport.rsplit_once(':').unwrap_or((hostport, "5432"));
    Ok(PgUrl {
        username: username.to_owned(),
        password: password.to_owned(),
        host: host.to_owned(),
        port: port.to_owned(),
        dbname: dbname.to_owned(),
    })
}

/// A Secret shaped like CloudNativePG's `<cluster>-app` Secret for this URL.
pub fn cnpg_app_secret(name: &str, namespace: &str, url: &str) -> Result<Value> {
    let p = parse_pg_url(url)?;
    Ok(json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "kubernetes.io/basic-auth",
        "metadata": {"name": name, "namespace": namespace, "labels": {"cnpg.io/reload": "true"}},
        "stringData": {
            "username": p.username,
            "password": p.password,
            "host": p.host,
            "port": p.port,
            "dbname": p.dbname,
            "uri": url,
            "jdbc-uri": format!("jdbc:postgresql://{}:{}/{}?password={}&user={}", p.host, p.port, p.dbname, p.password, p.username),
            "pgpass": format!("{}:{}:{}:{}:{}\n", p.host, p.port, p.dbname, p.username, p.password),
        }
    }))
}

/// A Secret with a Redis URL under `url`.
pub fn redis_secret(name: &str, namespace: &str, url: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace},
        "stringData": {"url": url},
    })
}

impl Stack {
    /// A fresh database named `<database_prefix>_…` on the local PostgreSQL, and the local
    /// Redis (the environment `scripts/stack.sh env` prints).
    pub async fn new(database_prefix: &str) -> Result<Self> {
        let db = TestDb::with_prefix(database_prefix).await?;
        let redis_url = std::env::var("CONCLAVE_REDIS_URL").context(
            "CONCLAVE_REDIS_URL is not set: run through scripts/test.sh, or eval \"$(scripts/stack.sh env)\"",
        )?;
        Ok(Self { db, redis_url })
    }

    /// The schema owner's URL for this run's database: what the operator, the migration Job and
    /// the data plane (a member of conclave_app) log in with, as a CloudNativePG app user would.
    pub fn owner_url(&self) -> String {
        self.db.owner_url()
    }
}
