//! A deadline on every request's work (`--request-deadline-secs`), so that nothing a request
//! waits on can hold it, its client and its database connection for ever.
//!
//! The send path has a deadline of its own for its batch (`--database-send-deadline-ms`), and
//! taking a database connection is bounded (`--database-acquire-timeout-ms`). What those leave is
//! a query already sent on a connection whose network then went silent: no reset, no answer, and
//! no TCP timer on our side fires when the peer (a proxy, a NAT) still acknowledges. Such a
//! request waited until its client gave up, and some clients never do. Past the deadline the
//! handler is dropped (its transaction with it: the connection goes back through the pool's
//! bounded health check, which drops a silent one) and the client is answered 503
//! `deadline_exceeded` with `Retry-After`. Like `database_busy`, the answer does not say whether
//! a write took effect: retry what is idempotent (a send with its `client_message_id` is).
//!
//! The clock starts once the request's body is in: a JSON body has deadlines of its own (idle,
//! and `--body-read-timeout-secs` in total), and a slow client is not the server's slowness.
//!
//! A few operations are not bounded ([`UNBOUNDED`], by route): uploads, which last as long as
//! their bytes keep coming (they have the body's idle timeout), and the compliance operations
//! that do an account's or an organization's whole work in the request (building a privacy
//! export or an erasure, downloading a one-time export, exporting or verifying the audit trail).
//! Cutting those would not make them faster: a retry would meet the same limit, and a one-time
//! download cut after it was consumed would be lost.

use crate::AppState;
use crate::error::{ApiError, ErrorCode};
use crate::extract::BodyDeadline;
use axum::extract::{MatchedPath, Request, State};
use axum::http::header::CONTENT_TYPE;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// Told by [`crate::extract::ApiJson`] when the request's JSON body has been read (or has failed
/// to be): the request's deadline starts then.
#[derive(Clone)]
pub struct BodyRead(Arc<Notify>);

impl BodyRead {
    pub fn done(&self) {
        self.0.notify_one();
    }
}

/// The routes whose work is not bounded (see the module's documentation), as the router declares
/// them: method and path template.
pub const UNBOUNDED: [(&str, &str); 6] = [
    ("POST", "/v1/organizations/{organization_id}/conversations/{conversation_id}/attachments"),
    ("PUT", "/v1/profile/avatar"),
    ("POST", "/v1/organizations/{organization_id}/privacy-requests/{request_id}/approve"),
    ("GET", "/v1/organizations/{organization_id}/privacy-exports/{token}"),
    ("GET", "/v1/organizations/{organization_id}/audit/export"),
    ("GET", "/v1/organizations/{organization_id}/audit/verify"),
];

/// The middleware: runs the request, answering 503 `deadline_exceeded` if its work outlasts the
/// deadline.
pub async fn bound(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let limit = Duration::from_secs(state.config.request_deadline_secs);
    let route = request.extensions().get::<MatchedPath>().map(MatchedPath::as_str);
    if UNBOUNDED.iter().any(|(method, path)| request.method().as_str() == *method && route == Some(*path)) {
        return next.run(request).await;
    }
    let content_type = request.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    // The body's own deadline, or none when the request has no body to wait for.
    let body_until =
        (!content_type.is_empty()).then(|| request.extensions().get::<BodyDeadline>().map(|d| d.at)).flatten();
    let read = Arc::new(Notify::new());
    request.extensions_mut().insert(BodyRead(read.clone()));
    let (method, path) = (request.method().clone(), request.uri().path().to_owned());
    let run = next.run(request);
    tokio::pin!(run);
    if let Some(until) = body_until {
        tokio::select! {
            response = &mut run => return response,
            () = read.notified() => {}
            // A body no JSON extractor reads is in, or has failed, by then.
            () = tokio::time::sleep_until(until) => {}
        }
    }
    match tokio::time::timeout(limit, run).await {
        Ok(response) => response,
        Err(_) => {
            tracing::warn!(%method, %path, deadline_secs = limit.as_secs(), "a request outlasted its deadline");
            ApiError::new(
                ErrorCode::DeadlineExceeded,
                "the request did not complete in time (a write may or may not have taken effect); try again shortly",
            )
            .retry_after(1)
            .into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_unbounded_route_is_an_operation_of_the_document() {
        let document = serde_json::to_value(crate::openapi_document()).expect("the document");
        for (method, path) in super::UNBOUNDED {
            let operation = &document["paths"][path][method.to_lowercase()];
            assert!(operation.is_object(), "{method} {path} is not an operation of the API");
        }
    }
}
