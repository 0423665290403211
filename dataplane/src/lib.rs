//! The Conclave data plane.
//!
//! A stateless service: PostgreSQL is the record, Redis carries what is fast and short-lived.
//! The code is split by feature (`health`, and the features that later grow beside it), each
//! owning its router and its part of the OpenAPI document ([`openapi`]); [`router`] merges them,
//! with `GET /metrics` (Prometheus) and `GET /openapi.json`.

pub mod attachments;
mod audit;
pub mod auth;
mod bots;
pub mod config;
mod contacts;
pub mod conversations;
pub mod db;
mod devices;
pub mod error;
mod extract;
mod health;
mod limits;
mod mail;
pub mod messages;
mod metrics;
pub mod openapi;
pub mod outbox;
mod pins;
mod presence;
mod ratelimit;
mod reactions;
pub mod realtime;
pub mod sealing;
mod state;
pub mod telemetry;
pub mod tenancy;
mod tokens;

pub use devices::revocations_channel;
pub use state::{AppState, app_pool};

use anyhow::Context;
use axum::Router;
use axum::serve::ListenerExt as _;
use std::future::Future;
use tokio::net::TcpListener;

/// The largest JSON body accepted (messages carry up to 256 KiB of ciphertext, base64-encoded).
pub const MAX_BODY_BYTES: usize = 512 * 1024;

/// The whole HTTP surface, built by a function so tests can drive it without a socket.
pub fn router(state: AppState) -> Router {
    let metrics = std::sync::Arc::new(metrics::Metrics::new(&state));
    Router::new()
        .merge(health::router())
        .merge(auth::router())
        .merge(bots::router())
        .merge(devices::router())
        .merge(tenancy::router())
        .merge(conversations::router())
        .merge(messages::router())
        .merge(realtime::router())
        .merge(contacts::router())
        .merge(reactions::router())
        .merge(pins::router())
        .merge(attachments::router())
        .merge(presence::router())
        .merge(metrics::router(metrics.clone()))
        .merge(openapi::router())
        .fallback(|| async { error::ApiError::not_found("route") })
        // Counts and times every request, the fallback included (as `route="unmatched"`).
        .layer(axum::middleware::from_fn_with_state(metrics, metrics::track))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

/// Serves until `shutdown` resolves, then stops accepting and lets requests in flight finish.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let address = listener.local_addr()?;
    tracing::info!(%address, "data plane listening");
    let signal_state = state.clone();
    let shutdown = async move {
        shutdown.await;
        // Sockets are long-lived: tell them to close so the graceful shutdown can finish.
        signal_state.begin_shutdown();
    };
    // TCP_NODELAY: frames are small and often several in a row to one socket (a batch of sends
    // to one conversation); with Nagle's algorithm the second waits for the client's delayed
    // ACK, up to 40 ms (measured: p50 send→deliver 40 ms at 1,100 messages/s in groups of 10,
    // 5 ms with TCP_NODELAY).
    let listener = listener.tap_io(|tcp| {
        if let Err(error) = tcp.set_nodelay(true) {
            tracing::debug!(%error, "could not set TCP_NODELAY on a connection");
        }
    });
    axum::serve(listener, router(state).into_make_service_with_connect_info::<std::net::SocketAddr>())
        .with_graceful_shutdown(shutdown)
        .await
        .context("serving HTTP")?;
    tracing::info!("data plane stopped");
    Ok(())
}

/// Resolves on SIGTERM (Kubernetes stopping the pod) or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutdown requested");
}

/// Applies pending migrations as the schema owner.
pub async fn migrate(args: &config::MigrateArgs) -> anyhow::Result<()> {
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(&args.database_url)
        .await
        .context("connecting to PostgreSQL as the schema owner")?;
    conclave_schema::migrate(&pool).await.context("applying migrations")?;
    tracing::info!(version = conclave_schema::latest_version(), "schema is up to date");
    Ok(())
}
