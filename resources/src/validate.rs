//! Rules checked by the operator before it touches the database.
//!
//! The CRD schemas and their CEL rules stop most mistakes at the API server; these functions
//! repeat the essential ones (so an object admitted by an older CRD, or built in a test, is
//! still caught) and add what CEL cannot say, like parsing a quantity into bytes. Each returns
//! one message a person can act on; the operator puts it in `Ready=False, reason=InvalidSpec`.

use crate::bot::BotAgentSpec;
use crate::dataplane::DataPlaneSpec;
use crate::organization::OrganizationSpec;
use crate::webhook::WebhookEndpointSpec;
use crate::workspace::WorkspaceSpec;
use std::collections::BTreeSet;

/// Why a spec cannot be reconciled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidSpec(pub String);

fn invalid<T>(message: impl Into<String>) -> Result<T, InvalidSpec> {
    Err(InvalidSpec(message.into()))
}

/// A TURN URI (RFC 7065): `turn:` or `turns:`, a host (a DNS name, an IPv4 address or a
/// bracketed IPv6 address), an optional port, and optionally `?transport=udp` or `?transport=tcp`.
pub fn is_turn_uri(value: &str) -> bool {
    let Some(rest) = value.strip_prefix("turn:").or_else(|| value.strip_prefix("turns:")) else {
        return false;
    };
    let (authority, query) = match rest.split_once('?') {
        Some((authority, query)) => (authority, Some(query)),
        None => (rest, None),
    };
    if !matches!(query, None | Some("transport=udp") | Some("transport=tcp")) {
        return false;
    }
    let (host_ok, port) = match authority.strip_prefix('[') {
        Some(v6) => {
            let Some((ip, after)) = v6.split_once(']') else { return false };
            let port = match after {
                "" => None,
                after => match after.strip_prefix(':') {
                    Some(port) => Some(port),
                    None => return false,
                },
            };
            (ip.parse::<std::net::Ipv6Addr>().is_ok(), port)
        }
        None => {
            let (host, port) = match authority.split_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (authority, None),
            };
            (host.parse::<std::net::Ipv4Addr>().is_ok() || is_domain(host) || is_slug(host), port)
        }
    };
    host_ok && port.is_none_or(|p| p.parse::<u16>().is_ok_and(|p| p > 0))
}

/// A DNS-label shaped identifier, as the database's `conclave_slug` domain accepts it.
pub fn is_slug(value: &str) -> bool {
    let bytes = value.as_bytes();
    let inner_ok = bytes.iter().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-');
    let edge_ok = |b: Option<&u8>| b.is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    (1..=63).contains(&bytes.len()) && inner_ok && edge_ok(bytes.first()) && edge_ok(bytes.last())
}

/// A host name: dot-separated labels of letters, digits and inner hyphens, with at least one dot.
pub fn is_domain(value: &str) -> bool {
    let labels: Vec<&str> = value.split('.').collect();
    value.len() <= 253
        && labels.len() >= 2
        && labels.iter().all(|label| {
            let b = label.as_bytes();
            (1..=63).contains(&b.len())
                && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
                && b.first() != Some(&b'-')
                && b.last() != Some(&b'-')
        })
}

/// An entry of a DataPlane's `webhookAllowedTargets`: an address block (`10.0.0.0/8`), an
/// address, a host name (one label or more), or `*.` and a domain.
pub fn is_allowed_target(value: &str) -> bool {
    if let Some((address, prefix)) = value.split_once('/') {
        let max = match address.parse::<std::net::IpAddr>() {
            Ok(std::net::IpAddr::V4(_)) => 32,
            Ok(std::net::IpAddr::V6(_)) => 128,
            Err(_) => return false,
        };
        return prefix.parse::<u8>().is_ok_and(|p| p <= max) && !prefix.starts_with('+');
    }
    let lower = value.to_ascii_lowercase();
    match lower.strip_prefix("*.") {
        Some(domain) => is_domain(domain),
        None => value.parse::<std::net::IpAddr>().is_ok() || is_slug(&lower) || is_domain(&lower),
    }
}

/// An email address as the database stores it (trimmed, lower case), or `None` when it is not
/// one. Deliberately simple: one `@`, something before it, a domain after it.
pub fn normalize_email(value: &str) -> Option<String> {
    let email = value.trim().to_lowercase();
    let (local, domain) = email.split_once('@')?;
    let local_ok = !local.is_empty() && local.len() <= 64 && !local.chars().any(|c| c.is_whitespace() || c == '@');
    (local_ok && is_domain(domain) && email.len() <= 254).then_some(email)
}

/// An event type such as `message.created`: dot-separated words of lower-case letters and `_`.
pub fn is_event_type(value: &str) -> bool {
    let parts: Vec<&str> = value.split('.').collect();
    parts.len() >= 2 && parts.iter().all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'))
}

/// Parses a Kubernetes quantity of bytes (`1024`, `500Mi`, `10Gi`, `1.5G`) into bytes.
pub fn parse_quantity_bytes(value: &str) -> Result<i64, InvalidSpec> {
    const SUFFIXES: &[(&str, f64)] = &[
        ("Ki", 1024.0),
        ("Mi", 1048576.0),
        ("Gi", 1073741824.0),
        ("Ti", 1099511627776.0),
        ("Pi", 1125899906842624.0),
        ("k", 1e3),
        ("M", 1e6),
        ("G", 1e9),
        ("T", 1e12),
        ("P", 1e15),
    ];
    let (number, factor) = SUFFIXES
        .iter()
        .find_map(|(suffix, factor)| value.strip_suffix(suffix).map(|n| (n, *factor)))
        .unwrap_or((value, 1.0));
    let well_formed = !number.is_empty()
        && number.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        && number.bytes().filter(|b| *b == b'.').count() <= 1
        && !number.starts_with('.')
        && !number.ends_with('.');
    if !well_formed {
        return invalid(format!("{value:?} is not a quantity of bytes (examples: 500Mi, 10Gi)"));
    }
    let parsed: f64 = number.parse().map_err(|_| InvalidSpec(format!("{value:?} is not a quantity of bytes")))?;
    let bytes = (parsed * factor).ceil();
    if bytes > i64::MAX as f64 {
        return invalid(format!("{value:?} is too large"));
    }
    Ok(bytes as i64)
}

fn unique<'a>(what: &str, values: impl IntoIterator<Item = &'a str>) -> Result<(), InvalidSpec> {
    let mut seen = BTreeSet::new();
    for value in values {
        if !seen.insert(value) {
            return invalid(format!("{what} lists {value:?} twice"));
        }
    }
    Ok(())
}

impl OrganizationSpec {
    /// Checks the spec; see the module documentation.
    pub fn validate(&self) -> Result<(), InvalidSpec> {
        if !is_slug(&self.slug) {
            return invalid(format!("slug {:?} must be lower-case letters, digits and inner hyphens", self.slug));
        }
        if self.display_name.trim().is_empty() || self.display_name.chars().count() > 200 {
            return invalid("displayName must have 1 to 200 characters");
        }
        if let Some(limits) = &self.limits {
            if limits.max_members.is_some_and(|n| n < 1) || limits.max_workspaces.is_some_and(|n| n < 1) {
                return invalid("limits must be at least 1");
            }
            if let Some(storage) = &limits.attachment_storage {
                parse_quantity_bytes(storage)?;
            }
        }
        if self.message_retention_days.is_some_and(|d| d < 1) {
            return invalid("messageRetentionDays must be at least 1");
        }
        if let Some(security) = &self.security {
            if let Some(domain) =
                security.allowed_email_domains.iter().find(|d| !is_domain(d) || d.to_lowercase() != **d)
            {
                return invalid(format!("allowedEmailDomains: {domain:?} is not a lower-case domain name"));
            }
            if security.session_lifetime_seconds.is_some_and(|s| !(300..=31_536_000).contains(&s)) {
                return invalid("sessionLifetimeSeconds must be between 300 and 31536000");
            }
        }
        for owner in &self.initial_owners {
            if normalize_email(owner).is_none() {
                return invalid(format!("initialOwners: {owner:?} is not an email address"));
            }
        }
        let normalized: Vec<String> = self.initial_owners.iter().filter_map(|o| normalize_email(o)).collect();
        unique("initialOwners", normalized.iter().map(String::as_str))
    }
}

impl WorkspaceSpec {
    /// Checks the spec; see the module documentation.
    pub fn validate(&self) -> Result<(), InvalidSpec> {
        if !is_slug(&self.slug) {
            return invalid(format!("slug {:?} must be lower-case letters, digits and inner hyphens", self.slug));
        }
        if self.display_name.trim().is_empty() || self.display_name.chars().count() > 200 {
            return invalid("displayName must have 1 to 200 characters");
        }
        if self.message_retention_days.is_some_and(|d| d < 1) {
            return invalid("messageRetentionDays must be at least 1");
        }
        if let Some(channel) = self.default_channels.iter().find(|c| !is_slug(c)) {
            return invalid(format!(
                "defaultChannels: {channel:?} must be lower-case letters, digits and inner hyphens"
            ));
        }
        unique("defaultChannels", self.default_channels.iter().map(String::as_str))
    }
}

impl WebhookEndpointSpec {
    /// Checks the spec; see the module documentation.
    pub fn validate(&self) -> Result<(), InvalidSpec> {
        if self.workspace_ref.is_some() == self.organization_ref.is_some() {
            return invalid("set exactly one of workspaceRef and organizationRef");
        }
        let https = self.url.starts_with("https://");
        let http = self.url.starts_with("http://");
        if !(https || http) || self.url.len() > 2048 || self.url.chars().any(char::is_whitespace) {
            return invalid("url must be an http(s) URL of at most 2048 characters");
        }
        if http && !self.allow_insecure_http {
            return invalid("url must use https unless allowInsecureHttp is true");
        }
        if self.event_types.is_empty() {
            return invalid("eventTypes must list at least one event type");
        }
        if let Some(event) = self.event_types.iter().find(|e| !is_event_type(e)) {
            return invalid(format!("eventTypes: {event:?} is not an event type such as message.created"));
        }
        if let Some(event) = self.event_types.iter().find(|e| !crate::webhook::EVENT_TYPES.contains(&e.as_str())) {
            return invalid(format!(
                "eventTypes: {event:?} is not in the catalogue: {}",
                crate::webhook::EVENT_TYPES.join(", ")
            ));
        }
        if !(0..=604_800).contains(&self.secret_overlap_seconds) {
            return invalid("secretOverlapSeconds must be between 0 and 604800");
        }
        unique("eventTypes", self.event_types.iter().map(String::as_str))
    }
}

impl BotAgentSpec {
    /// Checks the spec; see the module documentation.
    pub fn validate(&self) -> Result<(), InvalidSpec> {
        if self.display_name.trim().is_empty() || self.display_name.chars().count() > 100 {
            return invalid("displayName must have 1 to 100 characters");
        }
        if !(0..=604_800).contains(&self.token_overlap_seconds) {
            return invalid("tokenOverlapSeconds must be between 0 and 604800");
        }
        if let Some(deployment) = &self.deployment {
            if deployment.image.trim().is_empty() {
                return invalid("deployment.image must be set");
            }
            let server = deployment.server.as_str();
            if !(server.starts_with("http://") || server.starts_with("https://"))
                || server.contains(char::is_whitespace)
            {
                return invalid("deployment.server must be an http:// or https:// URL");
            }
            if let Some(storage) = &deployment.storage
                && parse_quantity_bytes(&storage.size).is_err()
            {
                return invalid(format!(
                    "deployment.storage.size {:?} is not a quantity of bytes (examples: 64Mi, 1Gi)",
                    storage.size
                ));
            }
        }
        unique("scopes", self.scopes.iter().map(|s| s.as_str()))
    }
}

impl DataPlaneSpec {
    /// Checks the spec; see the module documentation.
    pub fn validate(&self) -> Result<(), InvalidSpec> {
        if self.image.trim().is_empty() {
            return invalid("image must be set");
        }
        if self.replicas.is_some() && self.autoscaling.is_some() {
            return invalid("set replicas or autoscaling, not both");
        }
        if let Some(a) = &self.autoscaling
            && a.max_replicas < a.min_replicas
        {
            return invalid("autoscaling.maxReplicas must be at least minReplicas");
        }
        if let Some(max) = self.max_connections_per_address {
            if !(0..=1_000_000).contains(&max) {
                return invalid("maxConnectionsPerAddress must be between 0 and 1000000");
            }
            if self.trust_forwarded_for && max > 0 {
                return invalid(
                    "maxConnectionsPerAddress caps direct clients: with trustForwardedFor the proxy must cap connections",
                );
            }
        }
        if let Some(bad) = self.webhook_allowed_targets.iter().find(|t| !is_allowed_target(t)) {
            return invalid(format!(
                "webhookAllowedTargets: {bad:?} is not an address block, an address, a host name or *.domain"
            ));
        }
        if let Some(turn) = &self.turn {
            if turn.urls.is_empty() || turn.urls.len() > 16 {
                return invalid("turn.urls must list 1 to 16 URIs");
            }
            if let Some(bad) = turn.urls.iter().find(|u| !is_turn_uri(u)) {
                return invalid(format!(
                    "turn.urls: {bad:?} is not a turn: or turns: URI (RFC 7065), such as turn:turn.example.org:3478?transport=udp"
                ));
            }
            if !(60..=86_400).contains(&turn.credential_ttl_seconds) {
                return invalid("turn.credentialTtlSeconds must be between 60 and 86400");
            }
        }
        if let Some(resources) = &self.resources {
            for (name, quantity) in resources.requests.iter().chain(&resources.limits) {
                if quantity.trim().is_empty() {
                    return invalid(format!("resources: {name} has no quantity"));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
