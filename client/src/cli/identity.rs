//! `identity`, `devices link`, `verify`: the account's identity key on this device, carrying it to
//! a new device, and safety numbers with other people.

use anyhow::{Result, bail};
use uuid::Uuid;

use super::{Context, resolve};
use crate::messenger::{IdentityState, Messenger, SafetyCheck};
use crate::mls::{FirstContact, IdentityPublicKey, MlsError, Trust, safety};

/// What `--confirm` / `--accept-change` ask `verify` to do besides showing the number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Verify {
    Show,
    Confirm,
    AcceptChange,
}

/// Brings this device's identity key in order and says where it stands (also run by `login`).
pub(super) async fn ensure(ctx: &mut Context<'_>, messenger: &Messenger) -> Result<IdentityState> {
    let state = messenger.ensure_identity().await?;
    if ctx.json() {
        return Ok(state);
    }
    match &state {
        IdentityState::Ready { public_key, created } => {
            let made = if *created { "created on this device" } else { "on this device" };
            writeln!(ctx.out, "Identity key {made}; your fingerprint:")?;
            writeln!(ctx.out, "  {}", fingerprint(messenger.user_id(), public_key))?;
        }
        IdentityState::AwaitingLink { code } => {
            writeln!(ctx.out, "Your identity key is on another of your devices. On that device, run:")?;
            writeln!(ctx.out, "  conclave devices link {code}")?;
            writeln!(ctx.out, "then run `conclave identity` here. (Lost every device? `conclave identity replace`.)")?;
        }
    }
    Ok(state)
}

fn fingerprint(user_id: Uuid, key: &IdentityPublicKey) -> String {
    safety::display(&safety::fingerprint(user_id, key))
}

pub(super) fn state_json(state: &IdentityState) -> serde_json::Value {
    match state {
        IdentityState::Ready { public_key, created } => serde_json::json!({
            "status": "ready", "created": created, "public_key": conclave_protocol::b64::encode(public_key.0)
        }),
        IdentityState::AwaitingLink { code } => serde_json::json!({ "status": "awaiting_link", "link_code": code }),
    }
}

/// `conclave identity`.
pub(super) async fn show(ctx: &mut Context<'_>) -> Result<()> {
    let (_, messenger) = ctx.messenger()?;
    let state = ensure(ctx, &messenger).await?;
    if ctx.json() {
        return ctx.print_json(&state_json(&state));
    }
    Ok(())
}

/// `conclave identity replace`.
pub(super) async fn replace(ctx: &mut Context<'_>) -> Result<()> {
    let (_, messenger) = ctx.messenger()?;
    let public_key = messenger.replace_identity().await?;
    if ctx.json() {
        return ctx.print_json(&state_json(&IdentityState::Ready { public_key, created: true }));
    }
    writeln!(ctx.out, "Started a new identity key; everyone you talk to will be warned that it changed.")?;
    writeln!(ctx.out, "Your new fingerprint:\n  {}", fingerprint(messenger.user_id(), &public_key))?;
    Ok(())
}

/// `conclave devices link <code>`.
pub(super) async fn link(ctx: &mut Context<'_>, code: &str) -> Result<()> {
    let (_, messenger) = ctx.messenger()?;
    let device = match messenger.link_device(code).await {
        Err(crate::Error::Mls(MlsError::MalformedLinkCode)) => {
            bail!("that is not a link code, or it was mistyped: copy it again from the new device")
        }
        other => other?,
    };
    if ctx.json() {
        return ctx.print_json(&serde_json::json!({ "device_id": device }));
    }
    writeln!(ctx.out, "Sent your identity key to device {device}, sealed for it; run `conclave identity` there.")?;
    Ok(())
}

/// `conclave trust [verified-only | first-use]`.
pub(super) async fn trust(ctx: &mut Context<'_>, policy: Option<super::TrustPolicy>) -> Result<()> {
    let (_, messenger) = ctx.messenger()?;
    if let Some(policy) = policy {
        messenger.set_first_contact(match policy {
            super::TrustPolicy::VerifiedOnly => FirstContact::VerifiedOnly,
            super::TrustPolicy::FirstUse => FirstContact::TrustOnFirstUse,
        })?;
    }
    let (name, meaning) = match messenger.first_contact() {
        FirstContact::VerifiedOnly => (
            "verified-only",
            "this device writes only to people whose safety number you confirmed (`conclave verify ... --confirm`)",
        ),
        FirstContact::TrustOnFirstUse => (
            "first-use",
            "this device trusts a person's identity key when it first sees it; compare safety numbers to be sure",
        ),
    };
    if ctx.json() {
        return ctx.print_json(&serde_json::json!({ "trust": name }));
    }
    writeln!(ctx.out, "Trust: {name}: {meaning}.")?;
    Ok(())
}

/// `conclave verify --org <org> <member>`.
pub(super) async fn verify(ctx: &mut Context<'_>, org: &str, member: &str, action: Verify) -> Result<()> {
    let (_, messenger) = ctx.messenger()?;
    let org = resolve::organization(messenger.client(), org).await?;
    let user: Uuid = resolve::member(messenger.client(), org, member).await?;
    let result = match action {
        Verify::Show => messenger.safety_check(org, user).await,
        Verify::Confirm => messenger.mark_verified(org, user).await,
        Verify::AcceptChange => messenger.accept_identity_change(org, user).await,
    };
    let check: SafetyCheck = match result {
        Err(crate::Error::Mls(MlsError::IdentityChanged { .. })) => bail!(
            "WARNING: {member}'s identity key CHANGED since you last saw it. Either they lost every device \
             and started a new identity, or someone is trying to read your conversations. Ask them (in person \
             or on another channel); once sure, run `conclave verify --org ... {member} --accept-change`, then \
             compare the new safety number"
        ),
        Err(err) if err.is_api("not_found") => {
            bail!(
                "{member} has no identity key yet (they have not signed in since protocol v2), or is not in this organization"
            )
        }
        other => other?,
    };
    let trust = match check.trust {
        Trust::New => "first seen now (pinned)",
        Trust::Unverified => "pinned, not compared yet",
        Trust::Verified => "verified",
    };
    if ctx.json() {
        return ctx.print_json(&serde_json::json!({
            "user_id": check.user_id, "safety_number": check.safety_number, "trust": trust
        }));
    }
    writeln!(ctx.out, "Safety number with {member}:")?;
    writeln!(ctx.out, "  {}", safety::display(&check.safety_number))?;
    writeln!(ctx.out, "Status: {trust}.")?;
    if check.trust != Trust::Verified {
        writeln!(
            ctx.out,
            "Compare it with what {member} sees (in person or on a call); if equal, run this again with --confirm."
        )?;
    }
    Ok(())
}
