use conclave_dataplane::AppState;
use conclave_testkit::TestDb;
use tokio::sync::oneshot;

/// A data plane serving on an ephemeral loopback port, stopped when dropped.
pub struct TestApp {
    pub base: String,
    pub db: TestDb,
    pub http: reqwest::Client,
    _stop: oneshot::Sender<()>,
}

pub fn redis_url() -> String {
    std::env::var("CONCLAVE_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/".to_owned())
}

impl TestApp {
    pub async fn start() -> Self {
        Self::start_with_redis(&redis_url()).await
    }

    pub async fn start_with_redis(redis_url: &str) -> Self {
        let db = TestDb::new().await.expect("test database");
        let pool = conclave_dataplane::app_pool(db.app_options(), conclave_schema::APP_ROLE, 5).await.expect("pool");
        let client = redis::Client::open(redis_url).expect("redis url");
        let redis = redis::aio::ConnectionManager::new_with_config(
            client,
            redis::aio::ConnectionManagerConfig::new()
                .set_number_of_retries(1)
                .set_connection_timeout(Some(std::time::Duration::from_millis(500))),
        )
        .await;
        let state = match redis {
            Ok(redis) => AppState { db: pool, redis },
            Err(e) => panic!("redis: {e}"),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(conclave_dataplane::serve(listener, state, async move {
            let _ = stopped.await;
        }));
        Self { base, db, http: reqwest::Client::new(), _stop: stop }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }
}
