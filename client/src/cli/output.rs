//! Text output shared by the commands.

use chrono::{DateTime, Local, Utc};

use super::resolve::Names;
use crate::content::Content;
use crate::messenger::{Body, ReceivedMessage};

/// A timestamp in local time, to the second.
pub(super) fn time(at: DateTime<Utc>) -> String {
    at.with_timezone(&Local).format("%Y-%m-%d %H:%M:%S").to_string()
}

/// `[time] sender: text`, with `(edited)` when it was.
pub(super) fn message_line(message: &ReceivedMessage, names: &Names) -> String {
    let edited = if message.edited_at.is_some() { " (edited)" } else { "" };
    let file = match &message.body {
        Body::Content { content: Content::File(_) } => format!(" (conclave download --message #{})", message.seq),
        _ => String::new(),
    };
    format!(
        "[{}] {}: {}{edited}{file}",
        time(message.created_at),
        names.of(message.sender_user_id),
        message.body.display()
    )
}
