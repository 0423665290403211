//! One-click unsubscribe from notification emails (RFC 8058), without signing in: the link in a
//! digest carries a single-purpose token whose digest is in `unsubscribe_tokens`.
//!
//! `POST` (what mail clients send for `List-Unsubscribe-Post: List-Unsubscribe=One-Click`, and the
//! form of the `GET` page) turns email notifications off. `GET` changes nothing (mail scanners
//! fetch links) and answers a page with that form. Posting the same link again answers the same:
//! unsubscribing is idempotent; an unknown or expired token is 400 `invalid_unsubscribe_token`.

use crate::AppState;
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::extract::ApiQuery;
use crate::tokens::{self, Kind};
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(page, unsubscribe))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct TokenQuery {
    /// The token from the email's link.
    token: String,
}

fn invalid() -> ApiError {
    ApiError::new(ErrorCode::InvalidUnsubscribeToken, "this unsubscribe link is unknown or expired")
}

/// The account the token belongs to, when it is valid.
async fn holder(state: &AppState, token: &str) -> ApiResult<uuid::Uuid> {
    if !tokens::looks_like(Kind::Unsubscribe, token) {
        return Err(invalid());
    }
    sqlx::query_scalar!(
        "SELECT user_id FROM unsubscribe_tokens WHERE token_hash = $1 AND expires_at > now()",
        tokens::digest(token)
    )
    .fetch_optional(&state.db)
    .await?
    .ok_or_else(invalid)
}

#[utoipa::path(
    get,
    path = "/v1/notifications/unsubscribe",
    tag = "notifications",
    operation_id = "unsubscribe_page",
    security(()),
    params(TokenQuery),
    responses(
        (status = 200, description = "A page with the one-click form (nothing changes yet)", body = String, content_type = "text/html; charset=utf-8"),
        (status = 400, description = "`invalid_unsubscribe_token`", body = crate::error::ErrorBody),
    )
)]
async fn page(State(state): State<AppState>, ApiQuery(query): ApiQuery<TokenQuery>) -> ApiResult<impl IntoResponse> {
    holder(&state, &query.token).await?;
    // The token has the shape `cvu_` + base64url: nothing to escape in an attribute.
    let html = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Unsubscribe</title></head><body>\
         <p>Stop notification emails from Conclave?</p>\
         <form method=\"post\" action=\"/v1/notifications/unsubscribe?token={}\">\
         <input type=\"hidden\" name=\"List-Unsubscribe\" value=\"One-Click\">\
         <button type=\"submit\">Unsubscribe</button></form></body></html>",
        query.token
    );
    Ok(([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html))
}

/// What an unsubscribe answers.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
struct Unsubscribed {
    email_enabled: bool,
}

#[utoipa::path(
    post,
    path = "/v1/notifications/unsubscribe",
    tag = "notifications",
    operation_id = "unsubscribe",
    security(()),
    params(TokenQuery),
    responses(
        (status = 200, description = "Email notifications are off for the link's account", body = Unsubscribed),
        (status = 400, description = "`invalid_unsubscribe_token`", body = crate::error::ErrorBody),
    )
)]
async fn unsubscribe(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<TokenQuery>,
) -> ApiResult<axum::Json<Unsubscribed>> {
    let user_id = holder(&state, &query.token).await?;
    let mut tx = crate::db::user_tx(&state, user_id).await?;
    sqlx::query!(
        "INSERT INTO notification_preferences (user_id, email_enabled) VALUES ($1, false)
         ON CONFLICT ON CONSTRAINT notification_preferences_scope_key DO UPDATE SET email_enabled = false",
        user_id
    )
    .execute(&mut *tx)
    .await?;
    sqlx::query!(
        "UPDATE unsubscribe_tokens SET used_at = coalesce(used_at, now()) WHERE token_hash = $1",
        tokens::digest(&query.token)
    )
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    tracing::info!(%user_id, "email notifications turned off by an unsubscribe link");
    Ok(axum::Json(Unsubscribed { email_enabled: false }))
}
