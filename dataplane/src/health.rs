//! Liveness and readiness, as Kubernetes probes ask for them.

use crate::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};
use std::time::Duration;

pub fn router() -> Router<AppState> {
    Router::new().route("/healthz", get(healthz)).route("/readyz", get(readyz))
}

/// The feature's part of the OpenAPI document (`crate::openapi`).
#[derive(utoipa::OpenApi)]
#[openapi(paths(healthz, readyz))]
pub(crate) struct ApiDoc;

/// The process is up and serving: nothing else is checked, so a database outage does not get
/// every replica restarted.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "health",
    operation_id = "healthz",
    security(()),
    responses((status = 200, description = "The process is serving", body = crate::openapi::Health))
)]
async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// Ready when both PostgreSQL and Redis answer within a second; otherwise 503 naming which.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "health",
    operation_id = "readyz",
    security(()),
    responses(
        (status = 200, description = "PostgreSQL and Redis answer", body = crate::openapi::Readiness),
        (status = 503, description = "A dependency does not answer (named in `checks`)", body = crate::openapi::Readiness),
    )
)]
async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let timeout = Duration::from_secs(1);
    let postgres =
        tokio::time::timeout(timeout, sqlx::query("SELECT 1").execute(&state.db)).await.is_ok_and(|r| r.is_ok());
    let mut redis = state.redis.clone();
    let redis = tokio::time::timeout(timeout, redis::cmd("PING").query_async::<String>(&mut redis))
        .await
        .is_ok_and(|r| r.is_ok());
    let status = if postgres && redis { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let word = |ok: bool| if ok { "ok" } else { "unavailable" };
    (
        status,
        Json(json!({
            "status": word(postgres && redis),
            "checks": { "postgres": word(postgres), "redis": word(redis) },
        })),
    )
}
