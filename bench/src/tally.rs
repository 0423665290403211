//! The bookkeeping of a run where senders send to a conversation and every member reads: each
//! message is expected once per member, its send time kept with its id, and each delivery matched
//! to it by that id and timed on arrival. `messages` (Conclave) and `peer-matrix` (Synapse) count
//! through this one type, so their figures mean the same thing.

use crate::messages::histogram;
use crate::results::Latency;
use crate::system::{Sample, Watch};
use hdrhistogram::Histogram;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use uuid::Uuid;

struct Pending {
    sent_at: Instant,
    remaining: u32,
    measured: bool,
}

/// Sends and deliveries, shared by the senders and the readers of a run.
pub struct Tally {
    pending: Mutex<HashMap<Uuid, Pending>>,
    latency: Mutex<Histogram<u64>>,
    interval_latency: Mutex<Histogram<u64>>,
    send_latency: Mutex<Histogram<u64>>,
    /// Set for the measured window: sends made while it is set are the measured ones.
    pub measuring: AtomicBool,
    /// Set when the senders are to stop.
    pub stop: AtomicBool,
    sent: AtomicU64,
    sent_measured: AtomicU64,
    delivered: AtomicU64,
    delivered_measured: AtomicU64,
    errors: Mutex<BTreeMap<String, u64>>,
}

fn record(histogram: &Mutex<Histogram<u64>>, micros: u64) {
    let _ = histogram.lock().unwrap_or_else(|p| p.into_inner()).record(micros.max(1));
}

impl Tally {
    pub fn new() -> Self {
        Self {
            pending: Mutex::new(HashMap::new()),
            latency: Mutex::new(histogram()),
            interval_latency: Mutex::new(histogram()),
            send_latency: Mutex::new(histogram()),
            measuring: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            sent: AtomicU64::new(0),
            sent_measured: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            delivered_measured: AtomicU64::new(0),
            errors: Mutex::new(BTreeMap::new()),
        }
    }

    pub fn error(&self, kind: impl Into<String>) {
        let mut errors = self.errors.lock().unwrap_or_else(|p| p.into_inner());
        *errors.entry(kind.into()).or_insert(0) += 1;
    }

    pub fn error_count(&self) -> u64 {
        self.errors.lock().unwrap_or_else(|p| p.into_inner()).values().sum()
    }

    /// The errors by kind, and their total.
    pub fn errors(&self) -> (u64, Vec<(String, u64)>) {
        let kinds: Vec<(String, u64)> =
            self.errors.lock().unwrap_or_else(|p| p.into_inner()).iter().map(|(k, n)| (k.clone(), *n)).collect();
        (kinds.iter().map(|(_, n)| n).sum(), kinds)
    }

    /// A send of message `id` is about to go, to be read by `readers`: returns what
    /// [`sent`](Self::sent) or [`failed`](Self::failed) is told once it is answered.
    pub fn sending(&self, id: Uuid, readers: u32) -> Sending {
        let measured = self.measuring.load(Ordering::Relaxed);
        let sent_at = Instant::now();
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, Pending { sent_at, remaining: readers, measured });
        Sending { id, sent_at, measured }
    }

    /// The server accepted the send.
    pub fn sent(&self, sending: Sending) {
        if sending.measured {
            record(&self.send_latency, sending.sent_at.elapsed().as_micros() as u64);
            self.sent_measured.fetch_add(1, Ordering::Relaxed);
        }
        self.sent.fetch_add(1, Ordering::Relaxed);
    }

    /// The send failed (`kind` says how): no delivery of it is expected.
    pub fn failed(&self, sending: Sending, kind: impl Into<String>) {
        self.pending.lock().unwrap_or_else(|p| p.into_inner()).remove(&sending.id);
        self.error(kind);
    }

    /// A reader has message `id`, read at `now`: timed from its send, or counted as an error
    /// when it was not expected (again).
    pub fn delivered(&self, id: Uuid, now: Instant) {
        let measured = {
            let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
            let Some(entry) = pending.get_mut(&id) else {
                drop(pending);
                self.error("delivery of an unknown or duplicate message");
                self.delivered.fetch_add(1, Ordering::Relaxed);
                return;
            };
            let micros = now.duration_since(entry.sent_at).as_micros() as u64;
            let measured = entry.measured;
            entry.remaining = entry.remaining.saturating_sub(1);
            if entry.remaining == 0 {
                pending.remove(&id);
            }
            drop(pending);
            if measured {
                record(&self.latency, micros);
            }
            record(&self.interval_latency, micros);
            measured
        };
        self.delivered.fetch_add(1, Ordering::Relaxed);
        if measured && self.measuring.load(Ordering::Relaxed) {
            self.delivered_measured.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The measured window: what is sent in the next `duration` is measured, and `watch` is
    /// sampled at both ends.
    pub async fn window(&self, watch: &Watch, duration: Duration) -> Window {
        let before = watch.sample();
        self.measuring.store(true, Ordering::Relaxed);
        let start = Instant::now();
        tokio::time::sleep(duration).await;
        self.measuring.store(false, Ordering::Relaxed);
        let secs = start.elapsed().as_secs_f64();
        let after = watch.sample();
        Window { before, after, secs, rss_mib: watch.dataplane_rss_mib() }
    }

    /// Stops the senders and waits for their last sends, then up to `drain` for the deliveries
    /// of measured messages still on their way: returns how many never came.
    pub async fn finish(&self, senders: Vec<tokio::task::JoinHandle<()>>, drain: Duration) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        for sender in senders {
            let _ = sender.await;
        }
        self.drain(drain).await
    }

    /// Waits up to `limit` for the deliveries of measured messages still on their way: returns
    /// how many never came.
    pub async fn drain(&self, limit: Duration) -> u64 {
        let until = Instant::now() + limit;
        loop {
            let missing: u64 = self
                .pending
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .values()
                .filter(|p| p.measured)
                .map(|p| u64::from(p.remaining))
                .sum();
            if missing == 0 || Instant::now() > until {
                return missing;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Messages sent and deliveries read in the measured window.
    pub fn measured(&self) -> (u64, u64) {
        (self.sent_measured.load(Ordering::Relaxed), self.delivered_measured.load(Ordering::Relaxed))
    }

    /// Send→deliver and send request latency of the measured messages.
    pub fn latencies(&self) -> (Latency, Latency) {
        (
            Latency::from_micros(&self.latency.lock().unwrap_or_else(|p| p.into_inner())),
            Latency::from_micros(&self.send_latency.lock().unwrap_or_else(|p| p.into_inner())),
        )
    }

    /// One line a second: rates, latency of the last second, errors, and the CPU and RSS of the
    /// server (`server` names it) and PostgreSQL.
    pub async fn progress(self: Arc<Self>, watch: Watch, started: Instant, server: &'static str) {
        let mut ticker = tokio::time::interval(Duration::from_secs(1));
        ticker.tick().await;
        let mut last = watch.sample();
        let (mut sent, mut delivered) = (0, 0);
        loop {
            ticker.tick().await;
            let now = watch.sample();
            let [cpu, pg, ..] = watch.cpu_between(&last, &now);
            last = now;
            let (s, d) = (self.sent.load(Ordering::Relaxed), self.delivered.load(Ordering::Relaxed));
            let p99 = {
                let mut h = self.interval_latency.lock().unwrap_or_else(|p| p.into_inner());
                let p99 = if h.is_empty() { 0.0 } else { h.value_at_quantile(0.99) as f64 / 1000.0 };
                h.reset();
                p99
            };
            let phase = if self.measuring.load(Ordering::Relaxed) {
                "measuring"
            } else if self.stop.load(Ordering::Relaxed) {
                "draining"
            } else {
                "warm-up"
            };
            eprintln!(
                "[bench] {:>4.0}s {phase:<9} sent {:>6}/s delivered {:>7}/s p99 {:>7.2} ms errors {} | {server} CPU {:>4.0} % RSS {:>5.0} MiB | postgres CPU {:>4.0} %",
                started.elapsed().as_secs_f64(),
                s - sent,
                d - delivered,
                p99,
                self.error_count(),
                cpu,
                watch.dataplane_rss_mib(),
                pg
            );
            (sent, delivered) = (s, d);
        }
    }
}

/// The measured window, as [`Tally::window`] saw it.
pub struct Window {
    pub before: Sample,
    pub after: Sample,
    pub secs: f64,
    /// The watched server's RSS at its end.
    pub rss_mib: f64,
}

/// A send in flight, as [`Tally::sending`] recorded it.
pub struct Sending {
    id: Uuid,
    sent_at: Instant,
    measured: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_is_missing_until_every_reader_has_it_and_a_second_copy_is_an_error() {
        let tally = Tally::new();
        tally.measuring.store(true, Ordering::Relaxed);
        let id = Uuid::new_v4();
        let sending = tally.sending(id, 2);
        tally.sent(sending);
        tally.delivered(id, Instant::now());
        let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().expect("runtime");
        assert_eq!(runtime.block_on(tally.drain(Duration::ZERO)), 1);
        tally.delivered(id, Instant::now());
        assert_eq!(runtime.block_on(tally.drain(Duration::ZERO)), 0);
        assert_eq!(tally.measured(), (1, 2));
        assert_eq!(tally.error_count(), 0);
        tally.delivered(id, Instant::now());
        assert_eq!(tally.errors(), (1, vec![("delivery of an unknown or duplicate message".to_owned(), 1)]));
        assert_eq!(tally.latencies().0.samples, 2);
    }

    #[test]
    fn a_failed_send_expects_no_delivery() {
        let tally = Tally::new();
        tally.measuring.store(true, Ordering::Relaxed);
        let sending = tally.sending(Uuid::new_v4(), 8);
        tally.failed(sending, "send: HTTP 429");
        let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().expect("runtime");
        assert_eq!(runtime.block_on(tally.drain(Duration::ZERO)), 0);
        assert_eq!(tally.measured(), (0, 0));
        assert_eq!(tally.errors().0, 1);
    }
}
