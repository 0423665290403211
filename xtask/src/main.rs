//! `cargo xtask <chore>`: generated files that must match the code and the schema.

use anyhow::Context;
use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser)]
#[command(name = "xtask")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Apply pending migrations (what `scripts/stack.sh up` runs: it builds without any query
    /// macro, so it works while the data plane's offline query data is being regenerated).
    Migrate {
        #[arg(long, env = "CONCLAVE_OWNER_DATABASE_URL", hide_env_values = true)]
        database_url: String,
    },
    /// Regenerate docs/schema/ (Mermaid diagrams) from a live, migrated database.
    SchemaDocs {
        /// The database to read (the schema owner's URL); it is migrated first.
        #[arg(long, env = "CONCLAVE_OWNER_DATABASE_URL", hide_env_values = true)]
        database_url: String,
        #[arg(long, default_value = "docs/schema")]
        out: PathBuf,
    },
    /// Regenerate docs/openapi.json from the data plane's code (its `openapi` example prints it:
    /// xtask itself stays free of the data plane, so `migrate` builds without its query data).
    Openapi {
        #[arg(long, default_value = "docs/openapi.json")]
        out: PathBuf,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Migrate { database_url } => {
            let pool = sqlx::PgPool::connect(&database_url).await.context("connecting to PostgreSQL")?;
            conclave_schema::migrate(&pool).await.context("applying migrations")?;
            println!("schema is at version {}", conclave_schema::latest_version());
            Ok(())
        }
        Command::SchemaDocs { database_url, out } => {
            let pool = sqlx::PgPool::connect(&database_url).await.context("connecting to PostgreSQL")?;
            conclave_schema::migrate(&pool).await.context("migrating before reading the schema")?;
            let files = xtask::schema_docs::render(&pool).await?;
            std::fs::create_dir_all(&out)?;
            for (name, content) in files {
                let path = out.join(name);
                std::fs::write(&path, content).with_context(|| format!("writing {}", path.display()))?;
                println!("wrote {}", path.display());
            }
            Ok(())
        }
        Command::Openapi { out } => {
            let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
            let output = std::process::Command::new(cargo)
                .args(["run", "--quiet", "--package", "conclave-dataplane", "--example", "openapi"])
                .stderr(std::process::Stdio::inherit())
                .output()
                .context("running the data plane's openapi example")?;
            anyhow::ensure!(output.status.success(), "the openapi example failed ({})", output.status);
            std::fs::write(&out, &output.stdout).with_context(|| format!("writing {}", out.display()))?;
            println!("wrote {}", out.display());
            Ok(())
        }
    }
}
