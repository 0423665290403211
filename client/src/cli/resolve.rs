//! Names to ids: organizations by slug, workspaces by slug, conversations by name, members by
//! email. An id is always accepted as it is (and costs no request).

use std::collections::HashMap;

use anyhow::{Result, bail};
use uuid::Uuid;

use crate::api::Client;

pub(super) async fn organization(client: &Client, given: &str) -> Result<Uuid> {
    if let Ok(id) = given.parse() {
        return Ok(id);
    }
    let organizations = client.organizations().await?;
    match organizations.iter().find(|o| o.slug.eq_ignore_ascii_case(given)) {
        Some(org) => Ok(org.id),
        None => bail!(
            "you are in no organization {given:?} (see `conclave orgs`; to accept an invitation, give the organization's id)"
        ),
    }
}

pub(super) async fn workspace(client: &Client, org: Uuid, given: &str) -> Result<Uuid> {
    if let Ok(id) = given.parse() {
        return Ok(id);
    }
    let workspaces = client.workspaces(org).await?;
    match workspaces.iter().find(|w| w.slug.eq_ignore_ascii_case(given)) {
        Some(ws) => Ok(ws.id),
        None => bail!("no workspace {given:?} in this organization (see `conclave workspaces --org ...`)"),
    }
}

pub(super) async fn conversation(client: &Client, org: Uuid, given: &str) -> Result<Uuid> {
    if let Ok(id) = given.parse() {
        return Ok(id);
    }
    let name = given.trim_start_matches('#');
    let conversations = client.conversations(org).await?;
    let matching: Vec<_> = conversations.iter().filter(|c| c.name.as_deref() == Some(name)).collect();
    match matching.as_slice() {
        [one] => Ok(one.id),
        [] => bail!("no conversation named {given:?} among yours (see `conclave conversations --org ...`)"),
        _ => bail!("several conversations are named {given:?}: give its id"),
    }
}

pub(super) async fn member(client: &Client, org: Uuid, given: &str) -> Result<Uuid> {
    if let Ok(id) = given.parse() {
        return Ok(id);
    }
    let members = client.organization_members(org).await?;
    if let Some(member) = members.iter().find(|m| m.email.as_deref().is_some_and(|e| e.eq_ignore_ascii_case(given))) {
        return Ok(member.user_id);
    }
    if members.iter().all(|m| m.email.is_none()) {
        // Emails are shown to admins only; anyone else asks for this one exact address.
        return match client.lookup_member(org, given).await {
            Ok(profile) => Ok(profile.user_id),
            Err(crate::api::Error::Api(e)) if e.is("not_found") => {
                bail!("{given:?} is not a member of this organization")
            }
            Err(e) => Err(e.into()),
        };
    }
    bail!("{given:?} is not a member of this organization")
}

/// How to name people in output: email when known, else display name, else the user id.
pub(super) struct Names(HashMap<Uuid, String>);

impl Names {
    pub(super) async fn load(client: &Client, org: Uuid, me: Uuid, my_email: &str) -> Result<Self> {
        let mut names: HashMap<Uuid, String> = client
            .organization_members(org)
            .await?
            .into_iter()
            .filter_map(|m| Some((m.user_id, m.email.or(m.display_name)?)))
            .collect();
        names.insert(me, my_email.to_owned());
        Ok(Self(names))
    }

    pub(super) fn of(&self, user: Option<Uuid>) -> String {
        match user {
            Some(id) => self.0.get(&id).cloned().unwrap_or_else(|| id.to_string()),
            None => "(deleted account)".to_owned(),
        }
    }
}
