//! Request extractors whose rejections are [`ApiError`]s, so malformed input gets the same JSON
//! error shape as everything else.

use crate::error::{ApiError, ErrorCode};
use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

/// `Json<T>` with our errors: 400 `malformed_json` (syntax), 422 `invalid_body` (shape: wrong
/// types, unknown or missing fields), 415 `unsupported_media_type`, 413 `payload_too_large`,
/// 408 `request_timeout` when the body is not all there by the request's [`BodyDeadline`].
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let deadline = req.extensions().get::<BodyDeadline>().copied();
        let body_read = req.extensions().get::<crate::deadline::BodyRead>().cloned();
        let read = Self::read(req, state, deadline).await;
        // The request's own deadline starts now (`crate::deadline`).
        if let Some(body_read) = body_read {
            body_read.done();
        }
        read
    }
}

impl<T: DeserializeOwned> ApiJson<T> {
    async fn read<S: Send + Sync>(req: Request, state: &S, deadline: Option<BodyDeadline>) -> Result<Self, ApiError> {
        let read = axum::Json::<T>::from_request(req, state);
        let read = match deadline {
            Some(BodyDeadline { at, total }) => match tokio::time::timeout_at(at, read).await {
                Ok(read) => read,
                // Dropping the body unread makes the server close the connection after answering.
                Err(_) => {
                    return Err(ApiError::new(
                        ErrorCode::RequestTimeout,
                        format!("the request body did not arrive within {} seconds", total.as_secs()),
                    ));
                }
            },
            None => read.await,
        };
        match read {
            Ok(axum::Json(value)) => Ok(Self(value)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

/// When a request's JSON body must have arrived by: `total` (`--body-read-timeout-secs`) after
/// its head did. The server puts it on every request ([`crate::server`]).
#[derive(Debug, Clone, Copy)]
pub struct BodyDeadline {
    pub at: tokio::time::Instant,
    pub total: std::time::Duration,
}

fn json_rejection(rejection: JsonRejection) -> ApiError {
    match rejection {
        JsonRejection::JsonDataError(e) => {
            // serde's message names the field and the problem ("unknown field `x`", "missing field
            // `y`", "invalid type"); it holds no server internals.
            ApiError::new(ErrorCode::InvalidBody, e.body_text())
        }
        JsonRejection::JsonSyntaxError(e) => ApiError::new(ErrorCode::MalformedJson, e.body_text()),
        JsonRejection::MissingJsonContentType(_) => ApiError::new(
            ErrorCode::UnsupportedMediaType,
            "expected a request body with Content-Type: application/json",
        ),
        JsonRejection::BytesRejection(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::new(ErrorCode::PayloadTooLarge, "the request body is too large")
        }
        other => ApiError::new(ErrorCode::InvalidRequest, other.body_text()),
    }
}

/// `Query<T>` with our errors: 422 `invalid_query` naming what is wrong.
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(Self(value)),
            Err(rejection) => Err(ApiError::new(ErrorCode::InvalidQuery, rejection.body_text())),
        }
    }
}

/// A WebSocket handshake with our errors: anything that is not one (a plain GET, a missing
/// `Upgrade` or key header) is 426 `websocket_required` with the JSON error body.
pub struct WebSocketRequest(pub axum::extract::ws::WebSocketUpgrade);

impl<S: Send + Sync> FromRequestParts<S> for WebSocketRequest {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::ws::WebSocketUpgrade::from_request_parts(parts, state).await {
            Ok(upgrade) => Ok(Self(upgrade)),
            Err(rejection) => Err(ApiError::new(
                ErrorCode::WebsocketRequired,
                format!("this endpoint is a WebSocket: {}", rejection.body_text()),
            )),
        }
    }
}

/// `Path<T>` with our errors: a malformed id is 404, like an id that does not exist.
pub struct ApiPath<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(Self(value)),
            Err(PathRejection::FailedToDeserializePathParams(_)) => Err(ApiError::not_found("resource")),
            Err(other) => Err(ApiError::new(ErrorCode::InvalidPath, other.body_text())),
        }
    }
}

/// The client's address: the peer, or with `--trust-forwarded-for` the last `X-Forwarded-For`
/// hop (the one our own proxy appended). IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`, what a
/// dual-stack listener sees of an IPv4 client) are read as the IPv4 address they carry.
#[derive(Debug, Clone, Copy)]
pub struct ClientIp(pub Option<std::net::IpAddr>);

impl FromRequestParts<crate::AppState> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &crate::AppState) -> Result<Self, Self::Rejection> {
        if state.config.trust_forwarded_for
            && let Some(ip) = parts
                .headers
                .get("x-forwarded-for")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.rsplit(',').next())
                .and_then(|v| v.trim().parse::<std::net::IpAddr>().ok())
        {
            return Ok(Self(Some(ip.to_canonical())));
        }
        let peer = parts.extensions.get::<axum::extract::ConnectInfo<std::net::SocketAddr>>().map(|c| c.0.ip());
        Ok(Self(peer.map(|ip| ip.to_canonical())))
    }
}

impl ClientIp {
    /// A rate-limit key for this address's [`source`]: `192.0.2.1`, `2001:db8:1:2::/64`.
    pub fn key(&self) -> String {
        match self.0.map(source) {
            Some(ip @ std::net::IpAddr::V4(_)) => ip.to_string(),
            Some(ip @ std::net::IpAddr::V6(_)) => format!("{ip}/64"),
            None => "unknown".to_owned(),
        }
    }
}

/// The source an address is counted as, by per-source limits and the cap on connections: an IPv4
/// address on its own, an IPv6 address by its /64 (one subscriber's network: a client given a
/// /64 can use any of its 2^64 addresses, so counting each alone would let it rotate past every
/// limit). IPv4-mapped addresses are IPv4 first; taken as IPv6 they would all share `::/64`.
pub fn source(ip: std::net::IpAddr) -> std::net::IpAddr {
    match ip.to_canonical() {
        std::net::IpAddr::V6(v6) => std::net::Ipv6Addr::from_bits(v6.to_bits() & !((1u128 << 64) - 1)).into(),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::IpAddr;

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("an address")
    }

    #[test]
    fn ipv6_addresses_count_by_their_64_and_mapped_ipv4_as_ipv4() {
        assert_eq!(source(ip("2001:db8:1:2:aaaa::1")), ip("2001:db8:1:2::"));
        assert_eq!(source(ip("2001:db8:1:2:ffff:ffff:ffff:ffff")), ip("2001:db8:1:2::"));
        assert_ne!(source(ip("2001:db8:1:3::1")), source(ip("2001:db8:1:2::1")), "another /64");
        assert_eq!(source(ip("::ffff:192.0.2.7")), ip("192.0.2.7"));
        assert_ne!(source(ip("::ffff:192.0.2.7")), source(ip("::ffff:192.0.2.8")), "not all in ::/64");
        assert_eq!(source(ip("192.0.2.7")), ip("192.0.2.7"));
        assert_eq!(ClientIp(Some(ip("2001:db8:1:2::9"))).key(), "2001:db8:1:2::/64");
        assert_eq!(ClientIp(Some(ip("::ffff:192.0.2.7"))).key(), "192.0.2.7");
        assert_eq!(ClientIp(None).key(), "unknown");
    }
}
