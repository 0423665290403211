//! A conversation's timeline: its messages and its calls, merged by time, as a messenger shows
//! them (docs/calls.md, "Calls in the conversation's history").
//!
//! Messages are ciphertext the server cannot annotate, and a call's record is metadata the server
//! keeps in the clear (and changes while the call lasts), so the two stay apart on the server and
//! meet here: each page takes the newer of the two heads (a message at its `created_at`, a call
//! at its `started_at`) until it is full. Both are server timestamps, so one clock orders them.

use std::time::Duration;

use chrono::{DateTime, Utc};
use conclave_protocol::api::Message;
use conclave_protocol::calls::{Call, CallKind, CallStatus, EndReason, ParticipantState};
use serde::Serialize;
use uuid::Uuid;

use super::{Messenger, ReceivedMessage};
use crate::api::MessageQuery;
use crate::api::Result;

/// The most items in one timeline page (each page reads at most this many messages and one
/// more call).
pub const MAX_TIMELINE_PAGE: u32 = 100;

/// Whose call it was, to the reader.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CallDirection {
    /// The reader started it.
    Outgoing,
    /// Someone else did.
    Incoming,
}

/// How a call went, from the reader's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CallOutcome {
    /// Still ringing or going on (the reader may still answer or join).
    Ongoing,
    /// The reader talked in it (their own call someone answered, or one they answered).
    Answered,
    /// Rang for the reader, who did not answer (also when the caller gave up first, or others
    /// answered a group call without them).
    Missed,
    /// Declined: by the reader (an incoming call), or by every callee (the reader's own call).
    Declined,
    /// The reader's own call, hung up before anyone answered.
    Cancelled,
    /// The reader's own call, which nobody answered in time.
    NoAnswer,
    /// The call failed.
    Failed,
}

/// A call as the reader's timeline shows it: the record and what it was to them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CallEvent {
    /// The record as the server keeps it (who, on which device, when).
    pub call: Call,
    /// The reader's call, or someone else's.
    pub direction: CallDirection,
    /// How it went for the reader.
    pub outcome: CallOutcome,
    /// How long it lasted from the first answer to its end: `None` unless it was answered and
    /// has ended (`duration_seconds` in JSON).
    #[serde(rename = "duration_seconds", serialize_with = "whole_seconds")]
    pub duration: Option<Duration>,
}

fn whole_seconds<S: serde::Serializer>(duration: &Option<Duration>, to: S) -> std::result::Result<S::Ok, S::Error> {
    duration.map(|d| d.as_secs()).serialize(to)
}

impl CallEvent {
    /// What `call` was to `reader` (a pure function of the record, like
    /// [`super::classify`]). A member who joined the conversation after the call started was
    /// never rung: to them it was answered if anyone answered, else missed.
    pub fn for_reader(call: Call, reader: Uuid) -> Self {
        let outgoing = call.started_by == Some(reader);
        let mine = call.participants.iter().find(|p| p.user_id == reader).map(|p| p.state);
        let outcome = match (call.status, call.end_reason) {
            (CallStatus::Ringing | CallStatus::Active, _) => CallOutcome::Ongoing,
            (CallStatus::Ended, Some(EndReason::Failed)) => CallOutcome::Failed,
            (CallStatus::Ended, reason) if outgoing => match (call.answered_at, reason) {
                (Some(_), _) => CallOutcome::Answered,
                (None, Some(EndReason::Cancelled)) => CallOutcome::Cancelled,
                (None, Some(EndReason::Declined)) => CallOutcome::Declined,
                (None, _) => CallOutcome::NoAnswer,
            },
            (CallStatus::Ended, _) => match mine {
                Some(ParticipantState::Left | ParticipantState::Joined) => CallOutcome::Answered,
                Some(ParticipantState::Declined) => CallOutcome::Declined,
                Some(ParticipantState::Missed | ParticipantState::Invited) => CallOutcome::Missed,
                None if call.answered_at.is_some() => CallOutcome::Answered,
                None => CallOutcome::Missed,
            },
        };
        let duration = match (call.answered_at, call.ended_at) {
            (Some(answered), Some(ended)) => Some((ended - answered).to_std().unwrap_or_default()),
            _ => None,
        };
        let direction = if outgoing { CallDirection::Outgoing } else { CallDirection::Incoming };
        Self { call, direction, outcome, duration }
    }

    /// Where it stands in the timeline: when it started.
    pub fn at(&self) -> DateTime<Utc> {
        self.call.started_at
    }

    /// Audio, video or screen sharing.
    pub fn kind(&self) -> CallKind {
        self.call.kind
    }
}

/// One entry of a conversation's timeline.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TimelineItem {
    /// A message, opened.
    Message(ReceivedMessage),
    /// A call, at the time it started.
    Call(CallEvent),
}

impl TimelineItem {
    /// When it happened: a message's `created_at`, a call's `started_at`.
    pub fn at(&self) -> DateTime<Utc> {
        match self {
            Self::Message(message) => message.created_at,
            Self::Call(call) => call.at(),
        }
    }
}

/// Where the next (older) timeline page starts: after the oldest message and the oldest call
/// already shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct TimelineCursor {
    before_seq: i64,
    before_call_id: Option<Uuid>,
}

impl TimelineCursor {
    /// The newest end of the timeline.
    const NEWEST: Self = Self { before_seq: i64::MAX, before_call_id: None };
}

/// A page of a conversation's timeline.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TimelinePage {
    /// Oldest first.
    pub items: Vec<TimelineItem>,
    /// Where the older items go on ([`Messenger::timeline_before`]); `None` at the beginning of
    /// the conversation.
    pub older: Option<TimelineCursor>,
}

/// Which head of the two newest-first lists comes next, newest first.
enum Next {
    Message,
    Call,
}

/// The newest-first merge of a page: at most `limit` of the newest messages and calls, and the
/// cursor after them. A message and a call at the same instant: the call is the older. Taking a
/// prefix of the merge and going on from the two remaining heads gives the same order as one
/// merge of everything, so pages neither skip nor repeat.
fn merge(
    messages: &[Message],
    calls: &[Call],
    limit: usize,
    from: TimelineCursor,
) -> (Vec<Next>, TimelineCursor, usize, usize) {
    let (mut m, mut c) = (0, 0);
    let mut order = Vec::with_capacity(limit);
    let mut cursor = from;
    while order.len() < limit {
        let next = match (messages.get(m), calls.get(c)) {
            (None, None) => break,
            (Some(_), None) => Next::Message,
            (None, Some(_)) => Next::Call,
            (Some(message), Some(call)) if call.started_at > message.created_at => Next::Call,
            (Some(_), Some(_)) => Next::Message,
        };
        match next {
            Next::Message => {
                cursor.before_seq = messages[m].seq;
                m += 1;
            }
            Next::Call => {
                cursor.before_call_id = Some(calls[c].id);
                c += 1;
            }
        }
        order.push(next);
    }
    (order, cursor, m, c)
}

impl Messenger {
    /// The newest `limit` (1 to [`MAX_TIMELINE_PAGE`]) entries of a conversation, messages
    /// (opened) and calls, oldest first; `older` pages on.
    pub async fn timeline(&self, org: Uuid, conversation_id: Uuid, limit: u32) -> Result<TimelinePage> {
        self.timeline_before(org, conversation_id, TimelineCursor::NEWEST, limit).await
    }

    /// The `limit` entries before `cursor` (from a page's `older`), oldest first.
    pub async fn timeline_before(
        &self,
        org: Uuid,
        conversation_id: Uuid,
        cursor: TimelineCursor,
        limit: u32,
    ) -> Result<TimelinePage> {
        let limit = limit.clamp(1, MAX_TIMELINE_PAGE);
        let client = &self.inner.client;
        let query = MessageQuery::Before { before_seq: cursor.before_seq, limit };
        let page = client.messages(org, conversation_id, query).await?;
        let mut messages = page.messages;
        messages.sort_by_key(|message| std::cmp::Reverse(message.seq));
        // One more call than can be shown: a call left over says that older ones exist.
        let calls = client.calls_before(org, conversation_id, cursor.before_call_id, limit + 1).await?;
        let (order, next, taken_messages, taken_calls) = merge(&messages, &calls, limit as usize, cursor);
        let more = page.has_more || taken_messages < messages.len() || taken_calls < calls.len();
        messages.truncate(taken_messages);
        let mut opened = self.open_all(org, &messages).await?.into_iter();
        let mut calls = calls.into_iter().take(taken_calls);
        let mut items: Vec<TimelineItem> = order
            .into_iter()
            .filter_map(|next| match next {
                Next::Message => opened.next().map(TimelineItem::Message),
                Next::Call => calls.next().map(|call| TimelineItem::Call(CallEvent::for_reader(call, self.user_id()))),
            })
            .collect();
        items.reverse();
        Ok(TimelinePage { items, older: more.then_some(next) })
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeDelta;
    use conclave_protocol::calls::CallParticipant;

    use super::*;

    const ALICE: Uuid = Uuid::from_u128(1);
    const BOB: Uuid = Uuid::from_u128(2);
    const CAROL: Uuid = Uuid::from_u128(3);

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::UNIX_EPOCH + TimeDelta::seconds(seconds)
    }

    fn call(id: u128, started: i64, answered: Option<i64>, ended: Option<i64>, reason: Option<EndReason>) -> Call {
        let status = match (answered, ended) {
            (_, Some(_)) => CallStatus::Ended,
            (Some(_), None) => CallStatus::Active,
            (None, None) => CallStatus::Ringing,
        };
        Call {
            id: Uuid::from_u128(id),
            conversation_id: Uuid::from_u128(200),
            kind: CallKind::Video,
            status,
            started_by: Some(ALICE),
            started_at: at(started),
            answered_at: answered.map(at),
            ended_at: ended.map(at),
            end_reason: reason,
            participants: Vec::new(),
        }
    }

    fn with(mut call: Call, people: &[(Uuid, ParticipantState)]) -> Call {
        call.participants = people
            .iter()
            .map(|&(user_id, state)| CallParticipant {
                user_id,
                device_id: None,
                state,
                joined_at: None,
                left_at: None,
            })
            .collect();
        call
    }

    fn message(seq: i64, created: i64) -> Message {
        Message {
            id: Uuid::from_u128(1000 + seq as u128),
            conversation_id: Uuid::from_u128(200),
            seq,
            sender_user_id: Some(ALICE),
            sender_device_id: None,
            client_message_id: Uuid::from_u128(2000 + seq as u128),
            key_generation: 1,
            ciphertext: None,
            reply_to_id: None,
            created_at: at(created),
            edited_at: None,
            deleted_at: None,
        }
    }

    #[test]
    fn each_reader_sees_how_a_call_went_for_them() {
        use CallOutcome::*;
        use ParticipantState::{Declined as Refused, Left, Missed as Unanswered};
        let talked = with(call(1, 10, Some(12), Some(72), Some(EndReason::Hangup)), &[(ALICE, Left), (BOB, Left)]);
        let group = with(
            call(2, 10, Some(12), Some(72), Some(EndReason::Hangup)),
            &[(ALICE, Left), (BOB, Left), (CAROL, Unanswered)],
        );
        let cancelled =
            with(call(3, 10, None, Some(15), Some(EndReason::Cancelled)), &[(ALICE, Left), (BOB, Unanswered)]);
        let declined = with(call(4, 10, None, Some(15), Some(EndReason::Declined)), &[(ALICE, Left), (BOB, Refused)]);
        let timed_out = with(call(5, 10, None, Some(55), Some(EndReason::Missed)), &[(ALICE, Left), (BOB, Unanswered)]);
        let ringing = with(call(6, 10, None, None, None), &[(ALICE, ParticipantState::Joined)]);
        let cases = [
            (&talked, ALICE, CallDirection::Outgoing, Answered),
            (&talked, BOB, CallDirection::Incoming, Answered),
            (&group, CAROL, CallDirection::Incoming, Missed),
            (&cancelled, ALICE, CallDirection::Outgoing, Cancelled),
            (&cancelled, BOB, CallDirection::Incoming, Missed),
            (&declined, ALICE, CallDirection::Outgoing, Declined),
            (&declined, BOB, CallDirection::Incoming, Declined),
            (&timed_out, ALICE, CallDirection::Outgoing, NoAnswer),
            (&timed_out, BOB, CallDirection::Incoming, Missed),
            (&ringing, BOB, CallDirection::Incoming, Ongoing),
            // Added to the conversation after the call: it happened without them.
            (&talked, CAROL, CallDirection::Incoming, Answered),
            (&cancelled, CAROL, CallDirection::Incoming, Missed),
        ];
        for (call, reader, direction, outcome) in cases {
            let event = CallEvent::for_reader(call.clone(), reader);
            assert_eq!((event.direction, event.outcome), (direction, outcome), "{reader} in call {}", call.id);
        }
        assert_eq!(CallEvent::for_reader(talked, BOB).duration, Some(Duration::from_secs(60)));
        assert_eq!(CallEvent::for_reader(cancelled, BOB).duration, None);
        assert_eq!(CallEvent::for_reader(ringing, BOB).duration, None);
    }

    /// Pages of every size, merged one after the other, give the one merge of everything.
    #[test]
    fn pages_neither_skip_nor_repeat() {
        // Newest first, as the server lists them: messages at 1..=6 s (seq 1..6), calls between.
        let messages: Vec<Message> = (1..=6).rev().map(|seq| message(seq, seq * 10)).collect();
        let calls: Vec<Call> = [(7, 55), (8, 35), (9, 30), (10, 5)]
            .into_iter()
            .map(|(id, started)| call(id, started, None, Some(started + 1), Some(EndReason::Missed)))
            .collect();
        let everything = ["m6", "c7", "m5", "m4", "c8", "m3", "c9", "m2", "m1", "c10"];
        for limit in 1..=everything.len() {
            let (mut seen, mut cursor) = (Vec::new(), TimelineCursor::NEWEST);
            loop {
                // What the server answers for the cursor: older than it, at most `limit`.
                let page_messages: Vec<Message> =
                    messages.iter().filter(|m| m.seq < cursor.before_seq).take(limit).cloned().collect();
                let skip = cursor
                    .before_call_id
                    .map_or(0, |id| calls.iter().position(|c| c.id == id).expect("a listed call") + 1);
                let page_calls: Vec<Call> = calls.iter().skip(skip).take(limit + 1).cloned().collect();
                let (order, next, _, _) = merge(&page_messages, &page_calls, limit, cursor);
                if order.is_empty() {
                    break;
                }
                let (mut m, mut c) = (page_messages.iter(), page_calls.iter());
                for step in &order {
                    seen.push(match step {
                        Next::Message => format!("m{}", m.next().expect("a message taken").seq),
                        Next::Call => format!("c{}", c.next().expect("a call taken").id.as_u128()),
                    });
                }
                cursor = next;
            }
            assert_eq!(seen, everything, "pages of {limit}");
        }
    }
}
