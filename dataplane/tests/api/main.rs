//! The data plane's HTTP API, served for real on a loopback port against a real PostgreSQL
//! (a database of its own per test) and the stack's Redis.
//!
//! One file per feature folder of `dataplane/src` (`auth/totp.rs` beside `auth` as in the source,
//! `metrics` the `/metrics` endpoint, `openapi` the document), plus `inputs` (malformed input
//! swept across every feature), `connections` (slow and greedy clients), `contract` (every
//! answer checked against the OpenAPI document), `sweep` (another organization's ids through every
//! operation of the document), `webpush` (the outbox's Web Push against a test push service),
//! `fuzz` (schemathesis over the document; ignored in a plain run,
//! run by scripts/test.sh) and `support`.

mod attachments;
mod audit;
mod auth;
mod bots;
mod calls;
mod commits;
mod connections;
mod contacts;
mod contract;
mod conversations;
mod devices;
mod digests;
mod fuzz;
mod health;
mod identity;
mod inputs;
mod keypackages;
mod messages;
mod metrics;
mod notifications;
mod openapi;
mod outbox;
mod pins;
mod presence;
mod privacy;
mod profiles;
mod reactions;
mod realtime;
mod retention;
mod support;
mod sweep;
mod tenancy;
mod webpush;
