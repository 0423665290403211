//! Prometheus metrics at `GET /metrics` (OpenMetrics text format).
//!
//! Requests are counted and timed by a middleware around every route, labelled with the route
//! *template* (`/v1/devices/{device_id}`, from axum's [`MatchedPath`]) and never the raw path, so
//! ids cannot become label values: the label set is bounded by the routes in the code. Requests
//! that match no route share the `route="unmatched"` label.
//!
//! What the server holds rather than does (open sockets, pool connections, the hub's event
//! counts) is read at scrape time by a collector, so no code path has to remember to update it.
//! Each [`crate::router`] builds its own [`Metrics`]: several servers in one process (the tests)
//! never share a registry.

use crate::AppState;
use crate::messages::batch::BatchStats;
use crate::realtime::Hub;
use crate::retention::Retention;
use axum::Extension;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use sqlx::PgPool;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// The content type of the OpenMetrics text exposition format.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The route label of requests that matched no route (the 404 fallback).
pub const UNMATCHED: &str = "unmatched";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub method: String,
    /// The route template, or [`UNMATCHED`].
    pub route: String,
    pub status: u16,
}

/// The data plane's metrics: its registry and the request families the middleware updates.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    duration: Family<RequestLabels, Histogram>,
}

impl Metrics {
    pub fn new(state: &AppState) -> Self {
        let mut registry = Registry::with_prefix("conclave_dataplane");
        let requests = Family::<RequestLabels, Counter>::default();
        let duration = Family::<RequestLabels, Histogram>::new_with_constructor(|| {
            Histogram::new([0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0])
        });
        registry.register("http_requests", "HTTP requests answered, per method, route and status", requests.clone());
        registry.register(
            "http_request_duration_seconds",
            "How long HTTP requests take to answer, per method, route and status",
            duration.clone(),
        );
        let push = &state.push.stats;
        registry.register("push_sent", "Web Push messages a push service accepted", push.sent.clone());
        registry.register("push_failed", "Web Push requests that failed, per reason", push.failed.clone());
        registry.register("push_skipped", "Push rows not sent on purpose, per reason", push.skipped.clone());
        registry.register("outbox_pending", "Outbox rows waiting to be delivered, per channel", push.pending.clone());
        registry.register(
            "outbox_oldest_pending_seconds",
            "Age of the oldest outbox row waiting, per channel",
            push.oldest_pending_seconds.clone(),
        );
        registry.register_collector(Box::new(Live {
            hub: state.hub.clone(),
            db: state.db.clone(),
            sends: state.sends.stats.clone(),
            retention: state.retention.clone(),
        }));
        Self { registry, requests, duration }
    }

    pub fn observe(&self, labels: RequestLabels, seconds: f64) {
        self.requests.get_or_create(&labels).inc();
        self.duration.get_or_create(&labels).observe(seconds);
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// `GET /metrics`.
/// `GET /metrics`; [`crate::router`] gives it this server's [`Metrics`] as an extension.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(scrape))
}

/// Prometheus metrics of this replica.
#[utoipa::path(get, path = "/metrics", tag = "operations", operation_id = "metrics", security(()),
    responses((status = 200, description = "The OpenMetrics text exposition format", body = String,
               content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8")))]
async fn scrape(Extension(metrics): Extension<Arc<Metrics>>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], metrics.encode())
}

/// The middleware counting and timing every request (installed with `Router::layer`, which runs
/// after routing, so the matched route template is known).
pub async fn track(State(metrics): State<Arc<Metrics>>, request: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = method_label(request.method()).to_owned();
    let route =
        request.extensions().get::<MatchedPath>().map_or_else(|| UNMATCHED.to_owned(), |p| p.as_str().to_owned());
    let response = next.run(request).await;
    let labels = RequestLabels { method, route, status: response.status().as_u16() };
    metrics.observe(labels, start.elapsed().as_secs_f64());
    response.into_response()
}

/// Methods outside the usual set share one label value: a client cannot invent new ones.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

/// Read on each scrape: the sockets and events of the realtime hub, the send batches, the
/// database pool.
struct Live {
    hub: Arc<Hub>,
    db: PgPool,
    sends: Arc<BatchStats>,
    retention: Arc<Retention>,
}

impl std::fmt::Debug for Live {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Live").finish_non_exhaustive()
    }
}

fn counter(encoder: &mut DescriptorEncoder, name: &str, help: &str, value: u64) -> std::fmt::Result {
    let metric = ConstCounter::new(value);
    metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
}

fn gauge(encoder: &mut DescriptorEncoder, name: &str, help: &str, value: i64) -> std::fmt::Result {
    let metric = ConstGauge::new(value);
    metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
}

impl Collector for Live {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        let stats = &self.hub.stats;
        let sockets = i64::try_from(self.hub.socket_count()).unwrap_or(i64::MAX);
        gauge(&mut encoder, "websocket_connections", "WebSocket connections open on this replica", sockets)?;
        counter(
            &mut encoder,
            "events_published",
            "Live events this replica published to Redis",
            stats.published.load(Ordering::Relaxed),
        )?;
        counter(
            &mut encoder,
            "events_delivered",
            "Live events queued to a WebSocket on this replica (one per socket)",
            stats.delivered.load(Ordering::Relaxed),
        )?;
        counter(
            &mut encoder,
            "slow_consumers_disconnected",
            "WebSockets cut off because they fell too far behind",
            stats.slow_consumers.load(Ordering::Relaxed),
        )?;
        counter(
            &mut encoder,
            "send_batches",
            "Batches of sends stored with one statement and one commit",
            self.sends.batches.load(Ordering::Relaxed),
        )?;
        counter(
            &mut encoder,
            "send_batch_messages",
            "Sends carried by those batches (divided by send_batches: the mean batch size)",
            self.sends.sends.load(Ordering::Relaxed),
        )?;
        let retention = &self.retention;
        counter(
            &mut encoder,
            "retention_passes",
            "Retention passes this replica completed holding the lease",
            retention.passes.load(Ordering::Relaxed),
        )?;
        counter(
            &mut encoder,
            "retention_batches",
            "Retention batches (one transaction each) this replica committed",
            retention.batches.load(Ordering::Relaxed),
        )?;
        counter(
            &mut encoder,
            "retention_messages_deleted",
            "Messages past their retention period this replica deleted",
            retention.messages.load(Ordering::Relaxed),
        )?;
        counter(
            &mut encoder,
            "retention_attachments_deleted",
            "Attachments of those messages (their blobs are collected with them)",
            retention.attachments.load(Ordering::Relaxed),
        )?;
        counter(
            &mut encoder,
            "retention_key_generations_deleted",
            "Key generations no retained message needed any more, deleted",
            retention.key_generations.load(Ordering::Relaxed),
        )?;
        gauge(
            &mut encoder,
            "retention_lease_held",
            "1 while this replica holds the retention lease",
            retention.lease_held.load(Ordering::Relaxed),
        )?;
        let size = i64::from(self.db.size());
        let idle = i64::try_from(self.db.num_idle()).unwrap_or(i64::MAX);
        let max = i64::from(self.db.options().get_max_connections());
        gauge(&mut encoder, "db_pool_connections", "Connections the database pool holds", size)?;
        gauge(&mut encoder, "db_pool_idle_connections", "Connections of the pool not in use", idle)?;
        gauge(&mut encoder, "db_pool_max_connections", "The most connections the pool may open", max)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unusual_methods_share_one_label_value() {
        assert_eq!(method_label(&Method::GET), "GET");
        let invented = Method::from_bytes(b"BREW").expect("a valid method token");
        assert_eq!(method_label(&invented), "OTHER");
    }
}
