//! The byte strings around MLS that are ours: what a device signs when it registers and when it
//! signs in, and what a reaction authenticates (labels of version 1 that version 2 kept, and the
//! version 2 device-key proof).
//!
//! Every function here is pure and allocation-only: no cryptography happens in this crate. The
//! client builds these bytes before it signs or encrypts; the server builds the same bytes to
//! verify a signature. `docs/protocol.md` describes the same layouts in prose, and
//! `docs/test-vectors/protocol-v1.json` pins them.
//!
//! Conventions, the same for every layout:
//! - each starts with an ASCII label `conclave/v1/<purpose>` or `conclave/v2/<purpose>` followed by
//!   one `0x00` byte, so no two purposes can ever produce the same bytes (domain separation);
//! - UUIDs are their 16 raw bytes in RFC 9562 order (the order of `Uuid::as_bytes`);
//! - integers are unsigned big-endian (`generation` is a `u32`, 4 bytes);
//! - variable-length parts are prefixed with their length as a `u32` big-endian.

use uuid::Uuid;

/// Label of a device's proof of possession of its key, signed at registration.
pub const DEVICE_KEY_LABEL: &[u8] = b"conclave/v2/device-key";
/// Label of a reaction's AEAD associated data.
pub const REACTION_AAD_LABEL: &[u8] = b"conclave/v1/reaction";
/// HKDF-SHA256 `info` that derives the reaction tag key from a conversation key. Used as is: no
/// `0x00` terminator, as it is the whole `info` rather than a prefix.
pub const REACTION_TAG_KEY_INFO: &[u8] = b"conclave/v1/reaction-tag";
/// Label of a login proof's signature input.
pub const LOGIN_PROOF_LABEL: &[u8] = b"conclave/v1/login-proof";
/// Label of a bot's proof, when it opens a session on its registered device.
pub const BOT_SESSION_PROOF_LABEL: &[u8] = b"conclave/v2/bot-session-proof";

/// Length of [`reaction_aad`]'s output.
pub const REACTION_AAD_LEN: usize = REACTION_AAD_LABEL.len() + 1 + 16 + 4 + 16 + 16;

/// What a device's Ed25519 key signs when the device registers, to prove that the registrant
/// holds it: `"conclave/v2/device-key" || 0x00 || ed25519_public_key (32)`, 55 bytes.
pub fn device_key_input(ed25519_public_key: &[u8; 32]) -> Vec<u8> {
    let mut out = labelled(DEVICE_KEY_LABEL, 32);
    out.extend_from_slice(ed25519_public_key);
    out
}

/// A reaction's AEAD associated data:
/// `"conclave/v1/reaction" || 0x00 || conversation_id (16) || generation (u32 BE)
///  || message_id (16) || reactor_user_id (16)`, [`REACTION_AAD_LEN`] bytes in all.
///
/// `message_id` is the server's id of the message reacted to; `reactor_user_id` the user who
/// reacts. A reaction copied onto another message or attributed to another user fails to decrypt.
pub fn reaction_aad(conversation_id: Uuid, generation: u32, message_id: Uuid, reactor_user_id: Uuid) -> Vec<u8> {
    let mut out = labelled(REACTION_AAD_LABEL, 52);
    out.extend_from_slice(conversation_id.as_bytes());
    out.extend_from_slice(&generation.to_be_bytes());
    out.extend_from_slice(message_id.as_bytes());
    out.extend_from_slice(reactor_user_id.as_bytes());
    out
}

/// The HMAC-SHA256 input of a reaction's `value_tag`:
/// `message_id (16) || reactor_user_id (16) || value (UTF-8, the rest)`.
///
/// No label: the HMAC key is itself derived for this sole purpose (see [`REACTION_TAG_KEY_INFO`]),
/// and the two fixed-size ids make the split unambiguous. Binding the message and the user means
/// equal tags reveal only what the server must know: the same user reacting twice with the same
/// value to the same message.
pub fn reaction_tag_input(message_id: Uuid, reactor_user_id: Uuid, value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(32 + value.len());
    out.extend_from_slice(message_id.as_bytes());
    out.extend_from_slice(reactor_user_id.as_bytes());
    out.extend_from_slice(value);
    out
}

/// What a registered device's Ed25519 key signs to prove, at sign-in, that the request comes
/// from that device now:
/// `"conclave/v1/login-proof" || 0x00 || len(email) (u32 BE) || email || device_id (16)
///  || unix_seconds (u64 BE)`.
///
/// `email` is the address as the server normalises it (trimmed, lower-case), in UTF-8. A valid,
/// fresh proof exempts the sign-in from the per-account lockout (`docs/protocol.md`, "Sign-in");
/// it never replaces the password.
pub fn login_proof_input(email: &str, device_id: Uuid, unix_seconds: u64) -> Vec<u8> {
    let mut out = labelled(LOGIN_PROOF_LABEL, 4 + email.len() + 16 + 8);
    push_length_prefixed(&mut out, email.as_bytes());
    out.extend_from_slice(device_id.as_bytes());
    out.extend_from_slice(&unix_seconds.to_be_bytes());
    out
}

/// What a bot's registered device signs to prove, when the bot opens a session on it with its
/// token, that the request comes from that device now:
/// `"conclave/v2/bot-session-proof" || 0x00 || device_id (16) || unix_seconds (u64 BE)`, 54 bytes.
///
/// The bot token says which bot asks; the proof says that the asker holds the device's key, so a
/// copied token alone opens sessions only on new devices, which every conversation would have to
/// add (`docs/bots.md`). No address: a device belongs to one account, and the label keeps a
/// login proof from serving here.
pub fn bot_session_proof_input(device_id: Uuid, unix_seconds: u64) -> Vec<u8> {
    let mut out = labelled(BOT_SESSION_PROOF_LABEL, 16 + 8);
    out.extend_from_slice(device_id.as_bytes());
    out.extend_from_slice(&unix_seconds.to_be_bytes());
    out
}

fn labelled(label: &[u8], rest: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(label.len() + 1 + rest);
    out.extend_from_slice(label);
    out.push(0x00);
    out
}

fn push_length_prefixed(out: &mut Vec<u8>, part: &[u8]) {
    // Parts are bounded by the server's limits (256 KiB), far below 4 GiB; saturating keeps the
    // function total without a panic path.
    let len = u32::try_from(part.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(part);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(byte: u8) -> Uuid {
        Uuid::from_bytes([byte; 16])
    }

    #[test]
    fn device_key_input_is_label_nul_then_the_key() {
        let input = device_key_input(&[2; 32]);
        let mut expected = b"conclave/v2/device-key\0".to_vec();
        expected.extend_from_slice(&[2; 32]);
        assert_eq!((input.len(), input), (55, expected));
    }

    #[test]
    fn reaction_aad_has_a_fixed_length_and_field_order() {
        let reaction = reaction_aad(id(1), 7, id(2), id(3));
        assert_eq!(reaction.len(), REACTION_AAD_LEN);
        assert_eq!(&reaction[..21], b"conclave/v1/reaction\0");
        assert_eq!(&reaction[21..37], &[1; 16]);
        assert_eq!(&reaction[37..41], &[0, 0, 0, 7]);
        assert_eq!(&reaction[41..57], &[2; 16]);
        assert_eq!(&reaction[57..73], &[3; 16]);
    }

    #[test]
    fn reaction_tag_input_is_both_ids_then_the_value() {
        let input = reaction_tag_input(id(4), id(5), "👍".as_bytes());
        assert_eq!(&input[..16], &[4; 16]);
        assert_eq!(&input[16..32], &[5; 16]);
        assert_eq!(&input[32..], "👍".as_bytes());
    }

    #[test]
    fn login_proof_input_is_label_email_device_then_seconds() {
        let input = login_proof_input("a@b.io", id(7), 0x0102_0304_0506_0708);
        let mut expected = b"conclave/v1/login-proof\0".to_vec();
        expected.extend_from_slice(&[0, 0, 0, 6]);
        expected.extend_from_slice(b"a@b.io");
        expected.extend_from_slice(&[7; 16]);
        expected.extend_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(input, expected);
    }

    #[test]
    fn bot_session_proof_input_is_label_device_then_seconds() {
        let input = bot_session_proof_input(id(9), 0x0102_0304_0506_0708);
        let mut expected = b"conclave/v2/bot-session-proof\0".to_vec();
        expected.extend_from_slice(&[9; 16]);
        expected.extend_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(input, expected);
        assert_eq!(input.len(), 54);
    }

    #[test]
    fn every_label_is_versioned_and_distinct() {
        let labels = [
            DEVICE_KEY_LABEL,
            REACTION_AAD_LABEL,
            REACTION_TAG_KEY_INFO,
            LOGIN_PROOF_LABEL,
            BOT_SESSION_PROOF_LABEL,
            crate::identity::DEVICE_SIGNING_LABEL,
            crate::identity::IDENTITY_TRANSFER_LABEL,
        ];
        for (i, a) in labels.iter().enumerate() {
            assert!(a.starts_with(crate::PROTOCOL_LABEL_PREFIX.as_bytes()) || a.starts_with(b"conclave/v2/"));
            for b in &labels[i + 1..] {
                assert_ne!(a, b);
            }
        }
    }
}
