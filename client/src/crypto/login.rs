//! The device proof a registered device sends with a sign-in (`docs/protocol.md`, "Sign-in").

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
}
