//! A TCP relay from an address inside the node's network to a service on the host's loopback.
//!
//! kube-apiserver, PostgreSQL and Redis listen on 127.0.0.1 only, which a pod (or the kubelet in
//! the node's network namespace) cannot reach. A [`Relay`] listens on the host's end of the link
//! to the node (an address that exists only on that link) and copies each connection to the
//! loopback port, so nothing is exposed beyond the machine and nothing leaves it.

use anyhow::{Context, Result};
use std::io::ErrorKind;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

pub struct Relay {
    pub listen: SocketAddr,
    pub target: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Relay {
    /// Listens on `listen` and relays every connection to `target`.
    pub fn start(listen: SocketAddr, target: SocketAddr) -> Result<Self> {
        let listener = TcpListener::bind(listen).with_context(|| format!("relay: binding {listen}"))?;
        listener.set_nonblocking(true)?;
        let listen = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new().name(format!("relay {listen}")).spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((inbound, _)) => {
                        let _ = inbound.set_nonblocking(false);
                        if let Ok(outbound) = TcpStream::connect_timeout(&target, Duration::from_secs(5)) {
                            pipe(inbound, outbound);
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => std::thread::sleep(Duration::from_millis(20)),
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        })?;
        Ok(Self { listen, target, stop, thread: Some(thread) })
    }
}

/// Copies both ways until either side closes.
fn pipe(a: TcpStream, b: TcpStream) {
    let (Ok(a2), Ok(b2)) = (a.try_clone(), b.try_clone()) else { return };
    let one = move |mut from: TcpStream, mut to: TcpStream| {
        let _ = std::io::copy(&mut from, &mut to);
        let _ = to.shutdown(Shutdown::Write);
        let _ = from.shutdown(Shutdown::Read);
    };
    let _ = std::thread::Builder::new().name("relay copy".into()).spawn(move || one(a, b2));
    let _ = std::thread::Builder::new().name("relay copy".into()).spawn(move || one(b, a2));
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
