//! A WebRTC peer connection with one data channel: str0m (sans-IO) driven over one UDP socket.
//!
//! The caller makes a [`Peer`], takes its [`Peer::offer`] and sends it as a sealed
//! [`Signal::Offer`](super::signal::Signal::Offer); the callee answers with [`Peer::answer`];
//! the caller takes that with [`Peer::accept_answer`]. ICE candidates are gathered before the
//! offer (a host candidate on the bound address, a TURN relay, or both) and travel inside the
//! SDP, so no candidate trickles. Then [`Peer::wait_open`] drives ICE, DTLS and SCTP until the
//! data channel is open, and [`Peer::send`] / [`Peer::recv`] move bytes.
//!
//! The media (here the data channel) is protected by DTLS, whose certificates are authenticated
//! only by the `a=fingerprint` lines of the SDPs: that is why the SDPs travel sealed with MLS.
//! [`Peer::remote_fingerprint`] is the fingerprint str0m holds the remote end to, taken from the
//! remote SDP.

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use conclave_protocol::calls::TurnCredentials;
use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::channel::ChannelId;
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc, RtcConfig};
use tokio::net::UdpSocket;

use super::turn::{Answer, Relay, udp_server};
use crate::api::{Error, Result};

/// The data channel's label.
pub const CHANNEL_LABEL: &str = "conclave";
/// How often a relay's allocation and permissions are renewed (they last 10 and 5 minutes).
pub const RELAY_REFRESH: Duration = Duration::from_secs(4 * 60);
/// The most bytes of one datagram read.
const DATAGRAM: usize = 2048;

/// Which candidates a peer offers.
#[derive(Debug, Clone)]
pub struct PeerOptions {
    /// The local address to bind the UDP socket to (a concrete address: it is also the host
    /// candidate's, and the base of the relay candidate).
    pub bind: IpAddr,
    /// Offer a host candidate (direct connection).
    pub host_candidate: bool,
    /// Allocate a relay on the first `turn:` UDP server of these credentials and offer it.
    pub turn: Option<TurnCredentials>,
}

/// Datagrams a peer moved, by path: what shows whether a connection went through the relay.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Traffic {
    /// Sent straight to the remote address.
    pub sent_direct: u64,
    /// Sent through the TURN relay (Send indications).
    pub sent_relayed: u64,
    /// Received straight from a remote address.
    pub received_direct: u64,
    /// Received through the TURN relay (Data indications).
    pub received_relayed: u64,
    /// Renewals of the relay's allocation or permissions that the TURN server granted.
    pub relay_renewals: u64,
}

/// One end of a call's peer connection.
pub struct Peer {
    rtc: Rtc,
    socket: UdpSocket,
    local: SocketAddr,
    relay: Option<Relay>,
    channel: Option<ChannelId>,
    pending: Option<SdpPendingOffer>,
    inbox: VecDeque<Vec<u8>>,
    open: bool,
    closed: bool,
    local_sdp: Option<String>,
    remote_sdp: Option<String>,
    traffic: Traffic,
    /// When the relay is next renewed.
    refresh_at: Instant,
}

impl std::fmt::Debug for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Peer").field("local", &self.local).field("open", &self.open).finish_non_exhaustive()
    }
}

fn peer_error(what: impl std::fmt::Display) -> Error {
    Error::Peer(what.to_string())
}

impl Peer {
    /// Binds the socket and gathers the candidates `options` asks for.
    pub async fn new(options: &PeerOptions) -> Result<Self> {
        if !options.host_candidate && options.turn.is_none() {
            return Err(peer_error("a peer needs a host candidate, a TURN relay, or both"));
        }
        let socket = UdpSocket::bind((options.bind, 0)).await?;
        let local = socket.local_addr()?;
        let provider = Arc::new(str0m::crypto::from_feature_flags());
        let mut rtc = RtcConfig::new().set_crypto_provider(provider).build(Instant::now());
        if options.host_candidate {
            let candidate = Candidate::host(local, "udp").map_err(peer_error)?;
            rtc.add_local_candidate(candidate);
        }
        let mut relay = None;
        if let Some(turn) = &options.turn {
            let server = turn
                .urls
                .iter()
                .find_map(|uri| udp_server(uri))
                .ok_or_else(|| peer_error("no turn: server over UDP among the TURN URIs"))?;
            let server = tokio::net::lookup_host(server)
                .await?
                .find(SocketAddr::is_ipv4)
                .ok_or_else(|| peer_error("the TURN server has no IPv4 address"))?;
            let allocated = Relay::allocate(&socket, server, &turn.username, &turn.credential).await?;
            let candidate = Candidate::relayed(allocated.relayed, local, "udp").map_err(peer_error)?;
            rtc.add_local_candidate(candidate);
            relay = Some(allocated);
        }
        Ok(Self {
            rtc,
            socket,
            local,
            relay,
            channel: None,
            pending: None,
            inbox: VecDeque::new(),
            open: false,
            closed: false,
            local_sdp: None,
            remote_sdp: None,
            traffic: Traffic::default(),
            refresh_at: Instant::now() + RELAY_REFRESH,
        })
    }

    /// The caller's side: an offer with one data channel and every candidate gathered.
    pub fn offer(&mut self) -> Result<String> {
        let mut api = self.rtc.sdp_api();
        api.add_channel(CHANNEL_LABEL.to_owned());
        let (offer, pending) = api.apply().ok_or_else(|| peer_error("nothing to offer"))?;
        self.pending = Some(pending);
        let sdp = offer.to_sdp_string();
        self.local_sdp = Some(sdp.clone());
        Ok(sdp)
    }

    /// The callee's side: takes the caller's offer, returns the answer.
    pub async fn answer(&mut self, offer: &str) -> Result<String> {
        let parsed = SdpOffer::from_sdp_string(offer).map_err(|e| peer_error(format!("the offer: {e}")))?;
        self.permit_remote(offer).await?;
        let answer = self.rtc.sdp_api().accept_offer(parsed).map_err(|e| peer_error(format!("the offer: {e}")))?;
        self.remote_sdp = Some(offer.to_owned());
        let sdp = answer.to_sdp_string();
        self.local_sdp = Some(sdp.clone());
        Ok(sdp)
    }

    /// The caller's side: takes the callee's answer.
    pub async fn accept_answer(&mut self, answer: &str) -> Result<()> {
        let pending = self.pending.take().ok_or_else(|| peer_error("an answer without an offer"))?;
        let parsed = SdpAnswer::from_sdp_string(answer).map_err(|e| peer_error(format!("the answer: {e}")))?;
        self.permit_remote(answer).await?;
        self.rtc.sdp_api().accept_answer(pending, parsed).map_err(|e| peer_error(format!("the answer: {e}")))?;
        self.remote_sdp = Some(answer.to_owned());
        Ok(())
    }

    /// Through a relay, the remote candidates' addresses need a permission on it first.
    async fn permit_remote(&mut self, sdp: &str) -> Result<()> {
        let Some(relay) = &mut self.relay else { return Ok(()) };
        let mut permitted: Vec<IpAddr> = Vec::new();
        for ip in candidate_ips(sdp) {
            if ip.is_ipv4() && !permitted.contains(&ip) {
                relay.permit(&self.socket, ip).await?;
                permitted.push(ip);
            }
        }
        Ok(())
    }

    /// Sends the requests that renew the relay's allocation and permissions now (the connection
    /// also does it by itself every [`RELAY_REFRESH`]); the granted ones are counted in
    /// [`Traffic::relay_renewals`] as the connection is driven.
    pub async fn refresh_relay(&mut self) -> Result<()> {
        self.refresh_at = Instant::now() + RELAY_REFRESH;
        let Some(relay) = &self.relay else { return Ok(()) };
        for request in relay.refreshes() {
            self.socket.send_to(&request, relay.server).await?;
        }
        Ok(())
    }

    /// Drives the connection until the data channel is open (ICE, DTLS, SCTP), `within` at most.
    pub async fn wait_open(&mut self, within: Duration) -> Result<()> {
        self.drive_until(within, |peer| peer.open).await
    }

    /// Queues `data` on the data channel (sent as the connection is driven: by [`Peer::recv`],
    /// [`Peer::wait_open`] or [`Peer::flush`]).
    pub fn send(&mut self, data: &[u8]) -> Result<()> {
        let id = self.channel.filter(|_| self.open).ok_or_else(|| peer_error("the data channel is not open"))?;
        let mut channel = self.rtc.channel(id).ok_or_else(|| peer_error("the data channel is gone"))?;
        channel.write(true, data).map_err(peer_error)?;
        Ok(())
    }

    /// The next bytes received on the data channel, within `within`.
    pub async fn recv(&mut self, within: Duration) -> Result<Vec<u8>> {
        self.drive_until(within, |peer| !peer.inbox.is_empty() || peer.closed).await?;
        self.inbox.pop_front().ok_or_else(|| peer_error("the peer connection closed"))
    }

    /// Drives the connection for `during` (to let queued data leave and be acknowledged).
    pub async fn flush(&mut self, during: Duration) -> Result<()> {
        match self.drive_until(during, |peer| peer.closed).await {
            Ok(()) | Err(Error::Timeout(_)) => Ok(()),
            Err(err) => Err(err),
        }
    }

    /// Whether the connection has closed (the remote end went away or ICE failed).
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Ends the connection.
    pub fn close(&mut self) {
        self.rtc.disconnect();
        self.closed = true;
    }

    /// The SDP this end sent (offer or answer).
    pub fn local_sdp(&self) -> Option<&str> {
        self.local_sdp.as_deref()
    }

    /// The SDP this end received.
    pub fn remote_sdp(&self) -> Option<&str> {
        self.remote_sdp.as_deref()
    }

    /// This end's DTLS certificate fingerprint, as an SDP writes it (`sha-256 AB:…`).
    pub fn local_fingerprint(&mut self) -> String {
        self.rtc.direct_api().local_dtls_fingerprint().to_string()
    }

    /// The DTLS fingerprint the remote end must present (from the remote SDP), once known.
    pub fn remote_fingerprint(&mut self) -> Option<String> {
        self.rtc.direct_api().remote_dtls_fingerprint().map(ToString::to_string)
    }

    /// The datagrams moved so far, by path.
    pub fn traffic(&self) -> Traffic {
        self.traffic
    }

    /// The relayed address, when this end allocated one.
    pub fn relayed_address(&self) -> Option<SocketAddr> {
        self.relay.as_ref().map(|relay| relay.relayed)
    }

    /// Runs str0m: its output is sent (through the relay when it leaves from the relayed
    /// address), datagrams and timeouts are fed in, until `done` or `within` elapses.
    async fn drive_until(&mut self, within: Duration, done: impl Fn(&Self) -> bool) -> Result<()> {
        let deadline = Instant::now() + within;
        let mut buf = vec![0u8; DATAGRAM];
        loop {
            let wake = self.poll().await?;
            if done(self) {
                return Ok(());
            }
            if self.relay.is_some() && Instant::now() >= self.refresh_at {
                self.refresh_relay().await?;
            }
            let wake = wake.min(self.refresh_at);
            let now = Instant::now();
            if now >= deadline {
                return Err(Error::Timeout(within));
            }
            let wait = wake.min(deadline).saturating_duration_since(now);
            match tokio::time::timeout(wait, self.socket.recv_from(&mut buf)).await {
                Ok(received) => {
                    let (n, from) = received?;
                    self.receive(from, &buf[..n])?;
                }
                Err(_) => self.rtc.handle_input(Input::Timeout(Instant::now())).map_err(peer_error)?,
            }
        }
    }

    /// Sends everything str0m has to send and takes its events; returns when it next wants time.
    async fn poll(&mut self) -> Result<Instant> {
        // Bounded: str0m returns a timeout once its queues are empty.
        for _ in 0..10_000 {
            if self.closed {
                return Ok(Instant::now() + Duration::from_millis(50));
            }
            match self.rtc.poll_output().map_err(peer_error)? {
                Output::Timeout(at) => return Ok(at),
                Output::Transmit(transmit) => {
                    let relay = self.relay.as_ref().filter(|relay| relay.relayed == transmit.source);
                    // A datagram the network refuses is lost like any UDP datagram: ICE retries.
                    let _ = match relay {
                        Some(relay) => match relay.wrap(transmit.destination, &transmit.contents) {
                            Some(indication) => {
                                self.traffic.sent_relayed += 1;
                                self.socket.send_to(&indication, relay.server).await
                            }
                            None => continue,
                        },
                        None => {
                            self.traffic.sent_direct += 1;
                            self.socket.send_to(&transmit.contents, transmit.destination).await
                        }
                    };
                }
                Output::Event(event) => self.on_event(event),
            }
        }
        Err(peer_error("the connection produced output without end"))
    }

    fn on_event(&mut self, event: Event) {
        match event {
            Event::ChannelOpen(id, _) => {
                self.channel = Some(id);
                self.open = true;
            }
            Event::ChannelData(data) => self.inbox.push_back(data.data),
            Event::ChannelClose(_) => self.closed = true,
            Event::IceConnectionStateChange(IceConnectionState::Disconnected) => self.closed = true,
            _ => {}
        }
    }

    fn receive(&mut self, from: SocketAddr, datagram: &[u8]) -> Result<()> {
        let (source, destination, contents) = match &self.relay {
            Some(relay) if from == relay.server => match relay.unwrap(from, datagram) {
                Some((peer, data)) => {
                    self.traffic.received_relayed += 1;
                    (peer, relay.relayed, data)
                }
                // Not data: the answer to a renewal, or a late one to a request already made.
                None => {
                    self.renewal_answered(from, datagram);
                    return Ok(());
                }
            },
            _ => {
                self.traffic.received_direct += 1;
                (from, self.local, datagram.to_vec())
            }
        };
        let Ok(contents) = contents.as_slice().try_into() else { return Ok(()) };
        let receive = Receive { proto: Protocol::Udp, source, destination, contents };
        self.rtc.handle_input(Input::Receive(Instant::now(), receive)).map_err(peer_error)
    }
}

impl Peer {
    /// Counts a granted renewal; after a stale nonce (the server named a new one) the renewals
    /// are due again at once.
    fn renewal_answered(&mut self, from: SocketAddr, datagram: &[u8]) {
        let Some(relay) = &mut self.relay else { return };
        match relay.on_answer(from, datagram) {
            Answer::Renewed => self.traffic.relay_renewals += 1,
            Answer::StaleNonce => self.refresh_at = Instant::now(),
            Answer::Other => {}
        }
    }
}

/// The IP addresses of an SDP's `a=candidate` lines.
fn candidate_ips(sdp: &str) -> Vec<IpAddr> {
    sdp.lines()
        .filter_map(|line| line.trim_end().strip_prefix("a=candidate:"))
        .filter_map(|candidate| candidate.split_whitespace().nth(4)?.parse().ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidate_addresses_are_read_from_the_sdp() {
        let sdp = "v=0\r\na=candidate:1 1 udp 2130706431 127.0.0.1 50000 typ host\r\na=candidate:2 1 udp 16777215 \
                   10.0.0.9 3478 typ relay raddr 0.0.0.0 rport 0\r\n";
        assert_eq!(candidate_ips(sdp), vec![IpAddr::from([127, 0, 0, 1]), IpAddr::from([10, 0, 0, 9])]);
    }
}
