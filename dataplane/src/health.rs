//! Liveness and readiness, as Kubernetes probes ask for them.

use crate::AppState;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;
use std::time::Duration;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(healthz)).routes(routes!(readyz))
}

/// `GET /healthz`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Health {
    status: Check,
}

/// `GET /readyz`: overall and per dependency.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Readiness {
    status: Check,
    checks: ReadinessChecks,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ReadinessChecks {
    postgres: Check,
    redis: Check,
}

#[derive(Clone, Copy, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Check {
    Ok,
    Unavailable,
}

impl From<bool> for Check {
    fn from(ok: bool) -> Self {
        if ok { Self::Ok } else { Self::Unavailable }
    }
}

/// The process is up and serving: nothing else is checked, so a database outage does not get
/// every replica restarted.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "health",
    operation_id = "healthz",
    security(()),
    responses((status = 200, description = "The process is serving", body = Health))
)]
async fn healthz() -> Json<Health> {
    Json(Health { status: Check::Ok })
}

/// Ready when both PostgreSQL and Redis answer within a second; otherwise 503 naming which.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "health",
    operation_id = "readyz",
    security(()),
    responses(
        (status = 200, description = "PostgreSQL and Redis answer", body = Readiness),
        (status = 503, description = "A dependency does not answer (named in `checks`)", body = Readiness),
    )
)]
async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Readiness>) {
    let timeout = Duration::from_secs(1);
    let postgres =
        tokio::time::timeout(timeout, sqlx::query("SELECT 1").execute(&state.db)).await.is_ok_and(|r| r.is_ok());
    let mut redis = state.redis.clone();
    let redis = tokio::time::timeout(timeout, redis::cmd("PING").query_async::<String>(&mut redis))
        .await
        .is_ok_and(|r| r.is_ok());
    let status = if postgres && redis { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let checks = ReadinessChecks { postgres: postgres.into(), redis: redis.into() };
    (status, Json(Readiness { status: (postgres && redis).into(), checks }))
}
