//! What a Workspace should be in the database.

use super::{Columns, diff};
use conclave_resources::Workspace;
use conclave_resources::validate::InvalidSpec;
use std::collections::BTreeSet;

/// The columns of `workspaces` the operator manages.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct WorkspaceRow {
    pub slug: String,
    pub display_name: String,
    pub message_retention_days: Option<i32>,
    pub guest_access: bool,
}

impl Columns for WorkspaceRow {
    fn changed(&self, found: &Self) -> Vec<&'static str> {
        let mut out = Vec::new();
        diff(&mut out, "slug", &self.slug, &found.slug);
        diff(&mut out, "display_name", &self.display_name, &found.display_name);
        diff(&mut out, "message_retention_days", &self.message_retention_days, &found.message_retention_days);
        diff(&mut out, "guest_access", &self.guest_access, &found.guest_access);
        out
    }
}

/// The row a Workspace declares, or why it cannot be reconciled.
pub fn desired(ws: &Workspace) -> Result<WorkspaceRow, InvalidSpec> {
    ws.spec.validate()?;
    Ok(WorkspaceRow {
        slug: ws.spec.slug.clone(),
        display_name: ws.spec.display_name.trim().to_owned(),
        message_retention_days: ws.spec.message_retention_days,
        guest_access: ws.spec.guest_access,
    })
}

/// The default channels that do not exist yet (by name; an archived channel still exists).
pub fn channels_to_create(ws: &Workspace, existing: &BTreeSet<String>) -> Vec<String> {
    let wanted: BTreeSet<&String> = ws.spec.default_channels.iter().collect();
    wanted.into_iter().filter(|c| !existing.contains(*c)).cloned().collect()
}

#[cfg(test)]
mod tests;
