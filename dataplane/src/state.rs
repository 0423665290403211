use crate::auth::jwt::JwtKeys;
use crate::config::Config;
use crate::mail::Mailer;
use crate::sealing::SealingKey;
use anyhow::Context;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{AssertSqlSafe, PgPool};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

/// Everything a handler needs, cloned cheaply into each request.
#[derive(Clone)]
pub struct AppState {
    /// Connections working as the data plane's role (row-level security applies).
    pub db: PgPool,
    /// A multiplexed, reconnecting Redis connection.
    pub redis: redis::aio::ConnectionManager,
    pub config: Arc<Config>,
    pub jwt: Arc<JwtKeys>,
    pub sealing: Arc<SealingKey>,
    /// The MLS removal keys (the delivery service as its groups' external sender), if configured.
    pub removal: Option<Arc<crate::conversations::removals::RemovalKeys>>,
    pub mailer: Arc<Mailer>,
    /// The sockets this replica holds.
    pub hub: Arc<crate::realtime::Hub>,
    /// Publishes live events to every replica through Redis.
    pub publisher: crate::realtime::Publisher,
    /// The send queue and its writers (group commit).
    pub sends: crate::messages::batch::SendQueue,
    /// Where encrypted attachment blobs are stored.
    pub blobs: Arc<dyn crate::attachments::BlobStore>,
    /// Web Push: the VAPID key and the pipeline's metrics.
    pub push: Arc<crate::outbox::push::Push>,
    /// This replica's side of the retention sweep (its lease holder id, its counts).
    pub retention: Arc<crate::retention::Retention>,
    /// Flips to true when the server starts shutting down: sockets close with "going away".
    pub shutdown: tokio::sync::watch::Receiver<bool>,
    shutdown_tx: Arc<tokio::sync::watch::Sender<bool>>,
}

impl AppState {
    pub async fn connect(config: &Config) -> anyhow::Result<Self> {
        let options = PgConnectOptions::from_str(config.database_url.expose())
            .context("CONCLAVE_DATABASE_URL is not a valid PostgreSQL URL")?;
        let timeouts = PoolTimeouts {
            acquire: Duration::from_millis(config.database_acquire_timeout_ms),
            ping: Duration::from_millis(config.database_ping_timeout_ms),
        };
        let db = app_pool(options, &config.database_role, config.database_max_connections, timeouts).await?;
        let client =
            redis::Client::open(config.redis_url.expose()).context("CONCLAVE_REDIS_URL is not a valid Redis URL")?;
        let redis = redis::aio::ConnectionManager::new(client.clone()).await.context("connecting to Redis")?;
        let jwt = match &config.jwt_keys_dir {
            Some(dir) => JwtKeys::from_dir(dir, config.jwt_signing_key_id.as_deref())?,
            None => {
                tracing::warn!("no CONCLAVE_JWT_KEYS_DIR: signing access tokens with an ephemeral key");
                JwtKeys::ephemeral()?
            }
        };
        let sealing = match &config.at_rest_key_file {
            Some(path) => SealingKey::from_file(path)?,
            None => {
                tracing::warn!("no CONCLAVE_AT_REST_KEY_FILE: sealed secrets will not survive a restart");
                SealingKey::ephemeral()
            }
        };
        let removal = crate::conversations::removals::RemovalKeys::from_config(config)?.map(Arc::new);
        if removal.is_none() {
            tracing::warn!(
                "no CONCLAVE_MLS_REMOVAL_KEY_FILE: members commit removals without the delivery service's proposals"
            );
        }
        let mailer = Mailer::from_config(config)?;
        let blobs = crate::attachments::open_store(config).context("opening the attachment store")?;
        let push = Arc::new(crate::outbox::push::Push::from_config(config)?);
        let (shutdown_tx, shutdown) = tokio::sync::watch::channel(false);
        let hub = Arc::new(crate::realtime::Hub::default());
        let publisher = crate::realtime::Publisher::new(redis.clone(), &config.redis_namespace, hub.clone());
        let state = Self {
            db: db.clone(),
            redis,
            config: Arc::new(config.clone()),
            jwt: Arc::new(jwt),
            sealing: Arc::new(sealing),
            removal,
            mailer: Arc::new(mailer),
            hub,
            publisher: publisher.clone(),
            // Each writer holds a connection while it writes: leave the rest of the pool to
            // everything else.
            sends: crate::messages::batch::SendQueue::start(
                db.clone(),
                publisher,
                usize::from(config.send_writers).min((config.database_max_connections as usize / 2).max(1)),
                Duration::from_millis(config.database_send_deadline_ms),
            ),
            blobs,
            push,
            retention: Arc::default(),
            shutdown,
            shutdown_tx: Arc::new(shutdown_tx),
        };
        crate::realtime::spawn_subscriber(state.clone(), client);
        crate::outbox::spawn(state.clone());
        crate::presence::spawn_heartbeat(state.clone(), crate::websocket::PING_EVERY, crate::websocket::IDLE_TIMEOUT);
        crate::attachments::gc::spawn(state.clone());
        crate::retention::spawn(state.clone());
        crate::calls::sweep::spawn(state.clone());
        Ok(state)
    }

    /// Tells sockets and background tasks that the server is stopping.
    pub fn begin_shutdown(&self) {
        let _ = self.shutdown_tx.send(true);
    }
}

/// How long the pool waits on PostgreSQL (docs/reliability.md, the silent partition).
#[derive(Debug, Clone, Copy)]
pub struct PoolTimeouts {
    /// For a connection: a health-checked idle one, or a new one.
    pub acquire: Duration,
    /// For a pooled connection to answer a health check.
    pub ping: Duration,
}

impl Default for PoolTimeouts {
    fn default() -> Self {
        Self { acquire: Duration::from_secs(5), ping: Duration::from_secs(1) }
    }
}

/// The server ends a session whose client has vanished (its backend's locks and transaction go
/// with it) after about this long without an acknowledgement: keepalive probes from 20 s of
/// silence, every 5 s, 4 missed; and 30 s for data sent and never acknowledged. Ignored on Unix
/// sockets. sqlx 0.9 has no option for keepalives on the client's own socket; the client finds
/// dead connections with the bounded health checks instead.
const SERVER_KEEPALIVES: &str = "SET tcp_keepalives_idle = 20; SET tcp_keepalives_interval = 5; \
     SET tcp_keepalives_count = 4; SET tcp_user_timeout = 30000";

/// A pool whose every connection works as `role`. When the login is another role (for example a
/// CloudNativePG `app` user that is a member of `conclave_app`) each new connection switches
/// with `SET ROLE`, so row-level security applies whichever credentials were handed to us.
///
/// A connection whose network went silent (no FIN, no RST: a partition behind a firewall that
/// drops the old flows) would otherwise hang whoever uses it for ever, and sqlx's own checks
/// (the ping before handing out an idle connection and after taking one back) have no time
/// limit: here both are bounded by `timeouts.ping`, and a connection that misses it is dropped
/// rather than pooled, so that neither a request nor the pool's capacity stays stuck on it.
pub async fn app_pool(
    options: PgConnectOptions,
    role: &str,
    max_connections: u32,
    timeouts: PoolTimeouts,
) -> anyhow::Result<PgPool> {
    let role = role.to_owned();
    let ping = timeouts.ping;
    let pool = PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(timeouts.acquire)
        .test_before_acquire(false)
        .before_acquire(move |conn, _meta| Box::pin(async move { ping_within(conn, ping).await.map(|()| true) }))
        .after_release(move |conn, _meta| Box::pin(async move { ping_within(conn, ping).await.map(|()| true) }))
        .after_connect(move |conn, _meta| {
            let role = role.clone();
            Box::pin(async move {
                let current: String = sqlx::query_scalar("SELECT current_user::text").fetch_one(&mut *conn).await?;
                let mut setup = SERVER_KEEPALIVES.to_owned();
                if current != role {
                    let quoted = role.replace('"', "\"\"");
                    setup.push_str(&format!("; SET ROLE \"{quoted}\""));
                }
                sqlx::raw_sql(AssertSqlSafe(setup)).execute(&mut *conn).await?;
                Ok(())
            })
        })
        .connect_with(options)
        .await
        .context("connecting to PostgreSQL as the data plane's role")?;
    Ok(pool)
}

/// A health check (one `Sync` round trip) that fails when the connection does not answer
/// within `limit`; the pool then drops the connection without a goodbye.
async fn ping_within(conn: &mut sqlx::PgConnection, limit: Duration) -> Result<(), sqlx::Error> {
    use sqlx::Connection;
    match tokio::time::timeout(limit, conn.ping()).await {
        Ok(answer) => answer,
        Err(_) => {
            tracing::warn!(
                after_ms = limit.as_millis() as u64,
                "a pooled PostgreSQL connection did not answer; dropping it"
            );
            Err(sqlx::Error::Io(std::io::Error::new(std::io::ErrorKind::TimedOut, "health check timed out")))
        }
    }
}
