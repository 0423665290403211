//! `conclave-bench`: Conclave measured against the limits of the machine it runs on.
//!
//! Each measuring mode starts from nothing: a database of its own (created and migrated as the
//! owner role), a Redis namespace of its own, and release data plane processes started with
//! `serve`; it provisions users directly in the database, logs each in once through the API with
//! the SDK, drives WebSocket clients from several loopback source addresses, and appends what it
//! measured (with the exact command line) to a results file. `report` turns a results file into
//! `docs/benchmarks.md`; `compare` sets two results files side by side.
//!
//! * [`cli`]: the arguments; [`modes`]: each mode's setup and headline; [`run`]: the database,
//!   work directory and results file every run shares; [`stack`]: the data plane processes.
//! * The measurements: [`messages`], [`connections`], [`baseline`], [`operator`], [`mls`],
//!   [`notify`] (Web Push), [`webhooks`], [`retention`], [`calls`] (signalling), with
//!   [`provision`] (users, logins, conversations), [`socket`], [`tally`] (sends and deliveries
//!   matched and timed) and [`system`] (CPU, RSS).
//! * [`peer`]: a Matrix homeserver, [`synapse`], in the shape of one busy conversation, on the
//!   same machine and PostgreSQL.
//! * [`results`] (the results file) and [`report`] (`docs/benchmarks.md`, comparisons).

mod baseline;
mod calls;
mod cli;
mod connections;
mod messages;
mod mls;
mod modes;
mod notify;
mod operator;
mod peer;
mod provision;
mod report;
mod results;
mod retention;
mod run;
mod socket;
mod stack;
mod synapse;
mod system;
mod tally;
mod webhooks;

use clap::Parser;
use cli::{Cli, Command};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Messages(args) => modes::messages(args).await,
        Command::Connections(args) => modes::connections(args).await,
        Command::Baseline(args) => modes::baseline_only(args).await,
        Command::Operator(args) => modes::operator_mode(args).await,
        Command::Mls(args) => modes::mls_mode(args).await,
        Command::Notifications(args) => modes::notifications_mode(args).await,
        Command::Webhooks(args) => modes::webhooks_mode(args).await,
        Command::Retention(args) => modes::retention_mode(args).await,
        Command::Calls(args) => modes::calls_mode(args).await,
        Command::PeerMatrix(args) => modes::peer_matrix(args).await,
        Command::Report { results, output } => modes::write_report(&results, &output),
        Command::Compare { a, b } => modes::compare(&a, &b),
    }
}
