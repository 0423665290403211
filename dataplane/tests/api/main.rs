//! The data plane's HTTP API, served for real on a loopback port against a real PostgreSQL
//! (a database of its own per test) and the stack's Redis.

mod auth;
mod bots;
mod contacts;
mod contract;
mod devices;
mod health;
mod inputs;
mod messaging;
mod observability;
mod openapi;
mod outbox;
mod realtime;
mod rich;
mod support;
mod tenancy;
mod totp;
