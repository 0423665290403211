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
    Run(conclave_operator::config::Config),
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
            conclave_operator::run(config).await
        }
        Command::Crdgen { out, check: false } => {
            for file in conclave_operator::crdgen::write(&out)? {
                println!("wrote {}", out.join(file).display());
            }
            Ok(())
        }
        Command::Crdgen { out, check: true } => {
            let problems = conclave_operator::crdgen::check(&out)?;
            for problem in &problems {
                eprintln!("{problem}");
            }
            if problems.is_empty() {
                Ok(())
            } else {
                anyhow::bail!("{} is stale: run `cargo run -p conclave-operator -- crdgen`", out.display())
            }
        }
    }
}
