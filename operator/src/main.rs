//! `conclave-operator`: parses the command line and hands off to the library.
//!
//! * `run`: the controllers behind the leader Lease, with the health and metrics endpoints
//!   ([`conclave_operator::run`]);
//! * `crdgen [--check]`: writes the CRD manifests, or checks that `crds/` is up to date
//!   ([`conclave_operator::crdgen`]).

use clap::{Parser, Subcommand};
use std::path::PathBuf;

/// The Conclave Kubernetes operator.
#[derive(Parser)]
#[command(name = "conclave-operator", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the controllers (with leader election), the health and the metrics endpoints.
    Run(Box<conclave_operator::Config>),
    /// Write the CRD manifests generated from the Rust types.
    Crdgen {
        /// The directory to write into.
        #[arg(long, default_value = "crds")]
        out: PathBuf,
        /// Only check that the directory is up to date; exit 1 when it is not.
        #[arg(long)]
        check: bool,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Run(config) => {
            conclave_operator::telemetry::init(&config.log_format);
            conclave_operator::run(*config).await
        }
        Command::Crdgen { out, check } => conclave_operator::crdgen::command(&out, check),
    }
}
