//! Faults under load, with "nothing lost" asserted by the clients (issue 16).
//!
//! The test builds a world of its own on loopback and destroys only that: a PostgreSQL cluster
//! (`initdb` into a temporary directory, a free port; as the `postgres` user when run as root),
//! migrated with the project's migrations; a `redis-server` on a free port; a TCP proxy in this
//! process between the data plane and PostgreSQL, which can cut that network; and the data plane
//! itself as a child process (`conclave-dataplane serve`, the binary cargo built). Everything is
//! stopped and the directory removed when the test ends, passed or failed.
//!
//! Senders post signed messages over plain HTTP, a few at a time per conversation so that the
//! data plane's writers batch them. A send that fails with a retryable answer (5xx, a refused or
//! timed-out connection) is retried with the same `client_message_id` until it is acknowledged;
//! any other answer fails the test. While they send, one fault at a time is injected: PostgreSQL
//! restarted (fast shutdown) and crashed (immediate shutdown, crash recovery), Redis killed and
//! restarted, the data plane SIGKILLed and started again, the network to PostgreSQL cut for a few
//! seconds. Afterwards each conversation is read back: every acknowledged message is stored
//! exactly once, nothing else is stored, and sequence numbers have no gap. The figures are
//! printed (`--nocapture`) and recorded in docs/reliability.md.
//!
//! One more fault has a test of its own: a cut after which the old connections stay silent for
//! ever instead of closing. The data plane's deadlines find them (docs/reliability.md).

use conclave_protocol::mls_wire;
use conclave_testkit::accounts::{PASSWORD, register_confirmed};
use conclave_testkit::smtp::MailCatcher;
use ed25519_dalek::{Signer, SigningKey};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgConnection};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, Command};
use tokio::sync::watch;
use uuid::Uuid;

const PG_BIN: &str = "/usr/lib/postgresql/15/bin";
/// How long anything may take to become ready, and a single send to be acknowledged at last.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
const SEND_DEADLINE: Duration = Duration::from_secs(30);
/// One HTTP attempt; a send that hangs longer is retried (with the same client message id).
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(2);
/// Conversations per scenario, members per conversation, concurrent senders per member.
const CONVERSATIONS: usize = 2;
const MEMBERS: usize = 3;
const SENDERS_PER_MEMBER: usize = 2;
/// Bounds of one sender: messages, and load before and after the fault.
const MAX_SENDS: usize = 3000;
const BEFORE_FAULT: Duration = Duration::from_millis(1500);
const AFTER_FAULT: Duration = Duration::from_millis(2500);
/// How long the network to PostgreSQL stays cut, and Redis stays down.
const CUT: Duration = Duration::from_secs(3);
/// The data plane's deadline on a request's work (`--request-deadline-secs`), short here so that
/// the readers' bound below is meaningful within a scenario, and longer than the send batch's
/// own deadline (5 s), which stays what bounds a send.
const REQUEST_DEADLINE_SECS: u64 = 6;
/// Every read, whatever the fault, must be answered (any status) or refused within this: the
/// deadline plus room for a loaded machine. A read stuck on a silent connection is not.
const READ_BOUND: Duration = Duration::from_secs(15);
/// Readers per conversation, reading back to back: enough that some query is in flight when a
/// silent partition begins.
const READERS_PER_CONVERSATION: usize = 3;
/// The readers' own timeout, past which a read counts as never answered.
const READ_TIMEOUT: Duration = Duration::from_secs(30);

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free loopback port").port()
}

/// The uid and gid to run PostgreSQL as: `postgres` when this process is root (PostgreSQL
/// refuses to run as root), else none (this user).
fn postgres_user() -> Option<(u32, u32)> {
    use std::os::unix::fs::MetadataExt;
    if std::fs::metadata("/proc/self").map(|m| m.uid()).unwrap_or(1) != 0 {
        return None;
    }
    let passwd = std::fs::read_to_string("/etc/passwd").expect("/etc/passwd");
    let line =
        passwd.lines().find(|l| l.starts_with("postgres:")).expect("a postgres user (apt install postgresql-15)");
    let fields: Vec<&str> = line.split(':').collect();
    Some((fields[2].parse().expect("uid"), fields[3].parse().expect("gid")))
}

fn log_file(path: &Path) -> (Stdio, Stdio) {
    let file = std::fs::OpenOptions::new().create(true).append(true).open(path).expect("a log file");
    (Stdio::from(file.try_clone().expect("log file")), Stdio::from(file))
}

/// Sends `signal` to a child and waits (bounded) for it to exit; SIGKILL when it does not.
async fn stop_child(child: &mut Child, signal: &str) {
    if let Some(pid) = child.id() {
        let _ = std::process::Command::new("kill").args(["-s", signal, &pid.to_string()]).status();
    }
    if tokio::time::timeout(READY_TIMEOUT, child.wait()).await.is_err() {
        let _ = child.kill().await;
    }
}

/// For `Drop`: the same without a runtime.
fn stop_child_now(child: &mut Child, signal: &str) {
    if let Some(pid) = child.id() {
        let _ = std::process::Command::new("kill").args(["-s", signal, &pid.to_string()]).status();
        for _ in 0..100 {
            if matches!(child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.start_kill();
    }
}

/// A PostgreSQL cluster of the test's own.
struct Postgres {
    dir: PathBuf,
    port: u16,
    run_as: Option<(u32, u32)>,
    child: Option<Child>,
}

impl Postgres {
    async fn create(base: &Path) -> Self {
        let run_as = postgres_user();
        if let Some((uid, gid)) = run_as {
            std::os::unix::fs::chown(base, Some(uid), Some(gid)).expect("chown the test directory");
        }
        let dir = base.join("pg");
        let mut initdb = Command::new(format!("{PG_BIN}/initdb"));
        initdb.args(["-U", "postgres", "--auth=trust", "--encoding=UTF8", "--locale=C", "--no-sync", "-D"]).arg(&dir);
        let (out, err) = log_file(&base.join("initdb.log"));
        initdb.stdout(out).stderr(err);
        if let Some((uid, gid)) = run_as {
            initdb.uid(uid).gid(gid);
        }
        let status = initdb.status().await.expect("running initdb");
        assert!(status.success(), "initdb failed: see {}", base.join("initdb.log").display());
        let mut pg = Self { dir, port: free_port(), run_as, child: None };
        pg.start().await;
        pg
    }

    fn options(&self, user: &str, database: &str) -> PgConnectOptions {
        PgConnectOptions::new().host("127.0.0.1").port(self.port).username(user).database(database)
    }

    /// A pool as the schema owner (seeding, migrations).
    async fn owner_pool(&self) -> sqlx::PgPool {
        PgPoolOptions::new()
            .max_connections(2)
            .connect_with(self.options("conclave", "conclave").disable_statement_logging())
            .await
            .expect("owner pool")
    }

    async fn start(&mut self) {
        let mut command = Command::new(format!("{PG_BIN}/postgres"));
        command
            .arg("-D")
            .arg(&self.dir)
            .args(["-p", &self.port.to_string(), "-k"])
            .arg(self.dir.parent().expect("base"));
        // Loopback only. fsync off: a process crash keeps what the OS was handed; only a crash of
        // the machine would need it, and the shared machine's disks are spared.
        command.args(["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "max_connections=50"]);
        let (out, err) = log_file(&self.dir.with_file_name("postgres.log"));
        command.stdout(out).stderr(err).stdin(Stdio::null()).kill_on_drop(true);
        if let Some((uid, gid)) = self.run_as {
            command.uid(uid).gid(gid);
        }
        self.child = Some(command.spawn().expect("starting postgres"));
        let started = Instant::now();
        loop {
            if PgConnection::connect_with(&self.options("postgres", "postgres")).await.is_ok() {
                return;
            }
            assert!(started.elapsed() < READY_TIMEOUT, "PostgreSQL did not become ready (see postgres.log)");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `INT`: fast shutdown (sessions ended, a checkpoint); `QUIT`: immediate shutdown, which
    /// leaves crash recovery to the next start.
    async fn stop(&mut self, signal: &str) {
        if let Some(mut child) = self.child.take() {
            stop_child(&mut child, signal).await;
        }
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            stop_child_now(child, "QUIT");
        }
    }
}

/// A redis-server of the test's own.
struct Redis {
    dir: PathBuf,
    port: u16,
    child: Option<Child>,
}

impl Redis {
    async fn start(&mut self) {
        let mut command = Command::new("redis-server");
        command.args(["--bind", "127.0.0.1", "--port", &self.port.to_string(), "--save", "", "--appendonly", "no"]);
        command.arg("--dir").arg(&self.dir);
        let (out, err) = log_file(&self.dir.join("redis.log"));
        command.stdout(out).stderr(err).stdin(Stdio::null()).kill_on_drop(true);
        self.child = Some(command.spawn().expect("starting redis-server"));
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", self.port)).await.is_err() {
            assert!(started.elapsed() < READY_TIMEOUT, "Redis did not become ready");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            stop_child(&mut child, "KILL").await;
        }
    }
}

/// A TCP proxy between the data plane and PostgreSQL. While the network is cut nothing passes:
/// open connections are black-holed, and when the network returns they are gone (closed), as
/// after a partition that outlived them; connections opened during the cut wait for its end.
struct Proxy {
    port: u16,
    cut: watch::Sender<bool>,
    /// Whether connections black-holed by the next cut stay silent for ever instead of closing.
    silent: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    async fn start(upstream: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("proxy listener");
        let port = listener.local_addr().expect("proxy address").port();
        let (cut, watching) = watch::channel(false);
        let silent = Arc::new(AtomicBool::new(false));
        let silence = silent.clone();
        let task = tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                tokio::spawn(Self::relay(inbound, upstream, watching.clone(), silence.clone()));
            }
        });
        Self { port, cut, silent, task }
    }

    async fn relay(mut inbound: TcpStream, upstream: u16, mut cut: watch::Receiver<bool>, silent: Arc<AtomicBool>) {
        if cut.wait_for(|cut| !*cut).await.is_err() {
            return;
        }
        let Ok(mut outbound) = TcpStream::connect(("127.0.0.1", upstream)).await else { return };
        let black_holed = tokio::select! {
            _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => false,
            _ = cut.wait_for(|cut| *cut) => true,
        };
        if black_holed {
            if silent.load(Ordering::Relaxed) {
                std::future::pending::<()>().await;
            }
            let _ = cut.wait_for(|cut| !*cut).await;
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The data plane as a child process.
struct DataPlane {
    /// A copy of the binary cargo built, so that a build beside the test cannot swap it between
    /// the first start and a restart.
    program: PathBuf,
    args: Vec<String>,
    log: PathBuf,
    base: String,
    child: Option<Child>,
}

impl DataPlane {
    async fn start(&mut self) {
        let (out, err) = log_file(&self.log);
        let mut command = Command::new(&self.program);
        command.arg("serve").args(&self.args).stdout(out).stderr(err).stdin(Stdio::null()).kill_on_drop(true);
        // The binary was copied a moment ago: a process forked meanwhile by the other test (its
        // PostgreSQL, its Redis) may still hold the copy's file open until it execs, and exec then
        // fails with ETXTBSY. That passes within milliseconds; a bounded retry waits it out.
        let mut attempts = 0;
        let child = loop {
            match command.spawn() {
                Err(error) if error.kind() == std::io::ErrorKind::ExecutableFileBusy && attempts < 100 => {
                    attempts += 1;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                spawned => break spawned.expect("starting conclave-dataplane"),
            }
        };
        self.child = Some(child);
        let http = reqwest::Client::new();
        let started = Instant::now();
        loop {
            let ready = http.get(format!("{}/readyz", self.base)).timeout(Duration::from_secs(2)).send().await;
            if ready.is_ok_and(|r| r.status() == StatusCode::OK) {
                return;
            }
            assert!(
                started.elapsed() < READY_TIMEOUT,
                "the data plane did not become ready (see {})",
                self.log.display()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            stop_child(&mut child, "KILL").await;
        }
    }
}

impl Drop for DataPlane {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            stop_child_now(child, "KILL");
        }
    }
}

/// The test's directory, removed at the end (after everything in it has stopped: fields drop
/// in order, and this is the world's last).
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::env::var_os("CONCLAVE_FAULTS_KEEP").is_some() {
            eprintln!("kept {}", self.0.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

struct World {
    dataplane: DataPlane,
    proxy: Proxy,
    redis: Redis,
    postgres: Postgres,
    mail: MailCatcher,
    http: reqwest::Client,
    owner: sqlx::PgPool,
    _dir: TempDir,
}

impl World {
    async fn start() -> Self {
        let base = std::env::temp_dir().join(format!("conclave-faults-{}", Uuid::new_v4().simple()));
        std::fs::create_dir_all(&base).expect("the test directory");
        let dir = TempDir(base.clone());
        let postgres = Postgres::create(&base).await;
        let mut admin = PgConnection::connect_with(&postgres.options("postgres", "postgres")).await.expect("admin");
        for statement in [
            "CREATE ROLE conclave LOGIN CREATEDB",
            "CREATE ROLE conclave_app LOGIN",
            "GRANT conclave_app TO conclave",
            "CREATE DATABASE conclave OWNER conclave",
        ] {
            sqlx::raw_sql(statement).execute(&mut admin).await.expect(statement);
        }
        admin.close().await.expect("close");
        let owner = postgres.owner_pool().await;
        conclave_schema::migrate(&owner).await.expect("migrations");

        let redis_dir = base.join("redis");
        std::fs::create_dir_all(&redis_dir).expect("redis dir");
        let mut redis = Redis { dir: redis_dir, port: free_port(), child: None };
        redis.start().await;
        let proxy = Proxy::start(postgres.port).await;
        let mail = MailCatcher::start().await.expect("smtp listener");

        let keys = base.join("jwt");
        std::fs::create_dir_all(&keys).expect("keys dir");
        conclave_dataplane::auth::jwt::generate_key_file(&keys, "faults-1").expect("jwt key");
        let port = free_port();
        let args = [
            "--listen".to_owned(),
            format!("127.0.0.1:{port}"),
            "--database-url".to_owned(),
            format!("postgres://conclave_app@127.0.0.1:{}/conclave", proxy.port),
            "--database-max-connections".to_owned(),
            "10".to_owned(),
            "--redis-url".to_owned(),
            format!("redis://127.0.0.1:{}/", redis.port),
            "--smtp-url".to_owned(),
            mail.url(),
            "--jwt-keys-dir".to_owned(),
            keys.display().to_string(),
            "--attachments-dir".to_owned(),
            base.join("attachments").display().to_string(),
            "--rate-limit-factor".to_owned(),
            "1000".to_owned(),
            "--attachment-gc-ms".to_owned(),
            "0".to_owned(),
            "--request-deadline-secs".to_owned(),
            REQUEST_DEADLINE_SECS.to_string(),
        ];
        let program = base.join("conclave-dataplane");
        std::fs::copy(env!("CARGO_BIN_EXE_conclave-dataplane"), &program).expect("a copy of the data plane binary");
        let mut dataplane = DataPlane {
            program,
            args: args.to_vec(),
            log: base.join("dataplane.log"),
            base: format!("http://127.0.0.1:{port}"),
            child: None,
        };
        dataplane.start().await;
        Self { dataplane, proxy, redis, postgres, mail, http: reqwest::Client::new(), owner, _dir: dir }
    }

    async fn post(&self, path: &str, body: Value, token: Option<&str>) -> (StatusCode, Value) {
        let mut request = self.http.post(format!("{}{path}", self.dataplane.base)).json(&body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.expect("request");
        (response.status(), response.json().await.unwrap_or(Value::Null))
    }

    async fn get(&self, path: &str, token: &str) -> (StatusCode, Value) {
        let response =
            self.http.get(format!("{}{path}", self.dataplane.base)).bearer_auth(token).send().await.expect("request");
        (response.status(), response.json().await.unwrap_or(Value::Null))
    }

    /// A confirmed account signed in on a device whose keys the test holds.
    async fn person(&self, email: &str) -> Person {
        let user_id = register_confirmed(&self.http, &self.dataplane.base, &self.mail, email, PASSWORD, "Sender")
            .await
            .expect("a confirmed account");
        let mut seed = [0u8; 32];
        seed[..16].copy_from_slice(Uuid::new_v4().as_bytes());
        seed[16..].copy_from_slice(Uuid::new_v4().as_bytes());
        let signing = SigningKey::from_bytes(&seed);
        let ed = signing.verifying_key().to_bytes();
        let proof = signing.sign(&conclave_protocol::layout::device_key_input(&ed));
        let device = json!({
            "name": "laptop",
            "platform": "cli",
            "ed25519_public_key": b64(&ed),
            "key_signature": b64(&proof.to_bytes()),
        });
        let (status, body) =
            self.post("/v1/auth/login", json!({ "email": email, "password": PASSWORD, "device": device }), None).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        Person { user_id, access: body["access_token"].as_str().expect("token").to_owned() }
    }

    /// A group conversation of `members` (the first creates it) with its first key generation.
    async fn conversation(&self, organization: Uuid, workspace: Uuid, members: &[Arc<Person>]) -> Uuid {
        let others: Vec<Uuid> = members[1..].iter().map(|m| m.user_id).collect();
        let (status, conversation) = self
            .post(
                &format!("/v1/organizations/{organization}/workspaces/{workspace}/conversations"),
                json!({ "kind": "group", "member_user_ids": others }),
                Some(&members[0].access),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{conversation}");
        let id: Uuid = conversation["id"].as_str().and_then(|s| s.parse().ok()).expect("id");
        let path = format!("/v1/organizations/{organization}/conversations/{id}");
        let (status, devices) = self.get(&format!("{path}/devices"), &members[0].access).await;
        assert_eq!(status, StatusCode::OK, "{devices}");
        // The first commit (opaque behind its MLS framing) welcomes the other members' devices.
        let welcomed: Vec<Value> = devices
            .as_array()
            .expect("devices")
            .iter()
            .filter(|d| d["user_id"] != json!(members[0].user_id))
            .map(|d| d["device_id"].clone())
            .collect();
        let group = id.as_bytes();
        let commit = json!({
            "epoch": 0,
            "commit": b64(&mls_wire::fake::private_message(group, 0, mls_wire::content_type::COMMIT, &[1u8; 40])),
            "group_info": b64(&mls_wire::fake::group_info(group, 1, &[2u8; 40])),
            "welcome": b64(&mls_wire::fake::welcome(&[3u8; 40])),
            "welcomed_devices": welcomed,
        });
        let (status, body) = self.post(&format!("{path}/commits"), commit, Some(&members[0].access)).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        id
    }

    /// Every message of a conversation, read back through the API: (client message id, seq).
    async fn read_back(&self, organization: Uuid, conversation: Uuid, reader: &Person) -> Vec<(Uuid, i64)> {
        let mut out = Vec::new();
        let mut after = 0i64;
        for _ in 0..1000 {
            let path = format!(
                "/v1/organizations/{organization}/conversations/{conversation}/messages?after_seq={after}&limit=200"
            );
            let (status, page) = self.get(&path, &reader.access).await;
            assert_eq!(status, StatusCode::OK, "{page}");
            for message in page["messages"].as_array().expect("messages") {
                let id = message["client_message_id"].as_str().and_then(|s| s.parse().ok()).expect("client id");
                let seq = message["seq"].as_i64().expect("seq");
                out.push((id, seq));
                after = seq;
            }
            if page["has_more"] != json!(true) {
                return out;
            }
        }
        panic!("more than 200,000 messages in a conversation");
    }
}

fn b64(bytes: &[u8]) -> String {
    conclave_protocol::b64::encode(bytes)
}

struct Person {
    user_id: Uuid,
    access: String,
}

impl Person {
    fn message(&self, conversation: Uuid, client_message_id: Uuid) -> Value {
        let body = [client_message_id.as_bytes().as_slice(), &[5u8; 24]].concat();
        let ciphertext =
            mls_wire::fake::private_message(conversation.as_bytes(), 1, mls_wire::content_type::APPLICATION, &body);
        json!({
            "client_message_id": client_message_id,
            "key_generation": 1,
            "ciphertext": b64(&ciphertext),
        })
    }
}

/// What one sender saw.
#[derive(Default)]
struct Sent {
    /// Acknowledged client message ids, with when.
    acked: Vec<(Uuid, Instant)>,
    /// Answered 201 / 200 (a retry of a send that had been stored already).
    created: usize,
    existing: usize,
    /// Retryable failures by kind, with when.
    errors: Vec<(String, Instant)>,
}

/// Sends until `stop` (or `MAX_SENDS`), each message retried with its client message id until
/// it is acknowledged; a non-retryable answer, or a send not acknowledged in `SEND_DEADLINE`,
/// fails the test.
async fn sender(
    base: String,
    organization: Uuid,
    conversation: Uuid,
    person: Arc<Person>,
    stop: Arc<AtomicBool>,
) -> Sent {
    let http = reqwest::Client::builder().timeout(ATTEMPT_TIMEOUT).build().expect("client");
    let url = format!("{base}/v1/organizations/{organization}/conversations/{conversation}/messages");
    let mut sent = Sent::default();
    while !stop.load(Ordering::Relaxed) && sent.acked.len() < MAX_SENDS {
        let id = Uuid::now_v7();
        let body = person.message(conversation, id);
        let first = Instant::now();
        loop {
            let kind = match http.post(&url).bearer_auth(&person.access).json(&body).send().await {
                Ok(response) if response.status() == StatusCode::CREATED || response.status() == StatusCode::OK => {
                    if response.status() == StatusCode::CREATED {
                        sent.created += 1;
                    } else {
                        sent.existing += 1;
                    }
                    sent.acked.push((id, Instant::now()));
                    break;
                }
                Ok(response)
                    if response.status().is_server_error() || response.status() == StatusCode::TOO_MANY_REQUESTS =>
                {
                    let status = response.status().as_u16();
                    let body: Value = response.json().await.unwrap_or(Value::Null);
                    format!("{status} {}", body["error"]["code"].as_str().unwrap_or("-"))
                }
                Ok(response) => {
                    let status = response.status();
                    panic!(
                        "a send was refused with a non-retryable answer: {status} {}",
                        response.text().await.unwrap_or_default()
                    );
                }
                Err(error) => transport_failure(&error).to_owned(),
            };
            sent.errors.push((kind, Instant::now()));
            assert!(
                first.elapsed() < SEND_DEADLINE,
                "a send was not acknowledged within {SEND_DEADLINE:?}: {sent_errors:?}",
                sent_errors = sent.errors.last()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    sent
}

/// How a request failed without an answer: no answer within the client's timeout, no
/// connection, or a connection lost on the way.
fn transport_failure(error: &reqwest::Error) -> &'static str {
    if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "connection refused"
    } else {
        "connection lost"
    }
}

/// Reads a conversation's newest messages until `stop`, one read at a time; returns each read's
/// outcome ("200", "503 deadline_exceeded", "timed out" (no answer in [`READ_TIMEOUT`]), ...) and how long it took.
/// Reads are what the send batch's deadline does not cover.
async fn reader(
    base: String,
    organization: Uuid,
    conversation: Uuid,
    person: Arc<Person>,
    stop: Arc<AtomicBool>,
) -> Vec<(String, Duration)> {
    let http = reqwest::Client::builder().timeout(READ_TIMEOUT).build().expect("client");
    let url = format!("{base}/v1/organizations/{organization}/conversations/{conversation}/messages?limit=20");
    let mut reads = Vec::new();
    while !stop.load(Ordering::Relaxed) && reads.len() < MAX_SENDS {
        let started = Instant::now();
        let outcome = match http.get(&url).bearer_auth(&person.access).send().await {
            Ok(response) => {
                let status = response.status().as_u16();
                let body: Value = response.json().await.unwrap_or(Value::Null);
                match body["error"]["code"].as_str() {
                    Some(code) => format!("{status} {code}"),
                    None => status.to_string(),
                }
            }
            Err(error) => transport_failure(&error).to_owned(),
        };
        reads.push((outcome, started.elapsed()));
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    reads
}

#[derive(Debug, Clone, Copy)]
enum Fault {
    PostgresRestart,
    PostgresCrash,
    RedisKill,
    DataPlaneKill,
    NetworkCut,
    NetworkSilent,
}

impl Fault {
    fn name(self) -> &'static str {
        match self {
            Fault::PostgresRestart => "PostgreSQL restarted (fast shutdown)",
            Fault::PostgresCrash => "PostgreSQL crashed (immediate shutdown, recovery)",
            Fault::RedisKill => "Redis SIGKILLed, restarted 3 s later",
            Fault::DataPlaneKill => "data plane SIGKILLed and restarted",
            Fault::NetworkCut => "network to PostgreSQL cut for 3 s",
            Fault::NetworkSilent => "network to PostgreSQL cut for 3 s, old connections silent for ever",
        }
    }

    /// Injects the fault and lifts it; returns when the service it broke is back.
    async fn inject(self, world: &mut World) {
        match self {
            Fault::PostgresRestart | Fault::PostgresCrash => {
                world.owner.close().await;
                world.postgres.stop(if matches!(self, Fault::PostgresRestart) { "INT" } else { "QUIT" }).await;
                world.postgres.start().await;
                world.owner = world.postgres.owner_pool().await;
            }
            Fault::RedisKill => {
                world.redis.kill().await;
                tokio::time::sleep(CUT).await;
                world.redis.start().await;
            }
            Fault::DataPlaneKill => {
                world.dataplane.kill().await;
                world.dataplane.start().await;
            }
            Fault::NetworkCut | Fault::NetworkSilent => {
                world.proxy.silent.store(matches!(self, Fault::NetworkSilent), Ordering::Relaxed);
                world.proxy.cut.send_replace(true);
                tokio::time::sleep(CUT).await;
                world.proxy.cut.send_replace(false);
            }
        }
    }
}

/// The figures of one scenario.
struct Figures {
    fault: Fault,
    sent: usize,
    retried_ok: usize,
    errors: BTreeMap<String, usize>,
    lost: usize,
    duplicates: usize,
    unexpected: usize,
    fault_seconds: f64,
    /// From the fault's end to the first acknowledged send after it.
    recovery: Duration,
    /// The longest time without any acknowledged send, as the clients saw it.
    longest_gap: Duration,
    /// Reads made beside the sends, by outcome.
    reads: BTreeMap<String, usize>,
    /// The longest a read took to be answered or refused.
    slowest_read: Duration,
}

async fn scenario(
    world: &mut World,
    people: &[Arc<Person>],
    organization: Uuid,
    workspace: Uuid,
    fault: Fault,
) -> Figures {
    let mut conversations = Vec::new();
    for members in people.chunks(MEMBERS).take(CONVERSATIONS) {
        conversations.push((world.conversation(organization, workspace, members).await, members.to_vec()));
    }
    let stop = Arc::new(AtomicBool::new(false));
    let mut senders = Vec::new();
    for (conversation, members) in &conversations {
        for member in members {
            for _ in 0..SENDERS_PER_MEMBER {
                let task =
                    sender(world.dataplane.base.clone(), organization, *conversation, member.clone(), stop.clone());
                senders.push((*conversation, tokio::spawn(task)));
            }
        }
    }
    let mut readers = Vec::new();
    for (conversation, members) in &conversations {
        for member in members.iter().take(READERS_PER_CONVERSATION) {
            let task = reader(world.dataplane.base.clone(), organization, *conversation, member.clone(), stop.clone());
            readers.push(tokio::spawn(task));
        }
    }
    let load_started = Instant::now();
    tokio::time::sleep(BEFORE_FAULT).await;
    let fault_started = Instant::now();
    fault.inject(world).await;
    let fault_ended = Instant::now();
    tokio::time::sleep(AFTER_FAULT).await;
    stop.store(true, Ordering::Relaxed);
    let mut results = Vec::new();
    for (conversation, task) in senders {
        results.push((conversation, task.await.expect("a sender panicked")));
    }
    let (mut reads, mut slowest_read) = (BTreeMap::new(), Duration::ZERO);
    for task in readers {
        for (outcome, took) in task.await.expect("a reader panicked") {
            *reads.entry(outcome).or_insert(0) += 1;
            slowest_read = slowest_read.max(took);
        }
    }

    let mut errors = BTreeMap::new();
    let mut acks: Vec<Instant> = Vec::new();
    let mut acked: HashSet<Uuid> = HashSet::new();
    let mut retried_ok = 0;
    for (_, sent) in &results {
        retried_ok += sent.existing;
        for (kind, _) in &sent.errors {
            *errors.entry(kind.clone()).or_insert(0) += 1;
        }
        for (id, at) in &sent.acked {
            acked.insert(*id);
            acks.push(*at);
        }
    }
    acks.sort();
    let recovery =
        acks.iter().find(|at| **at >= fault_ended).map(|at| *at - fault_ended).expect("no send after the fault");
    let mut longest_gap = Duration::ZERO;
    let mut previous = load_started;
    for at in &acks {
        longest_gap = longest_gap.max(at.saturating_duration_since(previous));
        previous = *at;
    }

    let (mut lost, mut duplicates, mut unexpected) = (0, 0, 0);
    for (conversation, members) in &conversations {
        let stored = world.read_back(organization, *conversation, &members[0]).await;
        let seqs: Vec<i64> = stored.iter().map(|(_, seq)| *seq).collect();
        assert_eq!(seqs, (1..=stored.len() as i64).collect::<Vec<_>>(), "{}: the sequence has gaps", fault.name());
        let mut counts: HashMap<Uuid, usize> = HashMap::new();
        for (id, _) in &stored {
            *counts.entry(*id).or_insert(0) += 1;
        }
        let acked_here: HashSet<Uuid> = results
            .iter()
            .filter(|(c, _)| c == conversation)
            .flat_map(|(_, sent)| sent.acked.iter().map(|(id, _)| *id))
            .collect();
        duplicates += counts.values().map(|n| n - 1).sum::<usize>();
        unexpected += counts.keys().filter(|id| !acked_here.contains(id)).count();
        lost += acked_here.iter().filter(|id| !counts.contains_key(id)).count();
    }
    Figures {
        fault,
        sent: acked.len(),
        retried_ok,
        errors,
        lost,
        duplicates,
        unexpected,
        fault_seconds: (fault_ended - fault_started).as_secs_f64(),
        recovery,
        longest_gap,
        reads,
        slowest_read,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_under_load_lose_nothing_and_duplicate_nothing() {
    run(&[Fault::PostgresRestart, Fault::PostgresCrash, Fault::RedisKill, Fault::DataPlaneKill, Fault::NetworkCut])
        .await;
}

/// A connection whose packets vanish without a FIN or RST would hold its writer's sends for ever
/// (the kernel never gives up on a loopback peer that acknowledges everything): the send batch's
/// deadline abandons it, and the pool's bounded health checks drop the other silent ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_that_leaves_connections_silent_loses_nothing() {
    run(&[Fault::NetworkSilent]).await;
}

/// Runs each fault in turn under load on one world, prints its figures, and fails when any
/// message was lost, duplicated or stored unasked.
async fn run(faults: &[Fault]) {
    let mut world = World::start().await;
    let mut people = Vec::new();
    for n in 0..CONVERSATIONS * MEMBERS {
        people.push(Arc::new(world.person(&format!("sender{n}@example.org")).await));
    }
    let users: Vec<Uuid> = people.iter().map(|p| p.user_id).collect();
    let org = conclave_testkit::seed_organization(&world.owner, "faults", &users).await.expect("organization");
    let mut failures = Vec::new();
    for &fault in faults {
        let figures = scenario(&mut world, &people, org.id, org.workspace_id, fault).await;
        println!(
            "[faults] {}: sent {}, lost {}, duplicates {}, unexpected {}, fault lasted {:.2} s, recovery {} ms, longest gap between acks {} ms, retries answered 200 {}, retryable errors {:?}",
            figures.fault.name(),
            figures.sent,
            figures.lost,
            figures.duplicates,
            figures.unexpected,
            figures.fault_seconds,
            figures.recovery.as_millis(),
            figures.longest_gap.as_millis(),
            figures.retried_ok,
            figures.errors,
        );
        println!(
            "[faults] {}: reads beside the sends {:?}, slowest answered in {} ms",
            figures.fault.name(),
            figures.reads,
            figures.slowest_read.as_millis(),
        );
        if figures.lost + figures.duplicates + figures.unexpected > 0 || figures.sent == 0 {
            failures.push(figures.fault.name().to_owned());
        }
        if figures.slowest_read > READ_BOUND || figures.reads.contains_key("timed out") {
            failures.push(format!("{}: a read was not answered within {READ_BOUND:?}", figures.fault.name()));
        }
    }
    assert!(failures.is_empty(), "messages lost, duplicated or unexpected, or reads unanswered, under: {failures:?}");
}
