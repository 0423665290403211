//! A real data plane in-process (as `dataplane/tests/api/support.rs` starts it: its own
//! database, a mail catcher, Redis on loopback, port 0), and people who use it through the SDK.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use conclave_client::api::Client;
use conclave_client::cli::{Cli, Prompt};
use conclave_client::messenger::Messenger;
use conclave_dataplane::AppState;
use conclave_dataplane::config::Config;
use conclave_testkit::TestDb;
use conclave_testkit::smtp::MailCatcher;
use tokio::sync::oneshot;
use uuid::Uuid;

pub use crate::signin::Person;
pub use conclave_testkit::accounts::PASSWORD;

fn redis_url() -> String {
    std::env::var("CONCLAVE_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/".to_owned())
}

#[derive(Parser)]
struct ServerCli {
    #[command(flatten)]
    config: Config,
}

/// A data plane on an ephemeral loopback port with its own database and mail catcher, stopped
/// when dropped. Every profile directory it hands out is removed with it.
pub struct TestApp {
    pub base: String,
    pub db: TestDb,
    pub mail: MailCatcher,
    pub home: TempDir,
    args: Vec<String>,
    stop: oneshot::Sender<()>,
}

/// A directory under the system temp dir, removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(what: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("conclave-client-{what}-{}", Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl TestApp {
    /// Rate limits are raised a thousandfold so tests never trip them.
    pub async fn start() -> Self {
        Self::start_with(&[]).await
    }

    pub async fn start_with(extra: &[&str]) -> Self {
        let db = TestDb::new().await.expect("test database (is the stack up? scripts/stack.sh up)");
        let mail = MailCatcher::start().await.expect("smtp listener");
        let home = TempDir::new("home");
        let keys = home.0.join("jwt-keys");
        std::fs::create_dir_all(&keys).expect("keys dir");
        conclave_dataplane::auth::jwt::generate_key_file(&keys, "test-1").expect("jwt key");
        // The delivery service's removal key, shared by every replica like the JWT keys.
        let removal_key = home.0.join("mls-removal.pem");
        conclave_dataplane::conversations::removals::generate_key_file(&removal_key).expect("removal key");
        let namespace = format!("test-{}", Uuid::new_v4().simple());
        let mut args: Vec<String> = [
            "conclave-dataplane",
            "--redis-namespace",
            &namespace,
            "--database-url",
            &db.app_url(),
            "--redis-url",
            &redis_url(),
            "--smtp-url",
            &mail.url(),
            "--database-max-connections",
            "5",
            "--jwt-keys-dir",
            keys.to_str().expect("utf-8 path"),
            "--rate-limit-factor",
            "1000",
            "--mls-removal-key-file",
            removal_key.to_str().expect("utf-8 path"),
            // Read when present: [`TestApp::rotate_removal_key`] puts the old key there.
            "--mls-removal-previous-key-file",
            home.0.join("mls-removal-previous.pem").to_str().expect("utf-8 path"),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(extra.iter().map(|s| s.to_string()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let stop = serve(&args, listener).await;
        Self { base, db, mail, home, args, stop }
    }

    /// Stops the server (its sockets close with 1001, going away) and starts a new one on the
    /// same address, database and keys, as a rolling restart would.
    pub async fn restart(&mut self) {
        let (placeholder, _) = oneshot::channel();
        let _ = std::mem::replace(&mut self.stop, placeholder).send(());
        let address = self.base.trim_start_matches("http://").to_owned();
        let listener = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                match tokio::net::TcpListener::bind(&address).await {
                    Ok(listener) => return listener,
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
        })
        .await
        .expect("the old server releases its port");
        self.stop = serve(&self.args, listener).await;
    }

    /// Rotates the delivery service's MLS removal key as the operator does (the current key
    /// becomes the previous one, a new one is current) and restarts the data plane on it.
    pub async fn rotate_removal_key(&mut self) {
        let (current, previous) = (self.home.0.join("mls-removal.pem"), self.home.0.join("mls-removal-previous.pem"));
        std::fs::rename(&current, &previous).expect("keep the old key");
        conclave_dataplane::conversations::removals::generate_key_file(&current).expect("new removal key");
        self.restart().await;
    }

    /// A second replica of the data plane: same database, Redis namespace and keys, its own
    /// port. Returns its base URL and the sender that stops it.
    pub async fn replica(&self) -> (String, oneshot::Sender<()>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        (base, serve(&self.args, listener).await)
    }

    /// The confirmation token emailed to `email`.
    pub async fn confirmation_token(&self, email: &str) -> String {
        let mail = self.mail.wait_for(email, "Confirm", Duration::from_secs(10)).await.expect("confirmation email");
        mail.token("cve_").expect("token in the email")
    }

    /// Someone registered, confirmed and signed in through the SDK, with a profile of their own
    /// named after the local part of their address (`alice@...` → `--profile alice`).
    pub async fn person(&self, email: &str) -> Person {
        let name = &email[..email.find('@').expect("@")];
        crate::signin::sign_up(&self.base, &self.mail, email, name, self.home.0.join("profiles").join(name)).await
    }

    /// An organization (as the operator would create it) with one workspace and these members;
    /// the first is its owner.
    pub async fn organization(&self, slug: &str, members: &[Uuid]) -> (Uuid, Uuid) {
        let org = conclave_testkit::seed_organization(&self.db.owner, slug, members).await.expect("organization");
        (org.id, org.workspace_id)
    }

    /// Runs one `conclave` command against this server with `CONCLAVE_HOME` = the test's home;
    /// returns what it printed.
    pub async fn cli(&self, args: &[&str]) -> anyhow::Result<String> {
        let mut full = vec!["conclave", "--server", &self.base];
        let home = self.home.0.to_str().expect("utf-8 path").to_owned();
        full.extend(["--home", &home]);
        full.extend_from_slice(args);
        let cli = Cli::try_parse_from(full)?;
        let mut out = Vec::new();
        conclave_client::cli::run(cli, &mut out, &mut FixedPassword).await?;
        Ok(String::from_utf8(out).expect("utf-8 output"))
    }
}

async fn serve(args: &[String], listener: tokio::net::TcpListener) -> oneshot::Sender<()> {
    let config = ServerCli::try_parse_from(args).expect("config").config;
    let state: AppState = AppState::connect(&config).await.expect("app state");
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(conclave_dataplane::serve(listener, state, async move {
        let _ = stopped.await;
    }));
    stop
}

impl Person {
    /// Another engine for this person's device, talking to the server at `base` (a replica).
    pub fn on(&self, base: &str) -> Messenger {
        let session = self.profile.load_session().expect("session").expect("signed in");
        let client = Client::with_session(base, session.tokens, None).expect("client");
        let keystore = self.profile.load_keystore().expect("keystore");
        Messenger::new(client, keystore, self.user_id, self.device_id)
    }
}

/// The test password, as if typed.
pub struct FixedPassword;

impl Prompt for FixedPassword {
    fn password(&mut self, _prompt: &str, _confirm: bool) -> anyhow::Result<String> {
        Ok(PASSWORD.to_owned())
    }
}
