use crate::config::Config;
use anyhow::Context;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{AssertSqlSafe, PgPool};
use std::str::FromStr;

/// Everything a handler needs, cloned cheaply into each request.
#[derive(Clone)]
pub struct AppState {
    /// Connections working as the data plane's role (row-level security applies).
    pub db: PgPool,
    /// A multiplexed, reconnecting Redis connection.
    pub redis: redis::aio::ConnectionManager,
}

impl AppState {
    pub async fn connect(config: &Config) -> anyhow::Result<Self> {
        let options = PgConnectOptions::from_str(&config.database_url)
            .context("CONCLAVE_DATABASE_URL is not a valid PostgreSQL URL")?;
        let db = app_pool(options, &config.database_role, config.database_max_connections).await?;
        let client =
            redis::Client::open(config.redis_url.as_str()).context("CONCLAVE_REDIS_URL is not a valid Redis URL")?;
        let redis = redis::aio::ConnectionManager::new(client).await.context("connecting to Redis")?;
        Ok(Self { db, redis })
    }
}

/// A pool whose every connection works as `role`. When the login is another role (for example a
/// CloudNativePG `app` user that is a member of `conclave_app`) each new connection switches
/// with `SET ROLE`, so row-level security applies whichever credentials were handed to us.
pub async fn app_pool(options: PgConnectOptions, role: &str, max_connections: u32) -> anyhow::Result<PgPool> {
    let role = role.to_owned();
    let pool = PgPoolOptions::new()
        .max_connections(max_connections)
        .after_connect(move |conn, _meta| {
            let role = role.clone();
            Box::pin(async move {
                let current: String = sqlx::query_scalar("SELECT current_user::text").fetch_one(&mut *conn).await?;
                if current != role {
                    let quoted = role.replace('"', "\"\"");
                    sqlx::raw_sql(AssertSqlSafe(format!("SET ROLE \"{quoted}\""))).execute(&mut *conn).await?;
                }
                Ok(())
            })
        })
        .connect_with(options)
        .await
        .context("connecting to PostgreSQL as the data plane's role")?;
    Ok(pool)
}
