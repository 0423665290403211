use clap::{Parser, Subcommand};
use conclave_dataplane::config::{Config, MigrateArgs};

/// The Conclave data plane.
#[derive(Parser)]
#[command(name = "conclave-dataplane", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the HTTP and WebSocket API.
    Serve(Box<Config>),
    /// Apply pending database migrations as the schema owner, then exit.
    Migrate(MigrateArgs),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Migrate(args) => {
            conclave_dataplane::telemetry::init(args.log_format);
            conclave_dataplane::migrate(&args).await
        }
        Command::Serve(config) => {
            conclave_dataplane::telemetry::init(config.log_format);
            let state = conclave_dataplane::AppState::connect(&config).await?;
            let listener = tokio::net::TcpListener::bind(config.listen).await?;
            conclave_dataplane::serve(listener, state, conclave_dataplane::shutdown_signal()).await
        }
    }
}
