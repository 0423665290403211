//! Starting the operator: the entry point a `main` (or an end-to-end test) calls.

use crate::config::Config;
use crate::controllers::{Context, run_controllers};
use crate::metrics::Metrics;
use anyhow::Context as _;
use sqlx::postgres::PgPoolOptions;
use std::sync::Arc;

/// Connects to Kubernetes and PostgreSQL, serves `/healthz`, `/readyz` and `/metrics`, waits
/// to become the leader, then runs every controller until a shutdown signal or the loss of the
/// Lease (after which it returns an error, so the process restarts as a standby).
pub async fn run(config: Config) -> anyhow::Result<()> {
    let client = kube::Client::try_default().await.context("connecting to the Kubernetes API")?;
    let pool = PgPoolOptions::new()
        .max_connections(config.database_max_connections)
        .acquire_timeout(std::time::Duration::from_secs(5))
        .connect_lazy(&config.database_url)
        .context("CONCLAVE_DATABASE_URL is not a valid PostgreSQL URL")?;
    let metrics = Arc::new(Metrics::default());
    let identity = config
        .identity
        .clone()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| format!("conclave-operator-{}", uuid::Uuid::new_v4().simple()));

    let listener = tokio::net::TcpListener::bind(config.http_listen)
        .await
        .with_context(|| format!("binding {}", config.http_listen))?;
    let router = crate::http::router(crate::http::HttpState { metrics: metrics.clone(), pool: pool.clone() });
    tokio::spawn(async move {
        if let Err(err) = axum::serve(listener, router).await {
            tracing::error!(error = %err, "the HTTP server stopped");
        }
    });

    let lease_namespace = config
        .lease_namespace
        .clone()
        .or_else(|| std::env::var("POD_NAMESPACE").ok())
        .unwrap_or_else(|| "default".to_owned());
    let elector = crate::leader::Elector::new(client.clone(), &lease_namespace, &config.lease_name, &identity);
    tracing::info!(%identity, lease = %config.lease_name, namespace = %lease_namespace, "waiting to lead");
    tokio::select! {
        () = elector.acquire() => {}
        _ = tokio::signal::ctrl_c() => return Ok(()),
    }
    metrics.leader.set(1);
    tracing::info!(%identity, "leading: starting the controllers");

    let ctx = Arc::new(Context::new(client, pool, config, metrics.clone(), identity));
    tokio::select! {
        () = run_controllers(ctx) => {
            tracing::info!("controllers stopped");
            Ok(())
        }
        () = elector.keep() => {
            metrics.leader.set(0);
            anyhow::bail!("lost the leader Lease; exiting so that only one replica writes")
        }
    }
}
