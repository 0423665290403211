//! Health, readiness and metrics over HTTP.

use crate::metrics::Metrics;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use sqlx::PgPool;
use std::sync::Arc;
use std::time::Duration;

#[derive(Clone)]
pub struct HttpState {
    pub metrics: Arc<Metrics>,
    pub pool: PgPool,
}

/// `/healthz`: the process serves. `/readyz`: PostgreSQL answers within a second (a standby
/// replica is ready too: it only waits for the Lease). `/metrics`: Prometheus text format.
pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

async fn readyz(State(state): State<HttpState>) -> impl IntoResponse {
    let ok =
        tokio::time::timeout(Duration::from_secs(1), sqlx::query_scalar!("SELECT 1 AS alive").fetch_one(&state.pool))
            .await
            .is_ok_and(|r| r.is_ok());
    if ok { (StatusCode::OK, "ok") } else { (StatusCode::SERVICE_UNAVAILABLE, "postgres unavailable") }
}

async fn metrics(State(state): State<HttpState>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], state.metrics.encode())
}
