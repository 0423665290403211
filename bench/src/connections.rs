//! `connections`: N authenticated sockets that stay idle except for heartbeats, kept as the SDK's
//! listener keeps them: they answer the server's pings (a WebSocket pong) and send an application
//! `ping` of their own only after the SDK's `ping_interval` without a frame from the server. The
//! data plane's RSS before and after tells what one socket costs, its CPU while they idle what
//! keeping them alive costs.

use crate::provision::Member;
use crate::results::ConnectionFigures;
use crate::socket;
use crate::system::Watch;
use anyhow::Result;
use conclave_client::messenger::ListenerOptions;
use conclave_protocol::events::ClientFrame;
use futures::{SinkExt as _, StreamExt as _};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message as WsMessage;

pub struct Setup<'a> {
    pub members: Vec<Member>,
    pub port: u16,
    pub sockets: usize,
    pub source_addresses: usize,
    pub hold: Duration,
    pub watch: &'a Watch,
}

pub async fn run(setup: Setup<'_>) -> Result<ConnectionFigures> {
    let Setup { members, port, sockets, source_addresses, hold, watch } = setup;
    let users = members.len();
    let tokens: Vec<String> = members.into_iter().map(|m| m.access_token).collect();
    let errors = Arc::new(Mutex::new(BTreeMap::<String, u64>::new()));
    let live = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let error = |errors: &Mutex<BTreeMap<String, u64>>, kind: String| {
        *errors.lock().unwrap_or_else(|p| p.into_inner()).entry(kind).or_insert(0) += 1;
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_before = watch.dataplane_rss_mib();
    eprintln!("[bench] data plane RSS before sockets: {rss_before:.1} MiB; connecting {sockets} sockets");
    let started = Instant::now();
    let ping = serde_json::to_string(&ClientFrame::Ping)?;
    let results: Vec<Result<socket::Socket>> = futures::stream::iter(0..sockets)
        .map(|i| {
            let token = &tokens[i % tokens.len()];
            let live = live.clone();
            async move {
                let ws = socket::connect(socket::source_address(i, source_addresses), port, token).await?;
                let n = live.fetch_add(1, Ordering::Relaxed) + 1;
                if n.is_multiple_of(2000) {
                    eprintln!("[bench] {n} sockets open ({:.0}/s)", n as f64 / started.elapsed().as_secs_f64());
                }
                Ok(ws)
            }
        })
        .buffer_unordered(128)
        .collect()
        .await;
    let connect_secs = started.elapsed().as_secs_f64();
    let mut tasks = Vec::new();
    for result in results {
        let mut ws = match result {
            Ok(ws) => ws,
            Err(e) => {
                error(&errors, format!("connect: {}", e.root_cause().to_string().chars().take(80).collect::<String>()));
                continue;
            }
        };
        let (errors, live, stop, ping) = (errors.clone(), live.clone(), stop.clone(), ping.clone());
        tasks.push(tokio::spawn(async move {
            // As the SDK: a frame of any kind starts the silence again; the server's pings are
            // answered by the WebSocket library as the stream is read.
            let silence = ListenerOptions::default().ping_interval;
            let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + silence, silence);
            loop {
                tokio::select! {
                    frame = ws.next() => match frame {
                        Some(Ok(WsMessage::Close(_))) | Some(Err(_)) | None => break,
                        Some(Ok(_)) => ticker.reset(),
                    },
                    _ = ticker.tick() => {
                        if ws.send(WsMessage::text(ping.clone())).await.is_err() { break; }
                    }
                }
            }
            live.fetch_sub(1, Ordering::Relaxed);
            if !stop.load(Ordering::Relaxed) {
                error(&errors, "a socket closed while idle".into());
            }
        }));
    }
    let connected = live.load(Ordering::Relaxed);
    eprintln!("[bench] {connected} sockets open in {connect_secs:.1} s; holding them idle for {} s", hold.as_secs());
    // Let the connection burst settle before measuring idle CPU.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let before = watch.sample();
    let hold_started = Instant::now();
    while hold_started.elapsed() < hold {
        tokio::time::sleep(Duration::from_secs(5).min(hold)).await;
        eprintln!(
            "[bench] {:>3.0}s idle: {} sockets open, data plane RSS {:.1} MiB",
            hold_started.elapsed().as_secs_f64(),
            live.load(Ordering::Relaxed),
            watch.dataplane_rss_mib()
        );
    }
    let after = watch.sample();
    let rss_after = watch.dataplane_rss_mib();
    let still_open = live.load(Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.abort();
    }
    let [idle_cpu, ..] = watch.cpu_between(&before, &after);
    let error_kinds: Vec<(String, u64)> =
        errors.lock().unwrap_or_else(|p| p.into_inner()).clone().into_iter().collect();
    Ok(ConnectionFigures {
        sockets,
        connected: still_open,
        users,
        source_addresses,
        connect_secs,
        hold_secs: hold.as_secs_f64(),
        rss_before_mib: rss_before,
        rss_after_mib: rss_after,
        kib_per_socket: if still_open > 0 { (rss_after - rss_before) * 1024.0 / still_open as f64 } else { 0.0 },
        idle_cpu_percent: idle_cpu,
        errors: error_kinds.iter().map(|(_, n)| n).sum(),
        error_kinds,
    })
}
