//! The modes: each checks its arguments, sets up what it measures on a fresh
//! [`Bench`](crate::run::Bench), runs the measurement (in the module named after it), prints the
//! headline and appends the figures.

use crate::cli::{
    BaselineArgs, CallsArgs, Common, ConnectionsArgs, MessagesArgs, MlsArgs, MlsPart, NotificationsArgs, OperatorArgs,
    PeerMatrixArgs, RetentionArgs, WebhooksArgs,
};
use crate::results::{self, Figures};
use crate::run::{append_run, raise_file_limit, read_results, with_bench};
use crate::stack::{self, DataplaneSettings, RunDatabase, StackEnv};
use crate::{
    calls, connections, messages, mls, notify, operator, peer, provision, report, retention, synapse, system, webhooks,
};
use anyhow::{Result, bail};
use sqlx::postgres::PgConnectOptions;
use std::path::Path;
use std::str::FromStr;
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
            push_loopback: false,
            extra_args: Vec::new(),
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
            let started = std::time::Instant::now();
            let sealers = crate::mls::conversation_groups(&members, &conversations)?;
            eprintln!(
                "[bench] {} users signed in, {} conversations of {}, their MLS groups made in {:.1} s",
                members.len(),
                conversations.len(),
                args.conversation_size,
                started.elapsed().as_secs_f64()
            );
            let watch = system::Watch::new(planes.iter().map(|p| p.pid()).collect());
            let ports: Vec<u16> = planes.iter().map(|p| p.port).collect();
            messages::run(
                messages::Setup {
                    organization_id: tenant.organization_id,
                    members,
                    conversations,
                    sealers,
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
            push_loopback: false,
            extra_args: Vec::new(),
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

pub async fn mls_mode(args: MlsArgs) -> Result<()> {
    let runs = |part| !args.skip.contains(&part);
    let server = runs(MlsPart::Group) || runs(MlsPart::Claims);
    raise_file_limit(65_536);
    let binary = if server { Some(stack::dataplane_binary(args.common.dataplane_bin.clone()).await?) } else { None };
    let common = args.common.clone();
    with_bench(&common, async |bench| {
        // The client alone first, with no data plane running.
        let mut throughput = Vec::new();
        if runs(MlsPart::Throughput) {
            for &size in &args.throughput_sizes {
                let t = tokio::task::block_in_place(|| mls::throughput(size, args.messages, args.message_bytes))?;
                println!(
                    "mls throughput, group of {}: {:.0} encrypts/s, {:.0} decrypts/s (one core each), {:.0} messages/s with every member reading; {} B for {} B of plaintext",
                    t.group_size, t.encrypts_per_sec, t.decrypts_per_sec, t.messages_per_sec, t.message_bytes, t.plaintext_bytes
                );
                throughput.push(t);
            }
        }
        let (mut group, mut claims) = (None, None);
        if let Some(binary) = binary.clone() {
            let settings = DataplaneSettings {
                binary,
                db_connections: args.common.db_connections,
                outbox_poll_ms: args.common.outbox_poll_ms,
                push_loopback: false,
                extra_args: Vec::new(),
            };
            let planes =
                stack::start_dataplanes(&settings, &bench.env, &bench.db, &bench.work_dir, &bench.namespace(), 1).await?;
            let result = async {
                let group_users = if runs(MlsPart::Group) { args.group_size + args.rounds } else { 0 };
                let claim_users = if runs(MlsPart::Claims) { args.claim_devices } else { 0 };
                let tenant = provision::tenant(&bench.db.owner, group_users + claim_users).await?;
                let bases = vec![planes[0].base.clone()];
                let members = provision::login_all(&tenant.users, &bases, args.common.login_parallelism).await?;
                let (in_group, claiming) = members.split_at(group_users);
                if runs(MlsPart::Group) {
                    let settings = mls::GroupSettings { group_size: args.group_size, batch: args.batch, rounds: args.rounds };
                    group = Some(mls::group(&bench.db.owner, &tenant, in_group, &settings).await?);
                }
                if runs(MlsPart::Claims) {
                    let settings = mls::ClaimSettings {
                        packages_per_device: args.packages_per_device,
                        concurrency: args.concurrency,
                        users_per_claim: args.users_per_claim,
                        duration: args.duration,
                    };
                    let watch = system::Watch::new(vec![planes[0].pid()]);
                    claims = Some(mls::claims(&bench.db.name, tenant.organization_id, claiming, &settings, &watch).await?);
                }
                anyhow::Ok(())
            }
            .await;
            stack::stop_dataplanes(planes).await;
            result?;
        }
        let figures = results::MlsFigures { group, claims, throughput };
        print_mls(&figures);
        append_run(&args.common.out, bench.machine(), Figures::Mls(Box::new(figures)))
    })
    .await
}

fn print_mls(f: &results::MlsFigures) {
    if let Some(g) = &f.group {
        for (name, c) in [("add 1", &g.add), ("remove 1", &g.remove)] {
            println!(
                "mls group of {}: {name}: commit {} B, Welcome {} B, group info {} B (request {} B); make {:.1} ms, merge {:.1} ms, a member processes {:.1} ms, POST {:.1} ms {:?} (medians of {})",
                g.group_size,
                c.commit_bytes,
                c.welcome_bytes.unwrap_or(0),
                c.group_info_bytes,
                c.request_bytes,
                c.create_ms.median,
                c.merge_ms.median,
                c.process_ms.median,
                c.post_ms.median,
                c.post_outcomes,
                g.rounds
            );
        }
        println!(
            "mls group of {}: joining from the Welcome {:.1} ms; claiming one key package {:.1} ms",
            g.group_size, g.join_ms.median, g.claim_ms.median
        );
    }
    if let Some(c) = &f.claims {
        println!(
            "mls claims: {:.0} claims/s ({:.0} key packages/s) with {} in flight over {:.1} s; p50 {:.2} ms p99 {:.2} ms; exhausted {}; errors {} {:?}; data plane CPU {:.0} %, postgres {:.0} % (this run's backends {:.0} %), machine {:.0} %",
            c.claims_per_sec,
            c.packages_per_sec,
            c.concurrency,
            c.duration_secs,
            c.latency.p50_ms,
            c.latency.p99_ms,
            c.exhausted,
            c.errors,
            c.error_kinds,
            c.resources.dataplane_cpu_percent,
            c.resources.postgres_cpu_percent,
            c.run_postgres_cpu_percent.unwrap_or(f64::NAN),
            c.resources.machine_cpu_percent
        );
    }
}

/// A Matrix homeserver in the shape of `messages --clients 8 --conversation-size 8 --max`: Synapse
/// on a database and in a work directory of the run's own, both removed at the end (also on
/// Ctrl-C), its process killed.
pub async fn peer_matrix(args: PeerMatrixArgs) -> Result<()> {
    if args.conversation_size < 2 || args.concurrency == 0 {
        bail!("--conversation-size must be at least 2 and --concurrency at least 1");
    }
    let python = synapse::ensure_installed().await?;
    let env = StackEnv::from_env()?;
    let run_id = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
    let files = synapse::Files { dir: std::env::temp_dir().join(format!("conclave-peer-{run_id}")) };
    // The configuration holds the run's secrets: the directory is the user's alone.
    std::os::unix::fs::DirBuilderExt::mode(&mut std::fs::DirBuilder::new(), 0o700).create(&files.dir)?;
    // Synapse's own database, as its documentation asks (C collation, from template0), owned by
    // the role the data plane uses, which Synapse then connects as.
    let app_role = PgConnectOptions::from_str(&env.app_url)?.get_username().to_owned();
    let options = format!("OWNER \"{app_role}\" ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0");
    let database = match RunDatabase::create(&env, format!("conclave_peer_{run_id}"), &options).await {
        Ok(database) => database,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&files.dir);
            return Err(e);
        }
    };
    eprintln!("[bench] database {} (as {app_role}); work directory {}", database.name, files.dir.display());
    let result = tokio::select! {
        result = measure_peer(&python, &files, &env, &database, &args) => result,
        _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted (Ctrl-C)")),
    };
    if args.keep_database {
        let kept = database.keep("conclave-bench peer-matrix --keep-database").await;
        eprintln!("[bench] kept database {} and {} ({kept:?})", database.name, files.dir.display());
    } else {
        match database.drop_database().await {
            Ok(()) => eprintln!("[bench] dropped database {}", database.name),
            Err(e) => eprintln!("[bench] could not drop {}: {e:#}", database.name),
        }
        match std::fs::remove_dir_all(&files.dir) {
            Ok(()) => eprintln!("[bench] removed {}", files.dir.display()),
            Err(e) => eprintln!("[bench] could not remove {}: {e}", files.dir.display()),
        }
    }
    let (figures, machine) = result?;
    print_peer_matrix(&figures);
    append_run(&args.out, machine, Figures::PeerMatrix(Box::new(figures)))
}

/// Starts Synapse, registers the members, makes the room and runs the load; Synapse is stopped
/// whatever happens (and killed if this is dropped).
async fn measure_peer(
    python: &Path,
    files: &synapse::Files,
    env: &StackEnv,
    database: &RunDatabase,
    args: &PeerMatrixArgs,
) -> Result<(results::PeerMatrixFigures, results::Machine)> {
    let dsn = conclave_testkit::replace_database(&env.app_url, &database.name);
    let machine = system::machine(stack::postgres_settings(&dsn).await?.0);
    let secrets = synapse::Secrets::generate();
    let port = stack::free_port()?;
    files.write(port, &dsn, &secrets)?;
    let server = synapse::Synapse::start(python, files, port, Duration::from_secs(180)).await?;
    let result = async {
        let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build()?;
        let mut users = Vec::new();
        for i in 0..args.conversation_size {
            users.push(server.register(&http, &secrets, &format!("peer{i}")).await?);
        }
        let room = peer::make_room(&server.base, &users).await?;
        eprintln!("[bench] {} users registered, all in room {room}", users.len());
        let watch = system::Watch::new(vec![server.pid()]);
        let load = peer::Load {
            senders: args.concurrency,
            warmup: args.warmup,
            duration: args.duration,
            drain: Duration::from_secs(5),
            plaintext_bytes: args.message_bytes,
        };
        peer::run(&server.base, users, &room, &watch, &database.name, &load).await
    }
    .await;
    server.stop().await;
    Ok((result?, machine))
}

fn print_peer_matrix(f: &results::PeerMatrixFigures) {
    println!(
        "peer-matrix ({}): {:.1} messages/s, {:.0} deliveries/s over {:.1} s, senders {} in a room of {}; send→deliver p50 {:.2} ms p99 {:.2} ms p99.9 {:.2} ms; send p50 {:.2} ms p99 {:.2} ms",
        f.server,
        f.messages_per_sec,
        f.deliveries_per_sec,
        f.duration_secs,
        f.senders,
        f.members,
        f.latency.p50_ms,
        f.latency.p99_ms,
        f.latency.p999_ms,
        f.send_latency.p50_ms,
        f.send_latency.p99_ms
    );
    println!(
        "errors {} {:?}; missing deliveries {}; Synapse CPU {:.0} % RSS {:.0} MiB; postgres CPU {:.0} % (this run's backends {:.0} %); tool CPU {:.0} %; machine CPU {:.0} %",
        f.errors,
        f.error_kinds,
        f.missing_deliveries,
        f.server_cpu_percent,
        f.server_rss_mib,
        f.postgres_cpu_percent,
        f.run_postgres_cpu_percent,
        f.tool_cpu_percent,
        f.machine_cpu_percent
    );
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

/// Starts a replica with the outbox worker (`settings`) and runs `drain` while watching it, then
/// stops it: the drain's result, the worker's CPU (percent of one core) and its CPU seconds, over
/// the whole window from its start-up, so that they are not understated.
async fn with_outbox_worker<T>(
    bench: &crate::run::Bench,
    settings: &DataplaneSettings,
    drain: impl AsyncFnOnce() -> Result<T>,
) -> Result<(T, f64, f64)> {
    let workers =
        stack::start_dataplanes(settings, &bench.env, &bench.db, &bench.work_dir, &bench.namespace(), 1).await?;
    let watch = system::Watch::new(vec![workers[0].pid()]);
    let (before, window) = (watch.sample(), std::time::Instant::now());
    let drained = drain().await;
    let (after, window) = (watch.sample(), window.elapsed().as_secs_f64());
    stack::stop_dataplanes(workers).await;
    let cpu_percent = watch.cpu_between(&before, &after)[0];
    Ok((drained?, cpu_percent, cpu_percent / 100.0 * window))
}

pub async fn notifications_mode(args: NotificationsArgs) -> Result<()> {
    if args.messages == 0 || args.subscriptions == 0 {
        bail!("--messages and --subscriptions must be at least 1");
    }
    let binary = stack::dataplane_binary(args.common.dataplane_bin.clone()).await?;
    let common = args.common.clone();
    with_bench(&common, async |bench| {
        let push = conclave_testkit::webpush::PushService::start().await?;
        // The replica that takes the sends runs no outbox worker: the rows wait for the drain.
        let settings = |outbox_poll_ms| DataplaneSettings {
            binary: binary.clone(),
            db_connections: args.common.db_connections,
            outbox_poll_ms,
            push_loopback: true,
            extra_args: Vec::new(),
        };
        let planes =
            stack::start_dataplanes(&settings(0), &bench.env, &bench.db, &bench.work_dir, &bench.namespace(), 1).await?;
        let result = async {
            let tenant = provision::tenant(&bench.db.owner, 4).await?;
            let members = provision::login_all(&tenant.users, &[planes[0].base.clone()], 4).await?;
            // Two direct conversations: members 0 and 1 (1 subscribed), 2 and 3 (no subscription).
            let conversations = provision::conversations(&bench.db.owner, &tenant, &members, 2).await?;
            notify::subscribe(&planes[0].base, &members[1], &push, args.subscriptions).await?;
            let org = tenant.organization_id;
            let (send_with_push, errors_with) =
                notify::send_cost(org, &members[0], &conversations[0], args.messages, args.concurrency).await?;
            let (send_without_push, errors_without) =
                notify::send_cost(org, &members[2], &conversations[1], args.messages, args.concurrency).await?;
            let pushes_expected = (args.messages - errors_with as usize) * args.subscriptions;
            eprintln!("[bench] {pushes_expected} pushes waiting; starting a replica with the outbox worker");
            let started = std::time::Instant::now();
            let (drained, worker_cpu_percent, cpu_secs) = with_outbox_worker(bench, &settings(50), async || {
                notify::drain(&push, pushes_expected, started, Duration::from_secs(600)).await
            })
            .await?;
            // The rate from the first push to the last (the replica's start-up left out).
            let drain_secs = (drained.last_secs - drained.first_secs).max(1e-3);
            anyhow::Ok(results::NotificationFigures {
                messages: args.messages,
                subscriptions: args.subscriptions,
                concurrency: args.concurrency,
                send_with_push,
                send_without_push,
                send_errors: errors_with + errors_without,
                pushes_expected,
                pushes_received: drained.received,
                drain_secs,
                pushes_per_sec: drained.received.saturating_sub(1) as f64 / drain_secs,
                worker_cpu_percent,
                worker_cpu_ms_per_push: cpu_secs * 1000.0 / drained.received.max(1) as f64,
            })
        }
        .await;
        stack::stop_dataplanes(planes).await;
        let f = result?;
        println!(
            "notifications: send p50 {:.2} ms (p99 {:.2}) writing push rows, {:.2} ms (p99 {:.2}) without; {} of {} pushes in {:.2} s = {:.0} pushes/s; worker CPU {:.0} % = {:.2} ms per push",
            f.send_with_push.p50_ms,
            f.send_with_push.p99_ms,
            f.send_without_push.p50_ms,
            f.send_without_push.p99_ms,
            f.pushes_received,
            f.pushes_expected,
            f.drain_secs,
            f.pushes_per_sec,
            f.worker_cpu_percent,
            f.worker_cpu_ms_per_push
        );
        append_run(&args.common.out, bench.machine(), Figures::Notifications(f))
    })
    .await
}

/// Webhooks: the send with and without subscribed endpoints, then the deliveries drained by a
/// replica with the outbox worker on.
pub async fn webhooks_mode(args: WebhooksArgs) -> Result<()> {
    if args.messages == 0 || args.endpoints == 0 {
        bail!("--messages and --endpoints must be at least 1");
    }
    let binary = stack::dataplane_binary(args.common.dataplane_bin.clone()).await?;
    let common = args.common.clone();
    with_bench(&common, async |bench| {
        let key = webhooks::AtRestKey::create(&bench.work_dir)?;
        let receiver = webhooks::Receiver::start(args.endpoints).await?;
        // The replica that takes the sends runs no outbox worker: the rows wait for the drain.
        let settings = |outbox_poll_ms| DataplaneSettings {
            binary: binary.clone(),
            db_connections: args.common.db_connections,
            outbox_poll_ms,
            push_loopback: false,
            extra_args: key.serve_args(),
        };
        let planes =
            stack::start_dataplanes(&settings(0), &bench.env, &bench.db, &bench.work_dir, &bench.namespace(), 1).await?;
        let result = async {
            let tenant = provision::tenant(&bench.db.owner, 2).await?;
            let members = provision::login_all(&tenant.users, &[planes[0].base.clone()], 2).await?;
            let conversations = provision::conversations(&bench.db.owner, &tenant, &members, 2).await?;
            let org = tenant.organization_id;
            let (sender, conversation) = (&members[0], &conversations[0]);
            // A warm-up, so that neither measured half pays for cold caches and connections.
            notify::send_cost(org, sender, conversation, args.messages.min(200), args.concurrency).await?;
            let (send_without_endpoints, errors_without) =
                notify::send_cost(org, sender, conversation, args.messages, args.concurrency).await?;
            receiver.subscribe(&bench.db.owner, org, &key).await?;
            let (send_with_endpoints, errors_with) =
                notify::send_cost(org, sender, conversation, args.messages, args.concurrency).await?;
            let deliveries_expected = (args.messages - errors_with as usize) * args.endpoints;
            eprintln!("[bench] {deliveries_expected} deliveries waiting; starting a replica with the outbox worker");
            let (drained, worker_cpu_percent, cpu_secs) = with_outbox_worker(bench, &settings(50), async || {
                webhooks::drain(&receiver, deliveries_expected, args.drain_limit).await
            })
            .await?;
            let drain_secs = drained.secs.max(1e-3);
            anyhow::Ok(results::WebhookFigures {
                messages: args.messages,
                endpoints: args.endpoints,
                concurrency: args.concurrency,
                send_without_endpoints,
                send_with_endpoints,
                send_errors: errors_with + errors_without,
                deliveries_expected,
                deliveries_verified: drained.verified,
                drain_secs,
                deliveries_per_sec: drained.verified.saturating_sub(1) as f64 / drain_secs,
                worker_cpu_percent,
                worker_cpu_ms_per_delivery: cpu_secs * 1000.0 / drained.verified.max(1) as f64,
            })
        }
        .await;
        stack::stop_dataplanes(planes).await;
        let f = result?;
        println!(
            "webhooks: send p50 {:.2} ms (p99 {:.2}) with {} endpoints, {:.2} ms (p99 {:.2}) with none; {} of {} deliveries verified in {:.2} s = {:.0} deliveries/s; worker CPU {:.0} % = {:.2} ms per delivery",
            f.send_with_endpoints.p50_ms,
            f.send_with_endpoints.p99_ms,
            f.endpoints,
            f.send_without_endpoints.p50_ms,
            f.send_without_endpoints.p99_ms,
            f.deliveries_verified,
            f.deliveries_expected,
            f.drain_secs,
            f.deliveries_per_sec,
            f.worker_cpu_percent,
            f.worker_cpu_ms_per_delivery
        );
        append_run(&args.common.out, bench.machine(), Figures::Webhooks(f))
    })
    .await
}

pub async fn retention_mode(args: RetentionArgs) -> Result<()> {
    if args.conversations == 0 || args.messages == 0 {
        bail!("--conversations and --messages must be at least 1");
    }
    let binary = stack::dataplane_binary(args.common.dataplane_bin.clone()).await?;
    let common = args.common.clone();
    with_bench(&common, async |bench| {
        let settings = DataplaneSettings {
            binary: binary.clone(),
            db_connections: args.common.db_connections,
            outbox_poll_ms: args.common.outbox_poll_ms,
            push_loopback: false,
            // A pass every second, so the sweep starts soon after the period is set.
            extra_args: ["--retention-interval-ms", "1000", "--retention-batch", &args.batch.to_string()]
                .map(str::to_owned)
                .to_vec(),
        };
        let planes = stack::start_dataplanes(&settings, &bench.env, &bench.db, &bench.work_dir, &bench.namespace(), 1).await?;
        let result = async {
            let tenant = provision::tenant(&bench.db.owner, args.conversations * 2).await?;
            let members =
                provision::login_all(&tenant.users, &[planes[0].base.clone()], args.common.login_parallelism).await?;
            let conversations = provision::conversations(&bench.db.owner, &tenant, &members, 2).await?;
            eprintln!("[bench] writing {} expired messages", args.messages);
            retention::seed_expired(&bench.db.owner, tenant.organization_id, &conversations, args.messages).await?;
            let settings = retention::Settings {
                messages: args.messages,
                batch: args.batch,
                send_rate: args.send_rate,
                before: args.before,
            };
            retention::run(&bench.db.owner, &planes[0].base, tenant.organization_id, members, conversations, &settings)
                .await
        }
        .await;
        stack::stop_dataplanes(planes).await;
        let figures = result?;
        println!(
            "retention: {} expired messages deleted in {:.1} s ({:.0} rows/s, batches of {}); sends at {}/s p50/p99 {:.2}/{:.2} ms before, {:.2}/{:.2} ms during; {} send errors",
            figures.messages,
            figures.delete_secs,
            figures.rows_per_sec,
            figures.batch,
            figures.send_rate,
            figures.sends_before.p50_ms,
            figures.sends_before.p99_ms,
            figures.sends_during.p50_ms,
            figures.sends_during.p99_ms,
            figures.send_errors
        );
        append_run(&args.common.out, bench.machine(), Figures::Retention(figures))
    })
    .await
}

/// Call signalling: `--calls` calls at once, caller and callee on two replicas.
pub async fn calls_mode(args: CallsArgs) -> Result<()> {
    if args.calls == 0 || args.rounds == 0 {
        bail!("--calls and --rounds must be at least 1");
    }
    let binary = stack::dataplane_binary(args.common.dataplane_bin.clone()).await?;
    let common = args.common.clone();
    with_bench(&common, async |bench| {
        let settings = DataplaneSettings {
            binary: binary.clone(),
            db_connections: args.common.db_connections,
            outbox_poll_ms: args.common.outbox_poll_ms,
            push_loopback: false,
            extra_args: Vec::new(),
        };
        let planes = stack::start_dataplanes(&settings, &bench.env, &bench.db, &bench.work_dir, &bench.namespace(), 2).await?;
        let result = async {
            let tenant = provision::tenant(&bench.db.owner, args.calls * 2).await?;
            let bases: Vec<String> = planes.iter().map(|p| p.base.clone()).collect();
            let members = provision::login_all(&tenant.users, &bases, args.common.login_parallelism).await?;
            let conversations = provision::conversations(&bench.db.owner, &tenant, &members, 2).await?;
            let ports: Vec<u16> = planes.iter().map(|p| p.port).collect();
            let settings = calls::Settings {
                calls: args.calls,
                rounds: args.rounds,
                sdp_bytes: args.sdp_bytes,
                source_addresses: args.common.source_addresses,
            };
            calls::run(tenant.organization_id, &members, &conversations, &ports, &settings).await
        }
        .await;
        stack::stop_dataplanes(planes).await;
        let figures = result?;
        println!(
            "calls: {} at once x {} rounds, {} B SDPs: setup (offer → answer) p50/p99 {:.2}/{:.2} ms, ring p50/p99 {:.2}/{:.2} ms, {:.0} calls/s, {} errors",
            figures.calls,
            figures.rounds,
            figures.sdp_bytes,
            figures.setup.p50_ms,
            figures.setup.p99_ms,
            figures.ring.p50_ms,
            figures.ring.p99_ms,
            figures.calls_per_sec,
            figures.errors
        );
        append_run(&args.common.out, bench.machine(), Figures::Calls(figures))
    })
    .await
}
