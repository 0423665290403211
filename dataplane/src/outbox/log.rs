//! The webhook delivery log for an organization's admins and owners: each delivery to an
//! endpoint with its status, attempts, last HTTP status and latency (cursor-paged, newest first),
//! and the manual replay of a delivered or given-up one (docs/webhooks.md).

use crate::AppState;
use crate::context::admin_tx;
use crate::context::session::AuthUser;
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::extract::{ApiPath, ApiQuery};
use axum::extract::State;
use axum::http::StatusCode;
use conclave_protocol::webhooks::{WebhookAttempt, WebhookDelivery, WebhookDeliveryPage};
use serde::Deserialize;
use sqlx::PgConnection;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list)).routes(routes!(attempts)).routes(routes!(replay))
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct Page {
    /// `next_cursor` of the previous page.
    cursor: Option<Uuid>,
    /// 1-200, default 50.
    limit: Option<i64>,
}

/// The endpoint's state, or 404 when it is not one of this organization's.
async fn endpoint(conn: &mut PgConnection, organization_id: Uuid, endpoint_id: Uuid) -> ApiResult<bool> {
    sqlx::query_scalar!(
        r#"SELECT enabled AND disabled_at IS NULL AS "usable!" FROM webhook_endpoints
            WHERE id = $1 AND organization_id = $2"#,
        endpoint_id,
        organization_id
    )
    .fetch_optional(conn)
    .await?
    .ok_or_else(|| ApiError::not_found("webhook endpoint"))
}

#[utoipa::path(
    get,
    path = "/v1/organizations/{organization_id}/webhooks/{endpoint_id}/deliveries",
    tag = "webhooks",
    operation_id = "list_webhook_deliveries",
    params(Page),
    responses(
        (status = 200, description = "The endpoint's deliveries, newest first", body = WebhookDeliveryPage),
        (status = 403, description = "`insufficient_role`: admins and owners only", body = crate::error::ErrorBody),
        (status = 404, description = "`not_found`: no such endpoint in the organization", body = crate::error::ErrorBody),
        (status = 422, description = "`validation_failed`, `invalid_query`", body = crate::error::ErrorBody),
    )
)]
#[tracing::instrument(skip(state, auth, page), fields(user_id = %auth.user_id))]
async fn list(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiPath((organization_id, endpoint_id)): ApiPath<(Uuid, Uuid)>,
    ApiQuery(page): ApiQuery<Page>,
) -> ApiResult<axum::Json<WebhookDeliveryPage>> {
    let limit = crate::limits::page_limit(page.limit, crate::limits::DEFAULT_PAGE)?;
    let (mut tx, _) = admin_tx(&state, auth, organization_id).await?;
    endpoint(&mut tx, organization_id, endpoint_id).await?;
    let mut deliveries = sqlx::query_as!(
        WebhookDelivery,
        "SELECT id, event_type, status, attempts, last_status_code, last_latency_ms, last_error, created_at,
                next_attempt_at, delivered_at
           FROM outbound_notifications
          WHERE webhook_endpoint_id = $1 AND organization_id = $2 AND ($3::uuid IS NULL OR id < $3)
          ORDER BY id DESC
          LIMIT $4",
        endpoint_id,
        organization_id,
        page.cursor,
        limit + 1
    )
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    let next_cursor = if deliveries.len() as i64 > limit {
        deliveries.truncate(limit as usize);
        deliveries.last().map(|d| d.id.to_string())
    } else {
        None
    };
    Ok(axum::Json(WebhookDeliveryPage { deliveries, next_cursor }))
}

/// The most attempts one answer lists (the latest): a delivery makes at most
/// [`super::MAX_ATTEMPTS`] per round, and each replay starts a round.
const MAX_ATTEMPTS_LISTED: i64 = 100;

#[utoipa::path(
    get,
    path = "/v1/organizations/{organization_id}/webhooks/{endpoint_id}/deliveries/{delivery_id}/attempts",
    tag = "webhooks",
    operation_id = "list_webhook_delivery_attempts",
    responses(
        (status = 200, description = "Every attempt at the delivery, oldest first (the latest 100)", body = Vec<WebhookAttempt>),
        (status = 403, description = "`insufficient_role`: admins and owners only", body = crate::error::ErrorBody),
        (status = 404, description = "`not_found`: no such endpoint or delivery", body = crate::error::ErrorBody),
    )
)]
#[tracing::instrument(skip(state, auth), fields(user_id = %auth.user_id))]
async fn attempts(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiPath((organization_id, endpoint_id, delivery_id)): ApiPath<(Uuid, Uuid, Uuid)>,
) -> ApiResult<axum::Json<Vec<WebhookAttempt>>> {
    let (mut tx, _) = admin_tx(&state, auth, organization_id).await?;
    endpoint(&mut tx, organization_id, endpoint_id).await?;
    let known = sqlx::query_scalar!(
        r#"SELECT EXISTS (SELECT 1 FROM outbound_notifications WHERE id = $1 AND webhook_endpoint_id = $2) AS "e!""#,
        delivery_id,
        endpoint_id
    )
    .fetch_one(&mut *tx)
    .await?;
    if !known {
        return Err(ApiError::not_found("delivery"));
    }
    let mut attempts = sqlx::query_as!(
        WebhookAttempt,
        "SELECT attempted_at, status, status_code, latency_ms, error FROM webhook_delivery_attempts
          WHERE delivery_id = $1 ORDER BY id DESC LIMIT $2",
        delivery_id,
        MAX_ATTEMPTS_LISTED
    )
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    attempts.reverse();
    Ok(axum::Json(attempts))
}

#[utoipa::path(
    post,
    path = "/v1/organizations/{organization_id}/webhooks/{endpoint_id}/deliveries/{delivery_id}/replay",
    tag = "webhooks",
    operation_id = "replay_webhook_delivery",
    responses(
        (status = 202, description = "Queued again: attempted at once with a fresh attempt count and the same `webhook-id`", body = WebhookDelivery),
        (status = 403, description = "`insufficient_role`: admins and owners only", body = crate::error::ErrorBody),
        (status = 404, description = "`not_found`: no such endpoint or delivery", body = crate::error::ErrorBody),
        (status = 409, description = "`delivery_in_progress`, `endpoint_disabled`", body = crate::error::ErrorBody),
    )
)]
#[tracing::instrument(skip(state, auth), fields(user_id = %auth.user_id))]
async fn replay(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiPath((organization_id, endpoint_id, delivery_id)): ApiPath<(Uuid, Uuid, Uuid)>,
) -> ApiResult<(StatusCode, axum::Json<WebhookDelivery>)> {
    let (mut tx, _) = admin_tx(&state, auth, organization_id).await?;
    if !endpoint(&mut tx, organization_id, endpoint_id).await? {
        return Err(ApiError::new(ErrorCode::EndpointDisabled, "the endpoint is disabled: enable it first"));
    }
    let status = sqlx::query_scalar!(
        "SELECT status FROM outbound_notifications WHERE id = $1 AND webhook_endpoint_id = $2 FOR UPDATE",
        delivery_id,
        endpoint_id
    )
    .fetch_optional(&mut *tx)
    .await?
    .ok_or_else(|| ApiError::not_found("delivery"))?;
    if !matches!(status.as_str(), "delivered" | "dead") {
        return Err(ApiError::new(ErrorCode::DeliveryInProgress, "the delivery is still being attempted"));
    }
    let delivery = sqlx::query_as!(
        WebhookDelivery,
        "UPDATE outbound_notifications
            SET status = 'pending', attempts = 0, next_attempt_at = now(), delivered_at = NULL, last_error = NULL
          WHERE id = $1
          RETURNING id, event_type, status, attempts, last_status_code, last_latency_ms, last_error, created_at,
                    next_attempt_at, delivered_at",
        delivery_id
    )
    .fetch_one(&mut *tx)
    .await?;
    crate::audit::record(
        &mut tx,
        crate::audit::Entry {
            organization_id: Some(organization_id),
            actor: crate::audit::Actor::of(auth),
            action: "webhook.delivery_replayed",
            target: Some(("webhook_delivery", delivery_id)),
            ip: None,
            details: serde_json::json!({ "endpoint_id": endpoint_id }),
        },
    )
    .await?;
    tx.commit().await?;
    Ok((StatusCode::ACCEPTED, axum::Json(delivery)))
}
