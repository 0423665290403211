//! The Conclave data plane.
//!
//! A stateless service: PostgreSQL is the record, Redis carries what is fast and short-lived
//! (fan-out between replicas, presence, rate limits).
//!
//! The code is split by feature (`auth`, `devices`, `tenancy`, `contacts`, `conversations`,
//! `messages`, `reactions`, `pins`, `attachments`, `presence`, `profiles`, `notifications`,
//! `websocket`, `bots`, `health`), each owning its routes, handlers and SQL; `retention` is the
//! retention sweep and legal holds. Features stand on shared plumbing below them and never on
//! each other's handlers: [`error`] (the one error type and its codes), `extract` (request
//! extractors), [`context`] (the caller's tenant transaction, membership and conversation seat),
//! [`db`], [`AppState`], [`realtime`] (fan-out through Redis). [`router`] merges the features from the
//! one list in `features()`, which also yields the OpenAPI document ([`openapi`]).
pub mod attachments;
mod audit;
pub mod auth;
mod bots;
pub mod calls;
mod clock;
pub mod config;
mod contacts;
pub mod context;
pub mod conversations;
pub mod db;
mod deadline;
mod devices;
pub mod error;
mod extract;
mod health;
mod identity;
mod keypackages;
mod limits;
mod mail;
pub mod messages;
mod metrics;
pub mod notifications;
pub mod openapi;
pub mod outbox;
mod pins;
pub mod presence;
mod privacy;
mod profiles;
mod ratelimit;
mod reactions;
pub mod realtime;
pub mod retention;
pub mod sealing;
mod server;
mod state;
pub mod telemetry;
pub mod tenancy;
mod tokens;
mod websocket;

pub use realtime::revocations_channel;
pub use state::{AppState, app_pool};

use anyhow::Context;
use axum::{Extension, Router};
use std::future::Future;
use tokio::net::TcpListener;
use utoipa_axum::router::OpenApiRouter;

/// The largest JSON body accepted (messages carry up to 256 KiB of ciphertext, base64-encoded).
pub const MAX_BODY_BYTES: usize = 512 * 1024;

/// Every feature's routes with their documentation: the one list of the API's features.
fn features() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(openapi::base())
        .merge(health::router())
        .merge(auth::router())
        .merge(bots::router())
        .merge(devices::router())
        .merge(keypackages::router())
        .merge(identity::router())
        .merge(tenancy::router())
        .merge(conversations::router())
        .merge(messages::router())
        .merge(websocket::router())
        .merge(contacts::router())
        .merge(reactions::router())
        .merge(pins::router())
        .merge(calls::router())
        .merge(attachments::router())
        .merge(presence::router())
        .merge(profiles::router())
        .merge(notifications::router())
        .merge(retention::router())
        .merge(audit::trail::router())
        .merge(outbox::log::router())
        .merge(privacy::router())
        .merge(metrics::router())
        .merge(openapi::router())
}

/// The OpenAPI document of exactly the routes [`router`] serves.
pub fn openapi_document() -> utoipa::openapi::OpenApi {
    let (_, mut doc) = features().split_for_parts();
    openapi::complete(&mut doc);
    doc
}

/// The whole HTTP surface, built by a function so tests can drive it without a socket.
pub fn router(state: AppState) -> Router {
    let metrics = std::sync::Arc::new(metrics::Metrics::new(&state));
    let (routes, mut doc) = features().split_for_parts();
    openapi::complete(&mut doc);
    let served = openapi::Served(openapi::to_pretty_json(&doc).into());
    routes
        .fallback(|| async { error::ApiError::not_found("route") })
        .method_not_allowed_fallback(|| async {
            error::ApiError::new(error::ErrorCode::MethodNotAllowed, "this path does not answer this method")
        })
        // Inside the metrics layer, which then counts the 503s it answers.
        .layer(axum::middleware::from_fn_with_state(state.clone(), deadline::bound))
        .layer(Extension(metrics.clone()))
        .layer(Extension(served))
        // Counts and times every request, the fallback included (as `route="unmatched"`).
        .layer(axum::middleware::from_fn_with_state(metrics, metrics::track))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

/// Serves until `shutdown` resolves, then stops accepting and lets requests in flight finish.
/// Connections are held to the read timeouts and the cap per address of the configuration
/// (`server.rs`).
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
    let limits = server::Limits::from_config(&state.config);
    server::run(listener, router(state), limits, shutdown).await;
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
        .connect(args.database_url.expose())
        .await
        .context("connecting to PostgreSQL as the schema owner")?;
    conclave_schema::migrate(&pool).await.context("applying migrations")?;
    tracing::info!(version = conclave_schema::latest_version(), "schema is up to date");
    Ok(())
}
