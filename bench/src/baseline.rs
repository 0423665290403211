//! `baseline`: what this machine can do for the same work, with the standard tools. `pgbench`
//! commits one message-shaped row per transaction into a copy of the `messages` table (same
//! columns, constraints and indexes), with the `synchronous_commit` the data plane's role has;
//! `redis-benchmark` runs PUBLISH with a payload the size of a published message event.

use crate::results::Baseline;
use crate::stack::BenchDb;
use anyhow::{Context, Result, bail};
use std::path::Path;
use tokio::process::Command;
use uuid::Uuid;

pub struct Settings {
    pub pg_clients: usize,
    pub pg_secs: u64,
    pub ciphertext_bytes: usize,
    pub redis_clients: usize,
    pub redis_requests: usize,
}

/// The pgbench script: one INSERT, one transaction, like a send's message row.
pub fn pg_script(ciphertext_bytes: usize) -> String {
    let hex = |n: usize, b: u8| format!("\\x{}", format!("{b:02x}").repeat(n));
    format!(
        "INSERT INTO bench_baseline (organization_id, conversation_id, seq, sender_user_id, sender_device_id, client_message_id, key_generation, ciphertext) \
         VALUES ('{}', '{}', nextval('bench_baseline_seq'), '{}', '{}', gen_random_uuid(), 1, '{}');\n",
        Uuid::now_v7(),
        Uuid::now_v7(),
        Uuid::now_v7(),
        Uuid::now_v7(),
        hex(ciphertext_bytes, 0x5c),
    )
}

/// `tps = 1234.5 (without initial connection time)` from pgbench's report.
pub fn parse_pgbench_tps(output: &str) -> Option<f64> {
    output.lines().filter(|l| l.starts_with("tps = ")).find_map(|l| l.split_whitespace().nth(2)?.parse().ok())
}

/// The requests per second of redis-benchmark's quiet output (`NAME: 123.45 requests per second, ...`).
pub fn parse_redis_rps(output: &str) -> Option<f64> {
    output
        .split(['\r', '\n'])
        .filter_map(|l| l.split_once("requests per second").map(|(before, _)| before))
        .filter_map(|before| before.split_whitespace().next_back()?.parse().ok())
        .next_back()
}

pub async fn run(
    db: &BenchDb,
    redis: (String, u16),
    namespace: &str,
    synchronous_commit: &str,
    fsync: &str,
    settings: &Settings,
    work_dir: &Path,
) -> Result<Baseline> {
    sqlx::raw_sql(
        "DROP TABLE IF EXISTS bench_baseline; DROP SEQUENCE IF EXISTS bench_baseline_seq;
         CREATE TABLE bench_baseline (LIKE messages INCLUDING ALL);
         CREATE SEQUENCE bench_baseline_seq;",
    )
    .execute(&db.owner)
    .await
    .context("creating the baseline table")?;
    let script = pg_script(settings.ciphertext_bytes);
    let script_path = work_dir.join("baseline.sql");
    std::fs::write(&script_path, &script)?;
    eprintln!(
        "[bench] pgbench: {} clients, {} s, synchronous_commit={synchronous_commit}",
        settings.pg_clients, settings.pg_secs
    );
    let jobs = settings.pg_clients.min(crate::system::cores()).max(1);
    let output = Command::new("pgbench")
        .args(["-n", "-c", &settings.pg_clients.to_string(), "-j", &jobs.to_string()])
        .args(["-T", &settings.pg_secs.to_string(), "-f", &script_path.to_string_lossy()])
        .arg(&db.owner_url)
        .env("PGOPTIONS", format!("-c synchronous_commit={synchronous_commit}"))
        .output()
        .await
        .context("running pgbench (apt-get install postgresql-contrib)")?;
    let text = String::from_utf8_lossy(&output.stdout);
    let Some(pg) = parse_pgbench_tps(&text) else {
        bail!("pgbench failed: {}{}", text, String::from_utf8_lossy(&output.stderr));
    };
    sqlx::raw_sql("DROP TABLE bench_baseline; DROP SEQUENCE bench_baseline_seq").execute(&db.owner).await?;

    // A published message event: the frame with its base64url ciphertext, and a few ids.
    let payload_bytes = 420 + settings.ciphertext_bytes.div_ceil(3) * 4;
    eprintln!("[bench] redis-benchmark: PUBLISH of {payload_bytes} bytes, {} clients", settings.redis_clients);
    let output = Command::new("redis-benchmark")
        .args(["-h", &redis.0, "-p", &redis.1.to_string(), "-q"])
        .args(["-c", &settings.redis_clients.to_string(), "-n", &settings.redis_requests.to_string()])
        .args(["PUBLISH", &format!("{namespace}:baseline"), &"x".repeat(payload_bytes)])
        .output()
        .await
        .context("running redis-benchmark (apt-get install redis-tools)")?;
    let text = String::from_utf8_lossy(&output.stdout);
    let Some(redis_rps) = parse_redis_rps(&text) else {
        bail!("redis-benchmark failed: {}{}", text, String::from_utf8_lossy(&output.stderr));
    };
    Ok(Baseline {
        pg_commits_per_sec: pg,
        pg_clients: settings.pg_clients,
        pg_secs: settings.pg_secs,
        synchronous_commit: synchronous_commit.to_owned(),
        fsync: fsync.to_owned(),
        pg_script: pg_script(16).replace(&"5c".repeat(16), "…ciphertext…"),
        redis_publish_per_sec: redis_rps,
        redis_clients: settings.redis_clients,
        redis_payload_bytes: payload_bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pgbench_tps_is_read_from_its_report() {
        let output = "number of transactions actually processed: 1000\nlatency average = 9.8 ms\ntps = 2041.392800 (without initial connection time)\n";
        assert_eq!(parse_pgbench_tps(output), Some(2041.3928));
        assert_eq!(parse_pgbench_tps("error"), None);
    }

    #[test]
    fn redis_rps_is_read_from_the_quiet_output() {
        let output = "PUBLISH ns:baseline xxxx: rps=0.0 (overall: nan) avg_msec=nan\rPUBLISH ns:baseline xxxx: 87719.30 requests per second, p50=0.279 msec\n";
        assert_eq!(parse_redis_rps(output), Some(87719.30));
    }

    #[test]
    fn the_script_inserts_one_message_shaped_row() {
        let script = pg_script(100);
        assert_eq!(script.matches("INSERT").count(), 1);
        assert!(script.contains(&format!("'\\x{}'", "5c".repeat(100))));
    }
}
