//! Calls (docs/calls.md): the lifecycle on the data plane, what each `call_updated` means to
//! this device ([`CallChange`]), the heartbeat that keeps it in a call, and signals sealed end to
//! end with the conversation's MLS group ([`crate::calls::signal`]).

use std::time::Duration;

use conclave_protocol::calls::{Call, CallKind, CallSignal, CallStatus, EndReason, ParticipantState};
use uuid::Uuid;

use super::{MAX_ATTEMPTS, Messenger, Opening, address, epoch_moved, generation_i32, leaves_roster};
use crate::api::{Error, Result};
use crate::calls::signal::{self, Envelope, SealedSignal, Signal, SignalError};
use crate::mls::{Incoming, Leaf, PAST_EPOCHS};

/// How often a device in a call tells the server it is still there (the server drops it after
/// 30 s of silence by default).
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(10);
/// The most heartbeats one [`CallHeartbeat`] sends: a day of call.
const MAX_HEARTBEATS: u32 = 8_640;
/// The most live calls remembered (to check signal senders against).
const MAX_KNOWN_CALLS: usize = 64;

/// What a `call_updated` means to this device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallChange {
    /// Ring: this user is invited (accept or decline on this device).
    Ringing,
    /// This device's own call, still ringing the others.
    Outgoing,
    /// This device is in the call and someone answered (or joined, or left while others stay).
    InCall,
    /// This user answered on another device: stop ringing here.
    AnsweredElsewhere {
        /// The device that answered.
        device_id: Uuid,
    },
    /// This user declined (on some device): stop ringing.
    Declined,
    /// This user left the call.
    Left,
    /// This user did not answer in time.
    Missed,
    /// The call is over.
    Ended {
        /// How it ended.
        reason: Option<EndReason>,
    },
    /// A call of the conversation this user has no part in (yet).
    Other,
}

/// What a `call_updated` means to the device `device_id` of `user_id` (a pure function of the
/// call, so a UI can also apply it to a record from `GET /calls`).
pub fn classify(call: &Call, user_id: Uuid, device_id: Uuid) -> CallChange {
    let me = call.participants.iter().find(|p| p.user_id == user_id);
    if call.status == CallStatus::Ended {
        return match me.map(|p| p.state) {
            Some(ParticipantState::Missed) => CallChange::Missed,
            _ => CallChange::Ended { reason: call.end_reason },
        };
    }
    let Some(me) = me else { return CallChange::Other };
    match (me.state, me.device_id) {
        (ParticipantState::Invited, _) => CallChange::Ringing,
        (ParticipantState::Joined, Some(device)) if device != device_id => {
            CallChange::AnsweredElsewhere { device_id: device }
        }
        (ParticipantState::Joined, _) if call.status == CallStatus::Ringing => CallChange::Outgoing,
        (ParticipantState::Joined, _) => CallChange::InCall,
        (ParticipantState::Declined, _) => CallChange::Declined,
        (ParticipantState::Left, _) => CallChange::Left,
        (ParticipantState::Missed, _) => CallChange::Missed,
    }
}

/// A signal opened and checked: sealed by `from_device_id`'s MLS leaf, for this device, in
/// `call_id`, and its sender a device in the call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedSignal {
    /// The conversation.
    pub conversation_id: Uuid,
    /// The call.
    pub call_id: Uuid,
    /// The sender's account.
    pub from_user_id: Uuid,
    /// The sending device (MLS authenticated).
    pub from_device_id: Uuid,
    /// What it says.
    pub signal: Signal,
}

/// A `call_signal` frame as relayed: the server's claims and the sealed bytes.
#[derive(Debug, Clone, Copy)]
pub struct RelayedSignal<'a> {
    /// The conversation.
    pub conversation_id: Uuid,
    /// The call it was relayed in.
    pub call_id: Uuid,
    /// The account the server attributes it to.
    pub from_user_id: Uuid,
    /// The device the server attributes it to.
    pub from_device_id: Uuid,
    /// The MLS epoch.
    pub key_generation: i32,
    /// The MLS application message.
    pub ciphertext: &'a [u8],
}

/// Keeps this device in a call: a heartbeat every [`HEARTBEAT_INTERVAL`] until dropped, until
/// the server answers that the device is no longer in the call, or after a day.
#[derive(Debug)]
pub struct CallHeartbeat {
    task: tokio::task::JoinHandle<()>,
}

impl CallHeartbeat {
    /// Whether it stopped by itself (the device is no longer in the call).
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }
}

impl Drop for CallHeartbeat {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Messenger {
    /// Starts a call in a conversation: this device joins it, every other member's devices ring.
    pub async fn start_call(&self, org: Uuid, conversation_id: Uuid, kind: CallKind) -> Result<Call> {
        let call = self.inner.client.start_call(org, conversation_id, kind).await?;
        Ok(self.note_call(call))
    }

    /// Answers a ringing (or joins an active) call on this device. Another device of this user
    /// answering first is `409 call_answered_elsewhere`.
    pub async fn accept_call(&self, org: Uuid, conversation_id: Uuid, call_id: Uuid) -> Result<Call> {
        let call = self.inner.client.accept_call(org, conversation_id, call_id).await?;
        Ok(self.note_call(call))
    }

    /// Refuses a ringing call.
    pub async fn decline_call(&self, org: Uuid, conversation_id: Uuid, call_id: Uuid) -> Result<Call> {
        let call = self.inner.client.decline_call(org, conversation_id, call_id).await?;
        Ok(self.note_call(call))
    }

    /// Hangs up: leaves the call (the last one out ends it; the caller's, before an answer,
    /// cancels it).
    pub async fn hang_up(&self, org: Uuid, conversation_id: Uuid, call_id: Uuid) -> Result<Call> {
        let call = self.inner.client.leave_call(org, conversation_id, call_id).await?;
        Ok(self.note_call(call))
    }

    /// The conversation's calls, newest first (the last 100): the call records.
    pub async fn calls(&self, org: Uuid, conversation_id: Uuid) -> Result<Vec<Call>> {
        self.inner.client.calls(org, conversation_id).await
    }

    /// Starts the heartbeat that keeps this device in the call (stop it by dropping it).
    pub fn heartbeat(&self, org: Uuid, conversation_id: Uuid, call_id: Uuid) -> CallHeartbeat {
        let client = self.inner.client.clone();
        let task = tokio::spawn(async move {
            let mut ticks = tokio::time::interval(HEARTBEAT_INTERVAL);
            for _ in 0..MAX_HEARTBEATS {
                ticks.tick().await;
                match client.call_heartbeat(org, conversation_id, call_id).await {
                    // No longer in the call (it ended, or this device was timed out).
                    Err(Error::Api(err)) if err.status.is_client_error() => return,
                    // A transient failure: the next beat may get through within the timeout.
                    Ok(()) | Err(_) => {}
                }
            }
        });
        CallHeartbeat { task }
    }

    /// Seals `signal` for the device `to_device_id` in the call and has the server relay it. When
    /// a commit moves the epoch on in between (`stale_generation`), it is sealed again in the new
    /// one.
    pub async fn send_signal(
        &self,
        org: Uuid,
        conversation_id: Uuid,
        call_id: Uuid,
        to_device_id: Uuid,
        signal: Signal,
    ) -> Result<()> {
        let mut last_error = None;
        for _ in 0..MAX_ATTEMPTS {
            let body = self.seal_signal(org, conversation_id, call_id, to_device_id, signal.clone()).await?;
            match self.inner.client.send_call_signal(org, conversation_id, call_id, &body).await {
                Ok(()) => return Ok(()),
                Err(err) if epoch_moved(&err) => last_error = Some(err),
                Err(err) => return Err(err),
            }
        }
        Err(last_error.unwrap_or_else(|| Error::Protocol("the signal could not be sent".into())))
    }

    /// The request body of a signal for `to_device_id`, sealed in the conversation's group
    /// (brought up to date first) without sending it: [`Messenger::send_signal`] posts it.
    pub async fn seal_signal(
        &self,
        org: Uuid,
        conversation_id: Uuid,
        call_id: Uuid,
        to_device_id: Uuid,
        signal: Signal,
    ) -> Result<CallSignal> {
        let plaintext = SealedSignal::new(call_id, self.inner.device_id, to_device_id, signal).encode();
        let at = address(org, conversation_id);
        let _turn = self.inner.groups.lock().await;
        let device = self.mls()?;
        let mut group = self.synced_group(&device, at).await?;
        let key_generation = generation_i32(group.epoch().as_u64())?;
        let ciphertext = device.encrypt(&mut group, &plaintext);
        // As for a message: the ratchet moved, saved before the signal leaves.
        self.keep_state(&device, None)?;
        Ok(CallSignal { to_device_id, key_generation, ciphertext: ciphertext? })
    }

    /// Opens a relayed signal with MLS and checks it: sealed by the device the relay names, which
    /// is in the call, for this device and this call. Anything else is [`Error::Signal`].
    pub async fn open_signal(&self, org: Uuid, relayed: RelayedSignal<'_>) -> Result<ReceivedSignal> {
        let (sealed_by, plaintext) = self.unseal(org, relayed).await?;
        let envelope = Envelope {
            call_id: relayed.call_id,
            relayed_from: relayed.from_device_id,
            sealed_by: sealed_by.device_id,
            me: self.inner.device_id,
        };
        let sealed = signal::check(&plaintext, envelope)?;
        if sealed_by.user_id != relayed.from_user_id {
            return Err(
                SignalError::SenderMismatch { claimed: relayed.from_user_id, sealed_by: sealed_by.user_id }.into()
            );
        }
        self.check_participant(org, relayed.conversation_id, relayed.call_id, sealed_by.device_id).await?;
        Ok(ReceivedSignal {
            conversation_id: relayed.conversation_id,
            call_id: relayed.call_id,
            from_user_id: sealed_by.user_id,
            from_device_id: sealed_by.device_id,
            signal: sealed.signal,
        })
    }

    /// Decrypts a signal's MLS application message: its sender's leaf and the plaintext.
    async fn unseal(&self, org: Uuid, relayed: RelayedSignal<'_>) -> Result<(Leaf, Vec<u8>)> {
        let unopenable = |reason: String| Error::Signal(SignalError::Unopenable(reason));
        let epoch = u64::try_from(relayed.key_generation).map_err(|_| unopenable("a negative epoch".into()))?;
        let at = address(org, relayed.conversation_id);
        let _turn = self.inner.groups.lock().await;
        let device = self.mls()?;
        let mut opening = Opening::default();
        let mut trust = self.with_keystore(|k| k.trust().clone());
        let opened = async {
            if !self.load_group(&device, at, &mut opening, &mut trust).await? {
                return Err(unopenable("this device is not in the conversation's group".into()));
            }
            let behind = opening.groups.get(&at.conversation_id).and_then(Option::as_ref).map(|g| g.epoch().as_u64());
            if behind.is_some_and(|current| current < epoch)
                && !self.follow(&device, at, epoch, &mut opening, &mut trust).await?
            {
                return Err(unopenable(format!("epoch {epoch} cannot be reached")));
            }
            let Some(Some(group)) = opening.groups.get_mut(&at.conversation_id) else {
                return Err(unopenable("this device is not in the conversation's group".into()));
            };
            if epoch.saturating_add(PAST_EPOCHS as u64) < group.epoch().as_u64() {
                return Err(unopenable(format!("epoch {epoch} is too old")));
            }
            let roster = leaves_roster(group);
            match device.process(group, relayed.ciphertext, &roster, &mut trust) {
                Ok(Incoming::Application { sender, plaintext, .. }) => Ok((sender, plaintext)),
                Ok(_) => Err(unopenable("not an application message".into())),
                Err(err) => Err(unopenable(err.to_string())),
            }
        }
        .await;
        // The receiving ratchet moved (or the group caught up): kept either way.
        self.keep_state(&device, Some(trust))?;
        opened
    }

    /// The sender must be a device in the call: checked against the last state this device saw,
    /// read again from the server once when that does not have it.
    async fn check_participant(&self, org: Uuid, conversation_id: Uuid, call_id: Uuid, sender: Uuid) -> Result<()> {
        let joined = |call: &Call| {
            call.participants.iter().any(|p| p.state == ParticipantState::Joined && p.device_id == Some(sender))
        };
        if self.known_call(call_id).is_some_and(|call| joined(&call)) {
            return Ok(());
        }
        let fresh = self.inner.client.calls(org, conversation_id).await?.into_iter().find(|call| call.id == call_id);
        match fresh.map(|call| self.note_call(call)) {
            Some(call) if joined(&call) => Ok(()),
            _ => Err(SignalError::NotAParticipant { call_id, device: sender }.into()),
        }
    }

    /// Remembers the latest state of a live call (the listener calls it on every `call_updated`);
    /// an ended call is forgotten.
    pub(crate) fn note_call(&self, call: Call) -> Call {
        let mut calls = self.inner.calls.lock().unwrap_or_else(|p| p.into_inner());
        if call.status == CallStatus::Ended {
            calls.remove(&call.id);
            return call;
        }
        // Bounded: a call whose end this device never heard of is dropped once enough newer
        // ones arrived (it is read again from the server if a signal names it).
        if calls.len() >= MAX_KNOWN_CALLS && !calls.contains_key(&call.id) {
            let oldest = calls.values().min_by_key(|known| known.started_at).map(|known| known.id);
            if let Some(id) = oldest {
                calls.remove(&id);
            }
        }
        calls.insert(call.id, call.clone());
        call
    }

    /// The latest state seen of a live call.
    pub fn known_call(&self, call_id: Uuid) -> Option<Call> {
        self.inner.calls.lock().unwrap_or_else(|p| p.into_inner()).get(&call_id).cloned()
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use conclave_protocol::calls::CallParticipant;

    use super::*;

    fn mk_call(status: CallStatus, participants: &[(Uuid, Option<Uuid>, ParticipantState)]) -> Call {
        Call {
            id: Uuid::from_u128(100),
            conversation_id: Uuid::from_u128(200),
            kind: CallKind::Audio,
            status,
            started_by: participants.first().map(|p| p.0),
            started_at: Utc::now(),
            answered_at: None,
            ended_at: None,
            end_reason: (status == CallStatus::Ended).then_some(EndReason::Hangup),
            participants: participants
                .iter()
                .map(|&(user_id, device_id, state)| CallParticipant {
                    user_id,
                    device_id,
                    state,
                    joined_at: None,
                    left_at: None,
                })
                .collect(),
        }
    }

    #[test]
    fn each_device_reads_a_call_update_for_itself() {
        let (alice, alice_phone) = (Uuid::from_u128(1), Uuid::from_u128(11));
        let (bob, bob_phone, bob_laptop) = (Uuid::from_u128(2), Uuid::from_u128(21), Uuid::from_u128(22));
        let ringing = mk_call(
            CallStatus::Ringing,
            &[(alice, Some(alice_phone), ParticipantState::Joined), (bob, None, ParticipantState::Invited)],
        );
        assert_eq!(classify(&ringing, alice, alice_phone), CallChange::Outgoing);
        assert_eq!(classify(&ringing, bob, bob_laptop), CallChange::Ringing);
        assert_eq!(classify(&ringing, Uuid::from_u128(3), Uuid::from_u128(31)), CallChange::Other);

        let answered = mk_call(
            CallStatus::Active,
            &[(alice, Some(alice_phone), ParticipantState::Joined), (bob, Some(bob_phone), ParticipantState::Joined)],
        );
        assert_eq!(classify(&answered, alice, alice_phone), CallChange::InCall);
        assert_eq!(classify(&answered, bob, bob_phone), CallChange::InCall);
        assert_eq!(classify(&answered, bob, bob_laptop), CallChange::AnsweredElsewhere { device_id: bob_phone });

        let missed = mk_call(
            CallStatus::Ended,
            &[(alice, Some(alice_phone), ParticipantState::Left), (bob, None, ParticipantState::Missed)],
        );
        assert_eq!(classify(&missed, bob, bob_laptop), CallChange::Missed);
        assert_eq!(classify(&missed, alice, alice_phone), CallChange::Ended { reason: Some(EndReason::Hangup) });
    }
}
