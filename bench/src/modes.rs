//! The modes: each checks its arguments, sets up what it measures on a fresh
//! [`Bench`](crate::run::Bench), runs the measurement (in the module named after it), prints the
//! headline and appends the figures.

use crate::cli::{BaselineArgs, Common, ConnectionsArgs, MessagesArgs, OperatorArgs};
use crate::results::{self, Figures};
use crate::run::{append_run, raise_file_limit, read_results, with_bench};
use crate::stack::{self, DataplaneSettings};
use crate::{connections, messages, operator, provision, report, system};
use anyhow::{Result, bail};
use std::path::Path;
use std::time::Duration;

pub async fn messages(args: MessagesArgs) -> Result<()> {
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

pub async fn connections(args: ConnectionsArgs) -> Result<()> {
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

pub async fn baseline_only(args: BaselineArgs) -> Result<()> {
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

pub async fn operator_mode(args: OperatorArgs) -> Result<()> {
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

/// Writes the generated part of `output` from the results file `results`.
pub fn write_report(results: &Path, output: &Path) -> Result<()> {
    let file = read_results(results)?;
    let existing = std::fs::read_to_string(output).unwrap_or_default();
    std::fs::write(output, report::splice(&existing, &report::render(&file)))?;
    eprintln!("[bench] wrote {}", output.display());
    Ok(())
}

/// Prints the headline figures of two results files side by side.
pub fn compare(a: &Path, b: &Path) -> Result<()> {
    print!("{}", report::compare(&read_results(a)?, &read_results(b)?));
    Ok(())
}
