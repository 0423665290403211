//! Accepting and serving connections. `axum::serve` offers no read timeouts and no limit per
//! client, so the data plane drives hyper's HTTP/1 server from an accept loop of its own:
//!
//! - **Header read timeout** (`--header-read-timeout-secs`): a connection must send a whole request
//!   head within it, when it opens and again between requests when kept alive, or it is closed.
//!   A slow-loris client (many sockets, each sending a partial head and stalling) holds each
//!   socket for that long at most.
//! - **Body idle timeout** (`--body-idle-timeout-secs`): a request body that sends nothing for that
//!   long fails; the handler answers with an error and the connection closes. It is an idle
//!   timeout, not a total one, so an attachment upload streams for as long as bytes keep coming,
//!   while a body that declares a gigabyte and stops after ten bytes is given up on.
//! - **JSON body deadline** (`--body-read-timeout-secs`): a JSON body must have arrived in full
//!   that long after its request head, or the request is answered 408 `request_timeout` and the
//!   connection closes; a client trickling one byte just inside every idle timeout is cut there.
//!   Each request carries its [`BodyDeadline`], which [`crate::extract::ApiJson`] reads by.
//! - **Connections per address** (`--max-connections-per-address`, none with
//!   `--trust-forwarded-for`, where every peer is a proxy): each source may hold that many
//!   connections at once, a source being an IPv4 address or an IPv6 /64
//!   ([`crate::extract::source`]: a client with a /64 cannot rotate past the cap); one more is closed as soon as it is accepted, before a byte is read
//!   (the cheapest refusal, and one a flood cannot make expensive). A WebSocket is one
//!   connection like any other and, once upgraded, is no longer subject to either timeout (its
//!   liveness is the socket's own heartbeat), so an idle client keeps its socket.
//!
//! Shutdown is graceful as with `axum::serve`: stop accepting, ask every HTTP connection to
//! finish the request in flight and close, and wait for them. Upgraded WebSockets are no longer
//! HTTP connections; [`crate::serve`] tells them to close ("going away").

use crate::config::Config;
use crate::extract::BodyDeadline;
use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use hyper::body::{Body as HttpBody, Bytes, Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tower::ServiceExt as _;

/// The limits [`run`] applies to every connection.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub header_read_timeout: Duration,
    pub body_idle_timeout: Duration,
    pub body_read_timeout: Duration,
    /// 0: no cap.
    pub max_connections_per_address: usize,
}

impl Limits {
    pub fn from_config(config: &Config) -> Self {
        Self {
            header_read_timeout: Duration::from_secs(config.header_read_timeout_secs),
            body_idle_timeout: Duration::from_secs(config.body_idle_timeout_secs),
            body_read_timeout: Duration::from_secs(config.body_read_timeout_secs),
            // Behind trusted proxies every peer address is a proxy's: capping it would cap everyone.
            max_connections_per_address: if config.trust_forwarded_for {
                0
            } else {
                config.max_connections_per_address
            },
        }
    }
}

/// Serves `app` on `listener` until `shutdown` resolves, then drains the open connections.
pub async fn run(listener: TcpListener, app: Router, limits: Limits, shutdown: impl Future<Output = ()>) {
    // `true` asks every connection to finish; each holds a `done` receiver until it has.
    let (stop, stopping) = watch::channel(false);
    let (done, open) = watch::channel(());
    let counts = Counts::default();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    accept_failed(error).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Some(slot) = counts.take(peer.ip(), limits.max_connections_per_address) else {
            tracing::debug!(%peer, "connection refused: too many open from this address");
            continue;
        };
        // TCP_NODELAY: frames are small and often several in a row to one socket (a batch of
        // sends to one conversation); with Nagle's algorithm the second waits for the client's
        // delayed ACK, up to 40 ms (measured: p50 send→deliver 40 ms at 1,100 messages/s in groups
        // of 10, 5 ms with TCP_NODELAY).
        if let Err(error) = tcp.set_nodelay(true) {
            tracing::debug!(%error, "could not set TCP_NODELAY on a connection");
        }
        let tcp = Counted { tcp, _slot: slot };
        let connection = Connection { tcp, peer, app: app.clone(), limits, stopping: stopping.clone() };
        tokio::spawn(connection.serve(open.clone()));
    }
    drop(listener);
    let _ = stop.send(true);
    drop(open);
    done.closed().await;
}

/// Errors of `accept` that concern one connection (it was reset before we took it) are skipped;
/// others (out of file descriptors) are retried after a pause rather than spinning.
async fn accept_failed(error: std::io::Error) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if !matches!(error.kind(), ConnectionAborted | ConnectionRefused | ConnectionReset) {
        tracing::error!(%error, "accepting a connection failed; retrying in a second");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

struct Connection {
    tcp: Counted,
    peer: SocketAddr,
    app: Router,
    limits: Limits,
    stopping: watch::Receiver<bool>,
}

impl Connection {
    /// Serves requests (and a WebSocket upgrade) until the client or the server closes.
    /// `_open` is dropped when the connection is done, which the shutdown waits for.
    async fn serve(self, _open: watch::Receiver<()>) {
        let Self { tcp, peer, app, limits, mut stopping } = self;
        let idle = limits.body_idle_timeout;
        let total = limits.body_read_timeout;
        let service = app.map_request(move |request: hyper::Request<Incoming>| {
            let mut request = request.map(|body| Body::new(IdleTimeout::new(body, idle)));
            // What `into_make_service_with_connect_info` would add: `ClientIp` reads it.
            request.extensions_mut().insert(ConnectInfo(peer));
            request.extensions_mut().insert(BodyDeadline { at: tokio::time::Instant::now() + total, total });
            request
        });
        let mut http = hyper::server::conn::http1::Builder::new();
        http.timer(TokioTimer::new()).header_read_timeout(limits.header_read_timeout);
        let connection = http.serve_connection(TokioIo::new(tcp), TowerToHyperService::new(service)).with_upgrades();
        let mut connection = std::pin::pin!(connection);
        let mut asked = false;
        loop {
            tokio::select! {
                result = connection.as_mut() => {
                    if let Err(error) = result {
                        tracing::debug!(%peer, %error, "connection ended with an error");
                    }
                    break;
                }
                _ = stopping.wait_for(|stop| *stop), if !asked => {
                    asked = true;
                    connection.as_mut().graceful_shutdown();
                }
            }
        }
    }
}

/// Open connections per source (IPv4 address or IPv6 /64), for the cap. A source leaves the map
/// with its last connection, so the map holds only sources with connections open.
#[derive(Clone, Default)]
struct Counts(Arc<Mutex<HashMap<IpAddr, usize>>>);

/// One open connection counted for its address; dropping it uncounts it.
struct Slot {
    counts: Counts,
    ip: IpAddr,
}

impl Counts {
    /// A slot for one more connection from `ip`'s source, unless it already holds `max` (0: no cap).
    fn take(&self, ip: IpAddr, max: usize) -> Option<Slot> {
        let ip = crate::extract::source(ip);
        let mut counts = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let count = counts.entry(ip).or_insert(0);
        if max > 0 && *count >= max {
            return None;
        }
        *count += 1;
        Some(Slot { counts: self.clone(), ip })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut counts = self.counts.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(count) = counts.get_mut(&self.ip) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                counts.remove(&self.ip);
            }
        }
    }
}

/// A socket that holds its address's slot until it is dropped. The slot goes with the socket
/// rather than with the task serving HTTP on it: after a WebSocket upgrade hyper hands the
/// socket to the WebSocket and its HTTP task ends, and the socket must go on counting.
struct Counted {
    tcp: TcpStream,
    _slot: Slot,
}

impl AsyncRead for Counted {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.tcp).poll_read(cx, buf)
    }
}

impl AsyncWrite for Counted {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
}

/// A request body that fails when it has been waited on for `idle` without a frame arriving.
struct IdleTimeout {
    inner: Incoming,
    idle: Duration,
    /// Armed when a poll finds nothing to read, disarmed by the next frame; kept to be reset
    /// rather than allocated again for every wait.
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
    armed: bool,
}

impl IdleTimeout {
    fn new(inner: Incoming, idle: Duration) -> Self {
        Self { inner, idle, sleep: None, armed: false }
    }
}

/// The error a body gives when its client stopped sending.
#[derive(Debug, thiserror::Error)]
#[error("the request body sent nothing for {0:?}")]
pub struct BodyIdle(Duration);

impl HttpBody for IdleTimeout {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            this.armed = false;
            return Poll::Ready(frame.map(|frame| frame.map_err(Into::into)));
        }
        let deadline = tokio::time::Instant::now() + this.idle;
        let sleep = this.sleep.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if !this.armed {
            sleep.as_mut().reset(deadline);
            this.armed = true;
        }
        ready!(sleep.as_mut().poll(cx));
        this.armed = false;
        Poll::Ready(Some(Err(BodyIdle(this.idle).into())))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_holds_at_most_its_cap_and_leaves_the_map_with_its_last_connection() {
        let counts = Counts::default();
        let (a, b): (IpAddr, IpAddr) = ([10, 0, 0, 1].into(), [10, 0, 0, 2].into());
        let first = counts.take(a, 2).expect("first");
        let second = counts.take(a, 2).expect("second");
        assert!(counts.take(a, 2).is_none(), "a third from the same address");
        let other = counts.take(b, 2).expect("another address has its own count");
        drop(first);
        let again = counts.take(a, 2).expect("a closed connection frees its slot");
        drop((second, again, other));
        assert!(counts.0.lock().expect("lock").is_empty());
        let unlimited: Vec<Slot> = (0..10).filter_map(|_| counts.take(a, 0)).collect();
        assert_eq!(unlimited.len(), 10, "0 means no cap");
    }

    #[test]
    fn an_ipv6_64_is_one_source_and_a_mapped_ipv4_address_its_own() {
        let counts = Counts::default();
        let ip = |text: &str| -> IpAddr { text.parse().expect("an address") };
        let first = counts.take(ip("2001:db8:1:2::1"), 2).expect("first");
        let second = counts.take(ip("2001:db8:1:2:dead:beef:0:7"), 2).expect("second");
        assert!(counts.take(ip("2001:db8:1:2:ffff::9"), 2).is_none(), "a third address of the same /64");
        let next = counts.take(ip("2001:db8:1:3::1"), 2).expect("the next /64 is another source");
        let mapped = counts.take(ip("::ffff:192.0.2.1"), 1).expect("mapped");
        assert!(counts.take(ip("192.0.2.1"), 1).is_none(), "the same IPv4 address, mapped or not");
        let other = counts.take(ip("::ffff:192.0.2.2"), 1).expect("another IPv4 address, though both are in ::/64");
        drop((first, second, next, mapped, other));
        assert!(counts.0.lock().expect("lock").is_empty());
    }
}
