//! The SDK and the CLI against a real data plane started in-process.

mod account;
mod cli;
mod messaging;
mod mls;
mod notifications;
mod rich;
mod signin;
mod support;
