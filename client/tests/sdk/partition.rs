//! A TCP relay on loopback between a client and the data plane that can cut the network the way
//! a vanished route does: no reset, no close, just silence.
//!
//! While cut, bytes on the connections already open are read and dropped, and connections opened
//! meanwhile are accepted but never reach the server. Healing lets new connections through and
//! closes the ones that went through the cut, as a peer's reset would once packets flow again.

use std::sync::Arc;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The network's state: `cut`, and how many times it has been cut (a connection opened in one
/// period is closed in a later one).
#[derive(Clone, Copy, Default, PartialEq)]
struct Network {
    cut: bool,
    cuts: u32,
}

pub struct Relay {
    /// `http://127.0.0.1:port`: give this to a client instead of the server's address.
    pub base: String,
    network: Arc<watch::Sender<Network>>,
    accepting: JoinHandle<()>,
}

impl Relay {
    /// A relay to the server at `upstream` (`http://host:port`).
    pub async fn start(upstream: &str) -> Self {
        let upstream = upstream.trim_start_matches("http://").to_owned();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the relay");
        let base = format!("http://{}", listener.local_addr().expect("address"));
        let network = Arc::new(watch::channel(Network::default()).0);
        let accepting = {
            let network = network.clone();
            tokio::spawn(async move {
                while let Ok((client, _)) = listener.accept().await {
                    tokio::spawn(relay(client, upstream.clone(), network.subscribe()));
                }
            })
        };
        Self { base, network, accepting }
    }

    /// From now on nothing passes, in either direction, on any connection.
    pub fn cut(&self) {
        self.network.send_modify(|n| {
            n.cut = true;
            n.cuts += 1;
        });
    }

    /// New connections pass again; those that lived through the cut are closed.
    pub fn heal(&self) {
        self.network.send_modify(|n| n.cut = false);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.accepting.abort();
    }
}

/// One client connection: reaches the server once the network is whole, then copies both ways
/// until either side closes or a cut that this connection lived through is healed.
async fn relay(mut client: TcpStream, upstream: String, mut network: watch::Receiver<Network>) {
    let Ok(whole) = network.wait_for(|n| !n.cut).await.map(|n| *n) else { return };
    let Ok(mut server) = TcpStream::connect(&upstream).await else { return };
    let born = whole.cuts;
    let (mut client_read, mut client_write) = client.split();
    let (mut server_read, mut server_write) = server.split();
    let (mut up, mut down) = (vec![0u8; 16 * 1024], vec![0u8; 16 * 1024]);
    loop {
        let (read, to_server) = tokio::select! {
            read = client_read.read(&mut up) => (read, true),
            read = server_read.read(&mut down) => (read, false),
            changed = network.changed() => {
                if changed.is_err() {
                    return;
                }
                let now = *network.borrow_and_update();
                if !now.cut && now.cuts != born {
                    return;
                }
                continue;
            }
        };
        let n = match read {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let now = *network.borrow();
        if now.cut || now.cuts != born {
            continue;
        }
        let written =
            if to_server { server_write.write_all(&up[..n]).await } else { client_write.write_all(&down[..n]).await };
        if written.is_err() {
            return;
        }
    }
}
