//! The sealed content of a call signal (docs/protocol-v2.md, "Call signalling").
//!
//! A signal travels as an MLS application message of the conversation's group, so every device
//! of the group could open it; the server relays it to one device only, but nothing in MLS says
//! which. The content therefore names the call, the sending device and the addressed device, and
//! the receiver accepts it only when all three are what it expects and the MLS sender's leaf is
//! the sending device: a server that replays a signal to another device, into another call, or
//! attributes it to another device is caught, and it cannot write a signal of its own.
//!
//! ```json
//! {"v":1,"type":"call_signal","call_id":"…","from_device_id":"…","to_device_id":"…",
//!  "signal":{"kind":"offer","sdp":"v=0…"}}
//! ```
//!
//! `type` keeps a signal from ever being read as a message's content (whose `type` is `text`,
//! `file`, …) and the other way round.

use serde::{Deserialize, Serialize};
use thiserror::Error;
use uuid::Uuid;

/// The version this SDK writes and reads.
pub const SIGNAL_VERSION: u8 = 1;
const SIGNAL_TYPE: &str = "call_signal";

/// What one signal carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Signal {
    /// An SDP offer (with its ICE candidates: this SDK gathers before offering).
    Offer {
        /// The session description.
        sdp: String,
    },
    /// The SDP answer to an offer.
    Answer {
        /// The session description.
        sdp: String,
    },
    /// One more ICE candidate (an `a=candidate` value), for a peer that trickles.
    Candidate {
        /// The candidate line, without `a=`.
        candidate: String,
    },
}

/// The plaintext sealed in the MLS application message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SealedSignal {
    /// [`SIGNAL_VERSION`].
    pub v: u8,
    /// Always `call_signal`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The call it belongs to.
    pub call_id: Uuid,
    /// The device that sealed it (MLS authenticates it as the sender's leaf).
    pub from_device_id: Uuid,
    /// The one device it is for.
    pub to_device_id: Uuid,
    /// What it says.
    pub signal: Signal,
}

/// Why a received signal was refused. None of these is shown to the peer; the signal is dropped.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SignalError {
    /// MLS could not open it: altered, forged, or of an epoch this device cannot read.
    #[error("the signal could not be opened: {0}")]
    Unopenable(String),
    /// It opened, but is not a call signal this SDK reads.
    #[error("the signal is malformed: {0}")]
    Malformed(String),
    /// The device MLS authenticates is not the one the server or the content names.
    #[error("the signal claims device {claimed} but was sealed by device {sealed_by}")]
    SenderMismatch {
        /// The device named (by the relay or in the content).
        claimed: Uuid,
        /// The device whose leaf sealed it.
        sealed_by: Uuid,
    },
    /// It was sealed for another device (relayed to the wrong one).
    #[error("the signal is addressed to device {addressed}, not this one")]
    NotForThisDevice {
        /// The device it names.
        addressed: Uuid,
    },
    /// It names another call than the one it was relayed in.
    #[error("the signal belongs to call {named}, not {relayed_in}")]
    WrongCall {
        /// The call in the content.
        named: Uuid,
        /// The call the relay said.
        relayed_in: Uuid,
    },
    /// Its sender is not a device this device is in the call with.
    #[error("device {device} is not a participant of call {call_id}")]
    NotAParticipant {
        /// The call.
        call_id: Uuid,
        /// The sending device.
        device: Uuid,
    },
}

impl SignalError {
    /// A stable name for the refusal (`unopenable`, `malformed`, `sender_mismatch`,
    /// `not_for_this_device`, `wrong_call`, `not_a_participant`), for logs, metrics and the
    /// test vectors.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Unopenable(_) => "unopenable",
            Self::Malformed(_) => "malformed",
            Self::SenderMismatch { .. } => "sender_mismatch",
            Self::NotForThisDevice { .. } => "not_for_this_device",
            Self::WrongCall { .. } => "wrong_call",
            Self::NotAParticipant { .. } => "not_a_participant",
        }
    }
}

impl SealedSignal {
    /// The content of a signal from `from` to `to` in `call_id`.
    pub fn new(call_id: Uuid, from_device_id: Uuid, to_device_id: Uuid, signal: Signal) -> Self {
        Self { v: SIGNAL_VERSION, kind: SIGNAL_TYPE.to_owned(), call_id, from_device_id, to_device_id, signal }
    }

    /// The UTF-8 JSON that is sealed.
    pub fn encode(&self) -> Vec<u8> {
        // A struct of strings and UUIDs always serialises.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Reads an opened plaintext.
    pub fn decode(plaintext: &[u8]) -> Result<Self, SignalError> {
        let sealed: Self = serde_json::from_slice(plaintext).map_err(|e| SignalError::Malformed(e.to_string()))?;
        if sealed.kind != SIGNAL_TYPE {
            return Err(SignalError::Malformed(format!("type {:?} is not {SIGNAL_TYPE}", sealed.kind)));
        }
        if sealed.v != SIGNAL_VERSION {
            return Err(SignalError::Malformed(format!("version {} is not {SIGNAL_VERSION}", sealed.v)));
        }
        Ok(sealed)
    }
}

/// What the receiver knows independently of the content: the relay's claims, who MLS says
/// sealed it, and itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Envelope {
    /// The call the relay delivered it in.
    pub call_id: Uuid,
    /// The device the relay attributes it to.
    pub relayed_from: Uuid,
    /// The device whose MLS leaf sealed it.
    pub sealed_by: Uuid,
    /// This device.
    pub me: Uuid,
}

/// Checks an opened signal against its envelope: sealed by the device the relay names and the
/// content names, for this device, in this call. (Whether the sender is in the call is the
/// caller's to check, against the call's state.)
pub fn check(plaintext: &[u8], envelope: Envelope) -> Result<SealedSignal, SignalError> {
    let sealed = SealedSignal::decode(plaintext)?;
    for claimed in [envelope.relayed_from, sealed.from_device_id] {
        if claimed != envelope.sealed_by {
            return Err(SignalError::SenderMismatch { claimed, sealed_by: envelope.sealed_by });
        }
    }
    if sealed.to_device_id != envelope.me {
        return Err(SignalError::NotForThisDevice { addressed: sealed.to_device_id });
    }
    if sealed.call_id != envelope.call_id {
        return Err(SignalError::WrongCall { named: sealed.call_id, relayed_in: envelope.call_id });
    }
    Ok(sealed)
}

/// The `a=fingerprint:` values of an SDP (the DTLS certificate digests that protect the media),
/// as written: `sha-256 AB:CD:…`.
pub fn sdp_fingerprints(sdp: &str) -> Vec<String> {
    sdp.lines().filter_map(|line| line.trim_end().strip_prefix("a=fingerprint:")).map(str::to_owned).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids() -> (Uuid, Uuid, Uuid) {
        (Uuid::from_u128(1), Uuid::from_u128(2), Uuid::from_u128(3))
    }

    fn sealed(call: Uuid, from: Uuid, to: Uuid) -> Vec<u8> {
        SealedSignal::new(call, from, to, Signal::Offer { sdp: "v=0".into() }).encode()
    }

    #[test]
    fn a_signal_for_this_device_from_its_sealer_in_this_call_is_accepted() {
        let (call, alice, bob) = ids();
        let envelope = Envelope { call_id: call, relayed_from: alice, sealed_by: alice, me: bob };
        let opened = check(&sealed(call, alice, bob), envelope).expect("accepted");
        assert_eq!(opened.signal, Signal::Offer { sdp: "v=0".into() });
    }

    #[test]
    fn signals_redirected_misattributed_or_moved_to_another_call_are_refused() {
        let (call, alice, bob) = ids();
        let carol = Uuid::from_u128(4);
        let ok = Envelope { call_id: call, relayed_from: alice, sealed_by: alice, me: bob };
        // Replayed to Carol's device.
        assert_eq!(
            check(&sealed(call, alice, bob), Envelope { me: carol, ..ok }),
            Err(SignalError::NotForThisDevice { addressed: bob })
        );
        // The relay attributes it to Carol, MLS says Alice.
        assert_eq!(
            check(&sealed(call, alice, bob), Envelope { relayed_from: carol, ..ok }),
            Err(SignalError::SenderMismatch { claimed: carol, sealed_by: alice })
        );
        // Alice's leaf sealed content claiming to be Carol's.
        assert_eq!(
            check(&sealed(call, carol, bob), ok),
            Err(SignalError::SenderMismatch { claimed: carol, sealed_by: alice })
        );
        let other_call = Uuid::from_u128(9);
        assert_eq!(
            check(&sealed(call, alice, bob), Envelope { call_id: other_call, ..ok }),
            Err(SignalError::WrongCall { named: call, relayed_in: other_call })
        );
    }

    #[test]
    fn a_message_content_is_not_a_signal() {
        let (call, alice, bob) = ids();
        let envelope = Envelope { call_id: call, relayed_from: alice, sealed_by: alice, me: bob };
        let text = br#"{"v":1,"type":"text","body":"hello"}"#;
        assert!(matches!(check(text, envelope), Err(SignalError::Malformed(_))));
    }

    #[test]
    fn fingerprints_are_read_from_the_sdp() {
        let sdp = "v=0\r\na=fingerprint:sha-256 AB:CD\r\nm=application 9\r\n";
        assert_eq!(sdp_fingerprints(sdp), vec!["sha-256 AB:CD".to_owned()]);
    }

    /// `docs/test-vectors/protocol-v2-call-signal.json`: the sealed plaintexts this SDK writes,
    /// byte for byte, and what the receiver decides for each envelope. The file is made by this
    /// code (`CONCLAVE_WRITE_VECTORS=1` rewrites it) and checked against it on every run, so
    /// neither the format nor the checks can change without the committed vectors (and
    /// docs/protocol-v2.md, which shows the first one) changing with them.
    #[test]
    fn the_committed_signal_vectors_are_what_the_sdk_writes_and_decides() {
        crate::test_vectors::check_committed("protocol-v2-call-signal.json", &vectors());
        let doc = include_str!("../../../docs/protocol-v2.md");
        let first = vectors()["cases"][0]["plaintext"].as_str().expect("plaintext").to_owned();
        assert!(doc.contains(&first), "docs/protocol-v2.md shows the first vector's plaintext verbatim");
    }

    fn vectors() -> serde_json::Value {
        let call = Uuid::parse_str("0193a3c4-5e6f-7a80-9b1c-2d3e4f506172").expect("uuid");
        let alice = Uuid::parse_str("0193a3c4-0000-7000-8000-00000000a11c").expect("uuid");
        let bob = Uuid::parse_str("0193a3c4-0000-7000-8000-000000000b0b").expect("uuid");
        let carol = Uuid::parse_str("0193a3c4-0000-7000-8000-00000000ca01").expect("uuid");
        let other_call = Uuid::parse_str("0193a3c4-5e6f-7a80-9b1c-000000000000").expect("uuid");
        let offer = Signal::Offer { sdp: "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\na=fingerprint:sha-256 AB:CD\r\n".into() };
        let answer = Signal::Answer { sdp: "v=0\r\no=- 3 4 IN IP4 127.0.0.1\r\n".into() };
        let candidate = Signal::Candidate { candidate: "candidate:1 1 udp 2130706431 127.0.0.1 50000 typ host".into() };
        let ok = Envelope { call_id: call, relayed_from: alice, sealed_by: alice, me: bob };
        let sealed = |from, to, signal: &Signal| SealedSignal::new(call, from, to, signal.clone()).encode();
        let cases: Vec<(&str, Envelope, Vec<u8>)> = vec![
            ("an offer from Alice's device for Bob's", ok, sealed(alice, bob, &offer)),
            (
                "an answer from Bob's device for Alice's",
                Envelope { relayed_from: bob, sealed_by: bob, me: alice, ..ok },
                sealed(bob, alice, &answer),
            ),
            ("a trickled candidate", ok, sealed(alice, bob, &candidate)),
            ("relayed to Carol's device", Envelope { me: carol, ..ok }, sealed(alice, bob, &offer)),
            (
                "attributed by the relay to Carol's device",
                Envelope { relayed_from: carol, ..ok },
                sealed(alice, bob, &offer),
            ),
            ("content claiming Carol's device, sealed by Alice's leaf", ok, sealed(carol, bob, &offer)),
            ("relayed in another call", Envelope { call_id: other_call, ..ok }, sealed(alice, bob, &offer)),
            ("a message's content, not a signal", ok, br#"{"v":1,"type":"text","body":"hello"}"#.to_vec()),
            (
                "an unknown version",
                ok,
                String::from_utf8(sealed(alice, bob, &offer))
                    .expect("utf-8")
                    .replacen("\"v\":1", "\"v\":2", 1)
                    .into_bytes(),
            ),
            (
                "an unknown field",
                ok,
                String::from_utf8(sealed(alice, bob, &offer))
                    .expect("utf-8")
                    .replacen("{", "{\"x\":0,", 1)
                    .into_bytes(),
            ),
        ];
        let cases: Vec<serde_json::Value> = cases
            .into_iter()
            .map(|(name, envelope, plaintext)| {
                let result = match check(&plaintext, envelope) {
                    Ok(sealed) => serde_json::json!({ "accepted": sealed.signal }),
                    Err(error) => serde_json::json!({ "refused": error.code() }),
                };
                serde_json::json!({
                    "name": name,
                    "relayed_call_id": envelope.call_id,
                    "relayed_from_device_id": envelope.relayed_from,
                    "mls_sender_device_id": envelope.sealed_by,
                    "receiving_device_id": envelope.me,
                    "plaintext": String::from_utf8(plaintext).expect("utf-8"),
                    "result": result,
                })
            })
            .collect();
        serde_json::json!({
            "description": "Call signal contents (docs/protocol-v2.md, Call signalling): the UTF-8 JSON sealed in the MLS application message, and what the receiving device decides given the relay's claims and the MLS sender. Made by client/src/calls/signal.rs.",
            "cases": cases,
        })
    }
}
