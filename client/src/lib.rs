//! The Conclave client SDK, and the library behind the `conclave` CLI.
//!
//! - [`crypto`] implements the end-to-end encryption protocol of `docs/protocol.md`: device keys,
//!   conversation keys wrapped per device with HPKE, signed and encrypted messages, encrypted
//!   reactions with their deduplication tag, chunked encryption of attachments. The byte layouts
//!   come from [`conclave_protocol`], the same crate the data plane verifies signatures with.
//! - [`keystore`] keeps a device's secret keys and its unwrapped conversation keys in a local JSON
//!   file readable by its owner only.
//! - [`api`] is the data plane's HTTP API, one typed method per endpoint, with automatic token
//!   refresh (plain HTTP only for now: no TLS).
//! - [`store`] is a profile directory: the session (server, account, device, tokens), the
//!   keystore and a cache of device public keys, every file `0600` and written atomically.
//! - [`content`] is what a message's plaintext is (`{"v":1,"type":"text","body":"..."}`, or a
//!   `file` that carries an attachment's key).
//! - [`messenger`] puts them together: send (rotating the conversation key when the server asks),
//!   read history, react, pin, send and download encrypted files, and listen on the WebSocket
//!   with reconnection and resume.
//! - [`calls`] is what a call needs besides the server: the sealed signal format, a WebRTC peer
//!   connection (str0m) with a data channel, and a TURN client for relay candidates.
//! - [`cli`] is the `conclave` command line (the binary is a thin `main` around [`cli::run`]).

pub mod api;
pub mod bot;
pub mod calls;
pub mod cli;
pub mod content;
pub mod crypto;
pub mod keystore;
pub mod messenger;
pub mod mls;
pub mod store;
#[cfg(test)]
mod test_vectors;

pub use api::{ApiError, Client, Error, Result};
pub use messenger::Messenger;
