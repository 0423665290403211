//! A real coturn (`turnserver`, Debian's `coturn` package; `scripts/stack.sh up` installs it) on
//! loopback, checking credentials with the TURN REST API scheme (`use-auth-secret`), and a
//! minimal TURN client (RFC 8656 Allocate with RFC 8489 long-term credentials) to prove that
//! credentials open a relay, or see why they do not.
//!
//! Each server gets its own directory (pid file, log, SQLite user database) under the system's
//! temporary directory, named `conclave-coturn-<uuid>`; dropping [`Coturn`] kills the process
//! and removes the directory.

use anyhow::{Context, Result, anyhow, bail};
use hmac::{Hmac, KeyInit, Mac};
use md5::{Digest, Md5};
use sha1::Sha1;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tokio::net::UdpSocket;

/// The realm the test server announces.
pub const REALM: &str = "conclave.test";

pub struct Coturn {
    /// The UDP (and TCP) address it listens on.
    pub addr: SocketAddr,
    child: Child,
    dir: PathBuf,
}

impl Coturn {
    /// Starts `turnserver` on a loopback port chosen here, sharing `secret` with the caller, and
    /// waits (at most 20 tries, about 12 s) until it answers a STUN Binding request.
    pub async fn start(secret: &str) -> Result<Self> {
        let dir = std::env::temp_dir().join(format!("conclave-coturn-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir)?;
        // The OS picks free ports: one to listen on, and the first of the relay range.
        let port = free_udp_port()?;
        let relay = free_udp_port()?;
        let (min, max) = if relay < 65_000 { (relay, relay + 20) } else { (relay - 20, relay) };
        let path = |name: &str| dir.join(name).to_string_lossy().into_owned();
        let child = Command::new("turnserver")
            .args(["-n", "--use-auth-secret", "--realm", REALM, "--listening-ip", "127.0.0.1", "--relay-ip"])
            .args(["127.0.0.1", "--listening-port", &port.to_string(), "--min-port", &min.to_string()])
            .args(["--max-port", &max.to_string(), "--no-tls", "--no-dtls", "--no-cli", "--simple-log"])
            .args(["--allow-loopback-peers", "--no-software-attribute", "--no-stdout-log"])
            .arg(format!("--static-auth-secret={secret}"))
            .args(["--log-file", &path("turn.log"), "--pidfile", &path("turn.pid"), "--userdb", &path("turndb")])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting turnserver (Debian package coturn: run scripts/stack.sh up)")?;
        let server = Self { addr: SocketAddr::from((Ipv4Addr::LOCALHOST, port)), child, dir };
        for _ in 0..20 {
            if binding(server.addr).await.is_ok() {
                return Ok(server);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let log = std::fs::read_to_string(server.dir.join("turn.log")).unwrap_or_default();
        bail!("turnserver did not answer on {} after 20 tries; its log:\n{log}", server.addr)
    }

    /// The URI a client is given, `turn:127.0.0.1:<port>?transport=udp`.
    pub fn uri(&self) -> String {
        format!("turn:{}?transport=udp", self.addr)
    }
}

impl Drop for Coturn {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn free_udp_port() -> Result<u16> {
    Ok(std::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?.local_addr()?.port())
}

/// What a TURN server answered an authenticated Allocate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Allocation {
    /// A relay was allocated at this address.
    Relayed(SocketAddr),
    /// An error response, with its ERROR-CODE (401: the credentials were refused).
    Refused(u16),
}

const MAGIC: u32 = 0x2112_A442;
const BINDING_REQUEST: u16 = 0x0001;
const ALLOCATE_REQUEST: u16 = 0x0003;
const ALLOCATE_SUCCESS: u16 = 0x0103;
const ALLOCATE_ERROR: u16 = 0x0113;
const USERNAME: u16 = 0x0006;
const MESSAGE_INTEGRITY: u16 = 0x0008;
const ERROR_CODE: u16 = 0x0009;
const REALM_ATTR: u16 = 0x0014;
const NONCE: u16 = 0x0015;
const XOR_RELAYED_ADDRESS: u16 = 0x0016;
const REQUESTED_TRANSPORT: u16 = 0x0019;

/// One STUN message being written: header, then attributes, each padded to 4 bytes.
struct Message(Vec<u8>);

impl Message {
    fn new(kind: u16) -> Self {
        let mut bytes = Vec::with_capacity(128);
        bytes.extend_from_slice(&kind.to_be_bytes());
        bytes.extend_from_slice(&[0, 0]);
        bytes.extend_from_slice(&MAGIC.to_be_bytes());
        bytes.extend_from_slice(&uuid::Uuid::new_v4().as_bytes()[..12]);
        Self(bytes)
    }

    fn attr(mut self, kind: u16, value: &[u8]) -> Self {
        self.0.extend_from_slice(&kind.to_be_bytes());
        self.0.extend_from_slice(&(value.len() as u16).to_be_bytes());
        self.0.extend_from_slice(value);
        self.0.resize(self.0.len().next_multiple_of(4), 0);
        let length = (self.0.len() - 20) as u16;
        self.0[2..4].copy_from_slice(&length.to_be_bytes());
        self
    }

    /// Appends MESSAGE-INTEGRITY (RFC 8489 §14.5): HMAC-SHA1 over the message so far, its length
    /// field already counting the attribute, keyed with MD5(username:realm:password).
    fn integrity(self, key: &[u8]) -> Vec<u8> {
        let mut with = self.attr(MESSAGE_INTEGRITY, &[0; 20]).0;
        let end = with.len() - 24;
        let mut mac = <Hmac<Sha1> as KeyInit>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
        mac.update(&with[..end]);
        with[end + 4..].copy_from_slice(&mac.finalize().into_bytes());
        with
    }
}

/// A STUN attribute: its type and value.
type Attribute = (u16, Vec<u8>);
/// A STUN response: its message type and attributes.
type Response = (u16, Vec<Attribute>);

/// The attributes of a STUN response to the request `tid` of `kind`: (type, value) pairs.
fn parse(bytes: &[u8], tid: &[u8]) -> Result<Response> {
    if bytes.len() < 20 || bytes[8..20] != *tid {
        bail!("not the response to our request");
    }
    let kind = u16::from_be_bytes([bytes[0], bytes[1]]);
    let length = usize::from(u16::from_be_bytes([bytes[2], bytes[3]]));
    let body = bytes.get(20..20 + length).ok_or_else(|| anyhow!("truncated STUN message"))?;
    let mut attrs = Vec::new();
    let mut at = 0;
    while at + 4 <= body.len() {
        let t = u16::from_be_bytes([body[at], body[at + 1]]);
        let l = usize::from(u16::from_be_bytes([body[at + 2], body[at + 3]]));
        let value = body.get(at + 4..at + 4 + l).ok_or_else(|| anyhow!("truncated attribute"))?;
        attrs.push((t, value.to_vec()));
        at += (4 + l).next_multiple_of(4);
    }
    Ok((kind, attrs))
}

fn find(attrs: &[Attribute], kind: u16) -> Option<&[u8]> {
    attrs.iter().find(|(t, _)| *t == kind).map(|(_, v)| v.as_slice())
}

/// Sends `request` and waits up to 100 ms for the answer, five times at most (UDP may drop a
/// datagram; a retransmission keeps its transaction id, RFC 8489 §6.2.1).
async fn round_trip(socket: &UdpSocket, request: &[u8]) -> Result<Response> {
    let mut buf = [0u8; 1500];
    let mut last = anyhow!("no attempt");
    for _ in 0..5 {
        socket.send(request).await?;
        match tokio::time::timeout(Duration::from_millis(100), socket.recv(&mut buf)).await {
            Ok(Ok(n)) => return parse(&buf[..n], &request[8..20]),
            Ok(Err(e)) => return Err(e.into()),
            Err(elapsed) => last = elapsed.into(),
        }
    }
    Err(last.context("no answer"))
}

async fn connected(server: SocketAddr) -> Result<UdpSocket> {
    let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await?;
    socket.connect(server).await?;
    Ok(socket)
}

/// A STUN Binding request: is the server up?
async fn binding(server: SocketAddr) -> Result<()> {
    round_trip(&connected(server).await?, &Message::new(BINDING_REQUEST).0).await.map(drop)
}

/// Allocates a UDP relay with long-term credentials: an unauthenticated Allocate to learn the
/// realm and nonce (the 401 challenge), then the authenticated one.
pub async fn allocate(server: SocketAddr, username: &str, password: &str) -> Result<Allocation> {
    let socket = connected(server).await?;
    let transport = [17u8, 0, 0, 0]; // UDP
    let challenge =
        round_trip(&socket, &Message::new(ALLOCATE_REQUEST).attr(REQUESTED_TRANSPORT, &transport).0).await?;
    let (realm, nonce) = match challenge {
        (ALLOCATE_ERROR, attrs) if error_code(&attrs) == Some(401) => (
            find(&attrs, REALM_ATTR).ok_or_else(|| anyhow!("no REALM in the challenge"))?.to_vec(),
            find(&attrs, NONCE).ok_or_else(|| anyhow!("no NONCE in the challenge"))?.to_vec(),
        ),
        (kind, attrs) => bail!("expected a 401 challenge, got type {kind:#06x} {attrs:?}"),
    };
    let mut key_input = format!("{username}:").into_bytes();
    key_input.extend_from_slice(&realm);
    key_input.extend_from_slice(format!(":{password}").as_bytes());
    let key = Md5::digest(&key_input);
    let request = Message::new(ALLOCATE_REQUEST)
        .attr(REQUESTED_TRANSPORT, &transport)
        .attr(USERNAME, username.as_bytes())
        .attr(REALM_ATTR, &realm)
        .attr(NONCE, &nonce)
        .integrity(&key);
    let answer = round_trip(&socket, &request).await?;
    match answer {
        (ALLOCATE_SUCCESS, attrs) => {
            let relayed = find(&attrs, XOR_RELAYED_ADDRESS).ok_or_else(|| anyhow!("no XOR-RELAYED-ADDRESS"))?;
            if relayed.len() != 8 || relayed[1] != 1 {
                bail!("expected an IPv4 relayed address");
            }
            let port = u16::from_be_bytes([relayed[2], relayed[3]]) ^ (MAGIC >> 16) as u16;
            let ip = u32::from_be_bytes([relayed[4], relayed[5], relayed[6], relayed[7]]) ^ MAGIC;
            Ok(Allocation::Relayed(SocketAddr::from((Ipv4Addr::from(ip), port))))
        }
        (ALLOCATE_ERROR, attrs) => Ok(Allocation::Refused(error_code(&attrs).unwrap_or(0))),
        (kind, _) => bail!("unexpected answer type {kind:#06x}"),
    }
}

fn error_code(attrs: &[Attribute]) -> Option<u16> {
    let value = find(attrs, ERROR_CODE)?;
    (value.len() >= 4).then(|| u16::from(value[2] & 0x07) * 100 + u16::from(value[3]))
}
