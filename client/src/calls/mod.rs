//! What a call needs besides the data plane (docs/calls.md, "The client"):
//!
//! - [`signal`]: the content sealed in a signal's MLS application message, and the checks that
//!   keep a server from redirecting, misattributing or forging signals.
//! - [`peer`]: a WebRTC peer connection ([str0m](https://docs.rs/str0m), sans-IO, driven here
//!   over one UDP socket) with one data channel; its ICE candidates are host candidates on a
//!   chosen address and/or a TURN relay ([`turn`]).
//! - [`turn`]: a minimal TURN client (RFC 8656 over UDP: Allocate with long-term credentials,
//!   CreatePermission, Send and Data indications), since str0m leaves TURN to its caller.

pub mod peer;
pub mod signal;
pub mod turn;
