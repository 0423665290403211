//! The SDK and the CLI against a real data plane started in-process.

mod account;
mod attacks;
mod bots;
mod calls;
mod cli;
mod compliance;
mod groups;
mod identity;
mod messaging;
mod mls;
mod notifications;
mod partition;
mod proxy;
mod rich;
mod signin;
mod support;
