//! `conclave-bench`: Conclave measured against the limits of the machine it runs on.
//!
//! Each measuring mode starts from nothing: a database of its own (created and migrated as the
//! owner role), a Redis namespace of its own, and release data plane processes started with
//! `serve`; it provisions users directly in the database, logs each in once through the API with
//! the SDK, drives WebSocket clients from several loopback source addresses, and appends what it
//! measured (with the exact command line) to a results file. `report` turns a results file into
//! `docs/benchmarks.md`; `compare` sets two results files side by side.

mod baseline;
mod connections;
mod messages;
mod operator;
mod provision;
mod report;
mod results;
mod socket;
mod stack;
mod system;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use results::{Figures, ResultsFile, Run};
use stack::{BenchDb, DataplaneSettings, StackEnv};
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Parser)]
#[command(name = "conclave-bench", about = "Benchmarks Conclave against the limits of this machine")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Message throughput, fan-out and send→deliver latency (runs `baseline` first).
    Messages(MessagesArgs),
    /// Idle authenticated sockets with heartbeats on one replica: RSS per socket.
    Connections(ConnectionsArgs),
    /// The machine's raw PostgreSQL single-row commit rate and Redis PUBLISH rate.
    Baseline(BaselineArgs),
    /// 1,000 Organizations and 5,000 Workspaces against a real kube-apiserver, timed to Ready.
    Operator(OperatorArgs),
    /// Writes the generated part of docs/benchmarks.md from a results file.
    Report {
        /// The results file.
        results: PathBuf,
        #[arg(long, default_value = "docs/benchmarks.md")]
        output: PathBuf,
    },
    /// Prints the headline figures of two results files side by side.
    Compare { a: PathBuf, b: PathBuf },
}

#[derive(Args, Clone)]
struct Common {
    /// The results file this run is appended to.
    #[arg(long, default_value = "target/bench/results.json")]
    out: PathBuf,
    /// A data plane binary to use instead of building `target/release/conclave-dataplane`.
    #[arg(long)]
    dataplane_bin: Option<PathBuf>,
    /// Database connections per data plane replica (the product's default is 20).
    #[arg(long, default_value_t = 20)]
    db_connections: u32,
    /// The outbox worker's poll interval (the product's default; 0 disables it). Left on: a
    /// replica runs it in production.
    #[arg(long, default_value_t = 1000)]
    outbox_poll_ms: u64,
    /// Loopback source addresses to spread client sockets over (127.0.0.1 .. 127.0.0.N).
    #[arg(long, default_value_t = 4)]
    source_addresses: usize,
    /// Logins in flight while provisioning.
    #[arg(long, default_value_t = 32)]
    login_parallelism: usize,
    /// Keep the database after the run (it is dropped by default).
    #[arg(long)]
    keep_database: bool,
}

#[derive(Args, Clone)]
struct MessagesArgs {
    #[command(flatten)]
    common: Common,
    /// Clients: each a user with one device, one session and one WebSocket.
    #[arg(long, default_value_t = 100)]
    clients: usize,
    /// Members per conversation: 2 (direct), 10 (groups), 1000 (channels).
    #[arg(long, default_value_t = 10)]
    conversation_size: usize,
    /// Messages per second in all (open loop); without it, `--max`.
    #[arg(long, conflicts_with = "max")]
    rate: Option<f64>,
    /// As fast as possible: `--concurrency` closed-loop senders.
    #[arg(long)]
    max: bool,
    /// Closed-loop senders with `--max`; the most sends in flight with `--rate`.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// The measured window (after the warm-up), e.g. `30s`.
    #[arg(long, default_value = "20s", value_parser = parse_duration)]
    duration: Duration,
    #[arg(long, default_value = "3s", value_parser = parse_duration)]
    warmup: Duration,
    /// Data plane replicas (clients spread over them; deliveries cross through Redis).
    #[arg(long, default_value_t = 1)]
    replicas: usize,
    /// Plaintext size of a message in bytes.
    #[arg(long, default_value_t = 100)]
    message_bytes: usize,
    /// Open (verify, decrypt, decode) one delivery in N per socket with the SDK.
    #[arg(long, default_value_t = 50)]
    verify_every: u64,
    /// Skip the baseline (pgbench, redis-benchmark) measured before the run.
    #[arg(long)]
    no_baseline: bool,
    #[command(flatten)]
    baseline: BaselineSettings,
}

#[derive(Args, Clone)]
struct ConnectionsArgs {
    #[command(flatten)]
    common: Common,
    /// Idle sockets to open on one replica.
    #[arg(long, default_value_t = 1000)]
    sockets: usize,
    /// Distinct users (sockets share their sessions round-robin); default: one per socket.
    #[arg(long)]
    users: Option<usize>,
    /// How long the sockets are held idle once open.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    hold: Duration,
}

#[derive(Args, Clone)]
struct BaselineSettings {
    /// pgbench clients (default: the data plane's database connections).
    #[arg(long)]
    pg_clients: Option<usize>,
    #[arg(long, default_value_t = 10)]
    pg_seconds: u64,
    #[arg(long, default_value_t = 50)]
    redis_clients: usize,
    #[arg(long, default_value_t = 200_000)]
    redis_requests: usize,
}

#[derive(Args, Clone)]
struct BaselineArgs {
    #[command(flatten)]
    common: Common,
    #[command(flatten)]
    settings: BaselineSettings,
    /// Plaintext size of the message the row stands for.
    #[arg(long, default_value_t = 100)]
    message_bytes: usize,
}

#[derive(Args, Clone)]
struct OperatorArgs {
    /// The results file this run is appended to.
    #[arg(long, default_value = "target/bench/results.json")]
    out: PathBuf,
    #[arg(long, default_value_t = 1000)]
    organizations: usize,
    /// Workspaces, spread evenly over the Organizations.
    #[arg(long, default_value_t = 5000)]
    workspaces: usize,
    /// Create requests in flight.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// How long to wait for everything to be Ready.
    #[arg(long, default_value = "300s", value_parser = parse_duration)]
    timeout: Duration,
    /// How long the operator is held at rest afterwards, to measure its idle CPU and RSS.
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    idle: Duration,
    /// Keep the database after the run (it is dropped by default).
    #[arg(long)]
    keep_database: bool,
    /// Create every object first and only then start the operator, timing its convergence
    /// alone (from its start) rather than together with the creates.
    #[arg(long)]
    start_after_create: bool,
    /// A chart value for the operator's install, as `helm --set` takes it (repeatable), e.g.
    /// `operator.reconcileConcurrency=64`.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    chart_values: Vec<String>,
}

/// `20s`, `500ms`, `2m`, or plain seconds.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = text.find(|c: char| !c.is_ascii_digit() && c != '.').map_or((text, ""), |i| text.split_at(i));
    let value: f64 = number.parse().map_err(|_| format!("not a duration: {text}"))?;
    let secs = match unit {
        "" | "s" => value,
        "ms" => value / 1000.0,
        "m" => value * 60.0,
        _ => return Err(format!("unknown unit in {text} (use ms, s or m)")),
    };
    Ok(Duration::from_secs_f64(secs))
}

/// The command line as typed (arguments with spaces quoted).
fn command_line() -> String {
    std::env::args()
        .map(|a| if a.contains(' ') || a.is_empty() { format!("'{a}'") } else { a })
        .collect::<Vec<_>>()
        .join(" ")
}

fn read_results(path: &Path) -> Result<ResultsFile> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not a results file", path.display()))
}

fn append_run(path: &Path, machine: results::Machine, figures: Figures) -> Result<()> {
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
fn raise_file_limit(want: u64) {
    let _ = rlimit::setrlimit(rlimit::Resource::NOFILE, want, want);
    let _ = rlimit::increase_nofile_limit(want);
}

/// A run's surroundings: its id, work directory, database and the stack settings.
struct Bench {
    env: StackEnv,
    db: BenchDb,
    run_id: String,
    work_dir: PathBuf,
    keep_database: bool,
    postgres: (String, String, String),
}

impl Bench {
    async fn new(common: &Common) -> Result<Self> {
        let env = StackEnv::from_env()?;
        let run_id = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
        let work_dir = std::env::temp_dir().join(format!("conclave-bench-{run_id}"));
        std::fs::create_dir_all(&work_dir)?;
        let db = BenchDb::create(&env, &run_id).await?;
        let postgres = stack::postgres_settings(&db.app_url).await?;
        eprintln!("[bench] database {} migrated; work directory {}", db.name, work_dir.display());
        Ok(Self { env, db, run_id, work_dir, keep_database: common.keep_database, postgres })
    }

    fn namespace(&self) -> String {
        format!("bench-{}", self.run_id)
    }

    fn machine(&self) -> results::Machine {
        system::machine(self.postgres.0.clone())
    }

    async fn finish(self) {
        if self.keep_database {
            eprintln!("[bench] kept database {}", self.db.name);
        } else if let Err(e) = self.db.drop_database().await {
            eprintln!("[bench] could not drop the benchmark database: {e:#}");
        }
    }

    async fn baseline(
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
                ciphertext_bytes: message_bytes + 16,
                redis_clients: settings.redis_clients,
                redis_requests: settings.redis_requests,
            },
            &self.work_dir,
        )
        .await
    }
}

/// Runs `body` with a fresh [`Bench`], and cleans up whatever happened.
async fn with_bench<T>(common: &Common, body: impl AsyncFnOnce(&Bench) -> Result<T>) -> Result<T> {
    let bench = Bench::new(common).await?;
    let result = body(&bench).await;
    bench.finish().await;
    result
}

async fn messages(args: MessagesArgs) -> Result<()> {
    if args.rate.is_none() && !args.max {
        bail!("give --rate N (messages/s in all) or --max");
    }
    if args.clients < 2 || args.conversation_size < 2 {
        bail!("--clients and --conversation-size must be at least 2");
    }
    if args.conversation_size > args.clients {
        bail!("--conversation-size {} needs at least as many --clients", args.conversation_size);
    }
    raise_file_limit(262_144);
    let binary = stack::dataplane_binary(args.common.dataplane_bin.clone()).await?;
    let common = args.common.clone();
    with_bench(&common, async |bench| {
        let baseline = if args.no_baseline {
            None
        } else {
            Some(
                bench
                    .baseline(&args.baseline, args.common.db_connections as usize * args.replicas, args.message_bytes)
                    .await?,
            )
        };
        if let Some(b) = &baseline {
            eprintln!(
                "[bench] baseline: PostgreSQL {:.0} single-row commits/s, Redis {:.0} PUBLISH/s",
                b.pg_commits_per_sec, b.redis_publish_per_sec
            );
        }
        let settings = DataplaneSettings {
            binary: binary.clone(),
            db_connections: args.common.db_connections,
            outbox_poll_ms: args.common.outbox_poll_ms,
        };
        let planes = stack::start_dataplanes(
            &settings,
            &bench.env,
            &bench.db,
            &bench.work_dir,
            &bench.namespace(),
            args.replicas,
        )
        .await?;
        let result = async {
            let tenant = provision::tenant(&bench.db.owner, args.clients).await?;
            let bases: Vec<String> = planes.iter().map(|p| p.base.clone()).collect();
            let members = provision::login_all(&tenant.users, &bases, args.common.login_parallelism).await?;
            let conversations =
                provision::conversations(&bench.db.owner, &tenant, &members, args.conversation_size).await?;
            eprintln!(
                "[bench] {} users signed in, {} conversations of {}",
                members.len(),
                conversations.len(),
                args.conversation_size
            );
            let watch = system::Watch::new(planes.iter().map(|p| p.pid()).collect());
            let ports: Vec<u16> = planes.iter().map(|p| p.port).collect();
            messages::run(
                messages::Setup {
                    organization_id: tenant.organization_id,
                    members,
                    conversations,
                    ports,
                    source_addresses: args.common.source_addresses,
                    watch: &watch,
                    replicas: args.replicas,
                    clients: args.clients,
                    conversation_size: args.conversation_size,
                },
                messages::Load {
                    rate: args.rate,
                    concurrency: args.concurrency,
                    warmup: args.warmup,
                    duration: args.duration,
                    drain: Duration::from_secs(5),
                    plaintext_bytes: args.message_bytes,
                    verify_every: args.verify_every,
                },
            )
            .await
        }
        .await;
        stack::stop_dataplanes(planes).await;
        let mut figures = result?;
        figures.baseline = baseline;
        print_messages(&figures);
        append_run(&args.common.out, bench.machine(), Figures::Messages(Box::new(figures)))
    })
    .await
}

fn print_messages(f: &results::MessageFigures) {
    println!(
        "messages: {:.0} messages/s, {:.0} deliveries/s over {:.1} s; send→deliver p50 {:.2} ms p99 {:.2} ms p99.9 {:.2} ms; send p99 {:.2} ms",
        f.messages_per_sec,
        f.deliveries_per_sec,
        f.duration_secs,
        f.latency.p50_ms,
        f.latency.p99_ms,
        f.latency.p999_ms,
        f.send_latency.p99_ms
    );
    println!(
        "errors {} {:?}; missing deliveries {}; verified {}; {:.1} sends per database call; data plane CPU {:.0} % RSS {:.0} MiB; postgres CPU {:.0} %; redis CPU {:.0} %; tool CPU {:.0} %; machine CPU {:.0} %",
        f.errors,
        f.error_kinds,
        f.missing_deliveries,
        f.verified_deliveries,
        f.messages_per_batch.unwrap_or(0.0),
        f.resources.dataplane_cpu_percent,
        f.resources.dataplane_rss_mib,
        f.resources.postgres_cpu_percent,
        f.resources.redis_cpu_percent,
        f.resources.tool_cpu_percent,
        f.resources.machine_cpu_percent
    );
    if let (Some(ingest), Some(publish)) = (f.ingest_ratio(), f.publish_ratio()) {
        println!(
            "= {:.0} % of the raw PostgreSQL commit rate, {:.1} % of the raw Redis PUBLISH rate",
            ingest * 100.0,
            publish * 100.0
        );
    }
}

async fn connections(args: ConnectionsArgs) -> Result<()> {
    raise_file_limit(262_144);
    let binary = stack::dataplane_binary(args.common.dataplane_bin.clone()).await?;
    let common = args.common.clone();
    with_bench(&common, async |bench| {
        let settings = DataplaneSettings {
            binary: binary.clone(),
            db_connections: args.common.db_connections,
            outbox_poll_ms: args.common.outbox_poll_ms,
        };
        let planes = stack::start_dataplanes(&settings, &bench.env, &bench.db, &bench.work_dir, &bench.namespace(), 1).await?;
        let result = async {
            let users = args.users.unwrap_or(args.sockets).clamp(2, args.sockets.max(2));
            let tenant = provision::tenant(&bench.db.owner, users).await?;
            let bases = vec![planes[0].base.clone()];
            let members = provision::login_all(&tenant.users, &bases, args.common.login_parallelism).await?;
            // Each user in a direct conversation, so every socket has a subscription.
            provision::conversations(&bench.db.owner, &tenant, &members, 2).await?;
            let watch = system::Watch::new(vec![planes[0].pid()]);
            connections::run(connections::Setup {
                members,
                port: planes[0].port,
                sockets: args.sockets,
                source_addresses: args.common.source_addresses,
                hold: args.hold,
                watch: &watch,
            })
            .await
        }
        .await;
        stack::stop_dataplanes(planes).await;
        let figures = result?;
        println!(
            "connections: {} of {} sockets open after {:.0} s idle; data plane RSS {:.1} → {:.1} MiB = {:.1} KiB per socket; idle CPU {:.1} %; errors {} {:?}",
            figures.connected,
            figures.sockets,
            figures.hold_secs,
            figures.rss_before_mib,
            figures.rss_after_mib,
            figures.kib_per_socket,
            figures.idle_cpu_percent,
            figures.errors,
            figures.error_kinds
        );
        append_run(&args.common.out, bench.machine(), Figures::Connections(figures))
    })
    .await
}

async fn baseline_only(args: BaselineArgs) -> Result<()> {
    let common = args.common.clone();
    with_bench(&common, async |bench| {
        let b = bench.baseline(&args.settings, args.common.db_connections as usize, args.message_bytes).await?;
        println!(
            "baseline: PostgreSQL {:.0} single-row commits/s ({} clients, synchronous_commit={}), Redis {:.0} PUBLISH/s",
            b.pg_commits_per_sec, b.pg_clients, b.synchronous_commit, b.redis_publish_per_sec
        );
        append_run(&args.common.out, bench.machine(), Figures::Baseline(b))
    })
    .await
}

async fn operator_mode(args: OperatorArgs) -> Result<()> {
    if args.organizations == 0 && args.workspaces > 0 {
        bail!("--workspaces needs at least one Organization");
    }
    raise_file_limit(65_536);
    let binary = stack::operator_binary().await?;
    eprintln!("[bench] operator binary {}", binary.display());
    let common = Common {
        out: args.out.clone(),
        dataplane_bin: None,
        db_connections: 20,
        outbox_poll_ms: 1000,
        source_addresses: 1,
        login_parallelism: 1,
        keep_database: args.keep_database,
    };
    with_bench(&common, async |bench| {
        let settings = operator::Settings {
            organizations: args.organizations,
            workspaces: args.workspaces,
            concurrency: args.concurrency,
            timeout: args.timeout,
            idle: args.idle,
            start_after_create: args.start_after_create,
            chart_values: args.chart_values.clone(),
        };
        let f = operator::run(&settings, &bench.db.owner_url, &bench.run_id).await?;
        let secs = |s: Option<f64>| s.map_or("not within the timeout".to_owned(), |s| format!("{s:.1} s"));
        println!(
            "operator: {} Organizations Ready in {}, {} Workspaces Ready in {} ({:.0} objects/s; created in {:.1} s); errors {} {:?}",
            f.organizations,
            secs(f.organizations_ready_secs),
            f.workspaces,
            secs(f.workspaces_ready_secs),
            f.objects_per_sec,
            f.create_secs,
            f.errors,
            f.error_kinds
        );
        println!(
            "operator CPU {:.0} % RSS {:.0} MiB while reconciling; at rest for {:.0} s: CPU {:.2} % RSS {:.0} MiB",
            f.busy_cpu_percent, f.busy_rss_mib, f.idle_secs, f.idle_cpu_percent, f.idle_rss_mib
        );
        append_run(&args.out, bench.machine(), Figures::Operator(f))
    })
    .await
}

#[tokio::main]
async fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Messages(args) => messages(args).await,
        Command::Connections(args) => connections(args).await,
        Command::Baseline(args) => baseline_only(args).await,
        Command::Operator(args) => operator_mode(args).await,
        Command::Report { results, output } => {
            let file = read_results(&results)?;
            let existing = std::fs::read_to_string(&output).unwrap_or_default();
            std::fs::write(&output, report::splice(&existing, &report::render(&file)))?;
            eprintln!("[bench] wrote {}", output.display());
            Ok(())
        }
        Command::Compare { a, b } => {
            print!("{}", report::compare(&read_results(&a)?, &read_results(&b)?));
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_accept_units() {
        assert_eq!(parse_duration("20s"), Ok(Duration::from_secs(20)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert!(parse_duration("3h").is_err());
    }
}
