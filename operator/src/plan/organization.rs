//! What an Organization should be in the database.

use super::{Columns, diff};
use conclave_resources::Organization;
use conclave_resources::validate::{InvalidSpec, normalize_email, parse_quantity_bytes};
use std::collections::BTreeSet;

/// The columns of `organizations` the operator manages.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OrganizationRow {
    pub slug: String,
    pub display_name: String,
    pub max_members: Option<i32>,
    pub max_workspaces: Option<i32>,
    pub attachment_quota_bytes: Option<i64>,
    pub message_retention_days: Option<i32>,
    pub require_totp: bool,
    /// Sorted, lower case, without duplicates.
    pub allowed_email_domains: Vec<String>,
    pub session_lifetime_seconds: Option<i32>,
}

impl Columns for OrganizationRow {
    fn changed(&self, found: &Self) -> Vec<&'static str> {
        let mut out = Vec::new();
        diff(&mut out, "slug", &self.slug, &found.slug);
        diff(&mut out, "display_name", &self.display_name, &found.display_name);
        diff(&mut out, "max_members", &self.max_members, &found.max_members);
        diff(&mut out, "max_workspaces", &self.max_workspaces, &found.max_workspaces);
        diff(&mut out, "attachment_quota_bytes", &self.attachment_quota_bytes, &found.attachment_quota_bytes);
        diff(&mut out, "message_retention_days", &self.message_retention_days, &found.message_retention_days);
        diff(&mut out, "require_totp", &self.require_totp, &found.require_totp);
        let mut found_domains = found.allowed_email_domains.clone();
        found_domains.sort();
        diff(&mut out, "allowed_email_domains", &self.allowed_email_domains, &found_domains);
        diff(&mut out, "session_lifetime_seconds", &self.session_lifetime_seconds, &found.session_lifetime_seconds);
        out
    }
}

/// The row an Organization declares, or why it cannot be reconciled.
pub fn desired(org: &Organization) -> Result<OrganizationRow, InvalidSpec> {
    let spec = &org.spec;
    spec.validate()?;
    let limits = spec.limits.clone().unwrap_or_default();
    let security = spec.security.clone().unwrap_or_default();
    let domains: BTreeSet<String> = security.allowed_email_domains.iter().map(|d| d.to_lowercase()).collect();
    Ok(OrganizationRow {
        slug: spec.slug.clone(),
        display_name: spec.display_name.trim().to_owned(),
        max_members: limits.max_members,
        max_workspaces: limits.max_workspaces,
        attachment_quota_bytes: limits.attachment_storage.as_deref().map(parse_quantity_bytes).transpose()?,
        message_retention_days: spec.message_retention_days,
        require_totp: security.require_totp,
        allowed_email_domains: domains.into_iter().collect(),
        session_lifetime_seconds: security.session_lifetime_seconds,
    })
}

/// The initial owners still to invite: declared addresses (normalised) that have neither a
/// membership nor any invitation (open, accepted, expired or revoked) in the organization.
/// Each address is therefore invited once; an owner who leaves is not invited again.
pub fn owners_to_invite(org: &Organization, already_known: &BTreeSet<String>) -> Vec<String> {
    let wanted: BTreeSet<String> = org.spec.initial_owners.iter().filter_map(|e| normalize_email(e)).collect();
    wanted.into_iter().filter(|email| !already_known.contains(email)).collect()
}

#[cfg(test)]
mod tests;
