//! The Conclave client SDK.
//!
//! - [`crypto`] implements the end-to-end encryption protocol of `docs/protocol.md`: device keys,
//!   conversation keys wrapped per device with HPKE, signed and encrypted messages, encrypted
//!   reactions with their deduplication tag. The byte layouts come from [`conclave_protocol`], the
//!   same crate the data plane verifies signatures with.
//! - [`keystore`] keeps a device's secret keys and its unwrapped conversation keys in a local JSON
//!   file readable by its owner only.

pub mod crypto;
pub mod keystore;
