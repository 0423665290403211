//! `mls`: protocol v2 (MLS) measured through the SDK's `conclave_client::mls` API.
//!
//! * [`group`]: one committer builds a group of `--group-size` signed-in devices (batched add
//!   commits, written to the database as the data plane would store them: not measured), then each
//!   round commits adding one more device and commits removing it again. Every step is timed on its
//!   own: the committer making the commit, `POST .../commits` (request to answer), the committer
//!   merging it, an existing member processing it, and the new device joining from the Welcome.
//! * [`claims`]: devices stock one-time key packages through `POST /v1/key-packages`, then
//!   `--concurrency` closed-loop claimers call `POST .../key-packages/claim` for a window.
//! * [`throughput`]: a group of 2 or 10 devices in this process only; every application message is
//!   encrypted by one member and processed (decrypted, its sender's leaf checked) by every other.

use crate::messages::histogram;
use crate::provision::{Member, Tenant};
use crate::results::{ClaimFigures, CommitFigures, GroupFigures, Latency, Resources, Spread, ThroughputFigures};
use crate::system::{self, Watch};
use anyhow::{Context, Result, bail};
use conclave_client::mls::{Device, GroupAddress, IdentityKey, Incoming, MlsGroup, Outgoing, Roster, TrustStore};
use conclave_protocol::handshake::{MlsBytes, UploadCommit};
use futures::StreamExt as _;
use sqlx::PgPool;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use uuid::Uuid;

fn millis(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1000.0
}

/// A signed-in member's MLS side: a fresh identity for the user, the device's registered Ed25519
/// key signing its leaves (as the protocol requires).
fn device_of(member: &Member) -> Result<Device> {
    let identity = IdentityKey::generate()?;
    Ok(Device::for_device_keys(&identity, member.user_id, member.device_id, &member.keys)?)
}

/// A conversation at epoch 0 (no commit yet) with these members, the first its owner.
async fn mls_conversation(owner: &PgPool, tenant: &Tenant, members: &[&Member]) -> Result<Uuid> {
    let creator = members.first().context("a conversation needs members")?;
    let mut tx = owner.begin().await?;
    let id: Uuid = sqlx::query_scalar(
        "INSERT INTO conversations (organization_id, workspace_id, kind, name, created_by)
         VALUES ($1, $2, 'channel', 'bench-mls', $3) RETURNING id",
    )
    .bind(tenant.organization_id)
    .bind(tenant.workspace_id)
    .bind(creator.user_id)
    .fetch_one(&mut *tx)
    .await?;
    let users: Vec<Uuid> = members.iter().map(|m| m.user_id).collect();
    let roles: Vec<&str> = (0..members.len()).map(|i| if i == 0 { "owner" } else { "member" }).collect();
    sqlx::query(
        "INSERT INTO conversation_members (organization_id, conversation_id, user_id, role)
         SELECT $1, $2, u, r FROM unnest($3::uuid[], $4::text[]) AS t(u, r)",
    )
    .bind(tenant.organization_id)
    .bind(id)
    .bind(&users)
    .bind(&roles)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(id)
}

/// Stores a commit's epoch as the data plane does when it accepts one (its row in
/// `conversation_encryption_keys`, the conversation's epoch moved): for the provisioning commits,
/// and for a measured commit the data plane refused, so the rounds that follow stay in step.
/// The Welcome's per-device rows are left out: no device of the run fetches them.
async fn record_epoch(owner: &PgPool, at: GroupAddress, committer: Uuid, outgoing: &Outgoing) -> Result<()> {
    let epoch = i32::try_from(outgoing.epoch + 1)?;
    let reason = match (&outgoing.welcome, outgoing.epoch) {
        (Some(_), 0) => "initial",
        (Some(_), _) => "member_added",
        (None, _) => "member_removed",
    };
    let mut tx = owner.begin().await?;
    sqlx::query(
        "INSERT INTO conversation_encryption_keys
             (organization_id, conversation_id, generation, created_by_device_id, reason, commit_message, group_info, welcome)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(at.organization_id)
    .bind(at.conversation_id)
    .bind(epoch)
    .bind(committer)
    .bind(reason)
    .bind(&outgoing.commit)
    .bind(&outgoing.group_info)
    .bind(&outgoing.welcome)
    .execute(&mut *tx)
    .await?;
    sqlx::query("UPDATE conversations SET current_key_generation = $2 WHERE id = $1")
        .bind(at.conversation_id)
        .bind(epoch)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

fn upload_body(outgoing: &Outgoing) -> Result<UploadCommit> {
    Ok(UploadCommit {
        epoch: i32::try_from(outgoing.epoch)?,
        commit: MlsBytes(outgoing.commit.clone()),
        group_info: MlsBytes(outgoing.group_info.clone()),
        welcome: outgoing.welcome.clone().map(MlsBytes),
        welcomed_devices: outgoing.welcomed.iter().map(|(_, device)| *device).collect(),
        proposals: outgoing.proposals.iter().cloned().map(MlsBytes).collect(),
    })
}

/// Samples of one kind of commit, over the rounds.
#[derive(Default)]
struct CommitSamples {
    create: Vec<f64>,
    post: Vec<f64>,
    merge: Vec<f64>,
    process: Vec<f64>,
    outcomes: BTreeMap<String, u64>,
    /// (commit, welcome, group info, request body) bytes of the last round.
    bytes: (usize, Option<usize>, usize, usize),
}

impl CommitSamples {
    fn figures(self) -> CommitFigures {
        CommitFigures {
            commit_bytes: self.bytes.0,
            welcome_bytes: self.bytes.1,
            group_info_bytes: self.bytes.2,
            request_bytes: self.bytes.3,
            create_ms: Spread::of(&self.create),
            merge_ms: Spread::of(&self.merge),
            process_ms: Spread::of(&self.process),
            post_ms: Spread::of(&self.post),
            post_outcomes: self.outcomes.into_iter().collect(),
        }
    }
}

/// The committer and an existing member of the large group, and what they need to check leaves.
struct LargeGroup<'a> {
    owner: &'a PgPool,
    at: GroupAddress,
    committer: &'a Member,
    committer_device: &'a Device,
    group: MlsGroup,
    trust: TrustStore,
    member_device: &'a Device,
    member_group: MlsGroup,
    member_trust: TrustStore,
    roster: &'a Roster,
}

impl LargeGroup<'_> {
    /// Hands the commit just made (pending) to the data plane, merges it on both sides and times
    /// each step. A refusal is recorded, and the epoch written as the data plane would have, so
    /// the group and the server stay in step for the next round.
    async fn deliver(&mut self, outgoing: &Outgoing, samples: &mut CommitSamples) -> Result<()> {
        let body = upload_body(outgoing)?;
        let request_bytes = serde_json::to_vec(&body)?.len();
        let started = Instant::now();
        let answer = self.committer.client.upload_commit(self.at.organization_id, self.at.conversation_id, &body).await;
        samples.post.push(millis(started));
        let outcome = match answer {
            Ok(_) => "201".to_owned(),
            Err(error) => {
                record_epoch(self.owner, self.at, self.committer.device_id, outgoing).await?;
                match error.api() {
                    Some(api) => format!("{} {}", api.status.as_u16(), api.code),
                    None => error.chain().chars().take(120).collect(),
                }
            }
        };
        *samples.outcomes.entry(outcome).or_default() += 1;
        let started = Instant::now();
        self.committer_device.merge_pending(&mut self.group)?;
        samples.merge.push(millis(started));
        let started = Instant::now();
        let seen = self.member_device.process(
            &mut self.member_group,
            &outgoing.commit,
            self.roster,
            &mut self.member_trust,
        )?;
        samples.process.push(millis(started));
        if !matches!(seen, Incoming::Commit { .. }) {
            bail!("the member did not see a commit: {seen:?}");
        }
        samples.bytes =
            (outgoing.commit.len(), outgoing.welcome.as_ref().map(Vec::len), outgoing.group_info.len(), request_bytes);
        Ok(())
    }
}

pub struct GroupSettings {
    pub group_size: usize,
    pub batch: usize,
    pub rounds: usize,
}

/// `members`: the group's devices first (the committer at 0), then one joiner per round; all
/// signed in, all members of the conversation on the server.
pub async fn group(
    owner: &PgPool,
    tenant: &Tenant,
    members: &[Member],
    settings: &GroupSettings,
) -> Result<GroupFigures> {
    let GroupSettings { group_size, batch, rounds } = *settings;
    if group_size < 2 || members.len() < group_size + rounds {
        bail!("the group needs at least 2 devices and one more member per round");
    }
    let members = &members[..group_size + rounds];
    let started = Instant::now();
    let devices = members.iter().map(device_of).collect::<Result<Vec<_>>>()?;
    let roster = Roster { members: members.iter().map(|m| m.user_id).collect(), ..Roster::default() };
    let conversation_id = mls_conversation(owner, tenant, &members.iter().collect::<Vec<_>>()).await?;
    let at = GroupAddress { organization_id: tenant.organization_id, conversation_id };

    // Provisioning: one committer adds everyone in batches; the last batch's Welcome makes the
    // member that processes the measured commits.
    let mut trust = TrustStore::default();
    let mut group = devices[0].create_group(conversation_id, None)?;
    let mut last_welcome = None;
    let others: Vec<usize> = (1..group_size).collect();
    for (n, chunk) in others.chunks(batch.max(1)).enumerate() {
        let packages = chunk.iter().map(|&i| devices[i].key_package(false)).collect::<Result<Vec<_>, _>>()?;
        let outgoing = devices[0].add(&mut group, &packages, &roster, &mut trust)?;
        devices[0].merge_pending(&mut group)?;
        record_epoch(owner, at, members[0].device_id, &outgoing).await?;
        last_welcome = outgoing.welcome;
        eprintln!("[bench] group: {} devices after commit {}", group.members().count(), n + 1);
    }
    let member = group_size - 1;
    let mut member_trust = TrustStore::default();
    let member_group =
        devices[member].join(&last_welcome.context("no provisioning commit")?, &roster, &mut member_trust)?;
    for joiner in group_size..group_size + rounds {
        devices[joiner].publish_key_packages(&members[joiner].client, 1, false).await?;
    }
    let build_secs = started.elapsed().as_secs_f64();
    eprintln!("[bench] group of {group_size} devices built in {build_secs:.1} s (not measured)");

    let mut large = LargeGroup {
        owner,
        at,
        committer: &members[0],
        committer_device: &devices[0],
        group,
        trust,
        member_device: &devices[member],
        member_group,
        member_trust,
        roster: &roster,
    };
    let (mut add, mut remove) = (CommitSamples::default(), CommitSamples::default());
    let (mut claim, mut join) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        let joiner = group_size + round;
        let started = Instant::now();
        let claimed = members[0].client.claim_key_packages(at.organization_id, vec![members[joiner].user_id]).await?;
        claim.push(millis(started));
        let packages: Vec<Vec<u8>> = claimed.key_packages.into_iter().map(|p| p.key_package.0).collect();

        let started = Instant::now();
        let outgoing = large.committer_device.add(&mut large.group, &packages, &roster, &mut large.trust)?;
        add.create.push(millis(started));
        large.deliver(&outgoing, &mut add).await?;
        let welcome = outgoing.welcome.context("an add commit without a Welcome")?;
        let started = Instant::now();
        let joined = devices[joiner].join(&welcome, &roster, &mut TrustStore::default())?;
        join.push(millis(started));
        if joined.members().count() != group_size + 1 {
            bail!("the new device sees {} devices", joined.members().count());
        }

        let started = Instant::now();
        let outgoing = large.committer_device.remove(&mut large.group, &[members[joiner].device_id])?;
        remove.create.push(millis(started));
        large.deliver(&outgoing, &mut remove).await?;
        eprintln!(
            "[bench] round {}: add {:.1} ms ({} B, Welcome {} B), remove {:.1} ms ({} B); POST {:?}",
            round + 1,
            add.create[round],
            add.bytes.0,
            add.bytes.1.unwrap_or(0),
            remove.create[round],
            remove.bytes.0,
            add.outcomes.keys().chain(remove.outcomes.keys()).collect::<Vec<_>>()
        );
    }
    Ok(GroupFigures {
        group_size,
        batch,
        build_secs,
        rounds,
        claim_ms: Spread::of(&claim),
        add: add.figures(),
        join_ms: Spread::of(&join),
        remove: remove.figures(),
    })
}

pub struct ClaimSettings {
    pub packages_per_device: usize,
    pub concurrency: usize,
    pub users_per_claim: usize,
    pub duration: Duration,
}

/// What the claimers share.
struct ClaimState {
    organization_id: Uuid,
    targets: Vec<Uuid>,
    users_per_claim: usize,
    /// Claims the stock allows (each takes `users_per_claim` packages).
    budget: u64,
    issued: AtomicU64,
    done: AtomicU64,
    exhausted: AtomicU64,
    stop: AtomicBool,
    latency: Mutex<hdrhistogram::Histogram<u64>>,
    errors: Mutex<BTreeMap<String, u64>>,
}

impl ClaimState {
    async fn claim(&self, client: &conclave_client::Client) -> bool {
        let i = self.issued.fetch_add(1, Ordering::Relaxed);
        if i >= self.budget || self.stop.load(Ordering::Relaxed) {
            return false;
        }
        let first = i as usize * self.users_per_claim;
        let users = (first..first + self.users_per_claim).map(|k| self.targets[k % self.targets.len()]).collect();
        let started = Instant::now();
        match client.claim_key_packages(self.organization_id, users).await {
            Ok(claimed) => {
                let micros = started.elapsed().as_micros() as u64;
                if let Ok(mut h) = self.latency.lock() {
                    let _ = h.record(micros.max(1));
                }
                self.done.fetch_add(1, Ordering::Relaxed);
                let fell_back = claimed.key_packages.iter().filter(|p| p.last_resort).count() + claimed.exhausted.len();
                self.exhausted.fetch_add(fell_back as u64, Ordering::Relaxed);
            }
            Err(error) => {
                let kind = error.api().map_or_else(|| error.chain(), |a| format!("{} {}", a.status.as_u16(), a.code));
                if let Ok(mut errors) = self.errors.lock() {
                    *errors.entry(kind).or_default() += 1;
                }
            }
        }
        true
    }
}

/// `members` stock key packages, then claim each other's for the window.
pub async fn claims(
    database: &str,
    organization_id: Uuid,
    members: &[Member],
    settings: &ClaimSettings,
    watch: &Watch,
) -> Result<ClaimFigures> {
    if members.is_empty() || settings.concurrency == 0 || settings.users_per_claim == 0 {
        bail!("claims need devices, claimers and users per claim");
    }
    let devices = members.iter().map(device_of).collect::<Result<Vec<_>>>()?;
    let key_package_bytes = devices[0].key_package(false)?.len();
    let started = Instant::now();
    let stocked: Vec<Result<u32>> = futures::stream::iter(members.iter().zip(&devices))
        .map(|(member, device)| async move {
            let stock = device.publish_key_packages(&member.client, settings.packages_per_device, false).await?;
            Ok(stock.available)
        })
        .buffer_unordered(4)
        .collect()
        .await;
    let stocked: usize = stocked.into_iter().map(|r| r.map(|n| n as usize)).sum::<Result<usize>>()?;
    eprintln!(
        "[bench] claims: {stocked} key packages of {key_package_bytes} B stocked on {} devices in {:.1} s",
        members.len(),
        started.elapsed().as_secs_f64()
    );

    let state = Arc::new(ClaimState {
        organization_id,
        targets: members.iter().map(|m| m.user_id).collect(),
        users_per_claim: settings.users_per_claim,
        budget: (stocked / settings.users_per_claim) as u64,
        issued: AtomicU64::new(0),
        done: AtomicU64::new(0),
        exhausted: AtomicU64::new(0),
        stop: AtomicBool::new(false),
        latency: Mutex::new(histogram()),
        errors: Mutex::new(BTreeMap::new()),
    });
    let before = watch.sample();
    let before_ours = system::database_backend_ticks(database);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for worker in 0..settings.concurrency {
        let (state, client) = (state.clone(), members[worker % members.len()].client.clone());
        tasks.push(tokio::spawn(async move { while state.claim(&client).await {} }));
    }
    let stopper = {
        let state = state.clone();
        let duration = settings.duration;
        tokio::spawn(async move {
            tokio::time::sleep(duration).await;
            state.stop.store(true, Ordering::Relaxed);
        })
    };
    for task in tasks {
        task.await?;
    }
    stopper.abort();
    let elapsed = started.elapsed().as_secs_f64();
    let after = watch.sample();
    let ours = system::database_backend_ticks(database).saturating_sub(before_ours);
    let [dataplane, postgres, redis, tool, machine] = watch.cpu_between(&before, &after);
    let claims = state.done.load(Ordering::Relaxed);
    let latency = state.latency.lock().map(|h| Latency::from_micros(&h)).unwrap_or_default();
    let error_kinds: Vec<(String, u64)> =
        state.errors.lock().map(|e| e.clone().into_iter().collect()).unwrap_or_default();
    Ok(ClaimFigures {
        devices: members.len(),
        stocked,
        concurrency: settings.concurrency,
        users_per_claim: settings.users_per_claim,
        duration_secs: elapsed,
        claims,
        claims_per_sec: claims as f64 / elapsed,
        packages_per_sec: (claims * settings.users_per_claim as u64) as f64 / elapsed,
        latency,
        exhausted: state.exhausted.load(Ordering::Relaxed),
        errors: error_kinds.iter().map(|(_, n)| n).sum(),
        error_kinds,
        key_package_bytes,
        resources: Resources {
            dataplane_cpu_percent: dataplane,
            dataplane_rss_mib: watch.dataplane_rss_mib(),
            postgres_cpu_percent: postgres,
            redis_cpu_percent: redis,
            tool_cpu_percent: tool,
            machine_cpu_percent: machine,
        },
        run_postgres_cpu_percent: Some(watch.ticks_percent(ours, elapsed)),
    })
}

/// A device of a made-up user, in this process only.
fn local_device() -> Result<(Uuid, Device)> {
    let user_id = Uuid::now_v7();
    let mut seed = [0u8; 32];
    seed[..16].copy_from_slice(Uuid::new_v4().as_bytes());
    seed[16..].copy_from_slice(Uuid::new_v4().as_bytes());
    Ok((user_id, Device::new(&IdentityKey::generate()?, user_id, Uuid::now_v7(), &seed)?))
}

/// `messages` application messages in a group of `size` devices, senders taking turns, each
/// message processed by every other member; encrypting and decrypting timed apart, on one core.
pub fn throughput(size: usize, messages: u64, plaintext_bytes: usize) -> Result<ThroughputFigures> {
    if size < 2 || messages == 0 {
        bail!("a throughput group needs at least 2 devices and a message");
    }
    let people = (0..size).map(|_| local_device()).collect::<Result<Vec<_>>>()?;
    let roster = Roster { members: people.iter().map(|(user, _)| *user).collect(), ..Roster::default() };
    let devices: Vec<&Device> = people.iter().map(|(_, d)| d).collect();
    let mut trusts: Vec<TrustStore> = (0..size).map(|_| TrustStore::default()).collect();
    let mut first = devices[0].create_group(Uuid::now_v7(), None)?;
    let packages = devices[1..].iter().map(|d| d.key_package(false)).collect::<Result<Vec<_>, _>>()?;
    let outgoing = devices[0].add(&mut first, &packages, &roster, &mut trusts[0])?;
    devices[0].merge_pending(&mut first)?;
    let welcome = outgoing.welcome.context("no Welcome")?;
    let mut groups = vec![first];
    for (device, trust) in devices[1..].iter().zip(&mut trusts[1..]) {
        groups.push(device.join(&welcome, &roster, trust)?);
    }

    let plaintext = vec![b'x'; plaintext_bytes];
    let (mut encrypting, mut decrypting) = (Duration::ZERO, Duration::ZERO);
    let mut message_bytes = 0;
    for m in 0..messages {
        let sender = m as usize % size;
        let started = Instant::now();
        let sealed = devices[sender].encrypt(&mut groups[sender], &plaintext)?;
        encrypting += started.elapsed();
        message_bytes = sealed.len();
        for reader in (0..size).filter(|r| *r != sender) {
            let started = Instant::now();
            let seen = devices[reader].process(&mut groups[reader], &sealed, &roster, &mut trusts[reader])?;
            decrypting += started.elapsed();
            match seen {
                Incoming::Application { plaintext: p, .. } if p == plaintext => {}
                other => bail!("member {reader} read {other:?}"),
            }
        }
    }
    let decrypts = messages * (size as u64 - 1);
    Ok(ThroughputFigures {
        group_size: size,
        plaintext_bytes,
        message_bytes,
        messages,
        encrypts_per_sec: messages as f64 / encrypting.as_secs_f64(),
        decrypts_per_sec: decrypts as f64 / decrypting.as_secs_f64(),
        messages_per_sec: messages as f64 / (encrypting + decrypting).as_secs_f64(),
    })
}

/// One member's MLS side in a `messages` run: its device and its conversation's group (made in
/// this process before the run by [`conversation_groups`]), and the application messages it
/// sealed ahead of the run, so that its sends carry real openmls ciphertexts without the sealing
/// landing in the measured window of a machine the data plane shares.
pub struct Sealer {
    state: Mutex<SealerState>,
    ahead: Mutex<std::collections::VecDeque<Vec<u8>>>,
    /// Messages sealed during the run because the ones sealed ahead ran out.
    pub sealed_late: AtomicU64,
}

struct SealerState {
    device: Device,
    group: MlsGroup,
    trust: TrustStore,
    roster: Roster,
}

/// The content every bench message carries, `text_bytes` of text in the SDK's content layer.
pub fn bench_content(text_bytes: usize) -> Result<Vec<u8>> {
    let text = "m".repeat(text_bytes);
    Ok(conclave_client::content::Content::text(text).encode()?.to_vec())
}

impl Sealer {
    /// Seals `count` more messages of `content` ahead.
    pub fn seal_ahead(&self, content: &[u8], count: usize) -> Result<()> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let SealerState { device, group, .. } = &mut *state;
        let mut sealed = Vec::with_capacity(count);
        for _ in 0..count {
            sealed.push(device.encrypt(group, content)?);
        }
        self.ahead.lock().unwrap_or_else(|p| p.into_inner()).extend(sealed);
        Ok(())
    }

    /// The next message to send: one sealed ahead, or sealed now when they ran out.
    pub fn next(&self, content: &[u8]) -> Result<Vec<u8>> {
        if let Some(sealed) = self.ahead.lock().unwrap_or_else(|p| p.into_inner()).pop_front() {
            return Ok(sealed);
        }
        self.sealed_late.fetch_add(1, Ordering::Relaxed);
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let SealerState { device, group, .. } = &mut *state;
        Ok(device.encrypt(group, content)?)
    }

    /// Opens a delivered message as a member's SDK does (decrypted, its sender's leaf checked
    /// against the identity chain and the roster) and returns its sender device and plaintext.
    pub fn open(&self, ciphertext: &[u8]) -> Result<(Uuid, Vec<u8>)> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let SealerState { device, group, trust, roster } = &mut *state;
        match device.process(group, ciphertext, roster, trust)? {
            Incoming::Application { sender, plaintext, .. } => Ok((sender.device_id, plaintext)),
            other => bail!("not an application message: {other:?}"),
        }
    }

    pub fn device_id(&self) -> Uuid {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).device.device_id()
    }
}

/// Makes each conversation's MLS group in this process, as its members' SDKs would: the first
/// member creates it and adds every other member's device from a key package in one commit
/// (epoch 0 to 1, the epoch `provision::conversations` gives the conversation), and each of them
/// joins from the Welcome. Nothing goes through the data plane: its part in a send does not depend
/// on how the group was made. One [`Sealer`] per member of a conversation, by member index.
pub fn conversation_groups(
    members: &[Member],
    conversations: &[crate::provision::Conversation],
) -> Result<Vec<Option<Arc<Sealer>>>> {
    let mut sealers: Vec<Option<Arc<Sealer>>> = (0..members.len()).map(|_| None).collect();
    for conversation in conversations {
        let roster =
            Roster { members: conversation.members.iter().map(|&m| members[m].user_id).collect(), ..Roster::default() };
        let devices = conversation.members.iter().map(|&m| device_of(&members[m])).collect::<Result<Vec<_>>>()?;
        let mut devices = devices.into_iter();
        let owner = devices.next().context("a conversation has members")?;
        let others: Vec<Device> = devices.collect();
        let mut owner_trust = TrustStore::default();
        let mut group = owner.create_group(conversation.id, None)?;
        let packages = others.iter().map(|d| d.key_package(false)).collect::<Result<Vec<_>, _>>()?;
        let outgoing = owner.add(&mut group, &packages, &roster, &mut owner_trust)?;
        owner.merge_pending(&mut group)?;
        if i64::try_from(group.epoch().as_u64())? != i64::from(conversation.epoch) {
            bail!("the group is at epoch {}, the conversation at {}", group.epoch().as_u64(), conversation.epoch);
        }
        let welcome = outgoing.welcome.context("an add has a Welcome")?;
        let mut states = Vec::with_capacity(conversation.members.len());
        states.push(SealerState { device: owner, group, trust: owner_trust, roster: roster.clone() });
        for device in others {
            let mut trust = TrustStore::default();
            let joined = device.join(&welcome, &roster, &mut trust)?;
            states.push(SealerState { device, group: joined, trust, roster: roster.clone() });
        }
        for (&m, state) in conversation.members.iter().zip(states) {
            sealers[m] = Some(Arc::new(Sealer {
                state: Mutex::new(state),
                ahead: Mutex::new(Default::default()),
                sealed_late: AtomicU64::new(0),
            }));
        }
    }
    Ok(sealers)
}
