//! The Conclave wire protocol, shared by the data plane and the client SDK.
//!
//! The server never sees plaintext or conversation keys, but it does verify what it can without
//! them: device binding signatures, message signatures, sizes and key generations. To do so it
//! must rebuild exactly the bytes the client signed. This crate is where those bytes are defined,
//! once, for both sides:
//!
//! - [`layout`] builds every byte string that is signed, authenticated or used as HPKE `info`
//!   (pure functions, no cryptography, no I/O);
//! - [`b64`] is the serde encoding of every byte field in JSON (base64url without padding);
//! - [`api`] holds the JSON bodies of the messaging HTTP API, and [`events`] the WebSocket frames,
//!   so the server and the SDK (de)serialize one definition;
//! - [`bots`] holds the body a bot opens its session with;
//! - [`auth`], [`devices`] and [`tenancy`] hold the bodies of the account, session, device,
//!   organization and workspace endpoints;
//! - [`keypackages`], [`handshake`] and [`identity`] hold protocol v2's (MLS) key packages,
//!   commits and identity chain;
//! - [`rich`] holds the bodies of reactions, pins, attachments and presence;
//! - [`notifications`] holds the bodies of notification preferences, profiles and unread counts;
//! - [`limits`] holds the sizes the server enforces and the client must respect;
//! - [`compliance`] holds the bodies of audit, legal hold and privacy endpoints, and [`archive`]
//!   the container of a privacy export, which the data plane writes and the SDK reads.
//!
//! The normative description is `docs/protocol.md`; the committed test vectors in
//! `docs/test-vectors/protocol-v1.json` pin every byte.

pub mod api;
pub mod archive;
pub mod auth;
pub mod b64;
pub mod bots;
pub mod calls;
pub mod compliance;
pub mod devices;
pub mod events;
pub mod handshake;
pub mod identity;
pub mod keypackages;
pub mod layout;
pub mod limits;
pub mod mls_wire;
pub mod notifications;
pub mod rich;
pub mod tenancy;
pub mod webhooks;

/// The protocol version this crate implements. Every domain-separation label carries it as
/// `conclave/v1/...`, so a future version can never be confused with this one.
pub const PROTOCOL_VERSION: u32 = 1;

/// The label prefix shared by all version 1 domain-separation labels.
pub const PROTOCOL_LABEL_PREFIX: &str = "conclave/v1/";
