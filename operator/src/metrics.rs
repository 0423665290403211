//! Prometheus metrics: reconciles, failures and reconcile duration per kind, and whether this
//! replica leads.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::time::Instant;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabel {
    pub kind: String,
    /// A stable snake_case word (see `controllers::Error::metric_label`).
    pub error: String,
}

/// The operator's metrics, registered once and shared by every controller.
pub struct Metrics {
    pub registry: Registry,
    pub reconciles: Family<KindLabel, Counter>,
    pub failures: Family<ErrorLabel, Counter>,
    pub duration: Family<KindLabel, Histogram>,
    /// 1 while this replica holds the leader Lease.
    pub leader: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("conclave_operator");
        let reconciles = Family::<KindLabel, Counter>::default();
        let failures = Family::<ErrorLabel, Counter>::default();
        let duration = Family::<KindLabel, Histogram>::new_with_constructor(|| {
            Histogram::new([0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0])
        });
        let leader = Gauge::default();
        registry.register("reconciles", "Reconciles run, per kind", reconciles.clone());
        registry.register("reconcile_errors", "Reconciles that failed, per kind and error", failures.clone());
        registry.register("reconcile_duration_seconds", "How long reconciles take, per kind", duration.clone());
        registry.register("leader", "1 while this replica is the leader", leader.clone());
        Self { registry, reconciles, failures, duration, leader }
    }
}

impl Metrics {
    /// Counts a reconcile and returns a guard that records its duration when dropped.
    pub fn start(&self, kind: &str) -> Timer<'_> {
        let label = KindLabel { kind: kind.to_owned() };
        self.reconciles.get_or_create(&label).inc();
        Timer { metrics: self, label, start: Instant::now() }
    }

    pub fn failed(&self, kind: &str, error: &str) {
        self.failures.get_or_create(&ErrorLabel { kind: kind.to_owned(), error: error.to_owned() }).inc();
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

pub struct Timer<'a> {
    metrics: &'a Metrics,
    label: KindLabel,
    start: Instant,
}

impl Drop for Timer<'_> {
    fn drop(&mut self) {
        self.metrics.duration.get_or_create(&self.label).observe(self.start.elapsed().as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconciles_errors_and_durations_are_exported_per_kind() {
        let metrics = Metrics::default();
        drop(metrics.start("Organization"));
        metrics.failed("Organization", "database");
        let text = metrics.encode();
        assert!(text.contains(r#"conclave_operator_reconciles_total{kind="Organization"} 1"#), "{text}");
        assert!(text.contains(r#"conclave_operator_reconcile_errors_total{kind="Organization",error="database"} 1"#));
        assert!(text.contains(r#"conclave_operator_reconcile_duration_seconds_count{kind="Organization"} 1"#));
    }
}
