//! `send --file`, `download`, `react`, `pin`, `pins`.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use conclave_protocol::api::MessagePage;
use uuid::Uuid;

use super::Context;
use super::output::time;
use super::resolve::{self, Names};
use crate::api::{Client, MessageQuery};

/// A message given as its id, or as its number in the conversation (`#12` or `12`).
pub(super) async fn message(client: &Client, org: Uuid, conversation: Uuid, given: &str) -> Result<Uuid> {
    if let Ok(id) = given.parse() {
        return Ok(id);
    }
    let Ok(seq) = given.trim_start_matches('#').parse::<i64>() else {
        bail!("--message takes a message id or a message number such as #12");
    };
    if seq < 1 {
        bail!("message numbers start at 1");
    }
    let page: MessagePage =
        client.messages(org, conversation, MessageQuery::After { after_seq: seq - 1, limit: 1 }).await?;
    match page.messages.into_iter().find(|m| m.seq == seq) {
        Some(message) => Ok(message.id),
        None => bail!("no message #{seq} in this conversation"),
    }
}

pub(super) async fn send_file(ctx: &mut Context<'_>, org: &str, conversation: &str, file: &Path) -> Result<()> {
    let (_, messenger) = ctx.messenger()?;
    let client = messenger.client().clone();
    let org = resolve::organization(&client, org).await?;
    let conversation = resolve::conversation(&client, org, conversation).await?;
    let message =
        messenger.send_file(org, conversation, file).await.with_context(|| format!("sending {}", file.display()))?;
    if ctx.json() {
        return ctx.print_json(&serde_json::json!({ "id": message.id, "seq": message.seq }));
    }
    writeln!(ctx.out, "Sent {} encrypted (message {}, #{}).", file.display(), message.id, message.seq)?;
    Ok(())
}

pub(super) async fn download(
    ctx: &mut Context<'_>,
    org: &str,
    conversation: &str,
    given: &str,
    output: Option<PathBuf>,
) -> Result<()> {
    let (_, messenger) = ctx.messenger()?;
    let client = messenger.client().clone();
    let org = resolve::organization(&client, org).await?;
    let conversation = resolve::conversation(&client, org, conversation).await?;
    let message_id = message(&client, org, conversation, given).await?;
    let dest = output.unwrap_or_else(|| PathBuf::from("."));
    let file = messenger.download(org, conversation, message_id, &dest).await?;
    if ctx.json() {
        return ctx.print_json(&file);
    }
    writeln!(
        ctx.out,
        "Downloaded {:?} ({}, {} bytes, verified) to {}.",
        file.name,
        file.media_type,
        file.size,
        file.path.display()
    )?;
    Ok(())
}

pub(super) async fn react(
    ctx: &mut Context<'_>,
    org: &str,
    conversation: &str,
    given: &str,
    emoji: &str,
    remove: bool,
) -> Result<()> {
    let (_, messenger) = ctx.messenger()?;
    let client = messenger.client().clone();
    let org = resolve::organization(&client, org).await?;
    let conversation = resolve::conversation(&client, org, conversation).await?;
    let message_id = message(&client, org, conversation, given).await?;
    if remove {
        let removed = messenger.unreact(org, conversation, message_id, emoji).await?;
        if removed == 0 {
            bail!("you have no reaction {emoji} on this message");
        }
        writeln!(ctx.out, "Removed your reaction {emoji}.")?;
    } else {
        messenger.react(org, conversation, message_id, emoji).await?;
        writeln!(ctx.out, "Reacted {emoji}.")?;
    }
    Ok(())
}

pub(super) async fn pin(ctx: &mut Context<'_>, org: &str, conversation: &str, given: &str, remove: bool) -> Result<()> {
    let (_, messenger) = ctx.messenger()?;
    let client = messenger.client().clone();
    let org = resolve::organization(&client, org).await?;
    let conversation = resolve::conversation(&client, org, conversation).await?;
    let message_id = message(&client, org, conversation, given).await?;
    if remove {
        messenger.unpin(org, conversation, message_id).await?;
        writeln!(ctx.out, "Unpinned message {message_id}.")?;
    } else {
        messenger.pin(org, conversation, message_id).await?;
        writeln!(ctx.out, "Pinned message {message_id}.")?;
    }
    Ok(())
}

pub(super) async fn pins(ctx: &mut Context<'_>, org: &str, conversation: &str) -> Result<()> {
    let (session, messenger) = ctx.messenger()?;
    let client = messenger.client().clone();
    let org = resolve::organization(&client, org).await?;
    let conversation = resolve::conversation(&client, org, conversation).await?;
    let pins = messenger.pins(org, conversation).await?;
    if ctx.json() {
        return ctx.print_json(&pins);
    }
    if pins.is_empty() {
        writeln!(ctx.out, "No pinned messages.")?;
        return Ok(());
    }
    let names = Names::load(&client, org, session.user_id, &session.email).await?;
    for pin in pins {
        writeln!(ctx.out, "{}  pinned by {} at {}", pin.message_id, names.of(pin.pinned_by), time(pin.pinned_at))?;
    }
    Ok(())
}
