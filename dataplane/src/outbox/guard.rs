//! Where webhook and Web Push deliveries may go: the defence against server-side request forgery.
//!
//! A WebhookEndpoint's URL is chosen by whoever may write the resource, a push subscription's by
//! its user, and the data plane runs inside the cluster: without a check, a URL could make it
//! POST to the cloud's metadata service, to the database, or to any in-cluster service. So the
//! delivery client ([`super::http::GuardedHttp`]) resolves the host itself ([`Guard`], the
//! connector's resolver), refuses every address that is not public unicast ([`refusal`]) unless
//! its allow-list ([`AllowedTarget`]: the DataPlane's for webhooks, loopback in tests for push)
//! names it or its host, and connects only to the addresses it vetted: the connector never
//! resolves the name again, so a DNS answer that changes between check and use cannot slip
//! through. Redirects are not followed (the client has no redirect support), so no later hop
//! goes unchecked.

use hyper_util::client::legacy::connect::dns::Name;
use ipnet::IpNet;
use std::fmt;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

/// An entry of the allow-list (`--webhook-allowed-targets`, the DataPlane's
/// `spec.webhookAllowedTargets`): an address block, or a host name (`*.` for its subdomains).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowedTarget {
    Net(IpNet),
    /// Lower case, without a trailing dot.
    Host(String),
    /// Any host ending in `.<suffix>`.
    Suffix(String),
}

impl std::str::FromStr for AllowedTarget {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if let Ok(net) = s.parse::<IpNet>() {
            return Ok(Self::Net(net.trunc()));
        }
        if let Ok(ip) = s.parse::<IpAddr>() {
            return Ok(Self::Net(IpNet::from(ip)));
        }
        let name = s.trim_end_matches('.').to_ascii_lowercase();
        let (wildcard, host) = match name.strip_prefix("*.") {
            Some(rest) => (true, rest.to_owned()),
            None => (false, name),
        };
        let label_ok =
            |l: &str| !l.is_empty() && l.len() <= 63 && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
        if host.is_empty() || host.len() > 253 || !host.split('.').all(label_ok) || s.contains('/') {
            return Err(format!("{s:?} is neither an address block (CIDR), an address nor a host name"));
        }
        Ok(if wildcard { Self::Suffix(host) } else { Self::Host(host) })
    }
}

/// The allow-list, as configured.
#[derive(Debug, Clone, Default)]
pub struct AllowList(Vec<AllowedTarget>);

impl AllowList {
    pub fn new(targets: Vec<AllowedTarget>) -> Self {
        Self(targets)
    }

    /// Whether every address of `host` is let through.
    fn host(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        self.0.iter().any(|t| match t {
            AllowedTarget::Host(h) => *h == host,
            AllowedTarget::Suffix(s) => host.strip_suffix(s.as_str()).is_some_and(|rest| rest.ends_with('.')),
            AllowedTarget::Net(_) => false,
        })
    }

    fn address(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|t| matches!(t, AllowedTarget::Net(net) if net.contains(&ip)))
    }
}

/// A delivery the guard stopped, and why (no secret in it: a host and an address).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    Host { host: String, first: Refusal, others: usize },
    Address(Refusal),
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Host { host, first, others: 0 } => write!(f, "{host} resolves to a refused address: {first}"),
            Self::Host { host, first, others } => {
                write!(f, "{host} resolves only to refused addresses ({} in all), such as {first}", others + 1)
            }
            Self::Address(why) => write!(f, "{why}"),
        }
    }
}

impl std::error::Error for Refused {}

/// Why one address is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    pub address: IpAddr,
    pub what: &'static str,
    /// The IPv6 form that embeds a refused IPv4 address, if that is how it was reached.
    pub form: Option<&'static str>,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.form {
            Some(form) => write!(f, "{} is {form} of {}", self.address, self.what),
            None => write!(f, "{} is {}", self.address, self.what),
        }
    }
}

/// Why an address is no destination for a delivery, or `None` when it is public unicast.
pub fn refusal(address: IpAddr) -> Option<Refusal> {
    let (what, form) = match address {
        IpAddr::V4(v4) => (v4_refusal(v4)?, None),
        IpAddr::V6(v6) => v6_refusal(v6)?,
    };
    Some(Refusal { address, what, form })
}

fn v4_refusal(ip: Ipv4Addr) -> Option<&'static str> {
    let o = ip.octets();
    Some(match o {
        [169, 254, 169, 254] => "a cloud metadata address",
        [0, ..] => "an unspecified (\"this network\", 0.0.0.0/8) address",
        [127, ..] => "a loopback address",
        [10, ..] | [172, 16..=31, ..] | [192, 168, ..] => "a private (RFC 1918) address",
        [169, 254, ..] => "a link-local address",
        [100, 64..=127, ..] => "a shared (carrier-grade NAT, 100.64.0.0/10) address",
        [255, 255, 255, 255] => "the broadcast address",
        [224..=239, ..] => "a multicast address",
        [192, 0, 2, _] | [198, 51, 100, _] | [203, 0, 113, _] => "a documentation address",
        [192, 0, 0, _] => "an IETF protocol assignment (192.0.0.0/24)",
        [198, 18 | 19, ..] => "a benchmarking address (198.18.0.0/15)",
        [240..=255, ..] => "a reserved (240.0.0.0/4) address",
        _ => return None,
    })
}

/// The IPv4 address an IPv6 address stands for, and the name of that form.
fn embedded_v4(ip: Ipv6Addr) -> Option<(Ipv4Addr, &'static str)> {
    let s = ip.segments();
    let low = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    match s {
        [0, 0, 0, 0, 0, 0xffff, ..] => Some((low, "the IPv4-mapped form")),
        [0, 0, 0, 0, 0xffff, 0, ..] => Some((low, "the IPv4-translated form")),
        // `::` and `::1` are IPv6's own; the rest of ::/96 is the deprecated IPv4-compatible form.
        [0, 0, 0, 0, 0, 0, 0, 0 | 1] => None,
        [0, 0, 0, 0, 0, 0, ..] => Some((low, "the IPv4-compatible form")),
        [0x64, 0xff9b, 0, 0, 0, 0, ..] => Some((low, "the NAT64 form")),
        [0x2002, hi, lo, ..] => {
            Some((Ipv4Addr::new((hi >> 8) as u8, hi as u8, (lo >> 8) as u8, lo as u8), "the 6to4 form"))
        }
        // Teredo carries the client's IPv4 address with every bit inverted.
        [0x2001, 0, ..] => Some((Ipv4Addr::from(!u32::from(low)), "the Teredo form")),
        _ => None,
    }
}

fn v6_refusal(ip: Ipv6Addr) -> Option<(&'static str, Option<&'static str>)> {
    if let Some((v4, form)) = embedded_v4(ip) {
        return v4_refusal(v4).map(|what| (what, Some(form)));
    }
    let s = ip.segments();
    let what = match s {
        [0, 0, 0, 0, 0, 0, 0, 0] => "the unspecified address",
        [0, 0, 0, 0, 0, 0, 0, 1] => "a loopback address",
        [0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254] => "a cloud metadata address",
        [0x64, 0xff9b, 1, ..] => "a local-use NAT64 address (64:ff9b:1::/48)",
        [0x100, 0, 0, 0, ..] => "a discard-only address (100::/64)",
        [0x2001, 0xdb8, ..] => "a documentation address",
        [0x2001, 2, 0, ..] => "a benchmarking address (2001:2::/48)",
        [a, ..] if a & 0xfe00 == 0xfc00 => "a unique-local (fc00::/7) address",
        [a, ..] if a & 0xffc0 == 0xfe80 => "a link-local address",
        [a, ..] if a & 0xffc0 == 0xfec0 => "a site-local (deprecated, fec0::/10) address",
        [a, ..] if a & 0xff00 == 0xff00 => "a multicast address",
        [a, ..] if a & 0xfff0 == 0x3ff0 => "a documentation address",
        // Global unicast is 2000::/3; everything else is reserved.
        [a, ..] if a & 0xe000 != 0x2000 => "a reserved (not global unicast) address",
        _ => return None,
    };
    Some((what, None))
}

/// The addresses of `host` a delivery may connect to: all of them when the allow-list names the
/// host, otherwise those that are public or allowed by address; an error when none is left.
pub fn vet(allow: &AllowList, host: &str, addresses: Vec<SocketAddr>) -> Result<Vec<SocketAddr>, Refused> {
    if allow.host(host) {
        return Ok(addresses);
    }
    let mut refused = Vec::new();
    let kept: Vec<SocketAddr> = addresses
        .into_iter()
        .filter(|a| {
            let ip = a.ip();
            match refusal(ip).filter(|_| !allow.address(ip)) {
                Some(why) => {
                    refused.push(why);
                    false
                }
                None => true,
            }
        })
        .collect();
    match refused.first() {
        Some(first) if kept.is_empty() => {
            Err(Refused::Host { host: host.to_owned(), first: *first, others: refused.len() - 1 })
        }
        // Some addresses refused, some not: only the good ones are used.
        _ => Ok(kept),
    }
}

/// Checks a URL whose host is an address literal (the connector does not resolve those).
pub fn vet_literal(allow: &AllowList, host: &str) -> Result<(), Refused> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let Ok(ip) = bare.parse::<IpAddr>() else { return Ok(()) };
    match refusal(ip) {
        Some(why) if !allow.address(ip) && !allow.host(bare) => Err(Refused::Address(why)),
        _ => Ok(()),
    }
}

/// The delivery client's resolver: resolves with the system resolver and hands the connector only
/// vetted addresses.
#[derive(Debug, Clone)]
pub struct Guard {
    allow: Arc<AllowList>,
}

impl Guard {
    pub fn new(allow: AllowList) -> Self {
        Self { allow: Arc::new(allow) }
    }

    pub fn allow_list(&self) -> &AllowList {
        &self.allow
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl tower::Service<Name> for Guard {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let allow = self.allow.clone();
        Box::pin(async move {
            let host = name.as_str();
            // Port 0: the connector puts the URL's port in.
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host, 0)).await?.collect();
            Ok(vet(&allow, host, found)?.into_iter())
        })
    }
}

/// The refusal somewhere in an error's chain of sources (the client wraps the resolver's error).
pub fn find_refusal<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a Refused> {
    let mut current = Some(error);
    while let Some(e) = current {
        if let Some(refused) = e.downcast_ref::<Refused>() {
            return Some(refused);
        }
        current = e.source();
    }
    None
}

#[cfg(test)]
mod tests;
