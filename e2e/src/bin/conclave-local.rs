//! `conclave-local up`: the whole system on this machine, for the demo (`scripts/demo.sh`).
//!
//! A real etcd + kube-apiserver and a real node (containerd, kubelet, kube-proxy, CoreDNS,
//! controller manager, scheduler: `conclave_e2e::node`), the Helm chart, the operator as the
//! chart's pod, the example DataPlane with its migration Job and its data-plane pods (from the
//! images `scripts/images.sh` builds), its Service relayed to `127.0.0.1:<port>`, a mail relay
//! whose messages are written to `<state>/mail/` (so the demo can read confirmation and
//! invitation tokens), and `<state>/env` with the settings to talk to all of it. Runs until
//! Ctrl-C or SIGTERM, then stops everything it started. Needs root (the node's network
//! namespace, mounts and cgroups), like the end-to-end suite.
//!
//! Its database is `conclave_demo_…`, not a test's name, and is marked as this process's, so a
//! test run's sweep beside the demo leaves it alone. `<state>/env` is removed first thing and
//! written whole (renamed into place) with `CONCLAVE_LOCAL_PID`, so a reader can tell this run's
//! file from one a previous run left behind.

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use conclave_e2e::system::{System, TENANTS};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The demo's database name prefix: its own, so it is never taken for a test's.
const DATABASE_PREFIX: &str = "conclave_demo";

#[derive(Parser)]
#[command(name = "conclave-local", about = "The whole Conclave system on this machine (the demo's engine)")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start everything and keep it running until Ctrl-C.
    Up {
        /// Where the control plane's files, the mail and the env file go.
        #[arg(long)]
        state_dir: PathBuf,
        /// The data plane's port on 127.0.0.1.
        #[arg(long, default_value_t = 8080)]
        port: u16,
    },
}

fn main() -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let Command::Up { state_dir, port } = Cli::parse().command;
    runtime.block_on(up(state_dir, port))
}

async fn up(state: PathBuf, port: u16) -> Result<()> {
    let plane_dir = state.join("control-plane");
    let _ = std::fs::remove_dir_all(&plane_dir);
    let mail_dir = state.join("mail");
    let _ = std::fs::remove_dir_all(&mail_dir);
    std::fs::create_dir_all(&mail_dir)?;
    let _ = std::fs::remove_file(state.join("env"));

    let mut sys = System::start(Some(plane_dir), DATABASE_PREFIX).await?;
    eprintln!(
        "[local] kube-apiserver {} and etcd are up (TLS, RBAC, token auth), and the node {}",
        sys.plane.server, sys.node.name
    );
    let result = async {
        sys.install_chart_and_operator().await?;
        sys.deploy_dataplane().await?;
        sys.serve_on_loopback(port)
    }
    .await;
    let server = match result {
        Ok(server) => server,
        Err(e) => {
            let _ = sys.stop();
            return Err(e);
        }
    };
    let env = format!(
        "export KUBECONFIG='{}'\nexport CONCLAVE_SERVER='{}'\nexport CONCLAVE_NAMESPACE='{TENANTS}'\nexport CONCLAVE_MAIL_DIR='{}'\nexport CONCLAVE_DATABASE_NAME='{}'\nexport CONCLAVE_LOCAL_PID='{}'\n",
        sys.plane.kubeconfig.display(),
        server,
        mail_dir.display(),
        sys.stack.db.name,
        std::process::id()
    );
    write_whole(&state.join("env"), &env).context("writing the env file")?;
    eprintln!("[local] everything is up: data plane {server} (Service {}), state in {}", sys.base, state.display());

    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut written = 0;
    loop {
        let mails = sys.mail.all();
        for mail in &mails[written..] {
            written += 1;
            let to = mail.to.join(",");
            let text = format!("From: {}\nTo: {to}\nSubject: {}\n\n{}\n", mail.from, mail.subject, mail.body);
            std::fs::write(mail_dir.join(format!("{written:03}-{to}.txt")), text)?;
            eprintln!("[local] email to {to}: {}", mail.subject);
        }
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = terminate.recv() => break,
            () = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
        if let Err(e) = sys.node.check_running() {
            eprintln!("[local] the node stopped: {e}");
            break;
        }
    }
    eprintln!("[local] stopping the node (data plane and operator pods), kube-apiserver and etcd");
    let _ = std::fs::remove_file(state.join("env"));
    sys.stop()?;
    eprintln!("[local] stopped (this run's database {} is dropped)", sys.stack.db.name);
    Ok(())
}

/// Writes `path` so that a reader sees either no file or all of it.
fn write_whole(path: &Path, text: &str) -> std::io::Result<()> {
    let partial = path.with_extension("partial");
    std::fs::write(&partial, text)?;
    std::fs::rename(&partial, path)
}
