//! Text output shared by the commands.

use chrono::{DateTime, Local, Utc};

use super::resolve::Names;
use crate::content::Content;
use crate::messenger::{Body, CallDirection, CallEvent, CallOutcome, ReceivedMessage};
use conclave_protocol::calls::CallKind;

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

/// `[time] — video call started by alice, 3m 12s`: a call in a conversation's history, at the
/// time it started.
pub(super) fn call_event_line(event: &CallEvent, names: &Names) -> String {
    format!("[{}] — {}", time(event.at()), call_summary(event, names))
}

/// How a call went for the reader: `missed audio call from bob`, `video call started by alice,
/// 3m 12s`, `... no answer`.
pub(super) fn call_summary(event: &CallEvent, names: &Names) -> String {
    let kind = match event.kind() {
        CallKind::Audio => "audio",
        CallKind::Video => "video",
        CallKind::Screen => "screen sharing",
    };
    let caller = names.of(event.call.started_by);
    let how = match (event.outcome, event.direction) {
        (CallOutcome::Missed, _) => return format!("missed {kind} call from {caller}"),
        (CallOutcome::Declined, CallDirection::Incoming) => return format!("declined {kind} call from {caller}"),
        (CallOutcome::Answered, _) => event.duration.map_or_else(|| "answered".to_owned(), length),
        (CallOutcome::Ongoing, _) => "ongoing".to_owned(),
        (CallOutcome::Declined, CallDirection::Outgoing) => "declined".to_owned(),
        (CallOutcome::Cancelled, _) => "cancelled".to_owned(),
        (CallOutcome::NoAnswer, _) => "no answer".to_owned(),
        (CallOutcome::Failed, _) => "failed".to_owned(),
    };
    format!("{kind} call started by {caller}, {how}")
}

/// `45s`, `3m 12s`, `1h 05m`.
fn length(duration: std::time::Duration) -> String {
    let seconds = duration.as_secs();
    match seconds {
        0..60 => format!("{seconds}s"),
        60..3600 => format!("{}m {:02}s", seconds / 60, seconds % 60),
        _ => format!("{}h {:02}m", seconds / 3600, seconds % 3600 / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::length;
    use std::time::Duration;

    #[test]
    fn call_lengths_read_like_a_clock() {
        let shown: Vec<String> = [0, 45, 60, 192, 3599, 3600, 3900].map(|s| length(Duration::from_secs(s))).into();
        assert_eq!(shown, ["0s", "45s", "1m 00s", "3m 12s", "59m 59s", "1h 00m", "1h 05m"]);
    }
}
