//! `orgs`, `workspaces`, `join`, `accept-invitation`.

use anyhow::Result;

use super::{Context, resolve};

pub(super) async fn list(ctx: &mut Context<'_>) -> Result<()> {
    let (_, client) = ctx.client()?;
    let organizations = client.organizations().await?;
    if ctx.json() {
        return ctx.print_json(&organizations);
    }
    if organizations.is_empty() {
        writeln!(ctx.out, "You belong to no organization yet (accept an invitation: conclave accept-invitation).")?;
    }
    for org in organizations {
        writeln!(ctx.out, "{:<24} {:<32} {:<7} {}", org.slug, org.display_name, org.role, org.id)?;
    }
    Ok(())
}

pub(super) async fn workspaces(ctx: &mut Context<'_>, org: &str) -> Result<()> {
    let (_, client) = ctx.client()?;
    let org = resolve::organization(&client, org).await?;
    let workspaces = client.workspaces(org).await?;
    if ctx.json() {
        return ctx.print_json(&workspaces);
    }
    for ws in workspaces {
        let joined = if ws.joined { "joined" } else { "" };
        writeln!(ctx.out, "{:<24} {:<32} {:<6} {}", ws.slug, ws.display_name, joined, ws.id)?;
    }
    Ok(())
}

pub(super) async fn join(ctx: &mut Context<'_>, org: &str, workspace: &str) -> Result<()> {
    let (_, client) = ctx.client()?;
    let org = resolve::organization(&client, org).await?;
    let workspace_id = resolve::workspace(&client, org, workspace).await?;
    client.join_workspace(org, workspace_id).await?;
    writeln!(ctx.out, "Joined workspace {workspace}.")?;
    Ok(())
}

pub(super) async fn accept(ctx: &mut Context<'_>, org: &str, token: &str) -> Result<()> {
    let (_, client) = ctx.client()?;
    let org = resolve::organization(&client, org).await?;
    let answer = client.accept_organization_invitation(org, token.trim()).await?;
    if ctx.json() {
        return ctx.print_json(&answer);
    }
    writeln!(ctx.out, "Joined organization {org}.")?;
    Ok(())
}
