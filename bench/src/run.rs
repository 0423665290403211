//! What every measuring run shares: its database, work directory and Redis namespace (set up
//! and cleaned up around the mode), and the results file it appends to.

use crate::cli::{BaselineSettings, Common};
use crate::results::{self, Figures, ResultsFile, Run};
use crate::stack::{self, BenchDb, StackEnv};
use crate::{baseline, system};
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};

/// The command line as typed (arguments with spaces quoted).
pub fn command_line() -> String {
    std::env::args()
        .map(|a| if a.contains(' ') || a.is_empty() { format!("'{a}'") } else { a })
        .collect::<Vec<_>>()
        .join(" ")
}

pub fn read_results(path: &Path) -> Result<ResultsFile> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not a results file", path.display()))
}

pub fn append_run(path: &Path, machine: results::Machine, figures: Figures) -> Result<()> {
    let mut file = if path.exists() { read_results(path)? } else { ResultsFile { machine, runs: Vec::new() } };
    file.runs.push(Run { command: command_line(), date: chrono::Utc::now().to_rfc3339(), figures });
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, serde_json::to_string_pretty(&file)?)?;
    eprintln!("[bench] appended to {}", path.display());
    Ok(())
}

/// Lets this process (and the data planes it starts, which inherit it) hold many sockets.
pub fn raise_file_limit(want: u64) {
    let _ = rlimit::setrlimit(rlimit::Resource::NOFILE, want, want);
    let _ = rlimit::increase_nofile_limit(want);
}

/// A run's surroundings: its id, work directory, database and the stack settings.
pub struct Bench {
    pub env: StackEnv,
    pub db: BenchDb,
    pub run_id: String,
    pub work_dir: PathBuf,
    pub keep_database: bool,
    pub postgres: (String, String, String),
}

impl Bench {
    pub async fn new(common: &Common) -> Result<Self> {
        let env = StackEnv::from_env()?;
        let run_id = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
        let work_dir = std::env::temp_dir().join(format!("conclave-bench-{run_id}"));
        std::fs::create_dir_all(&work_dir)?;
        let db = BenchDb::create(&env, &run_id).await?;
        let postgres = stack::postgres_settings(&db.app_url).await?;
        eprintln!("[bench] database {} migrated; work directory {}", db.name, work_dir.display());
        Ok(Self { env, db, run_id, work_dir, keep_database: common.keep_database, postgres })
    }

    pub fn namespace(&self) -> String {
        format!("bench-{}", self.run_id)
    }

    pub fn machine(&self) -> results::Machine {
        system::machine(self.postgres.0.clone())
    }

    pub async fn finish(self) {
        match forget_namespace(&self.env, &self.namespace()).await {
            Ok(0) => {}
            Ok(n) => eprintln!("[bench] removed the {n} Redis keys of namespace {}", self.namespace()),
            Err(e) => eprintln!("[bench] could not remove the Redis keys of namespace {}: {e:#}", self.namespace()),
        }
        if self.keep_database {
            let name = self.db.name.clone();
            match self.db.keep().await {
                Ok(()) => eprintln!("[bench] kept database {name}"),
                Err(e) => eprintln!("[bench] kept database {name}, but a sweep may drop it once this run ends: {e:#}"),
            }
        } else if let Err(e) = self.db.drop_database().await {
            eprintln!("[bench] could not drop the benchmark database: {e:#}");
        }
    }

    pub async fn baseline(
        &self,
        settings: &BaselineSettings,
        pg_clients: usize,
        message_bytes: usize,
    ) -> Result<results::Baseline> {
        baseline::run(
            &self.db,
            self.env.redis_host_port(),
            &self.namespace(),
            &self.postgres.1,
            &self.postgres.2,
            &baseline::Settings {
                pg_clients: settings.pg_clients.unwrap_or(pg_clients),
                pg_secs: settings.pg_seconds,
                ciphertext_bytes: message_bytes + crate::messages::MLS_FRAMING + crate::messages::MLS_OVERHEAD,
                redis_clients: settings.redis_clients,
                redis_requests: settings.redis_requests,
            },
            &self.work_dir,
        )
        .await
    }
}

/// Removes every Redis key of `namespace` (what the data planes of a run left: presence, rate
/// limits, one-use proofs, call state), and nothing else; answers how many there were. One
/// script on the server, so the keys are found and removed in one round trip.
async fn forget_namespace(env: &StackEnv, namespace: &str) -> Result<i64> {
    anyhow::ensure!(
        !namespace.is_empty() && namespace.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'),
        "not a namespace this tool made: {namespace:?}"
    );
    const SCRIPT: &str = "local cursor, n = '0', 0 \
        repeat \
          local page = redis.call('SCAN', cursor, 'MATCH', ARGV[1], 'COUNT', 1000) \
          cursor = page[1] \
          for _, key in ipairs(page[2]) do redis.call('UNLINK', key) n = n + 1 end \
        until cursor == '0' \
        return n";
    let (host, port) = env.redis_host_port();
    let output = tokio::process::Command::new("redis-cli")
        .args(["-h", &host, "-p", &port.to_string(), "--no-raw", "EVAL", SCRIPT, "0", &format!("{namespace}:*")])
        .output()
        .await
        .context("running redis-cli (apt-get install redis-tools)")?;
    let text = String::from_utf8_lossy(&output.stdout);
    let count = text.trim().trim_start_matches("(integer)").trim().parse::<i64>();
    match count {
        Ok(n) if output.status.success() => Ok(n),
        _ => anyhow::bail!("redis-cli answered {}{}", text.trim(), String::from_utf8_lossy(&output.stderr).trim()),
    }
}

/// Runs `body` with a fresh [`Bench`], and cleans up whatever happened.
pub async fn with_bench<T>(common: &Common, body: impl AsyncFnOnce(&Bench) -> Result<T>) -> Result<T> {
    let bench = Bench::new(common).await?;
    let result = body(&bench).await;
    bench.finish().await;
    result
}
