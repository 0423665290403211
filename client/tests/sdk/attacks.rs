//! The malicious-server suite (issue 14): real SDK devices talk to the real data plane through a
//! tampering proxy ([`crate::proxy`]) that plays the server's part an attacker would: it hands out
//! other key packages than the ones asked for, adds, reorders, replays, duplicates or forges
//! commits and messages, hands a Welcome to the wrong device, drops a removal and keeps serving a
//! removed device. Each test checks that the SDK refuses the attack with a specific error (or
//! that it is harmless, and why), that no plaintext passed through the server (with a positive
//! control: the same scan finds a plaintext that does), and, where a device is removed, that it
//! reads nothing sent after its removal.
//!
//! Application messages travel as the messenger will send them until it moves to MLS: the MLS
//! `PrivateMessage` is the `ciphertext` of the existing message endpoint, under `key_generation`
//! = the group's epoch, signed by the sending device for the server's check.

use std::collections::BTreeSet;

use axum::http::{Method, StatusCode};
use chrono::Utc;
use conclave_client::api::{Client, MessageQuery, Tokens};
use conclave_client::crypto::DeviceKeys;
use conclave_client::mls::{
    DeliveryError, Device, ExternalSenderKey, FirstContact, GroupAddress, IdentityKey, Incoming, Leaf, Membership,
    MlsError, MlsGroup, Opened, Roster, TrustStore, safety,
};
use conclave_protocol::api::Member as ConversationMember;
use conclave_protocol::api::{Conversation, ConversationKind, CreateConversation, Message, MessagePage, SendMessage};
use conclave_protocol::auth::LoginRequest;
use conclave_protocol::devices::Platform;
use conclave_protocol::handshake::{
    CommitAccepted, MlsBytes, PendingProposals, StoredCommit, StoredGroupInfo, UploadCommit,
};
use conclave_protocol::keypackages::{ClaimedKeyPackage, ClaimedKeyPackages, KeyPackageBytes};
use conclave_testkit::accounts::{PASSWORD, register_confirmed};
use uuid::Uuid;

use crate::proxy::{ANYONE, Proxy, Request, Response};
use crate::support::TestApp;

/// A person: an account, and the identity key that certifies their devices (never sent).
struct User {
    user_id: Uuid,
    email: String,
    identity: IdentityKey,
}

/// One device, signed in through its own port of the proxy: its API client, its MLS side and its
/// trust store.
struct Member {
    label: String,
    user_id: Uuid,
    device_id: Uuid,
    api: Client,
    device: Device,
    trust: TrustStore,
}

/// The data plane, the proxy in front of it, and an organization everyone belongs to.
struct World {
    /// Kept: dropping it stops the data plane.
    _app: TestApp,
    proxy: Proxy,
    org: Uuid,
    workspace: Uuid,
}

fn random32() -> [u8; 32] {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("random");
    bytes
}

impl World {
    /// Registers one account per name (through the proxy) and an organization of them all.
    async fn new<const N: usize>(names: [&str; N]) -> (Self, [User; N]) {
        let app = TestApp::start().await;
        let mut proxy = Proxy::new(&app.base);
        let signup = proxy.listen("signup").await;
        let http = reqwest::Client::new();
        let mut users = Vec::with_capacity(N);
        for name in names {
            let email = format!("{name}@example.org");
            let user_id = register_confirmed(&http, &signup, &app.mail, &email, PASSWORD, name)
                .await
                .unwrap_or_else(|e| panic!("{e:#}"));
            let identity = IdentityKey::generate().expect("identity");
            users.push(User { user_id, email, identity });
        }
        let ids: Vec<Uuid> = users.iter().map(|u| u.user_id).collect();
        let (org, workspace) = app.organization("attacks", &ids).await;
        let users: [User; N] = users.try_into().unwrap_or_else(|_| unreachable!("N users"));
        (Self { _app: app, proxy, org, workspace }, users)
    }

    /// A new device of `user`, signed in through the proxy port `label`.
    async fn device(&mut self, user: &User, label: &str) -> Member {
        let base = self.proxy.listen(label).await;
        let seed = random32();
        let keys = DeviceKeys::from_seed(&seed);
        let login = LoginRequest::with_new_device(&user.email, PASSWORD, keys.registration(label, Platform::Cli));
        let pair = Client::new(&base).expect("client").login(&login).await.expect("login");
        let tokens = Tokens { access_token: pair.access_token, refresh_token: pair.refresh_token };
        let api = Client::with_session(&base, tokens, None).expect("client");
        let device = Device::new(&user.identity, user.user_id, pair.device_id, &seed).expect("mls device");
        Member {
            label: label.to_owned(),
            user_id: user.user_id,
            device_id: pair.device_id,
            api,
            device,
            trust: TrustStore::default(),
        }
    }

    /// A group conversation `creator` makes with `others`, and its MLS group (epoch 0, only the
    /// creator's leaf).
    async fn conversation(&self, creator: &Member, others: &[Uuid]) -> (GroupAddress, MlsGroup) {
        let body = CreateConversation { kind: ConversationKind::Group, name: None, member_user_ids: others.to_vec() };
        let conversation =
            creator.api.create_conversation(self.org, self.workspace, &body).await.expect("conversation");
        let at = GroupAddress { organization_id: self.org, conversation_id: conversation.id };
        // As the SDK makes groups: the delivery service is their external sender.
        let service = creator.api.delivery_service().await.expect("delivery service");
        let sender =
            ExternalSenderKey { public_key: service.removal_key.expect("the test data plane has a removal key") };
        (at, creator.device.create_group(conversation.id, Some(&sender)).expect("group"))
    }

    /// [`Self::conversation`], with every device of `others` added (epoch 1).
    async fn group(&self, creator: &mut Member, others: &[Uuid]) -> (GroupAddress, MlsGroup) {
        let (at, mut group) = self.conversation(creator, others).await;
        assert_eq!(creator.add(at, &mut group, others).await.expect("add the others"), 1);
        (at, group)
    }

    /// The end of an attack: `from` sends `secret` in `at`, `to` reads it, and it never passed
    /// through the server in the clear.
    async fn finish(
        &self,
        from: &Member,
        a: &mut MlsGroup,
        to: &mut Member,
        b: &mut MlsGroup,
        at: GroupAddress,
        secret: &[u8],
    ) {
        let sent = from.send(at, a, secret).await;
        let roster = to.roster(at).await;
        let (sender, text) = plaintext(to.open(b, &sent, &roster).expect("read"));
        assert_eq!((sender.device_id, text.as_slice()), (from.device_id, secret));
        self.assert_no_plaintext(from, at, &[secret]).await;
    }

    /// No plaintext of `secrets` passed through the server, and, as a positive control, the same
    /// scan finds the first one once `via` sends it as a careless client would (as a message's
    /// `ciphertext`, base64url in JSON; the server refuses it for its framing and stores nothing).
    async fn assert_no_plaintext(&self, via: &Member, at: GroupAddress, secrets: &[&[u8]]) {
        assert!(!self.proxy.exchanges().is_empty());
        for secret in secrets {
            assert!(secret.len() >= 16, "a secret the scan cannot mistake");
            let seen = self.proxy.sightings(secret);
            assert!(seen.is_empty(), "{:?} passed through the server: {seen:?}", String::from_utf8_lossy(secret));
        }
        let leak = SendMessage {
            client_message_id: Uuid::new_v4(),
            key_generation: 1,
            ciphertext: secrets[0].to_vec(),
            reply_to_id: None,
            attachment_ids: Vec::new(),
        };
        let refused = via.api.send_message(at.organization_id, at.conversation_id, &leak).await.expect_err("not MLS");
        assert!(refused.is_api("invalid_mls_message"), "{refused}");
        assert!(!self.proxy.sightings(secrets[0]).is_empty(), "the scan missed a plaintext that did pass");
    }
}

impl Member {
    /// Uploads `one_time` key packages and a last-resort one.
    async fn publish(&self, one_time: usize) {
        self.device.publish_key_packages(&self.api, one_time, true).await.expect("key packages");
    }

    /// The roster as the server lists it (through the proxy, so as the proxy may rewrite it).
    async fn roster(&self, at: GroupAddress) -> Roster {
        let conversation = self.api.conversation(at.organization_id, at.conversation_id).await.expect("conversation");
        Roster { members: conversation.members.iter().map(|m| m.user_id).collect(), ..Roster::default() }
    }

    /// Adds every device of `users` to the group as the SDK does: claims their key packages,
    /// checks them against the roster the server lists, commits and pushes.
    async fn add(&mut self, at: GroupAddress, group: &mut MlsGroup, users: &[Uuid]) -> Result<i32, DeliveryError> {
        let roster = self.roster(at).await;
        self.device.add_users(&self.api, at, group, users.to_vec(), &roster, &mut self.trust).await
    }

    async fn join(&mut self, at: GroupAddress) -> MlsGroup {
        let roster = self.roster(at).await;
        self.device.join_from_server(&self.api, at, &roster, &mut self.trust).await.expect("join")
    }

    async fn catch_up(
        &mut self,
        at: GroupAddress,
        group: &mut MlsGroup,
        roster: &Roster,
    ) -> Result<Vec<Incoming>, MlsError> {
        match self.device.catch_up(&self.api, at, group, roster, &mut self.trust).await {
            Ok(seen) => Ok(seen),
            Err(DeliveryError::Mls(error)) => Err(error),
            Err(other) => panic!("{}: expected an MLS verdict, got {other:?}", self.label),
        }
    }

    /// Pushes a self-update: the group moves to the next epoch.
    async fn update(&self, at: GroupAddress, group: &mut MlsGroup) -> i32 {
        let out = self.device.self_update(group).expect("update");
        self.device.push(&self.api, at, group, out).await.expect("update accepted")
    }

    /// Encrypts `plaintext` for the group and sends it through the message endpoint.
    async fn send(&self, at: GroupAddress, group: &mut MlsGroup, plaintext: &[u8]) -> Message {
        let ciphertext = self.device.encrypt(group, plaintext).expect("encrypt");
        let generation = u32::try_from(group.epoch().as_u64()).expect("epoch");
        let body = SendMessage {
            client_message_id: Uuid::new_v4(),
            key_generation: generation as i32,
            ciphertext,
            reply_to_id: None,
            attachment_ids: Vec::new(),
        };
        self.api.send_message(at.organization_id, at.conversation_id, &body).await.expect("send")
    }

    /// The conversation's messages after `after_seq`, as the server hands them out.
    async fn inbox(&self, at: GroupAddress, after_seq: i64) -> Vec<Message> {
        let query = MessageQuery::After { after_seq, limit: 100 };
        self.api.messages(at.organization_id, at.conversation_id, query).await.expect("messages").messages
    }

    fn open(&mut self, group: &mut MlsGroup, message: &Message, roster: &Roster) -> Result<Incoming, MlsError> {
        self.device.process(group, message.ciphertext.as_deref().expect("ciphertext"), roster, &mut self.trust)
    }

    fn leaf(&self) -> Leaf {
        *self.device.credential()
    }
}

/// The MLS error an SDK call ended in (any other outcome fails the test).
fn refusal<T: std::fmt::Debug>(result: Result<T, DeliveryError>) -> MlsError {
    match result {
        Err(DeliveryError::Mls(error)) => error,
        other => panic!("expected the SDK to refuse, got {other:?}"),
    }
}

fn plaintext(incoming: Incoming) -> (Leaf, Vec<u8>) {
    match incoming {
        Incoming::Application { sender, plaintext, .. } => (sender, plaintext),
        other => panic!("expected an application message, got {other:?}"),
    }
}

fn devices(leaves: &[Leaf]) -> BTreeSet<Uuid> {
    leaves.iter().map(|l| l.device_id).collect()
}

/// The stored form of a commit the proxy slips into a listing.
fn stored(epoch: i32, commit: Vec<u8>) -> StoredCommit {
    StoredCommit {
        epoch,
        commit: MlsBytes(commit),
        committed_by_device_id: None,
        created_at: Utc::now(),
        proposals: Vec::new(),
    }
}

fn flip_last(bytes: &mut [u8]) {
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
}

/// What a server can make with MLS on its own: leaves of its own key, certified by an identity key
/// of its own or wearing someone's real credential, in key packages and external commits (from
/// the group info it stores).
mod forge {
    use conclave_client::mls::{CIPHERSUITE, DeviceCredential, IdentityKey};
    use openmls::prelude::tls_codec::Deserialize as _;
    use openmls::prelude::*;
    use openmls_basic_credential::SignatureKeyPair;
    use openmls_rust_crypto::OpenMlsRustCrypto;
    use uuid::Uuid;

    pub struct Forger {
        provider: OpenMlsRustCrypto,
        signer: SignatureKeyPair,
        credential: Vec<u8>,
    }

    impl Forger {
        fn with(credential: impl FnOnce(&[u8; 32]) -> Vec<u8>) -> Self {
            let provider = OpenMlsRustCrypto::default();
            let signer = SignatureKeyPair::new(SignatureScheme::ED25519).expect("leaf key");
            signer.store(provider.storage()).expect("store");
            let public: [u8; 32] = signer.public().try_into().expect("32 bytes");
            Self { credential: credential(&public), provider, signer }
        }

        /// A leaf for `device_id` of `user_id`, certified by `identity` (the server's, not the user's).
        pub fn certified(identity: &IdentityKey, user_id: Uuid, device_id: Uuid) -> Self {
            Self::with(|leaf| identity.certify(user_id, device_id, leaf).encode().to_vec())
        }

        /// A leaf of the server's key wearing a real device's credential.
        pub fn wearing(credential: &DeviceCredential) -> Self {
            Self::with(|_| credential.encode().to_vec())
        }

        fn credential_with_key(&self) -> CredentialWithKey {
            CredentialWithKey {
                credential: BasicCredential::new(self.credential.clone()).into(),
                signature_key: self.signer.to_public_vec().into(),
            }
        }

        pub fn key_package(&self) -> Vec<u8> {
            let capabilities =
                Capabilities::new(None, Some(&[CIPHERSUITE]), None, None, Some(&[CredentialType::Basic]));
            let bundle = KeyPackage::builder()
                .leaf_node_capabilities(capabilities)
                .build(CIPHERSUITE, &self.provider, &self.signer, self.credential_with_key())
                .expect("key package");
            MlsMessageOut::from(bundle.key_package().clone()).to_bytes().expect("bytes")
        }

        /// An external commit that joins this leaf to the group the group info describes.
        pub fn external_commit(&self, group_info: &[u8]) -> Vec<u8> {
            let message = MlsMessageIn::tls_deserialize_exact(group_info).expect("group info");
            let MlsMessageBodyIn::GroupInfo(info) = message.extract() else { panic!("not a group info") };
            let (_, bundle) = MlsGroup::external_commit_builder()
                .build_group(&self.provider, info, self.credential_with_key())
                .expect("external commit")
                .load_psks(self.provider.storage())
                .expect("psks")
                .build(self.provider.rand(), self.provider.crypto(), &self.signer, |_| true)
                .expect("commit")
                .finalize(&self.provider)
                .expect("finalize");
            let (commit, _, _) = bundle.into_contents();
            commit.to_bytes().expect("bytes")
        }
    }
}

use forge::Forger;

const CLAIM: &str = "/key-packages/claim";

/// Adds `extra` to the key packages the server hands `client` when it claims.
fn inject_into_claims(proxy: &Proxy, client: &str, extra: ClaimedKeyPackage) {
    proxy.rewrite(client, Method::POST, CLAIM, move |claimed: &mut ClaimedKeyPackages| {
        claimed.key_packages.insert(0, extra.clone())
    });
}

/// Replaces the first key package the server hands `client` when it claims.
fn substitute_in_claims(proxy: &Proxy, client: &str, mut substitute: impl FnMut(&mut Vec<u8>) + Send + 'static) {
    proxy.rewrite(client, Method::POST, CLAIM, move |claimed: &mut ClaimedKeyPackages| {
        substitute(&mut claimed.key_packages[0].key_package.0)
    });
}

/// Rewrites the commits the server lists to `client` for `at`.
fn rewrite_commits(
    proxy: &Proxy,
    client: &str,
    at: GroupAddress,
    rewrite: impl FnMut(&mut Vec<StoredCommit>) + Send + 'static,
) {
    proxy.rewrite(client, Method::GET, format!("{}/commits", at.conversation_id), rewrite);
}

/// Appends `commit` to the commits the server lists to `client` for `at`.
fn inject_into_commits(proxy: &Proxy, client: &str, at: GroupAddress, commit: StoredCommit) {
    rewrite_commits(proxy, client, at, move |commits| commits.push(commit.clone()));
}

/// Rewrites the messages the server hands `client` for `at`.
fn rewrite_messages(
    proxy: &Proxy,
    client: &str,
    at: GroupAddress,
    mut rewrite: impl FnMut(&mut Vec<Message>) + Send + 'static,
) {
    proxy.rewrite(client, Method::GET, format!("{}/messages", at.conversation_id), move |page: &mut MessagePage| {
        rewrite(&mut page.messages)
    });
}

/// The server lists `user_id` as a member of `at` (to whoever asks), whatever the truth.
fn list_as_member(proxy: &Proxy, at: GroupAddress, user_id: Uuid) {
    proxy.rewrite(ANYONE, Method::GET, at.conversation_id.to_string(), move |conversation: &mut Conversation| {
        if !conversation.members.iter().any(|m| m.user_id == user_id) {
            let member = ConversationMember { user_id, ..conversation.members[0].clone() };
            conversation.members.push(member);
        }
    });
}

/// What the server keeps serving a removed device: the later epochs' commits, the current group
/// info, the messages; and it accepts the device's commits.
struct Feed {
    at: GroupAddress,
    commits: Vec<StoredCommit>,
    info: StoredGroupInfo,
    page: MessagePage,
}

impl Feed {
    fn serve(&self, proxy: &Proxy, client: &str) {
        let (label, path, all) =
            (client.to_owned(), format!("{}/commits", self.at.conversation_id), self.commits.clone());
        proxy.on_request(move |request: &mut Request| {
            let after: i32 = request.query.strip_prefix("after=").and_then(|n| n.parse().ok()).unwrap_or(0);
            request.is(&label, Method::GET, &path).then(|| {
                let later: Vec<&StoredCommit> = all.iter().filter(|c| c.epoch > after).collect();
                Response::json(StatusCode::OK, &later)
            })
        });
        answer_get(proxy, client, "/group-info".to_owned(), Response::json(StatusCode::OK, &self.info));
        answer_get(proxy, client, "/messages".to_owned(), Response::json(StatusCode::OK, &self.page));
        let label = client.to_owned();
        proxy.on_request(move |request: &mut Request| {
            request
                .is(&label, Method::POST, "/commits")
                .then(|| Response::json(StatusCode::CREATED, &CommitAccepted { epoch: 4 }))
        });
    }
}

/// The server answers `client`'s `GET` of a path ending with `suffix` itself.
fn answer_get(proxy: &Proxy, client: &str, suffix: String, response: Response) {
    let client = client.to_owned();
    proxy.on_request(move |request: &mut Request| request.is(&client, Method::GET, &suffix).then(|| response.clone()));
}

/// Alice and Bob, one device each, in two group conversations Alice made (both at epoch 1).
struct Two {
    w: World,
    alice: Member,
    bob: Member,
    at: GroupAddress,
    a_group: MlsGroup,
    b_group: MlsGroup,
    other: GroupAddress,
    a_other: MlsGroup,
}

async fn two_conversations() -> Two {
    let (mut w, [alice_u, bob_u]) = World::new(["alice", "bob"]).await;
    let mut alice = w.device(&alice_u, "alice").await;
    let mut bob = w.device(&bob_u, "bob").await;
    bob.publish(2).await;
    let (at, a_group) = w.group(&mut alice, &[bob.user_id]).await;
    let b_group = bob.join(at).await;
    let (other, a_other) = w.group(&mut alice, &[bob.user_id]).await;
    bob.join(other).await;
    Two { w, alice, bob, at, a_group, b_group, other, a_other }
}

/// Alice, who has never met Bob, and a server that hands her, for Bob's device, a key package
/// certified by an identity key of its own (returned last).
async fn first_contact() -> (World, [User; 2], Member, Member, IdentityKey) {
    let (mut w, users) = World::new(["alice", "bob"]).await;
    let alice = w.device(&users[0], "alice").await;
    let bob = w.device(&users[1], "bob").await;
    bob.publish(2).await;
    let server_identity = IdentityKey::generate().expect("identity");
    let ghost = Forger::certified(&server_identity, bob.user_id, bob.device_id).key_package();
    substitute_in_claims(&w.proxy, "alice", move |package| *package = ghost.clone());
    (w, users, alice, bob, server_identity)
}

/// Alice, Bob and Carol, one device each.
async fn three() -> (World, [User; 3], Member, Member, Member) {
    let (mut w, users) = World::new(["alice", "bob", "carol"]).await;
    let alice = w.device(&users[0], "alice").await;
    let bob = w.device(&users[1], "bob").await;
    let carol = w.device(&users[2], "carol").await;
    (w, users, alice, bob, carol)
}

/// A ghost device in someone's account: the server makes a leaf for it. Claimed for Alice when she
/// adds Bob, it carries a credential signed by the server's identity key, not Bob's (which Alice
/// pinned when they first met): `IdentityChanged`. A ghost for an account the server made up and
/// lists in the conversation, slipped into a claim for Bob: `Unrequested`. The same ghosts joining
/// by external commit from the group info the server keeps: `IdentityChanged`, and `ExternalJoin`
/// for the made-up member (an external commit may only bring back a device already in the group).
#[tokio::test]
async fn a_ghost_device_is_refused_in_a_claim_and_as_an_external_commit() {
    let (mut w, [alice_u, bob_u]) = World::new(["alice", "bob"]).await;
    let mut alice = w.device(&alice_u, "alice").await;
    let mut bob = w.device(&bob_u, "bob").await;
    bob.publish(3).await;
    // Alice and Bob already talk: Alice's device pinned Bob's identity key.
    let (first, mut a_first) = w.group(&mut alice, &[bob.user_id]).await;
    let mut b_first = bob.join(first).await;
    let server_identity = IdentityKey::generate().expect("the server's identity key");

    // A ghost of Bob's in the claim for a new conversation with him.
    let (second, mut a_second) = w.conversation(&alice, &[bob.user_id]).await;
    let ghost_id = Uuid::new_v4();
    let ghost = Forger::certified(&server_identity, bob.user_id, ghost_id);
    let claimed = ClaimedKeyPackage {
        user_id: bob.user_id,
        device_id: ghost_id,
        key_package: KeyPackageBytes(ghost.key_package()),
        last_resort: false,
    };
    inject_into_claims(&w.proxy, "alice", claimed);
    let refused = refusal(alice.add(second, &mut a_second, &[bob.user_id]).await);
    assert_eq!(refused, MlsError::IdentityChanged { user_id: bob.user_id });
    assert_eq!(a_second.epoch().as_u64(), 0, "nothing was committed");
    w.proxy.clear_rules();

    // A ghost of a member the server made up, listed in the conversation, in the claim for Bob.
    let mallory = Uuid::new_v4();
    let mallory_identity = IdentityKey::generate().expect("identity");
    let phantom_id = Uuid::new_v4();
    let phantom = Forger::certified(&mallory_identity, mallory, phantom_id);
    list_as_member(&w.proxy, second, mallory);
    let claimed = ClaimedKeyPackage {
        user_id: mallory,
        device_id: phantom_id,
        key_package: KeyPackageBytes(phantom.key_package()),
        last_resort: false,
    };
    inject_into_claims(&w.proxy, "alice", claimed);
    let roster = alice.roster(second).await;
    assert!(roster.members.contains(&mallory), "the server lists its phantom");
    let refused = refusal(alice.add(second, &mut a_second, &[bob.user_id]).await);
    assert_eq!(refused, MlsError::Unrequested { user_id: mallory, device_id: phantom_id });
    assert_eq!(a_second.epoch().as_u64(), 0, "nothing was committed");
    w.proxy.clear_rules();

    // The ghosts join the first conversation by external commit, from the group info the server
    // keeps, slipped into what Alice catches up on.
    let info = alice.api.group_info(w.org, first.conversation_id).await.expect("group info").group_info.0;
    let roster = alice.roster(first).await;
    let ghost = Forger::certified(&server_identity, bob.user_id, Uuid::new_v4());
    inject_into_commits(&w.proxy, "alice", first, stored(2, ghost.external_commit(&info)));
    let refused = alice.catch_up(first, &mut a_first, &roster).await.expect_err("a ghost of bob's joined");
    assert_eq!(refused, MlsError::IdentityChanged { user_id: bob.user_id });
    w.proxy.clear_rules();
    list_as_member(&w.proxy, first, mallory);
    let phantom = Forger::certified(&mallory_identity, mallory, phantom_id);
    inject_into_commits(&w.proxy, "alice", first, stored(2, phantom.external_commit(&info)));
    let roster = alice.roster(first).await;
    let refused = alice.catch_up(first, &mut a_first, &roster).await.expect_err("a phantom member joined");
    assert_eq!(refused, MlsError::ExternalJoin { user_id: mallory, device_id: phantom_id });
    w.proxy.clear_rules();
    // A phantom the server does not even list: refused, and its identity key is not pinned, so it
    // cannot stand for that user later.
    let stranger = Uuid::new_v4();
    let phantom = Forger::certified(&mallory_identity, stranger, Uuid::new_v4());
    inject_into_commits(&w.proxy, "alice", first, stored(2, phantom.external_commit(&info)));
    let refused = alice.catch_up(first, &mut a_first, &roster).await.expect_err("a stranger joined");
    assert!(matches!(refused, MlsError::NotAMember { user_id, .. } if user_id == stranger), "{refused:?}");
    assert_eq!(alice.trust.pin(stranger), None, "a refused leaf's identity key was pinned");
    w.proxy.clear_rules();

    // Nothing was let in: Alice's group is as it was, and Bob reads her.
    assert_eq!(a_first.epoch().as_u64(), 1);
    assert_eq!(devices(&Device::leaves(&a_first)), BTreeSet::from([alice.device_id, bob.device_id]));
    let secret: &[u8] = b"ghost test: only bob's real device reads this";
    w.finish(&alice, &mut a_first, &mut bob, &mut b_first, first, secret).await;
}

/// The server hands out another key package than the one of the device Alice adds: one certified
/// by the server's identity key (`IdentityChanged`), the real device's credential on the server's
/// leaf key (`BadIdentitySignature`), a real package of someone Alice did not ask for
/// (`Unrequested`), or the real package altered (`MalformedKeyPackage`). The honest claim that
/// follows works.
#[tokio::test]
async fn a_substituted_key_package_is_refused() {
    let (w, _, mut alice, mut bob, carol) = three().await;
    bob.publish(6).await;
    let (first, _a_first) = w.group(&mut alice, &[bob.user_id]).await;
    let _b_first = bob.join(first).await;

    let (second, mut a_second) = w.conversation(&alice, &[bob.user_id]).await;
    let server_identity = IdentityKey::generate().expect("identity");
    let substitutes: Vec<(Vec<u8>, MlsError)> = vec![
        (
            Forger::certified(&server_identity, bob.user_id, bob.device_id).key_package(),
            MlsError::IdentityChanged { user_id: bob.user_id },
        ),
        (
            Forger::wearing(&bob.leaf()).key_package(),
            MlsError::BadIdentitySignature { user_id: bob.user_id, device_id: bob.device_id },
        ),
        (
            carol.device.key_package(false).expect("carol's package"),
            MlsError::Unrequested { user_id: carol.user_id, device_id: carol.device_id },
        ),
        (Vec::new(), MlsError::MalformedKeyPackage),
    ];
    for (substitute, expected) in substitutes {
        substitute_in_claims(&w.proxy, "alice", move |package| {
            if substitute.is_empty() {
                flip_last(package);
            } else {
                *package = substitute.clone();
            }
        });
        assert_eq!(refusal(alice.add(second, &mut a_second, &[bob.user_id]).await), expected);
        assert_eq!(a_second.epoch().as_u64(), 0, "nothing was committed");
        w.proxy.clear_rules();
    }

    assert_eq!(alice.add(second, &mut a_second, &[bob.user_id]).await.expect("the honest claim"), 1);
    let mut b_second = bob.join(second).await;
    let secret: &[u8] = b"substitution test: for bob's real device";
    w.finish(&alice, &mut a_second, &mut bob, &mut b_second, second, secret).await;
}

/// The limit of trust on first use: when Alice has never met Bob, a key package the server
/// certified with an identity key of its own is pinned as Bob's. What does catch it: the safety
/// number Alice sees is not Bob's, and Bob's first real device she meets is refused
/// (`IdentityChanged`). A device set to `VerifiedOnly` refuses it outright:
/// [`a_key_package_substituted_at_first_contact_is_refused_when_only_verified_users_are_added`].
#[tokio::test]
async fn a_substitution_at_first_contact_shows_in_the_safety_number_and_at_the_next_real_contact() {
    let (w, [alice_u, bob_u], mut alice, bob, server_identity) = first_contact().await;
    w.group(&mut alice, &[bob.user_id]).await;
    w.proxy.clear_rules();
    let pinned = alice.trust.pin(bob.user_id).expect("pinned").key;
    assert_eq!(pinned, server_identity.public());
    let as_alice_sees_it = safety::safety_number((alice.user_id, &alice_u.identity.public()), (bob.user_id, &pinned));
    let as_bob_sees_it =
        safety::safety_number((alice.user_id, &alice_u.identity.public()), (bob.user_id, &bob_u.identity.public()));
    assert_ne!(as_alice_sees_it, as_bob_sees_it, "comparing safety numbers shows the substitution");
    let (second, mut a_second) = w.conversation(&alice, &[bob.user_id]).await;
    let refused = refusal(alice.add(second, &mut a_second, &[bob.user_id]).await);
    assert_eq!(refused, MlsError::IdentityChanged { user_id: bob.user_id });
}

/// Where trust on first use is not enough: a device set to `VerifiedOnly` adds no one whose safety
/// number its owner has not confirmed (`Unverified`), so the server's substitute is never added,
/// nor pinned. Once Alice has confirmed Bob's real key (comparing numbers in person), the
/// substitute is `IdentityChanged`, and Bob's real device is added and reads her.
#[tokio::test]
async fn a_key_package_substituted_at_first_contact_is_refused_when_only_verified_users_are_added() {
    let (w, [alice_u, bob_u], mut alice, mut bob, _) = first_contact().await;
    alice.trust.set_first_contact(FirstContact::VerifiedOnly);
    let (at, mut group) = w.conversation(&alice, &[bob.user_id]).await;
    let refused = refusal(alice.add(at, &mut group, &[bob.user_id]).await);
    assert_eq!(refused, MlsError::Unverified { user_id: bob.user_id });
    assert_eq!((alice.trust.pin(bob.user_id), group.epoch().as_u64()), (None, 0), "nothing pinned or committed");

    let bob_key = bob_u.identity.public();
    let as_bob_sees_it = safety::safety_number((bob.user_id, &bob_key), (alice.user_id, &alice_u.identity.public()));
    let as_alice_sees_it = safety::safety_number((alice.user_id, &alice_u.identity.public()), (bob.user_id, &bob_key));
    assert_eq!(as_alice_sees_it, as_bob_sees_it);
    alice.trust.check(bob.user_id, &bob_key).expect("pinned");
    alice.trust.mark_verified(bob.user_id, &bob_key).expect("confirmed");
    let refused = refusal(alice.add(at, &mut group, &[bob.user_id]).await);
    assert_eq!(refused, MlsError::IdentityChanged { user_id: bob.user_id });

    w.proxy.clear_rules();
    // Each refused claim took one of Bob's one-time packages.
    bob.publish(1).await;
    assert_eq!(alice.add(at, &mut group, &[bob.user_id]).await.expect("bob's real device"), 1);
    let mut b_group = bob.join(at).await;
    let secret: &[u8] = b"first contact test: for bob's real device";
    w.finish(&alice, &mut group, &mut bob, &mut b_group, at, secret).await;
}

/// The commits Bob catches up on, tampered with: reordered (`WrongEpoch`), one forged
/// (`CannotDecrypt`), one of another conversation (`WrongGroup`), one duplicated (the copy:
/// `WrongEpoch`, the original merged once), an old one replayed (`WrongEpoch`). None of them
/// moves Bob's group; the honest listing then brings him to Alice's epoch.
#[tokio::test]
async fn forged_reordered_replayed_or_duplicated_commits_are_refused() {
    let Two { w, alice, mut bob, at, mut a_group, mut b_group, other, mut a_other } = two_conversations().await;
    assert_eq!(alice.update(at, &mut a_group).await, 2);
    assert_eq!(alice.update(at, &mut a_group).await, 3);
    assert_eq!(alice.update(other, &mut a_other).await, 2);
    let honest = alice.api.commits(w.org, at.conversation_id, 1).await.expect("commits");
    assert_eq!(honest.iter().map(|c| c.epoch).collect::<Vec<_>>(), [2, 3]);
    let foreign = alice.api.commits(w.org, other.conversation_id, 1).await.expect("commits").remove(0);
    let roster = bob.roster(at).await;

    rewrite_commits(&w.proxy, "bob", at, |commits| commits.reverse());
    let refused = bob.catch_up(at, &mut b_group, &roster).await.expect_err("reordered");
    assert_eq!(refused, MlsError::WrongEpoch { message: 2, group: 1 });
    w.proxy.clear_rules();

    rewrite_commits(&w.proxy, "bob", at, |commits| flip_last(&mut commits[0].commit.0));
    let refused = bob.catch_up(at, &mut b_group, &roster).await.expect_err("forged");
    assert_eq!(refused, MlsError::CannotDecrypt);
    w.proxy.clear_rules();

    rewrite_commits(&w.proxy, "bob", at, move |commits| commits[0] = foreign.clone());
    let refused = bob.catch_up(at, &mut b_group, &roster).await.expect_err("another conversation's");
    assert_eq!(refused, MlsError::WrongGroup);
    w.proxy.clear_rules();
    assert_eq!(b_group.epoch().as_u64(), 1, "nothing tampered moved the group");

    rewrite_commits(&w.proxy, "bob", at, |commits| {
        let first = commits[0].clone();
        commits.insert(1, first);
    });
    let refused = bob.catch_up(at, &mut b_group, &roster).await.expect_err("duplicated");
    assert_eq!(refused, MlsError::WrongEpoch { message: 1, group: 2 });
    assert_eq!(b_group.epoch().as_u64(), 2, "the original was merged once");
    w.proxy.clear_rules();

    let caught = bob.catch_up(at, &mut b_group, &roster).await.expect("honest listing");
    assert!(matches!(caught.as_slice(), [Incoming::Commit { epoch: 3, .. }]), "{caught:?}");
    let replayed = honest.clone();
    rewrite_commits(&w.proxy, "bob", at, move |commits| *commits = replayed.clone());
    let refused = bob.catch_up(at, &mut b_group, &roster).await.expect_err("replayed");
    assert_eq!(refused, MlsError::WrongEpoch { message: 1, group: 3 });
    w.proxy.clear_rules();

    let secret: &[u8] = b"commit test: after every tampered commit";
    w.finish(&alice, &mut a_group, &mut bob, &mut b_group, at, secret).await;
}

/// Application messages tampered with on their way to Bob: forged (`CannotDecrypt`, and the
/// genuine one still reads after), duplicated or replayed later (`CannotDecrypt`: each message
/// key is used once), another conversation's (`WrongGroup`). Relabelled with another sender by
/// the server: harmless, the SDK reports the sender the MLS signature proves.
#[tokio::test]
async fn forged_replayed_duplicated_or_relabelled_messages_are_refused() {
    let Two { w, alice, mut bob, at, mut a_group, mut b_group, other, mut a_other } = two_conversations().await;
    let roster = bob.roster(at).await;
    let secrets: [&[u8]; 4] = [
        b"message test: the first secret",
        b"message test: the second secret",
        b"message test: the third secret",
        b"message test: another conversation",
    ];
    let m1 = alice.send(at, &mut a_group, secrets[0]).await;
    let foreign = alice.send(other, &mut a_other, secrets[3]).await;

    rewrite_messages(&w.proxy, "bob", at, |messages| {
        for m in messages.iter_mut() {
            flip_last(m.ciphertext.as_mut().expect("ciphertext"));
        }
    });
    let forged = bob.inbox(at, 0).await;
    assert_eq!(bob.open(&mut b_group, &forged[0], &roster), Err(MlsError::CannotDecrypt));
    w.proxy.clear_rules();

    let m2 = alice.send(at, &mut a_group, secrets[1]).await;
    rewrite_messages(&w.proxy, "bob", at, |messages| {
        let first = messages[0].clone();
        messages.insert(1, first);
    });
    let page = bob.inbox(at, 0).await;
    assert_eq!(page.iter().map(|m| m.id).collect::<Vec<_>>(), [m1.id, m1.id, m2.id]);
    assert_eq!(plaintext(bob.open(&mut b_group, &page[0], &roster).expect("m1")).1, secrets[0]);
    assert_eq!(bob.open(&mut b_group, &page[1], &roster), Err(MlsError::CannotDecrypt), "a duplicate");
    assert_eq!(plaintext(bob.open(&mut b_group, &page[2], &roster).expect("m2")).1, secrets[1]);
    w.proxy.clear_rules();

    alice.send(at, &mut a_group, secrets[2]).await;
    let (old, replayed_foreign) = (m1.clone(), foreign.clone());
    let (bob_user, bob_device) = (bob.user_id, bob.device_id);
    rewrite_messages(&w.proxy, "bob", at, move |messages| {
        for m in messages.iter_mut() {
            m.sender_user_id = Some(bob_user);
            m.sender_device_id = Some(bob_device);
        }
        messages.push(Message { seq: 1000, ..old.clone() });
        messages.push(Message { seq: 1001, ..replayed_foreign.clone() });
    });
    let page = bob.inbox(at, m2.seq).await;
    assert_eq!(page.len(), 3);
    assert_eq!(page[0].sender_device_id, Some(bob.device_id), "the server relabelled it");
    let (sender, text) = plaintext(bob.open(&mut b_group, &page[0], &roster).expect("m3"));
    assert_eq!((sender.user_id, sender.device_id, text.as_slice()), (alice.user_id, alice.device_id, secrets[2]));
    assert_eq!(bob.open(&mut b_group, &page[1], &roster), Err(MlsError::CannotDecrypt), "m1 replayed");
    assert_eq!(bob.open(&mut b_group, &page[2], &roster), Err(MlsError::WrongGroup), "another conversation's");
    w.proxy.clear_rules();
    w.assert_no_plaintext(&alice, at, &secrets).await;
}

/// A Welcome handed to a device it does not name: another device of the same person, or someone
/// else's device (`WelcomeRejected`: the Welcome is encrypted to the key packages it names); a
/// Welcome of another conversation, handed for this one (`WrongGroup`).
#[tokio::test]
async fn a_welcome_handed_to_the_wrong_device_or_for_another_conversation_is_refused() {
    let (mut w, [_, bob_u, _], mut alice, mut bob, mut carol) = three().await;
    let mut bob2 = w.device(&bob_u, "bob2").await;
    bob.publish(2).await;
    // Bob's second device has no key package: it is not added, and no Welcome names it.
    let (at, mut a_group) = w.group(&mut alice, &[bob.user_id]).await;
    let (other, _a_other) = w.group(&mut alice, &[bob.user_id]).await;
    let roster = alice.roster(at).await;
    let welcome = bob.api.welcome(w.org, at.conversation_id).await.expect("bob's welcome");
    let not_mine = bob2.api.welcome(w.org, at.conversation_id).await.expect_err("no welcome names bob2");
    assert!(not_mine.is_api("not_found"), "{not_mine}");

    let body = Response::json(StatusCode::OK, &welcome);
    for wrong in [&mut bob2, &mut carol] {
        answer_get(&w.proxy, &wrong.label, "/welcome".to_owned(), body.clone());
        let refused = wrong
            .device
            .join_from_server(&wrong.api, at, &roster, &mut wrong.trust)
            .await
            .expect_err("joined from someone else's welcome");
        assert!(matches!(refused, DeliveryError::Mls(MlsError::WelcomeRejected(_))), "{refused:?}");
        w.proxy.clear_rules();
    }

    // Bob asks for the other conversation's Welcome and is handed this one's (the key package it
    // was encrypted to is spent: Bob's device rejoins by external commit).
    answer_get(&w.proxy, "bob", format!("{}/welcome", other.conversation_id), body);
    let refused = bob
        .device
        .join_from_server(&bob.api, other, &roster, &mut bob.trust)
        .await
        .expect_err("joined another conversation's group");
    assert!(matches!(refused, DeliveryError::Mls(MlsError::WrongGroup)), "{refused:?}");
    w.proxy.clear_rules();
    let mut b_group = bob.device.rejoin_from_server(&bob.api, at, &roster, &mut bob.trust).await.expect("bob rejoins");
    alice.catch_up(at, &mut a_group, &roster).await.expect("alice sees bob rejoin");

    let secret: &[u8] = b"welcome test: for the devices welcomed";
    w.finish(&alice, &mut a_group, &mut bob, &mut b_group, at, secret).await;
}

/// Alice, Bob and Carol in a group (epoch 1). Carol leaves the conversation and Alice's device
/// commits the removal of hers (epoch 2), which the server keeps from Bob.
struct Dropped {
    w: World,
    alice: Member,
    bob: Member,
    carol: Member,
    at: GroupAddress,
    a_group: MlsGroup,
    b_group: MlsGroup,
    c_group: MlsGroup,
    /// The roster as Carol's device last saw it, with her in it.
    carol_roster: Roster,
    /// The commit the server keeps from Bob.
    removal: StoredCommit,
}

async fn removal_dropped_for_bob() -> Dropped {
    let (w, _, mut alice, mut bob, mut carol) = three().await;
    bob.publish(1).await;
    carol.publish(1).await;
    let (at, mut a_group) = w.group(&mut alice, &[bob.user_id, carol.user_id]).await;
    let b_group = bob.join(at).await;
    let c_group = carol.join(at).await;
    let carol_roster = carol.roster(at).await;
    alice.api.remove_member(w.org, at.conversation_id, carol.user_id).await.expect("carol removed");
    let out = alice.device.remove(&mut a_group, &[carol.device_id]).expect("removal");
    assert_eq!(alice.device.push(&alice.api, at, &mut a_group, out).await.expect("removal accepted"), 2);
    let removal = alice.api.commits(w.org, at.conversation_id, 1).await.expect("commits").remove(0);
    rewrite_commits(&w.proxy, "bob", at, |commits| commits.retain(|c| c.epoch != 2));
    Dropped { w, alice, bob, carol, at, a_group, b_group, c_group, carol_roster, removal }
}

/// Alice removes Carol; the server keeps the commit from Bob and Carol. Carol reads nothing Alice
/// sends after the removal (`WrongEpoch`: it is of an epoch whose secrets Carol never gets). Bob,
/// kept behind, finds out from the first message of a member who is not (`WrongEpoch` with a
/// later epoch than his) and, once the commit reaches him, neither what he sends nor what Alice
/// sends reads for Carol, even with the removal commit in hand (`NotInGroup`).
#[tokio::test]
async fn a_dropped_removal_does_not_let_the_removed_device_read_what_follows() {
    let Dropped { w, alice, mut bob, mut carol, at, mut a_group, mut b_group, mut c_group, carol_roster, removal } =
        removal_dropped_for_bob().await;
    let roster = bob.roster(at).await;
    assert!(bob.catch_up(at, &mut b_group, &roster).await.expect("nothing to catch up on").is_empty());

    let secrets: [&[u8]; 2] = [b"drop test: alice after the removal", b"drop test: bob once he caught up"];
    let from_alice = alice.send(at, &mut a_group, secrets[0]).await;
    assert_eq!(
        carol.open(&mut c_group, &from_alice, &carol_roster),
        Err(MlsError::WrongEpoch { message: 2, group: 1 }),
        "the removed device read what followed its removal"
    );
    assert_eq!(
        bob.open(&mut b_group, &from_alice, &roster),
        Err(MlsError::WrongEpoch { message: 2, group: 1 }),
        "bob sees he was kept behind"
    );
    w.proxy.clear_rules();
    let caught = bob.catch_up(at, &mut b_group, &roster).await.expect("the removal reaches bob");
    match caught.as_slice() {
        [Incoming::Commit { epoch: 2, removed, .. }] => assert_eq!(devices(removed), BTreeSet::from([carol.device_id])),
        other => panic!("expected the removal, got {other:?}"),
    }
    assert_eq!(plaintext(bob.open(&mut b_group, &from_alice, &roster).expect("bob reads")).1, secrets[0]);
    let from_bob = bob.send(at, &mut b_group, secrets[1]).await;
    assert_eq!(carol.open(&mut c_group, &from_bob, &carol_roster), Err(MlsError::WrongEpoch { message: 2, group: 1 }));
    // Handed the removal itself, Carol's device learns it is out, and still reads nothing.
    match carol.device.process(&mut c_group, &removal.commit.0, &carol_roster, &mut carol.trust) {
        Ok(Incoming::Commit { removed, .. }) => assert!(devices(&removed).contains(&carol.device_id)),
        other => panic!("expected the removal, got {other:?}"),
    }
    for message in [&from_alice, &from_bob] {
        assert_eq!(carol.open(&mut c_group, message, &carol_roster), Err(MlsError::NotInGroup));
    }
    w.assert_no_plaintext(&alice, at, &secrets).await;
}

/// Rewrites the epoch the server lists the conversation at, for `client`.
fn list_epoch(proxy: &Proxy, client: &str, at: GroupAddress, epoch: i32) {
    proxy.rewrite(client, Method::GET, at.conversation_id.to_string(), move |conversation: &mut Conversation| {
        conversation.current_key_generation = epoch;
    });
}

/// A member the server keeps behind (it withholds the removal from him and still lists the removed
/// user) would encrypt for an epoch the removed device holds. He stops at the first sign of a
/// later epoch (`Behind`): here the epoch the server lists the conversation at. A server that
/// hides every sign can keep him there (RFC 9750, section 5: the delivery service can withhold
/// commits), which `docs/protocol-v2.md` states as a limit. Once the removal reaches him he sends
/// again, and the removed device reads none of it.
#[tokio::test]
async fn a_member_kept_behind_stops_sending_when_the_listing_shows_a_later_epoch() {
    let Dropped { w, mut bob, mut carol, at, mut c_group, carol_roster, .. } = removal_dropped_for_bob().await;
    list_as_member(&w.proxy, at, carol.user_id);
    let membership = Membership::fetch(&bob.api, at).await.expect("membership");
    assert_eq!(membership.epoch, 2);
    let (mut group, opened) =
        bob.device.open_group(&bob.api, at, &membership, &mut bob.trust).await.expect("bob's group");
    assert_eq!((opened, group.epoch().as_u64()), (Opened::Loaded, 1), "the removal is withheld");
    let secret: &[u8] = b"kept behind: bob meant this for alice only";
    assert_eq!(bob.device.encrypt(&mut group, secret), Err(MlsError::Behind { group: 1, later: 2 }));

    w.proxy.clear_rules();
    let roster = bob.roster(at).await;
    bob.catch_up(at, &mut group, &roster).await.expect("the removal reaches bob");
    let sealed = bob.device.encrypt(&mut group, secret).expect("bob sends once caught up");
    let read = carol.device.process(&mut c_group, &sealed, &carol_roster, &mut carol.trust);
    assert_eq!(read, Err(MlsError::WrongEpoch { message: 2, group: 1 }));
}

/// As above, the server also listing the old epoch: the sign is a message of the later one (Alice
/// sends after the removal, and the server relays it).
#[tokio::test]
async fn a_member_kept_behind_stops_sending_after_a_message_of_a_later_epoch() {
    let Dropped { w, alice, mut bob, at, mut a_group, mut b_group, .. } = removal_dropped_for_bob().await;
    list_epoch(&w.proxy, "bob", at, 1);
    let roster = bob.roster(at).await;
    assert!(bob.catch_up(at, &mut b_group, &roster).await.expect("nothing handed over").is_empty());
    bob.device.encrypt(&mut b_group, b"kept behind: before any sign").expect("no sign yet");
    let from_alice = alice.send(at, &mut a_group, b"kept behind: alice after the removal").await;
    assert_eq!(bob.open(&mut b_group, &from_alice, &roster), Err(MlsError::WrongEpoch { message: 2, group: 1 }));
    let refused = bob.device.encrypt(&mut b_group, b"kept behind: bob after the sign");
    assert_eq!(refused, Err(MlsError::Behind { group: 1, later: 2 }));
}

/// As above, with no message relayed either: the sign is the server's own refusal of the commit Bob
/// makes for his old epoch (it answers with the epoch it is at).
#[tokio::test]
async fn a_member_kept_behind_stops_sending_when_his_commit_is_refused_as_stale() {
    let Dropped { w, mut bob, at, mut b_group, .. } = removal_dropped_for_bob().await;
    list_epoch(&w.proxy, "bob", at, 1);
    let roster = bob.roster(at).await;
    assert!(bob.catch_up(at, &mut b_group, &roster).await.expect("nothing handed over").is_empty());
    let update = bob.device.self_update(&mut b_group).expect("update");
    match bob.device.push(&bob.api, at, &mut b_group, update).await {
        Err(DeliveryError::Rebase { current: 2, .. }) => {}
        other => panic!("expected the server to refuse a commit for epoch 1, got {other:?}"),
    }
    let refused = bob.device.encrypt(&mut b_group, b"kept behind: bob after the refusal");
    assert_eq!(refused, Err(MlsError::Behind { group: 1, later: 2 }));
}

/// The server tells two devices that each won the same epoch (it takes Alice's commit and answers
/// Bob's as accepted too): the group forks into two epoch-2 states under one number. Neither reads
/// the other (`CannotDecrypt`: same epoch, other secrets), so nothing leaks across the fork, and
/// Bob's device gets back by rejoining from the group info.
#[tokio::test]
async fn an_epoch_forked_by_two_acknowledged_commits_is_detected() {
    let Two { w, mut alice, mut bob, at, mut a_group, mut b_group, .. } = two_conversations().await;
    let from_alice = alice.device.self_update(&mut a_group).expect("alice's update");
    let from_bob = bob.device.self_update(&mut b_group).expect("bob's update");
    assert_eq!(alice.device.push(&alice.api, at, &mut a_group, from_alice).await.expect("alice's accepted"), 2);
    w.proxy.on_request(|request: &mut Request| {
        request
            .is("bob", Method::POST, "/commits")
            .then(|| Response::json(StatusCode::CREATED, &CommitAccepted { epoch: 2 }))
    });
    assert_eq!(bob.device.push(&bob.api, at, &mut b_group, from_bob).await.expect("bob's 'accepted'"), 2);
    w.proxy.clear_rules();
    assert_eq!((a_group.epoch().as_u64(), b_group.epoch().as_u64()), (2, 2));

    let secrets: [&[u8]; 2] = [b"fork test: alice in her epoch 2", b"fork test: bob in his epoch 2"];
    let from_alice = alice.send(at, &mut a_group, secrets[0]).await;
    let from_bob = bob.send(at, &mut b_group, secrets[1]).await;
    let roster = bob.roster(at).await;
    assert_eq!(bob.open(&mut b_group, &from_alice, &roster), Err(MlsError::CannotDecrypt));
    assert_eq!(alice.open(&mut a_group, &from_bob, &roster), Err(MlsError::CannotDecrypt));

    bob.device.forget(&mut b_group).expect("forget the forked state");
    let mut b_group = bob.device.rejoin_from_server(&bob.api, at, &roster, &mut bob.trust).await.expect("bob rejoins");
    alice.catch_up(at, &mut a_group, &roster).await.expect("alice takes bob's rejoin");
    let secret: &[u8] = b"fork test: one epoch again";
    w.finish(&alice, &mut a_group, &mut bob, &mut b_group, at, secret).await;
    w.assert_no_plaintext(&alice, at, &secrets).await;
}

/// Carol and Bob's revoked second device are removed; the server keeps serving them the later
/// epochs' commits, messages and group info. Catching up, each learns it was removed and reads
/// nothing after (`NotInGroup`). Rejoining by external commit from the group info, which the
/// server accepts for them: the members refuse the commit, with the server listing the truth
/// (`NotAMember`, `RevokedDevice`) or lying that they are still in (`ExternalJoin`: their old leaf
/// is gone, so this is a join, not a rejoin), and the rejoined groups read nothing either.
#[tokio::test]
async fn a_removed_or_revoked_device_served_later_epochs_reads_nothing() {
    let (mut w, [_, bob_u, carol_u], mut alice, mut bob, mut carol) = three().await;
    let mut bob2 = w.device(&bob_u, "bob2").await;
    for device in [&bob, &bob2, &carol] {
        device.publish(1).await;
    }
    let (at, mut a_group) = w.group(&mut alice, &[bob.user_id, carol.user_id]).await;
    let mut b_group = bob.join(at).await;
    let mut gone = Vec::new();
    for device in [&mut bob2, &mut carol] {
        let roster = device.roster(at).await;
        gone.push(device.device.join_from_server(&device.api, at, &roster, &mut device.trust).await.expect("join"));
    }
    let lying_roster = alice.roster(at).await;

    bob.api.revoke_device(bob2.device_id).await.expect("bob2 revoked");
    alice.api.remove_member(w.org, at.conversation_id, carol.user_id).await.expect("carol removed");
    let out = alice.device.remove(&mut a_group, &[bob2.device_id, carol.device_id]).expect("removal");
    assert_eq!(alice.device.push(&alice.api, at, &mut a_group, out).await.expect("removal accepted"), 2);
    let roster = Roster { revoked: BTreeSet::from([bob2.device_id]), ..alice.roster(at).await };
    assert_eq!(roster.members, BTreeSet::from([alice.user_id, bob.user_id]));
    bob.catch_up(at, &mut b_group, &roster).await.expect("bob catches up");
    assert_eq!(bob.update(at, &mut b_group).await, 3);
    alice.catch_up(at, &mut a_group, &roster).await.expect("alice catches up");
    let secret: &[u8] = b"later epochs: not for removed devices";
    let sent = alice.send(at, &mut a_group, secret).await;

    // The server keeps serving the removed devices everything.
    let feed = Feed {
        at,
        commits: alice.api.commits(w.org, at.conversation_id, 1).await.expect("commits"),
        info: alice.api.group_info(w.org, at.conversation_id).await.expect("group info"),
        page: MessagePage { messages: vec![sent.clone()], has_more: false },
    };
    let truths = [
        MlsError::RevokedDevice { user_id: bob_u.user_id, device_id: bob2.device_id },
        MlsError::NotAMember { user_id: carol_u.user_id, device_id: carol.device_id },
    ];
    for ((member, group), truth) in [&mut bob2, &mut carol].into_iter().zip(gone.iter_mut()).zip(truths) {
        feed.serve(&w.proxy, &member.label);
        let refused = member.catch_up(at, group, &lying_roster).await.expect_err("a removed device caught up");
        assert_eq!(refused, MlsError::NotInGroup, "{}", member.label);
        let served = member.inbox(at, 0).await;
        assert_eq!(member.open(group, &served[0], &lying_roster), Err(MlsError::NotInGroup));

        let mut rejoined = member
            .device
            .rejoin_from_server(&member.api, at, &lying_roster, &mut member.trust)
            .await
            .expect("the rejoin the server accepts");
        // Epoch 3's secrets are not in the group info: the external commit derives epoch 4's only.
        assert_eq!(member.open(&mut rejoined, &served[0], &lying_roster), Err(MlsError::CannotDecrypt));
        let upload: UploadCommit = w
            .proxy
            .exchanges()
            .iter()
            .rev()
            .find(|e| e.request.is(&member.label, Method::POST, "/commits"))
            .expect("the external commit")
            .request
            .json();
        // Slipped into what Alice catches up on: refused whatever the server lists.
        inject_into_commits(&w.proxy, "alice", at, stored(4, upload.commit.0));
        let refused = alice.catch_up(at, &mut a_group, &roster).await.expect_err("a removed device rejoined");
        assert_eq!(refused, truth);
        let refused = alice.catch_up(at, &mut a_group, &lying_roster).await.expect_err("a removed device rejoined");
        assert_eq!(refused, MlsError::ExternalJoin { user_id: member.user_id, device_id: member.device_id });
        w.proxy.clear_rules();
        assert_eq!(a_group.epoch().as_u64(), 3);
        let after = alice.send(at, &mut a_group, secret).await;
        assert_eq!(member.open(&mut rejoined, &after, &lying_roster), Err(MlsError::CannotDecrypt));
    }
    w.assert_no_plaintext(&alice, at, &[secret]).await;
}

/// What the removal key (which the server really holds) signs: the `Remove` of leaf `leaf` in
/// `at`'s group at `epoch`, as the data plane writes it.
fn removal_signed_by_the_server(app: &TestApp, at: GroupAddress, epoch: i32, leaf: u32) -> MlsBytes {
    use ed25519_dalek::Signer as _;
    let key = conclave_dataplane::conversations::removals::read_key(&app.home.0.join("mls-removal.pem")).expect("key");
    let unsigned = conclave_protocol::mls_wire::external_remove(at.conversation_id.as_bytes(), epoch as u64, 0, leaf);
    let signature = key.sign(unsigned.to_sign()).to_bytes();
    MlsBytes(unsigned.signed(&signature))
}

/// The leaf index of `device` in `group`.
fn leaf_index(group: &MlsGroup, device: Uuid) -> u32 {
    group
        .members()
        .find(|m| Leaf::decode(m.credential.serialized_content()).is_ok_and(|l| l.device_id == device))
        .expect("the device has a leaf")
        .index
        .u32()
}

/// Sends `plaintext` sealed in the group, returning the server's refusal if any.
async fn try_send(member: &Member, at: GroupAddress, group: &mut MlsGroup, plaintext: &[u8]) -> Result<(), String> {
    let body = SendMessage {
        client_message_id: Uuid::new_v4(),
        key_generation: group.epoch().as_u64() as i32,
        ciphertext: member.device.encrypt(group, plaintext).expect("encrypt"),
        reply_to_id: None,
        attachment_ids: Vec::new(),
    };
    member.api.send_message(at.organization_id, at.conversation_id, &body).await.map(drop).map_err(|e| e.to_string())
}

/// The delivery service proposes the removals, and holds the key that signs them. A server that
/// turns that key against a member (proposing to remove Alice, whom it still lists as active) or
/// hands a proposal whose signature does not verify gets nothing committed: `UnexpectedRemoval`,
/// and openmls's refusal of the signature. A commit that leaves a removed device's leaf in the tree
/// does not end the removal: messages stay refused (`rotation_required`) until a commit takes the
/// leaf out. The honest proposal is what Bob's device commits; and when the server drops the
/// proposals (for Bob's revoked second device), Bob's device removes the leaf by its own commit.
#[tokio::test]
async fn removal_proposals_turned_against_a_member_forged_or_dropped_do_not_keep_a_removed_device_in() {
    let (mut w, [_, bob_u, _], mut alice, mut bob, mut carol) = three().await;
    let mut bob2 = w.device(&bob_u, "bob2").await;
    for device in [&bob, &bob2, &carol] {
        device.publish(1).await;
    }
    let (at, mut a_group) = w.group(&mut alice, &[bob.user_id, carol.user_id]).await;
    let mut b_group = bob.join(at).await;
    bob2.join(at).await;
    carol.join(at).await;
    alice.api.remove_member(w.org, at.conversation_id, carol.user_id).await.expect("carol removed");
    let honest = bob.api.proposals(w.org, at.conversation_id).await.expect("proposals");
    assert_eq!((honest.epoch, honest.proposals.len()), (1, 1), "one leaf to remove: Carol's");

    // Alice commits without removing Carol: accepted, and the removal is still due.
    assert_eq!(alice.update(at, &mut a_group).await, 2);
    let conversation = alice.api.conversation(w.org, at.conversation_id).await.expect("conversation");
    assert!(conversation.rotation_required, "a commit that left Carol's leaf in ended her removal");
    let refused = try_send(&alice, at, &mut a_group, b"proposal test: before the removal").await.expect_err("sent");
    assert!(refused.contains("rotation_required") || refused.contains("rotation"), "{refused}");
    let roster = bob.roster(at).await;
    bob.catch_up(at, &mut b_group, &roster).await.expect("bob catches up");
    let pending = bob.api.proposals(w.org, at.conversation_id).await.expect("proposals");
    assert_eq!((pending.epoch, pending.proposals.len()), (2, 1), "proposed again in the new epoch");

    // Turned against Alice: signed with the real removal key, for her leaf.
    let against_alice = removal_signed_by_the_server(&w._app, at, 2, leaf_index(&b_group, alice.device_id));
    let path = format!("{}/proposals", at.conversation_id);
    w.proxy.rewrite("bob", Method::GET, path.clone(), move |p: &mut PendingProposals| {
        p.proposals = vec![against_alice.clone()]
    });
    let err = bob.device.reconcile(&bob.api, at, &mut b_group, &mut bob.trust).await.expect_err("alice removed");
    assert!(
        matches!(err, DeliveryError::Mls(MlsError::UnexpectedRemoval { device_id, .. }) if device_id == alice.device_id),
        "{err:?}"
    );
    // Forged: the honest proposal with its signature altered.
    w.proxy.clear_rules();
    w.proxy.rewrite("bob", Method::GET, path.clone(), |p: &mut PendingProposals| {
        let last = p.proposals[0].0.len() - 1;
        p.proposals[0].0[last] ^= 1;
    });
    let err = bob.device.reconcile(&bob.api, at, &mut b_group, &mut bob.trust).await.expect_err("forged");
    assert!(matches!(err, DeliveryError::Mls(MlsError::BadSignature)), "{err:?}");
    let conversation = bob.api.conversation(w.org, at.conversation_id).await.expect("conversation");
    assert_eq!((conversation.current_key_generation, b_group.epoch().as_u64()), (2, 2), "nothing was committed");

    // Honest: Bob's device commits the server's proposal, and Alice sees Carol removed by it.
    w.proxy.clear_rules();
    assert_eq!(bob.device.reconcile(&bob.api, at, &mut b_group, &mut bob.trust).await.expect("removal"), Some(3));
    let roster = alice.roster(at).await;
    match alice.catch_up(at, &mut a_group, &roster).await.expect("alice catches up").as_slice() {
        [Incoming::Commit { epoch: 3, removed, .. }] => assert_eq!(devices(removed), BTreeSet::from([carol.device_id])),
        other => panic!("expected Carol's removal, got {other:?}"),
    }
    let conversation = alice.api.conversation(w.org, at.conversation_id).await.expect("conversation");
    assert!(!conversation.rotation_required);
    try_send(&alice, at, &mut a_group, b"proposal test: after the removal").await.expect("sent");

    // Dropped: Bob revokes his second device and the server hands his first no proposal.
    bob.api.revoke_device(bob2.device_id).await.expect("bob2 revoked");
    w.proxy.rewrite("bob", Method::GET, path, |p: &mut PendingProposals| p.proposals.clear());
    assert_eq!(bob.device.reconcile(&bob.api, at, &mut b_group, &mut bob.trust).await.expect("removal"), Some(4));
    assert!(!Device::leaves(&b_group).iter().any(|l| l.device_id == bob2.device_id));
    let conversation = bob.api.conversation(w.org, at.conversation_id).await.expect("conversation");
    assert!(!conversation.rotation_required, "Bob's own commit removed the revoked device");
}
