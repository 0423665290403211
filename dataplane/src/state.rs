use crate::auth::jwt::JwtKeys;
use crate::config::Config;
use crate::mail::Mailer;
use crate::sealing::SealingKey;
use anyhow::Context;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{AssertSqlSafe, PgPool};
use std::str::FromStr;
use std::sync::Arc;

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
    pub mailer: Arc<Mailer>,
    /// The sockets this replica holds.
    pub hub: Arc<crate::realtime::Hub>,
    /// Publishes live events to every replica through Redis.
    pub publisher: crate::realtime::Publisher,
    /// The send queue and its writers (group commit).
    pub sends: crate::messages::batch::SendQueue,
    /// Devices' signing keys, kept after first use (they never change).
    pub signing_keys: Arc<crate::context::SigningKeys>,
    /// Where encrypted attachment blobs are stored.
    pub blobs: Arc<dyn crate::attachments::BlobStore>,
    /// This replica's side of the retention sweep (its lease holder id, its counts).
    pub retention: Arc<crate::retention::Retention>,
    /// Flips to true when the server starts shutting down: sockets close with "going away".
    pub shutdown: tokio::sync::watch::Receiver<bool>,
    shutdown_tx: Arc<tokio::sync::watch::Sender<bool>>,
}

impl AppState {
    pub async fn connect(config: &Config) -> anyhow::Result<Self> {
        let options = PgConnectOptions::from_str(&config.database_url)
            .context("CONCLAVE_DATABASE_URL is not a valid PostgreSQL URL")?;
        let db = app_pool(options, &config.database_role, config.database_max_connections).await?;
        let client =
            redis::Client::open(config.redis_url.as_str()).context("CONCLAVE_REDIS_URL is not a valid Redis URL")?;
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
        let mailer = Mailer::from_config(config)?;
        let blobs = crate::attachments::open_store(config).context("opening the attachment store")?;
        let (shutdown_tx, shutdown) = tokio::sync::watch::channel(false);
        let hub = Arc::new(crate::realtime::Hub::default());
        let publisher = crate::realtime::Publisher::new(redis.clone(), &config.redis_namespace, hub.clone());
        let state = Self {
            db: db.clone(),
            redis,
            config: Arc::new(config.clone()),
            jwt: Arc::new(jwt),
            sealing: Arc::new(sealing),
            mailer: Arc::new(mailer),
            hub,
            publisher: publisher.clone(),
            // Each writer holds a connection while it writes: leave the rest of the pool to
            // everything else.
            sends: crate::messages::batch::SendQueue::start(
                db.clone(),
                publisher,
                usize::from(config.send_writers).min((config.database_max_connections as usize / 2).max(1)),
            ),
            signing_keys: Arc::default(),
            blobs,
            retention: Arc::default(),
            shutdown,
            shutdown_tx: Arc::new(shutdown_tx),
        };
        crate::realtime::spawn_subscriber(state.clone(), client);
        crate::outbox::spawn(state.clone());
        crate::attachments::gc::spawn(state.clone());
        crate::retention::spawn(state.clone());
        Ok(state)
    }

    /// Tells sockets and background tasks that the server is stopping.
    pub fn begin_shutdown(&self) {
        let _ = self.shutdown_tx.send(true);
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
