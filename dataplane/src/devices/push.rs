//! Web Push subscriptions (RFC 8030 endpoint, RFC 8291 keys), one set per device.

use crate::AppState;
use crate::context::session::AuthUser;
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiPath};
use axum::extract::State;
use axum::http::StatusCode;
use conclave_protocol::b64;
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(subscribe)).routes(routes!(unsubscribe)).routes(routes!(vapid_public_key))
}

/// The key browsers subscribe with.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct VapidPublicKey {
    /// The uncompressed P-256 point (65 bytes), base64url: `applicationServerKey`.
    #[schema(value_type = String, format = Byte, content_encoding = "base64url", min_length = 87, max_length = 87)]
    public_key: String,
}

#[utoipa::path(
    get,
    path = "/v1/push/vapid-public-key",
    tag = "devices",
    operation_id = "get_vapid_public_key",
    responses((status = 200, description = "The VAPID public key pushes are signed with", body = VapidPublicKey))
)]
async fn vapid_public_key(State(state): State<AppState>, _auth: AuthUser) -> axum::Json<VapidPublicKey> {
    axum::Json(VapidPublicKey { public_key: b64::encode(&state.push.keys.public_key) })
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[schema(as = NewPushSubscription)]
#[serde(deny_unknown_fields)]
struct NewSubscription {
    endpoint: String,
    #[serde(with = "b64")]
    #[schema(value_type = String, format = Byte, content_encoding = "base64url")]
    p256dh: Vec<u8>,
    #[serde(with = "b64")]
    #[schema(value_type = String, format = Byte, content_encoding = "base64url")]
    auth: Vec<u8>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = PushSubscription)]
struct Subscription {
    id: Uuid,
    device_id: Uuid,
    endpoint: String,
}

#[utoipa::path(
    post,
    path = "/v1/devices/{device_id}/push-subscriptions",
    tag = "devices",
    operation_id = "subscribe_push",
    request_body = NewSubscription,
    responses((status = 201, description = "Subscribed", body = Subscription))
)]
async fn subscribe(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiPath(device_id): ApiPath<Uuid>,
    ApiJson(body): ApiJson<NewSubscription>,
) -> ApiResult<(StatusCode, axum::Json<Subscription>)> {
    if !state.push.keys.endpoint_allowed(&body.endpoint) || body.endpoint.len() > 2048 {
        return Err(ApiError::validation("endpoint", "must be an https URL of at most 2048 characters"));
    }
    if let Some(refused) = state.push.keys.endpoint_refused(&body.endpoint) {
        return Err(ApiError::validation("endpoint", format!("must be a public push service: {refused}")));
    }
    if body.p256dh.len() != 65 || body.p256dh.first() != Some(&0x04) {
        return Err(ApiError::validation("p256dh", "must be an uncompressed P-256 point (65 bytes)"));
    }
    if body.auth.len() != 16 {
        return Err(ApiError::validation("auth", "must be 16 bytes"));
    }
    let mut tx = state.db.begin().await?;
    let owned = sqlx::query_scalar!(
        "SELECT id FROM devices WHERE id = $1 AND user_id = $2 AND revoked_at IS NULL",
        device_id,
        auth.user_id
    )
    .fetch_optional(&mut *tx)
    .await?;
    if owned.is_none() {
        return Err(ApiError::not_found("device"));
    }
    let id = sqlx::query_scalar!(
        "INSERT INTO push_subscriptions (user_id, device_id, endpoint, p256dh, auth) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (device_id, endpoint) DO UPDATE SET p256dh = EXCLUDED.p256dh, auth = EXCLUDED.auth
         RETURNING id",
        auth.user_id,
        device_id,
        body.endpoint,
        body.p256dh,
        body.auth,
    )
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, axum::Json(Subscription { id, device_id, endpoint: body.endpoint })))
}

#[utoipa::path(
    delete,
    path = "/v1/devices/{device_id}/push-subscriptions/{subscription_id}",
    tag = "devices",
    operation_id = "unsubscribe_push",
    responses((status = 204, description = "Unsubscribed"))
)]
async fn unsubscribe(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiPath((device_id, subscription_id)): ApiPath<(Uuid, Uuid)>,
) -> ApiResult<StatusCode> {
    let deleted = sqlx::query!(
        "DELETE FROM push_subscriptions WHERE id = $1 AND device_id = $2 AND user_id = $3",
        subscription_id,
        device_id,
        auth.user_id
    )
    .execute(&state.db)
    .await?
    .rows_affected();
    if deleted == 0 {
        return Err(ApiError::not_found("push subscription"));
    }
    Ok(StatusCode::NO_CONTENT)
}
