//! A minimal TURN client (RFC 8656, UDP only): enough for a call to use a relay candidate.
//!
//! [`Relay::allocate`] asks the TURN server for a relayed address with the long-term
//! credentials from `POST /v1/calls/turn-credentials` (an unauthenticated Allocate draws the 401
//! challenge with the realm and nonce; the second one carries USERNAME, REALM, NONCE and
//! MESSAGE-INTEGRITY). [`Relay::permit`] installs a permission for a peer's IP address. Data then
//! goes out as Send indications ([`Relay::wrap`]) and comes in as Data indications
//! ([`Relay::unwrap`]), on the same UDP socket. An allocation lives 10 minutes and a permission
//! 5 unless renewed: [`Relay::refreshes`] are the requests that renew both, which the peer sends
//! every few minutes without waiting for their answers; [`Relay::on_answer`] reads those (a
//! stale nonce is taken and the renewals sent again).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac as _};
use md5::{Digest as _, Md5};
use sha1::Sha1;
use tokio::net::UdpSocket;

use crate::api::{Error, Result};

const MAGIC: u32 = 0x2112_A442;
const ALLOCATE_REQUEST: u16 = 0x0003;
const ALLOCATE_SUCCESS: u16 = 0x0103;
const ALLOCATE_ERROR: u16 = 0x0113;
const CREATE_PERMISSION_REQUEST: u16 = 0x0008;
const CREATE_PERMISSION_SUCCESS: u16 = 0x0108;
const CREATE_PERMISSION_ERROR: u16 = 0x0118;
const REFRESH_REQUEST: u16 = 0x0004;
const REFRESH_SUCCESS: u16 = 0x0104;
const REFRESH_ERROR: u16 = 0x0114;
const LIFETIME: u16 = 0x000D;
/// Seconds an allocation is asked to live at each renewal (RFC 8656's default).
const ALLOCATION_LIFETIME: u32 = 600;
const SEND_INDICATION: u16 = 0x0016;
const DATA_INDICATION: u16 = 0x0017;
const USERNAME: u16 = 0x0006;
const MESSAGE_INTEGRITY: u16 = 0x0008;
const ERROR_CODE: u16 = 0x0009;
const XOR_PEER_ADDRESS: u16 = 0x0012;
const DATA: u16 = 0x0013;
const REALM: u16 = 0x0014;
const NONCE: u16 = 0x0015;
const XOR_RELAYED_ADDRESS: u16 = 0x0016;
const REQUESTED_TRANSPORT: u16 = 0x0019;
/// Tries of one request (UDP may drop a datagram; a retransmission keeps the transaction id).
const TRIES: usize = 5;
const TRY_TIMEOUT: Duration = Duration::from_millis(200);

/// A relayed address allocated on a TURN server for one UDP socket.
#[derive(Debug)]
pub struct Relay {
    /// The TURN server.
    pub server: SocketAddr,
    /// The relayed address: peers send to it, the server forwards to this socket.
    pub relayed: SocketAddr,
    username: String,
    realm: Vec<u8>,
    nonce: Vec<u8>,
    key: [u8; 16],
    /// The peer addresses permitted so far (renewed with the allocation).
    permitted: Vec<IpAddr>,
}

/// What a datagram from the TURN server that is not a Data indication says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// A renewal (of the allocation or a permission) was granted.
    Renewed,
    /// The nonce went stale and the server named a new one, now taken: renew again.
    StaleNonce,
    /// Anything else (refused, or not the answer to a renewal).
    Other,
}

/// The `host:port` of a `turn:` URI over UDP (`turn:host:port?transport=udp`); `turns:` and TCP
/// are not supported by this client.
pub fn udp_server(uri: &str) -> Option<&str> {
    let rest = uri.strip_prefix("turn:")?;
    let (authority, query) = rest.split_once('?').unwrap_or((rest, ""));
    (query.is_empty() || query == "transport=udp").then_some(authority)
}

impl Relay {
    /// Allocates a UDP relay for `socket` on `server` with long-term credentials.
    pub async fn allocate(socket: &UdpSocket, server: SocketAddr, username: &str, password: &str) -> Result<Self> {
        let transport = [17u8, 0, 0, 0];
        let (kind, attrs) =
            round_trip(socket, server, &Message::new(ALLOCATE_REQUEST).attr(REQUESTED_TRANSPORT, &transport).0).await?;
        let (realm, nonce) = match kind {
            ALLOCATE_ERROR if error_code(&attrs) == Some(401) => (
                find(&attrs, REALM).ok_or_else(|| turn_error("no REALM in the challenge"))?.to_vec(),
                find(&attrs, NONCE).ok_or_else(|| turn_error("no NONCE in the challenge"))?.to_vec(),
            ),
            _ => return Err(turn_error(&format!("expected a 401 challenge, got type {kind:#06x}"))),
        };
        let mut key_input = format!("{username}:").into_bytes();
        key_input.extend_from_slice(&realm);
        key_input.extend_from_slice(format!(":{password}").as_bytes());
        let key: [u8; 16] = Md5::digest(&key_input).into();
        let mut relay =
            Self { server, relayed: server, username: username.to_owned(), realm, nonce, key, permitted: Vec::new() };
        let request = relay.authenticated(Message::new(ALLOCATE_REQUEST).attr(REQUESTED_TRANSPORT, &transport));
        match round_trip(socket, server, &request).await? {
            (ALLOCATE_SUCCESS, attrs) => {
                let value = find(&attrs, XOR_RELAYED_ADDRESS).ok_or_else(|| turn_error("no XOR-RELAYED-ADDRESS"))?;
                relay.relayed = xor_address(value).ok_or_else(|| turn_error("a relayed address that is not IPv4"))?;
                Ok(relay)
            }
            (_, attrs) => Err(turn_error(&format!(
                "the TURN server refused the allocation (error {})",
                error_code(&attrs).unwrap_or(0)
            ))),
        }
    }

    /// Lets `peer`'s IP address send to the relayed address (a permission lasts 5 minutes).
    pub async fn permit(&mut self, socket: &UdpSocket, peer: IpAddr) -> Result<()> {
        if !peer.is_ipv4() {
            return Err(turn_error("IPv6 peers are not supported"));
        }
        let request = self.permission(peer);
        match round_trip(socket, self.server, &request).await? {
            (CREATE_PERMISSION_SUCCESS, _) => {
                if !self.permitted.contains(&peer) {
                    self.permitted.push(peer);
                }
                Ok(())
            }
            (_, attrs) => Err(turn_error(&format!(
                "the TURN server refused the permission (error {})",
                error_code(&attrs).unwrap_or(0)
            ))),
        }
    }

    fn permission(&self, peer: IpAddr) -> Vec<u8> {
        let peer = xor_encode(SocketAddr::new(peer, 0));
        self.authenticated(Message::new(CREATE_PERMISSION_REQUEST).attr(XOR_PEER_ADDRESS, &peer))
    }

    /// The requests that renew the allocation and every permission (to send to the server).
    pub fn refreshes(&self) -> Vec<Vec<u8>> {
        let lifetime = ALLOCATION_LIFETIME.to_be_bytes();
        let mut requests = vec![self.authenticated(Message::new(REFRESH_REQUEST).attr(LIFETIME, &lifetime))];
        requests.extend(self.permitted.iter().map(|&peer| self.permission(peer)));
        requests
    }

    /// Reads what the server answered a renewal.
    pub fn on_answer(&mut self, from: SocketAddr, datagram: &[u8]) -> Answer {
        let Some((kind, attrs)) = parse(datagram).filter(|_| from == self.server) else { return Answer::Other };
        match kind {
            REFRESH_SUCCESS | CREATE_PERMISSION_SUCCESS => Answer::Renewed,
            REFRESH_ERROR | CREATE_PERMISSION_ERROR if error_code(&attrs) == Some(438) => match find(&attrs, NONCE) {
                Some(nonce) => {
                    self.nonce = nonce.to_vec();
                    Answer::StaleNonce
                }
                None => Answer::Other,
            },
            _ => Answer::Other,
        }
    }

    /// A Send indication carrying `data` to `peer` through the relay (to send to the server).
    pub fn wrap(&self, peer: SocketAddr, data: &[u8]) -> Option<Vec<u8>> {
        peer.is_ipv4()
            .then(|| Message::new(SEND_INDICATION).attr(XOR_PEER_ADDRESS, &xor_encode(peer)).attr(DATA, data).0)
    }

    /// The peer and data of a Data indication from the server; `None` for anything else.
    pub fn unwrap(&self, from: SocketAddr, datagram: &[u8]) -> Option<(SocketAddr, Vec<u8>)> {
        if from != self.server {
            return None;
        }
        let (kind, attrs) = parse(datagram)?;
        if kind != DATA_INDICATION {
            return None;
        }
        let peer = xor_address(find(&attrs, XOR_PEER_ADDRESS)?)?;
        Some((peer, find(&attrs, DATA)?.to_vec()))
    }

    fn authenticated(&self, message: Message) -> Vec<u8> {
        message
            .attr(USERNAME, self.username.as_bytes())
            .attr(REALM, &self.realm)
            .attr(NONCE, &self.nonce)
            .integrity(&self.key)
    }
}

fn turn_error(what: &str) -> Error {
    Error::Peer(format!("TURN: {what}"))
}

/// One STUN message being written: header, then attributes, each padded to 4 bytes.
struct Message(Vec<u8>);

impl Message {
    fn new(kind: u16) -> Self {
        let mut bytes = Vec::with_capacity(128);
        bytes.extend_from_slice(&kind.to_be_bytes());
        bytes.extend_from_slice(&[0, 0]);
        bytes.extend_from_slice(&MAGIC.to_be_bytes());
        let mut transaction = [0u8; 12];
        // A transaction id only has to be unique among this client's requests.
        let _ = getrandom::fill(&mut transaction);
        bytes.extend_from_slice(&transaction);
        Self(bytes)
    }

    fn attr(mut self, kind: u16, value: &[u8]) -> Self {
        self.0.extend_from_slice(&kind.to_be_bytes());
        self.0.extend_from_slice(&u16::try_from(value.len()).unwrap_or(u16::MAX).to_be_bytes());
        self.0.extend_from_slice(value);
        self.0.resize(self.0.len().next_multiple_of(4), 0);
        let length = u16::try_from(self.0.len() - 20).unwrap_or(u16::MAX);
        self.0[2..4].copy_from_slice(&length.to_be_bytes());
        self
    }

    /// Appends MESSAGE-INTEGRITY (RFC 8489 section 14.5): HMAC-SHA1 over the message so far, its
    /// length field already counting the attribute, keyed with MD5(username:realm:password).
    fn integrity(self, key: &[u8]) -> Vec<u8> {
        let mut with = self.attr(MESSAGE_INTEGRITY, &[0; 20]).0;
        let end = with.len() - 24;
        let Ok(mut mac) = <Hmac<Sha1> as KeyInit>::new_from_slice(key) else { return with };
        mac.update(&with[..end]);
        with[end + 4..].copy_from_slice(&mac.finalize().into_bytes());
        with
    }
}

type Attribute = (u16, Vec<u8>);

/// A STUN message's type and attributes.
fn parse(bytes: &[u8]) -> Option<(u16, Vec<Attribute>)> {
    if bytes.len() < 20 || bytes[4..8] != MAGIC.to_be_bytes() {
        return None;
    }
    let kind = u16::from_be_bytes([bytes[0], bytes[1]]);
    let length = usize::from(u16::from_be_bytes([bytes[2], bytes[3]]));
    let body = bytes.get(20..20 + length)?;
    let mut attrs = Vec::new();
    let mut at = 0;
    while at + 4 <= body.len() {
        let t = u16::from_be_bytes([body[at], body[at + 1]]);
        let l = usize::from(u16::from_be_bytes([body[at + 2], body[at + 3]]));
        attrs.push((t, body.get(at + 4..at + 4 + l)?.to_vec()));
        at += (4 + l).next_multiple_of(4);
    }
    Some((kind, attrs))
}

fn find(attrs: &[Attribute], kind: u16) -> Option<&[u8]> {
    attrs.iter().find(|(t, _)| *t == kind).map(|(_, v)| v.as_slice())
}

fn error_code(attrs: &[Attribute]) -> Option<u16> {
    let value = find(attrs, ERROR_CODE)?;
    (value.len() >= 4).then(|| u16::from(value[2] & 0x07) * 100 + u16::from(value[3]))
}

/// An XOR-MAPPED-style IPv4 address attribute's value.
fn xor_address(value: &[u8]) -> Option<SocketAddr> {
    if value.len() != 8 || value[1] != 1 {
        return None;
    }
    let port = u16::from_be_bytes([value[2], value[3]]) ^ (MAGIC >> 16) as u16;
    let ip = u32::from_be_bytes([value[4], value[5], value[6], value[7]]) ^ MAGIC;
    Some(SocketAddr::from((std::net::Ipv4Addr::from(ip), port)))
}

fn xor_encode(addr: SocketAddr) -> [u8; 8] {
    let mut value = [0u8; 8];
    value[1] = 1;
    value[2..4].copy_from_slice(&(addr.port() ^ (MAGIC >> 16) as u16).to_be_bytes());
    if let IpAddr::V4(ip) = addr.ip() {
        value[4..].copy_from_slice(&(u32::from(ip) ^ MAGIC).to_be_bytes());
    }
    value
}

/// Sends `request` to `server` and waits for the answer with the same transaction id, a few
/// times at most; other datagrams arriving meanwhile are dropped (the peer retransmits).
async fn round_trip(socket: &UdpSocket, server: SocketAddr, request: &[u8]) -> Result<(u16, Vec<Attribute>)> {
    let mut buf = vec![0u8; 2048];
    for _ in 0..TRIES {
        socket.send_to(request, server).await?;
        let deadline = tokio::time::Instant::now() + TRY_TIMEOUT;
        while let Ok(received) = tokio::time::timeout_at(deadline, socket.recv_from(&mut buf)).await {
            let (n, from) = received?;
            if from == server && buf.get(8..20) == request.get(8..20) {
                return parse(&buf[..n]).ok_or_else(|| turn_error("a malformed answer"));
            }
        }
    }
    Err(turn_error("the TURN server did not answer"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_round_trip_through_the_xor_encoding() {
        let addr: SocketAddr = "127.0.0.1:49152".parse().expect("addr");
        assert_eq!(xor_address(&xor_encode(addr)), Some(addr));
    }

    #[test]
    fn only_udp_turn_uris_are_used() {
        assert_eq!(udp_server("turn:127.0.0.1:3478?transport=udp"), Some("127.0.0.1:3478"));
        assert_eq!(udp_server("turn:127.0.0.1:3478"), Some("127.0.0.1:3478"));
        assert_eq!(udp_server("turns:turn.example.org:5349?transport=tcp"), None);
        assert_eq!(udp_server("turn:turn.example.org:3478?transport=tcp"), None);
    }
}
