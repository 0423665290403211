//! The call state machine, in one place and without I/O: what a device's action does to its
//! user's participant row, and what the call's status becomes after it. The handlers lock the
//! call row, read the states, ask these functions, and store the answer, so every change of one
//! call is serialised and follows these rules.
//!
//! A call is `ringing` from its start until a callee accepts (`active`), and `ended` when nobody
//! is left in it. Each member of the conversation has one participant row: the caller's starts
//! `joined`, everyone else's `invited`; a member joins on exactly one device.

use crate::error::ErrorCode;
use conclave_protocol::calls::{CallStatus, EndReason, ParticipantState};

/// Most devices in one call. Calls are a full mesh (every device sends its media to every
/// other), so each device uploads `n - 1` streams: at about 1.5 Mbit/s per video stream, 8
/// participants ask 10 Mbit/s of upload from every device, about what home connections
/// sustain. Larger calls need a media server (SFU), which this deployment does not have.
pub const MAX_PARTICIPANTS: usize = 8;

/// What a device asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Answer a ringing call, or join an active one.
    Accept,
    /// Refuse a ringing call.
    Decline,
    /// Hang up (or, for the caller of a call nobody answered yet, cancel it).
    Leave,
    /// The ring timed out without an answer from this member.
    RingTimeout,
}

/// Why an action is refused: the error code it is answered with.
pub fn refuse(call: CallStatus, me: ParticipantState, action: Action) -> ErrorCode {
    match (call, me, action) {
        (CallStatus::Ended, ..) => ErrorCode::CallEnded,
        (_, ParticipantState::Joined, Action::Accept) => ErrorCode::CallAnsweredElsewhere,
        _ => ErrorCode::CallStateConflict,
    }
}

/// The participant's next state, or the refusal. `joined` counts the participants in the call.
pub fn transition(
    call: CallStatus,
    me: ParticipantState,
    action: Action,
    joined: usize,
) -> Result<ParticipantState, ErrorCode> {
    use ParticipantState as P;
    let next = match (call, me, action) {
        (CallStatus::Ended, ..) => None,
        (_, P::Invited | P::Declined | P::Missed | P::Left, Action::Accept) if joined >= MAX_PARTICIPANTS => {
            return Err(ErrorCode::CallFull);
        }
        // Ringing: the invited answer or refuse; once active anyone who is not in may join.
        (CallStatus::Ringing, P::Invited, Action::Accept) => Some(P::Joined),
        (CallStatus::Active, P::Invited | P::Declined | P::Missed | P::Left, Action::Accept) => Some(P::Joined),
        (_, P::Invited, Action::Decline) => Some(P::Declined),
        (_, P::Invited, Action::RingTimeout) => Some(P::Missed),
        (_, P::Joined, Action::Leave) => Some(P::Left),
        _ => None,
    };
    next.ok_or_else(|| refuse(call, me, action))
}

/// The call's status after a change, from every participant's state (the caller's included),
/// and why it ended when it did. `by_caller` says the change was the caller leaving.
pub fn settle(call: CallStatus, states: &[ParticipantState], by_caller: bool) -> (CallStatus, Option<EndReason>) {
    use ParticipantState as P;
    let joined = states.iter().filter(|s| **s == P::Joined).count();
    let invited = states.contains(&P::Invited);
    match call {
        CallStatus::Ended => (CallStatus::Ended, None),
        CallStatus::Active if joined == 0 => (CallStatus::Ended, Some(EndReason::Hangup)),
        CallStatus::Active => (CallStatus::Active, None),
        CallStatus::Ringing if joined >= 2 => (CallStatus::Active, None),
        CallStatus::Ringing if joined == 1 && invited => (CallStatus::Ringing, None),
        CallStatus::Ringing => {
            let reason = if by_caller {
                EndReason::Cancelled
            } else if states.contains(&P::Missed) {
                EndReason::Missed
            } else {
                EndReason::Declined
            };
            (CallStatus::Ended, Some(reason))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use CallStatus::{Active, Ended, Ringing};
    use ParticipantState::{Declined, Invited, Joined, Left, Missed};

    #[test]
    fn a_ringing_call_becomes_active_when_one_callee_accepts() {
        assert_eq!(transition(Ringing, Invited, Action::Accept, 1), Ok(Joined));
        assert_eq!(settle(Ringing, &[Joined, Joined, Invited], false), (Active, None));
        assert_eq!(settle(Ringing, &[Joined, Invited, Invited], false), (Ringing, None));
    }

    #[test]
    fn a_second_accept_of_the_same_member_is_answered_elsewhere() {
        assert_eq!(transition(Ringing, Joined, Action::Accept, 2), Err(ErrorCode::CallAnsweredElsewhere));
        assert_eq!(transition(Active, Joined, Action::Accept, 2), Err(ErrorCode::CallAnsweredElsewhere));
    }

    #[test]
    fn a_call_nobody_answered_ends_as_cancelled_declined_or_missed() {
        assert_eq!(settle(Ringing, &[Left, Invited], true), (Ended, Some(EndReason::Cancelled)));
        assert_eq!(settle(Ringing, &[Joined, Declined], false), (Ended, Some(EndReason::Declined)));
        assert_eq!(settle(Ringing, &[Joined, Declined, Missed], false), (Ended, Some(EndReason::Missed)));
    }

    #[test]
    fn the_last_participant_leaving_ends_an_active_call() {
        assert_eq!(transition(Active, Joined, Action::Leave, 2), Ok(Left));
        assert_eq!(settle(Active, &[Left, Joined, Declined], false), (Active, None));
        assert_eq!(settle(Active, &[Left, Left, Declined], false), (Ended, Some(EndReason::Hangup)));
    }

    #[test]
    fn members_join_an_active_call_up_to_the_limit() {
        assert_eq!(transition(Active, Left, Action::Accept, 3), Ok(Joined));
        assert_eq!(transition(Active, Declined, Action::Accept, MAX_PARTICIPANTS), Err(ErrorCode::CallFull));
        assert_eq!(transition(Ringing, Declined, Action::Accept, 1), Err(ErrorCode::CallStateConflict));
    }

    #[test]
    fn nothing_changes_an_ended_call() {
        for action in [Action::Accept, Action::Decline, Action::Leave, Action::RingTimeout] {
            assert_eq!(transition(Ended, Invited, action, 0), Err(ErrorCode::CallEnded));
        }
        assert_eq!(transition(Ringing, Invited, Action::Leave, 1), Err(ErrorCode::CallStateConflict));
        assert_eq!(transition(Active, Joined, Action::Decline, 2), Err(ErrorCode::CallStateConflict));
    }
}
