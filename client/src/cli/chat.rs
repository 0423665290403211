//! `conversations`, `create-conversation`, `invite`, `remove-member`, `send`, `history`, `listen`.
//! (`send --file`, `download`, `react`, `pin` and `pins` are in `rich`.)

use anyhow::{Result, bail};
use conclave_protocol::api::{ConversationKind, CreateConversation};

use super::output::{call_event_line, call_summary, message_line};
use super::resolve::{self, Names};
use super::{Context, Kind};
use crate::messenger::{
    Body, CallChange, CallEvent, CallOutcome, ListenEvent, ListenerOptions, MAX_TIMELINE_PAGE, Messenger, TimelineItem,
};
use uuid::Uuid;

pub(super) async fn list(ctx: &mut Context<'_>, org: &str) -> Result<()> {
    let (_, client) = ctx.client()?;
    let org = resolve::organization(&client, org).await?;
    let conversations = client.conversations(org).await?;
    if ctx.json() {
        return ctx.print_json(&conversations);
    }
    for c in conversations {
        let kind = match c.kind {
            ConversationKind::Direct => "direct",
            ConversationKind::Group => "group",
            ConversationKind::Channel => "channel",
        };
        let name = c.name.as_deref().map(|n| format!("#{n}")).unwrap_or_else(|| "-".to_owned());
        writeln!(
            ctx.out,
            "{}  {kind:<7} {name:<24} {} members, {} messages, epoch {}",
            c.id,
            c.members.len(),
            c.last_seq,
            c.current_key_generation
        )?;
    }
    Ok(())
}

pub(super) async fn create(
    ctx: &mut Context<'_>,
    org: &str,
    workspace: &str,
    kind: Kind,
    name: Option<String>,
    members: &[String],
) -> Result<()> {
    let (_, client) = ctx.client()?;
    let org = resolve::organization(&client, org).await?;
    let workspace = resolve::workspace(&client, org, workspace).await?;
    let mut member_user_ids = Vec::with_capacity(members.len());
    for member in members {
        member_user_ids.push(resolve::member(&client, org, member).await?);
    }
    let kind = match kind {
        Kind::Direct => ConversationKind::Direct,
        Kind::Group => ConversationKind::Group,
        Kind::Channel => ConversationKind::Channel,
    };
    let conversation =
        client.create_conversation(org, workspace, &CreateConversation { kind, name, member_user_ids }).await?;
    if ctx.json() {
        return ctx.print_json(&conversation);
    }
    writeln!(ctx.out, "Created conversation {} with {} members.", conversation.id, conversation.members.len())?;
    Ok(())
}

pub(super) async fn invite(ctx: &mut Context<'_>, org: &str, conversation: &str, member: &str) -> Result<()> {
    let (_, client) = ctx.client()?;
    let org = resolve::organization(&client, org).await?;
    let conversation = resolve::conversation(&client, org, conversation).await?;
    let user = resolve::member(&client, org, member).await?;
    client.add_member(org, conversation, user).await?;
    writeln!(ctx.out, "Added {member} to the conversation.")?;
    Ok(())
}

pub(super) async fn remove_member(ctx: &mut Context<'_>, org: &str, conversation: &str, member: &str) -> Result<()> {
    let (session, messenger) = ctx.messenger()?;
    let client = messenger.client().clone();
    let org = resolve::organization(&client, org).await?;
    let conversation = resolve::conversation(&client, org, conversation).await?;
    let user = resolve::member(&client, org, member).await?;
    if user == session.user_id {
        messenger.leave(org, conversation).await?;
        writeln!(ctx.out, "You left the conversation.")?;
    } else {
        client.remove_member(org, conversation, user).await?;
        writeln!(ctx.out, "Removed {member}; the next message uses a new key they do not have.")?;
    }
    Ok(())
}

pub(super) async fn send(ctx: &mut Context<'_>, org: &str, conversation: &str, text: &str) -> Result<()> {
    if text.is_empty() {
        bail!("nothing to send");
    }
    let (_, messenger) = ctx.messenger()?;
    let client = messenger.client().clone();
    let org = resolve::organization(&client, org).await?;
    let conversation = resolve::conversation(&client, org, conversation).await?;
    let message = messenger.send_text(org, conversation, text).await?;
    if ctx.json() {
        return ctx.print_json(&serde_json::json!({ "id": message.id, "seq": message.seq }));
    }
    writeln!(ctx.out, "Sent (message {}, #{}).", message.id, message.seq)?;
    Ok(())
}

pub(super) async fn history(ctx: &mut Context<'_>, org: &str, conversation: &str, limit: u32) -> Result<()> {
    let (session, messenger) = ctx.messenger()?;
    let client = messenger.client().clone();
    let org = resolve::organization(&client, org).await?;
    let conversation = resolve::conversation(&client, org, conversation).await?;
    let items = timeline(&messenger, org, conversation, limit.clamp(1, 1000) as usize).await?;
    if ctx.json() {
        return ctx.print_json(&items);
    }
    let names = Names::load(&client, org, session.user_id, &session.email).await?;
    for item in &items {
        let message = match item {
            TimelineItem::Message(message) => message,
            TimelineItem::Call(call) => {
                writeln!(ctx.out, "{}", call_event_line(call, &names))?;
                continue;
            }
        };
        writeln!(ctx.out, "{}", message_line(message, &names))?;
        if matches!(message.body, Body::Content { .. }) {
            let reactions = messenger.reactions(org, conversation, message.id).await?;
            if !reactions.is_empty() {
                let shown: Vec<String> =
                    reactions.iter().map(|r| format!("{} {}", r.display(), names.of(Some(r.user_id)))).collect();
                writeln!(ctx.out, "    reactions: {}", shown.join(", "))?;
            }
        }
    }
    Ok(())
}

/// The newest `limit` entries of a conversation's timeline (messages and calls), oldest first,
/// read a page at a time.
async fn timeline(messenger: &Messenger, org: Uuid, conversation: Uuid, limit: usize) -> Result<Vec<TimelineItem>> {
    let mut page = messenger.timeline(org, conversation, page_size(limit)).await?;
    let mut items = std::mem::take(&mut page.items);
    while let Some(cursor) = page.older.filter(|_| items.len() < limit) {
        page = messenger.timeline_before(org, conversation, cursor, page_size(limit - items.len())).await?;
        page.items.append(&mut items);
        items = std::mem::take(&mut page.items);
    }
    Ok(items)
}

fn page_size(wanted: usize) -> u32 {
    u32::try_from(wanted).unwrap_or(u32::MAX).min(MAX_TIMELINE_PAGE)
}

pub(super) async fn listen(
    ctx: &mut Context<'_>,
    org: &str,
    conversations: &[String],
    count: Option<usize>,
) -> Result<()> {
    let (session, messenger) = ctx.messenger()?;
    let client = messenger.client().clone();
    let org = resolve::organization(&client, org).await?;
    let mut only = Vec::with_capacity(conversations.len());
    for conversation in conversations {
        only.push(resolve::conversation(&client, org, conversation).await?);
    }
    let names = Names::load(&client, org, session.user_id, &session.email).await?;
    let options = ListenerOptions { mark_delivered: true, mark_read: true, ..ListenerOptions::default() };
    let mut listener = messenger.listen(org, &only, options).await?;
    let mut received = 0;
    let mut told = std::collections::HashSet::new();
    while count.is_none_or(|count| received < count) {
        let event = listener.next().await?;
        match event {
            ListenEvent::Message(message) => {
                received += 1;
                if ctx.json() {
                    serde_json::to_writer(&mut *ctx.out, &message)?;
                    writeln!(ctx.out)?;
                } else {
                    writeln!(ctx.out, "{}", message_line(&message, &names))?;
                }
            }
            ListenEvent::Edited(message) if !ctx.json() => {
                writeln!(ctx.out, "{} (edit of #{})", message_line(&message, &names), message.seq)?;
            }
            ListenEvent::Deleted { seq, .. } if !ctx.json() => writeln!(ctx.out, "* message #{seq} was deleted")?,
            ListenEvent::MemberAdded { user_id, .. } if !ctx.json() => {
                writeln!(ctx.out, "* {} joined a conversation", names.of(Some(user_id)))?;
            }
            ListenEvent::MemberRemoved { user_id, .. } if !ctx.json() => {
                writeln!(ctx.out, "* {} left a conversation", names.of(Some(user_id)))?;
            }
            ListenEvent::Typing { user_id, .. } if !ctx.json() => {
                writeln!(ctx.out, "* {} is typing…", names.of(Some(user_id)))?;
            }
            ListenEvent::Presence(presence) if !ctx.json() => {
                let status = serde_json::to_value(presence.status)?;
                writeln!(ctx.out, "* {} is {}", names.of(Some(presence.user_id)), status.as_str().unwrap_or("?"))?;
            }
            ListenEvent::Pinned(pin) if !ctx.json() => {
                writeln!(ctx.out, "* {} pinned message {}", names.of(pin.pinned_by), pin.message_id)?;
            }
            ListenEvent::ReactionAdded(reaction) if !ctx.json() => {
                writeln!(
                    ctx.out,
                    "* {} reacted {} to message {}",
                    names.of(Some(reaction.user_id)),
                    reaction.display(),
                    reaction.message_id
                )?;
            }
            ListenEvent::ReactionRemoved { user_id, message_id, value, .. } if !ctx.json() => {
                let value = value.map(|v| format!(" {v}")).unwrap_or_default();
                writeln!(ctx.out, "* {} took back a reaction{value} to message {message_id}", names.of(Some(user_id)))?;
            }
            ListenEvent::Unpinned { message_id, .. } if !ctx.json() => {
                writeln!(ctx.out, "* message {message_id} was unpinned")?;
            }
            ListenEvent::CallUpdated { call, change } if !ctx.json() => {
                // A call is told over once (a missed ring of a group call that goes on, and
                // then its end, are both `Missed` to this user).
                let over = matches!(change, CallChange::Missed | CallChange::Ended { .. });
                if over && !told.insert(call.id) {
                    continue;
                }
                if let Some(line) = call_line(org, session.user_id, call, change, &names) {
                    writeln!(ctx.out, "{line}")?;
                }
            }
            ListenEvent::CallSignalRejected { error, .. } => eprintln!("* a call signal was refused: {error}"),
            ListenEvent::Disconnected { reason, retry_in } => {
                eprintln!("* connection lost ({reason}); reconnecting in {:.1}s", retry_in.as_secs_f32());
            }
            ListenEvent::ServerError { code, message } => eprintln!("* the server refused a frame: {message} ({code})"),
            ListenEvent::MessagesMayBeMissing { epoch, .. } if !ctx.json() => {
                writeln!(ctx.out, "* messages may be missing: this device rejoined the conversation at epoch {epoch}")?;
            }
            _ => {}
        }
        ctx.out.flush()?;
    }
    listener.close().await;
    Ok(())
}

/// What `listen` says about a call: who is calling and how to answer, and once it is over for
/// this user, how it went (the line `history` shows for it).
fn call_line(
    org: Uuid,
    me: Uuid,
    call: conclave_protocol::calls::Call,
    change: CallChange,
    names: &Names,
) -> Option<String> {
    let caller = names.of(call.started_by);
    let mut event = CallEvent::for_reader(call, me);
    let call = &event.call;
    Some(match change {
        CallChange::Ringing => {
            let kind = serde_json::to_value(call.kind).ok()?.as_str()?.to_owned();
            format!(
                "* {caller} is calling ({kind}, call {}): answer with `conclave call --answer --org {org} {}`",
                call.id, call.conversation_id
            )
        }
        CallChange::AnsweredElsewhere { .. } => format!("* {caller}'s call was answered on another device"),
        CallChange::Missed | CallChange::Ended { .. } => {
            // A ring this user missed while others talk on is missed already.
            if change == CallChange::Missed {
                event.outcome = CallOutcome::Missed;
            }
            format!("* {}", call_summary(&event, names))
        }
        _ => return None,
    })
}
