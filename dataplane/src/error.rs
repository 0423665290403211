//! One error type for the whole service, rendered as
//! `{"error": {"code": "...", "message": "...", "details": ...}}`.
//!
//! `code` is a stable `snake_case` string clients branch on; `message` is for people and never
//! carries SQL, paths or internal detail (those go to the log, with the request's span).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use conclave_schema::{Violation, ViolationKind};
use serde_json::{Value, json};
use std::borrow::Cow;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: Cow<'static, str>,
    pub details: Option<Value>,
    /// Seconds a client should wait (rate limits, lockouts): sent as `Retry-After`.
    pub retry_after: Option<u64>,
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<Cow<'static, str>>) -> Self {
        Self { status, code, message: message.into(), details: None, retry_after: None }
    }

    pub fn with_details(mut self, details: Value) -> Self {
        self.details = Some(details);
        self
    }

    pub fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds.max(1));
        self
    }

    pub fn bad_request(code: &'static str, message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn validation(field: &'static str, message: impl Into<Cow<'static, str>>) -> Self {
        let message = message.into();
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed", format!("{field}: {message}"))
            .with_details(json!({ "field": field, "reason": message }))
    }

    pub fn unauthorized(code: &'static str, message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, code, message)
    }

    pub fn forbidden(code: &'static str, message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::FORBIDDEN, code, message)
    }

    /// Also what another organization's ids get: they answer exactly like ids that do not exist.
    pub fn not_found(what: &'static str) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", format!("{what} not found"))
    }

    pub fn conflict(code: &'static str, message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::CONFLICT, code, message)
    }

    pub fn internal() -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal_error", "something went wrong on our side")
    }

    pub fn unavailable(code: &'static str, message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, code, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!(code = self.code, status = self.status.as_u16(), "request failed");
        }
        let body = json!({
            "error": { "code": self.code, "message": self.message, "details": self.details.unwrap_or(Value::Null) }
        });
        let mut response = (self.status, axum::Json(body)).into_response();
        if let Some(seconds) = self.retry_after
            && let Ok(value) = HeaderValue::from_str(&seconds.to_string())
        {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        response
    }
}

/// Constraint violations are the caller's mistake and get a 4xx naming the rule; anything else
/// from the database is ours, logged in full and answered with a bare 500.
impl From<sqlx::Error> for ApiError {
    fn from(err: sqlx::Error) -> Self {
        if let Some(v) = Violation::from_sqlx(&err) {
            let status = match v.kind {
                ViolationKind::Duplicate => StatusCode::CONFLICT,
                ViolationKind::Reference | ViolationKind::Invalid | ViolationKind::Missing => {
                    StatusCode::UNPROCESSABLE_ENTITY
                }
                // Row-level security refused it: for the caller that is something not found.
                ViolationKind::Forbidden => return Self::not_found("resource"),
            };
            tracing::info!(constraint = ?v.constraint, table = ?v.table, "write refused by a constraint");
            return Self::new(status, v.kind.code(), v.message);
        }
        if matches!(err, sqlx::Error::PoolTimedOut) {
            tracing::error!(error = %err, "database pool exhausted");
            return Self::unavailable("database_busy", "the service is overloaded, try again shortly").retry_after(1);
        }
        tracing::error!(error = %err, "database error");
        Self::internal()
    }
}

impl From<redis::RedisError> for ApiError {
    fn from(err: redis::RedisError) -> Self {
        tracing::error!(error = %err, "redis error");
        Self::unavailable("realtime_unavailable", "a backing service is unavailable, try again shortly").retry_after(1)
    }
}

impl From<tokio::task::JoinError> for ApiError {
    fn from(err: tokio::task::JoinError) -> Self {
        tracing::error!(error = %err, "blocking task failed");
        Self::internal()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body(err: ApiError) -> (StatusCode, Option<String>, Value) {
        let response = err.into_response();
        let status = response.status();
        let retry = response.headers().get(header::RETRY_AFTER).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 16).await.expect("body");
        (status, retry, serde_json::from_slice(&bytes).expect("json"))
    }

    #[tokio::test]
    async fn errors_render_the_documented_json_shape() {
        let (status, retry, json) = body(ApiError::validation("email", "is not an email address")).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(retry, None);
        assert_eq!(
            json,
            json!({"error": {"code": "validation_failed", "message": "email: is not an email address",
                             "details": {"field": "email", "reason": "is not an email address"}}})
        );
    }

    #[tokio::test]
    async fn rate_limits_carry_retry_after() {
        let err = ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", "slow down").retry_after(42);
        let (status, retry, json) = body(err).await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(retry.as_deref(), Some("42"));
        assert_eq!(json["error"]["code"], "rate_limited");
        assert_eq!(json["error"]["details"], Value::Null);
    }

    #[tokio::test]
    async fn internal_errors_say_nothing_about_the_inside() {
        let (status, _, json) = body(ApiError::from(sqlx::Error::Protocol("secret detail".into()))).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(!json.to_string().contains("secret detail"));
    }
}
