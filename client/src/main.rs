//! The `conclave` command line (see `conclave_client::cli`).

use std::process::ExitCode;

use clap::Parser as _;
use conclave_client::cli::{Cli, Terminal, run};

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut out = std::io::stdout().lock();
    let mut prompt = Terminal;
    tokio::select! {
        result = run(cli, &mut out, &mut prompt) => match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("error: {}", describe(&err));
                ExitCode::FAILURE
            }
        },
        _ = tokio::signal::ctrl_c() => ExitCode::from(130),
    }
}

/// The error and its causes on one line; for a refused request, the server's message and code
/// and, for a validation failure, the field.
fn describe(err: &anyhow::Error) -> String {
    let mut text = format!("{err:#}");
    if let Some(api) = err.downcast_ref::<conclave_client::Error>().and_then(|e| e.api())
        && let Some(field) = api.details.get("field").and_then(|f| f.as_str())
        && !text.contains(field)
    {
        text.push_str(&format!(" [field: {field}]"));
    }
    text
}
