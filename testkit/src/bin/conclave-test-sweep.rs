//! `conclave-test-sweep`: drops the databases whose creating process is gone (a test run, demo or
//! benchmark that was killed before it could clean up), and nothing else. `scripts/test.sh` runs
//! it before the tests; it is safe beside a running demo, test run or benchmark.
//!
//! Connects as `CONCLAVE_TEST_OWNER_URL` (what `scripts/stack.sh env` prints).

use anyhow::{Context, Result};
use sqlx::ConnectOptions;
use sqlx::postgres::PgConnectOptions;
use std::str::FromStr;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let url = std::env::var("CONCLAVE_TEST_OWNER_URL")
        .context("CONCLAVE_TEST_OWNER_URL is not set: `eval \"$(scripts/stack.sh env)\"` first")?;
    let owner = PgConnectOptions::from_str(&url)?.disable_statement_logging();
    let sweep = conclave_testkit::owner::sweep_abandoned(&owner).await?;
    for name in &sweep.dropped {
        println!("dropped {name}: the process that made it is gone");
    }
    for (name, why) in &sweep.kept {
        println!("kept {name}: {why}");
    }
    Ok(())
}
