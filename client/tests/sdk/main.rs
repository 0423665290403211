//! The SDK and the CLI against a real data plane started in-process.

mod account;
mod cli;
mod identity;
mod messaging;
mod mls;
mod rich;
mod signin;
mod support;
