//! The scenario's state and steps (see `platform.rs`).

mod chat;
mod operations;
// Signing in through the SDK: one copy, shared with the SDK's tests (the file says why it is
// shared by path). The scenario reads fewer of a person's fields than those tests do.
#[path = "../../../client/tests/sdk/signin.rs"]
#[allow(dead_code)]
mod signin;
mod steps;

use conclave_e2e::system::System;
use conclave_e2e::tools::repo_root;
use std::time::{Duration, Instant};

pub use conclave_e2e::system::TENANTS as NS;

pub fn step(what: &str) {
    eprintln!("\n[e2e] ==> {what}");
}

/// The running system, and the people using it.
pub struct Scenario {
    pub sys: System,
    pub started: Instant,
    pub home: std::path::PathBuf,
    pub people: Vec<signin::Person>,
    /// The organization and conversation alice and bob talk in, once they do.
    pub conversation: Option<(uuid::Uuid, uuid::Uuid)>,
}

impl std::ops::Deref for Scenario {
    type Target = System;
    fn deref(&self) -> &System {
        &self.sys
    }
}

impl std::ops::DerefMut for Scenario {
    fn deref_mut(&mut self) -> &mut System {
        &mut self.sys
    }
}

impl Scenario {
    pub async fn start() -> Self {
        let started = Instant::now();
        let sys = System::start(None, conclave_testkit::TEST_PREFIX)
            .await
            .expect("control plane, PostgreSQL, Redis (scripts/stack.sh up)");
        let home = sys.plane.dir.join("people");
        Self { sys, started, home, people: vec![], conversation: None }
    }

    pub fn kubectl(&self, args: &[&str]) -> String {
        self.plane.kubectl(args).unwrap_or_else(|e| panic!("{e:#}"))
    }

    /// `kubectl -n tenants ...`
    pub fn k(&self, args: &[&str]) -> String {
        self.kubectl(&[&["-n", NS][..], args].concat())
    }

    pub fn example_path(&self, name: &str) -> String {
        repo_root().join("examples").join(name).to_string_lossy().into_owned()
    }

    pub async fn wait_ready(&self, resource: &str, status: &str, reason: Option<&str>, timeout: Duration) {
        self.sys.wait_ready(resource, status, reason, timeout).await.unwrap_or_else(|e| panic!("{e:#}"));
    }

    pub fn finish(mut self) {
        step(&format!("done in {:.0}s; stopping everything", self.started.elapsed().as_secs_f64()));
        let stopping = Instant::now();
        self.sys.stop().expect("everything stops and the control plane frees its ports");
        eprintln!("[e2e]     stopped in {:.1}s", stopping.elapsed().as_secs_f64());
    }
}

/// Polls `f` until it returns `Some`, or panics with `what` after `timeout`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
