//! What a call needs besides the data plane (docs/calls.md, "The client"):
//!
//! - [`signal`]: the content sealed in a signal's MLS application message, and the checks that
//!   keep a server from redirecting, misattributing or forging signals.

pub mod signal;
