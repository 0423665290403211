//! The device proof a registered device sends with a sign-in (`docs/protocol.md`, "Sign-in") and
//! with a bot's session on it (`docs/bots.md`).

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};

use conclave_protocol::auth::DeviceProof;
use conclave_protocol::layout;
use uuid::Uuid;

use super::DeviceKeys;

impl DeviceKeys {
    /// This device's proof that it is the one signing in to `email` at `unix_seconds`: the
    /// Ed25519 signature over [`layout::login_proof_input`], sent as the login's `device_proof`
    /// with the device's id. The address is normalised (trimmed, lower-case) as the server does.
    /// The server accepts it within five minutes of its clock; with it, failures by others
    /// against the address do not lock this device out.
    pub fn login_proof(&self, email: &str, device_id: Uuid, unix_seconds: u64) -> [u8; 64] {
        self.sign(&layout::login_proof_input(&email.trim().to_lowercase(), device_id, unix_seconds))
    }

    /// The `device_proof` of a sign-in on `device_id` to `email`, made now: required with a
    /// login's `device_id` (a password and a device id are not enough).
    pub fn device_proof(&self, email: &str, device_id: Uuid) -> DeviceProof {
        let now = unix_now();
        DeviceProof { unix_seconds: now, signature: self.login_proof(email, device_id, now) }
    }

    /// This device's proof that it is the bot's device opening a session at `unix_seconds`: the
    /// Ed25519 signature over [`layout::bot_session_proof_input`].
    pub fn bot_session_signature(&self, device_id: Uuid, unix_seconds: u64) -> [u8; 64] {
        self.sign(&layout::bot_session_proof_input(device_id, unix_seconds))
    }

    /// The `device_proof` of a bot session on `device_id`, made now: required with the session
    /// request's `device_id` (a bot token and a device id are not enough).
    ///
    /// Each proof of a device is made in a later second than the one before it in this process:
    /// Ed25519 signatures are deterministic, so two proofs in the same second would be the same
    /// bytes, and the server takes each proof once. A bot that reopens its session twice within
    /// a second (or retries a request that failed after the proof was taken) dates the next one a
    /// second ahead, well inside the server's 300-second window.
    pub fn bot_session_proof(&self, device_id: Uuid) -> DeviceProof {
        static LAST: Mutex<BTreeMap<Uuid, u64>> = Mutex::new(BTreeMap::new());
        let mut last = LAST.lock().unwrap_or_else(PoisonError::into_inner);
        let at = last.get(&device_id).map_or(0, |t| t + 1).max(unix_now());
        last.insert(device_id, at);
        DeviceProof { unix_seconds: at, signature: self.bot_session_signature(device_id, at) }
    }
}

/// Seconds since 1970; a clock before it makes a proof the server refuses as stale, not a panic.
fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_devices_bot_session_proofs_are_never_the_same_bytes() {
        let device = DeviceKeys::generate().expect("keys");
        let id = Uuid::new_v4();
        let proofs: Vec<DeviceProof> = (0..3).map(|_| device.bot_session_proof(id)).collect();
        assert!(proofs.windows(2).all(|p| p[1].unix_seconds > p[0].unix_seconds), "strictly later each time");
        assert_ne!(proofs[0].signature, proofs[1].signature);
        assert!(proofs[2].unix_seconds <= unix_now() + 2, "ahead by no more than it had to be");
    }
}
