//! The MLS layer between devices, with the server's part played in memory: what each check
//! refuses, and that what it accepts works. The same flows against the real data plane are in
//! the SDK's integration tests.

use openmls::prelude::tls_codec::Deserialize as _;
use openmls::prelude::{OpenMlsProvider as _, *};
use openmls_basic_credential::SignatureKeyPair;
use openmls_rust_crypto::OpenMlsRustCrypto;
use uuid::Uuid;

use super::*;

struct Person {
    user_id: Uuid,
    identity: IdentityKey,
    trust: TrustStore,
}

impl Person {
    fn new() -> Self {
        Self {
            user_id: Uuid::new_v4(),
            identity: IdentityKey::generate().expect("identity"),
            trust: TrustStore::default(),
        }
    }

    fn device(&self) -> Device {
        self.device_with_seed().0
    }

    /// A device and its leaf key's seed (which the keystore holds in real use).
    fn device_with_seed(&self) -> (Device, [u8; 32]) {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).expect("random");
        (Device::new(&self.identity, self.user_id, Uuid::new_v4(), &seed).expect("device"), seed)
    }
}

fn roster(people: &[&Person]) -> Roster {
    Roster { members: people.iter().map(|p| p.user_id).collect(), ..Roster::default() }
}

/// The server's removal key, as the operator generates it.
struct DeliveryService {
    seed: [u8; 32],
    signer: SignatureKeyPair,
}

impl DeliveryService {
    fn new() -> Self {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).expect("random");
        let public = ed25519_dalek::SigningKey::from_bytes(&seed).verifying_key().to_bytes();
        let signer = SignatureKeyPair::from_raw(SignatureScheme::ED25519, seed.to_vec(), public.to_vec());
        Self { seed, signer }
    }

    fn key(&self) -> ExternalSenderKey {
        ExternalSenderKey { public_key: self.signer.public().try_into().expect("32 bytes") }
    }

    /// `Remove` of the leaf holding `device_id`, as the data plane signs it.
    fn propose_removal(&self, group: &MlsGroup, device_id: Uuid) -> Vec<u8> {
        let index = group
            .members()
            .find(|m| {
                DeviceCredential::decode(m.credential.serialized_content()).is_ok_and(|c| c.device_id == device_id)
            })
            .expect("device in group")
            .index;
        ExternalProposal::new_remove::<OpenMlsRustCrypto>(
            index,
            group.group_id().clone(),
            group.epoch(),
            &self.signer,
            SenderExtensionIndex::new(0),
        )
        .expect("proposal")
        .to_bytes()
        .expect("bytes")
    }
}

/// Alice (two devices) and Bob (one) in one conversation, every device having processed the
/// commit that added the others.
struct Conversation {
    id: Uuid,
    alice: Person,
    bob: Person,
    a1: Device,
    a2: Device,
    b1: Device,
    g_a1: MlsGroup,
    g_a2: MlsGroup,
    g_b1: MlsGroup,
    ds: DeliveryService,
}

fn conversation() -> Conversation {
    let (mut alice, mut bob) = (Person::new(), Person::new());
    let (a1, a2, b1) = (alice.device(), alice.device(), bob.device());
    let ds = DeliveryService::new();
    let id = Uuid::new_v4();
    let everyone = roster(&[&alice, &bob]);
    let mut g_a1 = a1.create_group(id, Some(&ds.key())).expect("group");
    let packages = [a2.key_package(false).expect("kp"), b1.key_package(false).expect("kp")];
    let out = a1.add(&mut g_a1, &packages, &everyone, &mut alice.trust).expect("add");
    assert_eq!(out.epoch, 0);
    assert_eq!(out.welcomed.len(), 2);
    a1.merge_pending(&mut g_a1).expect("merge");
    let welcome = out.welcome.expect("welcome");
    let g_a2 = a2.join(&welcome, &everyone, &mut alice.trust).expect("a2 joins");
    let g_b1 = b1.join(&welcome, &everyone, &mut bob.trust).expect("b1 joins");
    Conversation { id, alice, bob, a1, a2, b1, g_a1, g_a2, g_b1, ds }
}

impl Conversation {
    fn roster(&self) -> Roster {
        roster(&[&self.alice, &self.bob])
    }
}

fn plaintext_of(incoming: Incoming) -> Vec<u8> {
    match incoming {
        Incoming::Application { plaintext, .. } => plaintext,
        other => panic!("expected an application message, got {other:?}"),
    }
}

#[test]
fn members_exchange_messages_and_see_verified_senders() {
    let mut c = conversation();
    let r = c.roster();
    let sealed = c.a1.encrypt(&mut c.g_a1, b"hello bob").expect("encrypt");
    match c.b1.process(&mut c.g_b1, &sealed, &r, &mut c.bob.trust).expect("bob reads") {
        Incoming::Application { sender, epoch, plaintext } => {
            assert_eq!(plaintext, b"hello bob");
            assert_eq!((sender.user_id, sender.device_id), (c.alice.user_id, c.a1.device_id()));
            assert_eq!(epoch, 1);
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(
        plaintext_of(c.a2.process(&mut c.g_a2, &sealed, &r, &mut c.alice.trust).expect("a2 reads")),
        b"hello bob"
    );
    let reply = c.b1.encrypt(&mut c.g_b1, b"hi alice").expect("encrypt");
    assert_eq!(plaintext_of(c.a1.process(&mut c.g_a1, &reply, &r, &mut c.alice.trust).expect("a1 reads")), b"hi alice");
    assert_eq!(Device::leaves(&c.g_b1).len(), 3);
    let _ = c.id;
}

#[test]
fn a_ghost_device_without_the_users_identity_signature_is_refused_everywhere() {
    let mut c = conversation();
    let r = c.roster();
    // The server makes a device for Bob's account with an identity key of its own.
    let impostor =
        Person { user_id: c.bob.user_id, identity: IdentityKey::generate().expect("id"), trust: TrustStore::default() };
    let ghost = impostor.device();
    let package = ghost.key_package(false).expect("kp");
    // Adding it: Alice's device refuses, because Bob's pinned identity is another key.
    let refused =
        c.a1.add(&mut c.g_a1, std::slice::from_ref(&package), &r, &mut c.alice.trust).expect_err("ghost added");
    assert_eq!(refused, MlsError::IdentityChanged { user_id: c.bob.user_id });
    // A ghost credential that claims Bob's real identity key but carries a signature of another key.
    let mut forged = ghost.credential().encode();
    forged[37..69].copy_from_slice(&c.bob.identity.public().0);
    let forged = DeviceCredential::decode(&forged).expect("layout");
    let leaf_key = ghost_leaf_key(&ghost);
    assert_eq!(
        forged.verify(&leaf_key),
        Err(MlsError::BadIdentitySignature { user_id: c.bob.user_id, device_id: ghost.device_id() })
    );
    // If another (compromised) member adds it anyway, every honest device refuses the commit.
    let mut careless = TrustStore::default();
    let out = c.a1.add(&mut c.g_a1, &[package], &r, &mut careless).expect("careless add");
    c.a1.merge_pending(&mut c.g_a1).expect("merge");
    let refused = c.b1.process(&mut c.g_b1, &out.commit, &r, &mut c.bob.trust).expect_err("bob accepted a ghost");
    assert_eq!(refused, MlsError::IdentityChanged { user_id: c.bob.user_id });
}

fn ghost_leaf_key(device: &Device) -> Vec<u8> {
    let package = device.key_package(false).expect("kp");
    let message = MlsMessageIn::tls_deserialize_exact(package.as_slice()).expect("parse");
    let MlsMessageBodyIn::KeyPackage(kp) = message.extract() else { panic!("not a key package") };
    kp.validate(OpenMlsRustCrypto::default().crypto(), ProtocolVersion::Mls10)
        .expect("valid")
        .leaf_node()
        .signature_key()
        .as_slice()
        .to_vec()
}

#[test]
fn a_key_package_of_someone_outside_the_conversation_or_tampered_is_refused() {
    let mut c = conversation();
    let r = c.roster();
    let mallory = Person::new();
    let package = mallory.device().key_package(false).expect("kp");
    let refused =
        c.a1.add(&mut c.g_a1, std::slice::from_ref(&package), &r, &mut c.alice.trust).expect_err("outsider added");
    assert!(matches!(refused, MlsError::NotAMember { user_id, .. } if user_id == mallory.user_id));
    let mut tampered = package;
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    assert_eq!(
        c.a1.add(&mut c.g_a1, &[tampered], &r, &mut c.alice.trust).expect_err("tampered"),
        MlsError::MalformedKeyPackage
    );
}

#[test]
fn replayed_duplicated_or_reordered_commits_and_messages_are_refused() {
    let mut c = conversation();
    let r = c.roster();
    let update = c.a1.self_update(&mut c.g_a1).expect("update");
    c.a1.merge_pending(&mut c.g_a1).expect("merge");
    assert!(matches!(
        c.b1.process(&mut c.g_b1, &update.commit, &r, &mut c.bob.trust).expect("commit"),
        Incoming::Commit { epoch: 2, .. }
    ));
    // The same commit again (a replay or duplicate from the server).
    assert_eq!(
        c.b1.process(&mut c.g_b1, &update.commit, &r, &mut c.bob.trust).expect_err("replayed commit"),
        MlsError::WrongEpoch { message: 1, group: 2 }
    );
    let message = c.a1.encrypt(&mut c.g_a1, b"once").expect("encrypt");
    assert_eq!(plaintext_of(c.b1.process(&mut c.g_b1, &message, &r, &mut c.bob.trust).expect("first")), b"once");
    assert_eq!(
        c.b1.process(&mut c.g_b1, &message, &r, &mut c.bob.trust).expect_err("replayed message"),
        MlsError::CannotDecrypt
    );
    // Reordered: a commit from a later epoch before the one that leads to it.
    let first = c.b1.self_update(&mut c.g_b1).expect("b update");
    c.b1.merge_pending(&mut c.g_b1).expect("merge");
    let second = c.b1.self_update(&mut c.g_b1).expect("b update 2");
    c.b1.merge_pending(&mut c.g_b1).expect("merge");
    assert_eq!(
        c.a2.process(&mut c.g_a2, &second.commit, &r, &mut c.alice.trust).expect_err("out of order"),
        MlsError::WrongEpoch { message: 3, group: 1 }
    );
    // a2 missed epoch 2 (Alice's update) too: it processes what it missed, in order.
    c.a2.process(&mut c.g_a2, &update.commit, &r, &mut c.alice.trust).expect("a2 catches up");
    c.a2.process(&mut c.g_a2, &first.commit, &r, &mut c.alice.trust).expect("first");
    c.a2.process(&mut c.g_a2, &second.commit, &r, &mut c.alice.trust).expect("second");
}

#[test]
fn a_forged_message_does_not_decrypt() {
    let mut c = conversation();
    let r = c.roster();
    let mut message = c.a1.encrypt(&mut c.g_a1, b"original").expect("encrypt");
    let last = message.len() - 1;
    message[last] ^= 0x40;
    assert_eq!(c.b1.process(&mut c.g_b1, &message, &r, &mut c.bob.trust).expect_err("forged"), MlsError::CannotDecrypt);
}

#[test]
fn a_welcome_delivered_to_another_device_cannot_be_used() {
    let mut c = conversation();
    let r = c.roster();
    let b2 = c.bob.device();
    let out = c.a1.add(&mut c.g_a1, &[b2.key_package(false).expect("kp")], &r, &mut c.alice.trust).expect("add b2");
    // The server hands b2's Welcome to a device of Bob's that has no key package in it.
    let b3 = c.bob.device();
    let refused =
        b3.join(out.welcome.as_deref().expect("welcome"), &r, &mut c.bob.trust).expect_err("wrong device joined");
    assert!(matches!(refused, MlsError::WelcomeRejected(_)), "{refused:?}");
}

#[test]
fn the_servers_removal_is_committed_by_a_member_and_the_removed_device_reads_nothing_after() {
    let mut c = conversation();
    let r = c.roster();
    let proposal = c.ds.propose_removal(&c.g_a1, c.a2.device_id());
    // Every remaining device stores the proposal; one of them commits it.
    match c.a1.process(&mut c.g_a1, &proposal, &r, &mut c.alice.trust).expect("proposal") {
        Incoming::RemovalProposed { removed } => assert_eq!(removed.device_id, c.a2.device_id()),
        other => panic!("unexpected {other:?}"),
    }
    c.b1.process(&mut c.g_b1, &proposal, &r, &mut c.bob.trust).expect("bob stores it");
    let commit = c.a1.commit_pending(&mut c.g_a1).expect("commit removal");
    c.a1.merge_pending(&mut c.g_a1).expect("merge");
    match c.b1.process(&mut c.g_b1, &commit.commit, &r, &mut c.bob.trust).expect("bob merges") {
        Incoming::Commit { removed, .. } => {
            assert_eq!(removed.iter().map(|l| l.device_id).collect::<Vec<_>>(), vec![c.a2.device_id()])
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(Device::leaves(&c.g_b1).len(), 2);
    // The removed device may process the commit that removed it, and nothing after it.
    let _ = c.a2.process(&mut c.g_a2, &commit.commit, &r, &mut c.alice.trust);
    let after = c.b1.encrypt(&mut c.g_b1, b"after the removal").expect("encrypt");
    let refused = c.a2.process(&mut c.g_a2, &after, &r, &mut c.alice.trust).expect_err("removed device read");
    assert!(
        matches!(refused, MlsError::WrongEpoch { .. } | MlsError::CannotDecrypt | MlsError::Protocol { .. }),
        "{refused:?}"
    );
}

#[test]
fn the_delivery_services_own_encoding_of_a_removal_is_what_openmls_makes_to_the_byte() {
    use conclave_protocol::mls_wire;
    use ed25519_dalek::Signer as _;

    let c = conversation();
    // The server finds the device's leaf in the group info it holds, by the device's key.
    let info = c.a1.group_info(&c.g_a1).expect("group info");
    let key = c
        .g_a1
        .members()
        .find(|m| {
            DeviceCredential::decode(m.credential.serialized_content()).is_ok_and(|d| d.device_id == c.a2.device_id())
        })
        .expect("a2's leaf")
        .signature_key;
    let leaf = mls_wire::leaf_with_key(&info, &key).expect("a tree").expect("a2 is in it");
    assert_eq!(mls_wire::leaf_with_key(&info, &[0u8; 32]), Ok(None), "an unknown key has no leaf");
    // Every leaf, as openmls lists the members, and the external sender the group was made with.
    let listed: Vec<(u32, Vec<u8>)> =
        mls_wire::leaves(&info).expect("a tree").into_iter().map(|l| (l.index, l.signature_key.to_vec())).collect();
    let members: Vec<(u32, Vec<u8>)> = c.g_a1.members().map(|m| (m.index.u32(), m.signature_key)).collect();
    assert_eq!(listed, members);
    assert_eq!(mls_wire::external_senders(&info).expect("extensions"), vec![&c.ds.key().public_key[..]]);
    let plain = c.a1.create_group(Uuid::new_v4(), None).expect("a group without external sender");
    let plain_info = c.a1.group_info(&plain).expect("group info");
    assert!(mls_wire::external_senders(&plain_info).expect("extensions").is_empty());
    // Ed25519 is deterministic: the same proposal signed with the same key is the same bytes.
    let unsigned = mls_wire::external_remove(c.id.as_bytes(), c.g_a1.epoch().as_u64(), 0, leaf);
    let signature = ed25519_dalek::SigningKey::from_bytes(&c.ds.seed).sign(unsigned.to_sign());
    let ours = unsigned.signed(&signature.to_bytes());
    assert_eq!(ours, c.ds.propose_removal(&c.g_a1, c.a2.device_id()));
}

#[test]
fn a_device_that_lost_its_state_rejoins_by_external_commit() {
    let mut c = conversation();
    let r = c.roster();
    // b1's state is gone; Alice's device published group info with its last commit.
    c.b1.forget(&mut c.g_b1).expect("forget");
    assert!(c.b1.load(c.id).expect("load").is_none());
    let info = c.a1.group_info(&c.g_a1).expect("group info");
    let (mut rejoined, out) = c.b1.rejoin(&info, &r, &mut c.bob.trust).expect("rejoin");
    c.b1.merge_pending(&mut rejoined).expect("merge");
    match c.a1.process(&mut c.g_a1, &out.commit, &r, &mut c.alice.trust).expect("alice accepts") {
        Incoming::Commit { committer, .. } => assert_eq!(committer.map(|l| l.device_id), Some(c.b1.device_id())),
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(Device::leaves(&c.g_a1).len(), 3, "the old leaf of b1 was replaced, not duplicated");
    let message = c.a1.encrypt(&mut c.g_a1, b"welcome back").expect("encrypt");
    assert_eq!(
        plaintext_of(c.b1.process(&mut rejoined, &message, &r, &mut c.bob.trust).expect("read")),
        b"welcome back"
    );
}

#[test]
fn a_snapshot_restores_groups_into_a_fresh_device() {
    let mut c = conversation();
    let r = c.roster();
    let (b2, seed) = c.bob.device_with_seed();
    let out = c.a1.add(&mut c.g_a1, &[b2.key_package(false).expect("kp")], &r, &mut c.alice.trust).expect("add b2");
    c.a1.merge_pending(&mut c.g_a1).expect("merge");
    b2.join(out.welcome.as_deref().expect("welcome"), &r, &mut c.bob.trust).expect("b2 joins");
    let snapshot = b2.snapshot();
    drop(b2);
    // A credential binds its leaf key: another seed cannot wear it.
    let credential = *Device::leaves(&c.g_a1)
        .iter()
        .find(|l| l.user_id == c.bob.user_id && l.device_id != c.b1.device_id())
        .expect("b2 leaf");
    assert!(matches!(Device::with_credential(credential, &[9u8; 32]), Err(MlsError::BadIdentitySignature { .. })));
    let fresh = Device::with_credential(credential, &seed).expect("rebuild");
    fresh.restore(&snapshot).expect("restore");
    let mut group = fresh.load(c.id).expect("load").expect("group present");
    let message = c.a1.encrypt(&mut c.g_a1, b"still here").expect("encrypt");
    assert_eq!(plaintext_of(fresh.process(&mut group, &message, &r, &mut c.bob.trust).expect("read")), b"still here");
    assert_eq!(fresh.restore(&snapshot[..snapshot.len() - 1]), Err(MlsError::MalformedSnapshot));
}

#[test]
fn a_changed_identity_is_an_explicit_error_until_accepted() {
    let mut trust = TrustStore::default();
    let user = Uuid::new_v4();
    let (old, new) = (IdentityKey::generate().expect("id").public(), IdentityKey::generate().expect("id").public());
    assert_eq!(trust.check(user, &old), Ok(Trust::New));
    assert_eq!(trust.check(user, &old), Ok(Trust::Unverified));
    trust.mark_verified(user, &old).expect("verify");
    assert_eq!(trust.check(user, &old), Ok(Trust::Verified));
    assert_eq!(trust.check(user, &new), Err(MlsError::IdentityChanged { user_id: user }));
    assert_eq!(trust.mark_verified(user, &new), Err(MlsError::IdentityChanged { user_id: user }));
    trust.accept_change(user, &new);
    assert_eq!(trust.check(user, &new), Ok(Trust::Unverified));
}

#[test]
fn safety_numbers_are_symmetric_and_change_with_either_key() {
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    let (ka, kb) = (IdentityKey::generate().expect("id").public(), IdentityKey::generate().expect("id").public());
    let number = safety::safety_number((a, &ka), (b, &kb));
    assert_eq!(number.len(), 60);
    assert!(number.bytes().all(|d| d.is_ascii_digit()));
    assert_eq!(number, safety::safety_number((b, &kb), (a, &ka)));
    let kc = IdentityKey::generate().expect("id").public();
    assert_ne!(number, safety::safety_number((a, &ka), (b, &kc)));
    assert_eq!(safety::display(&number).split(' ').count(), 12);
}

#[test]
fn a_removed_member_or_revoked_device_cannot_rejoin_by_external_commit() {
    let mut c = conversation();
    let info = c.a1.group_info(&c.g_a1).expect("group info");
    // Bob left the conversation (the server lists Alice only): his device tries to come back.
    let mut bobs_view = c.roster();
    let b2 = c.bob.device();
    let (_, out) = b2.rejoin(&info, &bobs_view, &mut c.bob.trust).expect("bob builds the commit");
    let alice_only = roster(&[&c.alice]);
    let refused =
        c.a1.process(&mut c.g_a1, &out.commit, &alice_only, &mut c.alice.trust).expect_err("removed member rejoined");
    assert!(matches!(refused, MlsError::NotAMember { user_id, .. } if user_id == c.bob.user_id), "{refused:?}");
    // Alice's second device was revoked: it cannot rejoin either.
    bobs_view.revoked.insert(c.a2.device_id());
    let (_, out) = c.a2.rejoin(&info, &c.roster(), &mut c.alice.trust).expect("a2 builds the commit");
    let refused =
        c.b1.process(&mut c.g_b1, &out.commit, &bobs_view, &mut c.bob.trust).expect_err("revoked device rejoined");
    assert!(
        matches!(refused, MlsError::RevokedDevice { device_id, .. } if device_id == c.a2.device_id()),
        "{refused:?}"
    );
}

#[test]
fn an_external_commit_only_brings_back_a_device_that_is_in_the_group() {
    let mut c = conversation();
    let r = c.roster();
    let info = c.a1.group_info(&c.g_a1).expect("group info");
    // A new device of Bob's, certified by his identity key but never added by a member: whoever
    // holds the group info (the server) could bring it in this way.
    let b2 = c.bob.device();
    let (_, out) = b2.rejoin(&info, &r, &mut c.bob.trust).expect("b2 builds the commit");
    assert_eq!(
        c.a1.process(&mut c.g_a1, &out.commit, &r, &mut c.alice.trust).expect_err("joined without being added"),
        MlsError::ExternalJoin { user_id: c.bob.user_id, device_id: b2.device_id() }
    );
    assert_eq!(Device::leaves(&c.g_a1).len(), 3);
}

#[test]
fn a_sender_verified_once_is_still_checked_against_the_roster_and_its_pin() {
    let mut c = conversation();
    let r = c.roster();
    // The first message verifies Alice's credential; the next ones reuse that verification.
    for text in [&b"one"[..], b"two"] {
        let sealed = c.a1.encrypt(&mut c.g_a1, text).expect("encrypt");
        assert_eq!(plaintext_of(c.b1.process(&mut c.g_b1, &sealed, &r, &mut c.bob.trust).expect("reads")), text);
    }
    // Her pin replaced by another identity key: the cached leaf is refused all the same.
    let other = IdentityKey::generate().expect("identity").public();
    let mut changed = TrustStore::default();
    changed.check(c.alice.user_id, &other).expect("pin another key");
    let sealed = c.a1.encrypt(&mut c.g_a1, b"three").expect("encrypt");
    assert_eq!(
        c.b1.process(&mut c.g_b1, &sealed, &r, &mut changed),
        Err(MlsError::IdentityChanged { user_id: c.alice.user_id })
    );
    // No longer listed as a member: refused too.
    let without_alice = roster(&[&c.bob]);
    let sealed = c.a1.encrypt(&mut c.g_a1, b"four").expect("encrypt");
    assert!(matches!(
        c.b1.process(&mut c.g_b1, &sealed, &without_alice, &mut c.bob.trust),
        Err(MlsError::NotAMember { .. })
    ));
}

#[test]
fn a_device_that_saw_a_later_epoch_does_not_encrypt_in_its_own_until_it_catches_up() {
    let mut c = conversation();
    let r = c.roster();
    let (b2, seed) = c.bob.device_with_seed();
    let out = c.a1.add(&mut c.g_a1, &[b2.key_package(false).expect("kp")], &r, &mut c.alice.trust).expect("add b2");
    c.a1.merge_pending(&mut c.g_a1).expect("merge");
    let mut g_b2 = b2.join(out.welcome.as_deref().expect("welcome"), &r, &mut c.bob.trust).expect("b2 joins");
    // Alice moves on; the commit is kept from Bob's devices, her next message is not.
    let update = c.a1.self_update(&mut c.g_a1).expect("update");
    c.a1.merge_pending(&mut c.g_a1).expect("merge");
    let later = c.a1.encrypt(&mut c.g_a1, b"after the update").expect("encrypt");
    let (current, next) = (g_b2.epoch().as_u64(), c.g_a1.epoch().as_u64());
    b2.encrypt(&mut g_b2, b"before any sign").expect("nothing seen yet");
    assert_eq!(
        b2.process(&mut g_b2, &later, &r, &mut c.bob.trust),
        Err(MlsError::WrongEpoch { message: next, group: current })
    );
    assert_eq!(b2.encrypt(&mut g_b2, b"after the sign"), Err(MlsError::Behind { group: current, later: next }));
    // A sign of an epoch already reached, or older than one seen, changes nothing.
    b2.saw_epoch(&g_b2, current);
    b2.saw_epoch(&g_b2, current + 1);
    assert_eq!(b2.later_epoch(&g_b2), Some(next));

    // Kept in the device's state: a restart does not forget it.
    let credential = *b2.credential();
    let restarted = Device::with_credential(credential, &seed).expect("rebuild");
    restarted.restore(&b2.snapshot()).expect("restore");
    let mut reloaded = restarted.load(c.id).expect("load").expect("group");
    assert_eq!(
        restarted.encrypt(&mut reloaded, b"after a restart"),
        Err(MlsError::Behind { group: current, later: next })
    );

    // The commit arrives: the device sends again, and the other member reads it.
    assert!(matches!(
        restarted.process(&mut reloaded, &update.commit, &r, &mut c.bob.trust),
        Ok(Incoming::Commit { .. })
    ));
    assert_eq!(restarted.later_epoch(&reloaded), None);
    let sealed = restarted.encrypt(&mut reloaded, b"caught up").expect("encrypt once caught up");
    assert_eq!(plaintext_of(c.a1.process(&mut c.g_a1, &sealed, &r, &mut c.alice.trust).expect("read")), b"caught up");
}

#[test]
fn a_verified_only_device_adds_only_confirmed_users_and_its_own_account_under_its_own_key() {
    let (mut alice, bob) = (Person::new(), Person::new());
    let (a1, a2, b1) = (alice.device(), alice.device(), bob.device());
    let everyone = roster(&[&alice, &bob]);
    alice.trust.set_first_contact(FirstContact::VerifiedOnly);
    let mut group = a1.create_group(Uuid::new_v4(), None).expect("group");
    let bob_package = b1.key_package(false).expect("kp");
    let refused = a1.add(&mut group, std::slice::from_ref(&bob_package), &everyone, &mut alice.trust);
    assert_eq!(refused.map(|_| ()), Err(MlsError::Unverified { user_id: bob.user_id }));
    assert!(alice.trust.pin(bob.user_id).is_none(), "a refused package pins nothing");
    // Its own account's devices, under its own identity key, need no confirmation; another key is
    // not its account's.
    a1.add(&mut group, &[a2.key_package(false).expect("kp")], &everyone, &mut alice.trust).expect("own device");
    a1.discard_pending(&mut group).expect("discard");
    let impostor = Device::new(&IdentityKey::generate().expect("identity"), alice.user_id, Uuid::new_v4(), &[7u8; 32])
        .expect("device");
    let refused = a1.add(&mut group, &[impostor.key_package(false).expect("kp")], &everyone, &mut alice.trust);
    assert_eq!(refused.map(|_| ()), Err(MlsError::Unverified { user_id: alice.user_id }));

    let bob_key = bob.identity.public();
    alice.trust.check(bob.user_id, &bob_key).expect("pinned");
    assert_eq!(alice.trust.admit(bob.user_id), Err(MlsError::Unverified { user_id: bob.user_id }));
    alice.trust.mark_verified(bob.user_id, &bob_key).expect("confirmed");
    a1.add(&mut group, &[bob_package], &everyone, &mut alice.trust).expect("bob once confirmed");
    // Trust on first use (the default) admits anyone whose key checks out.
    assert_eq!(bob.trust.admit(alice.user_id), Ok(()));
}

#[test]
fn a_last_resort_key_package_adds_its_device() {
    let (mut alice, mut bob) = (Person::new(), Person::new());
    let (a1, b1) = (alice.device(), bob.device());
    let everyone = roster(&[&alice, &bob]);
    let mut group = a1.create_group(Uuid::new_v4(), None).expect("group");
    let package = b1.key_package(true).expect("last-resort package");
    let out = a1.add(&mut group, &[package], &everyone, &mut alice.trust).expect("added from its last resort");
    a1.merge_pending(&mut group).expect("merge");
    let mut g_b1 = b1.join(out.welcome.as_deref().expect("welcome"), &everyone, &mut bob.trust).expect("joins");
    let sealed = a1.encrypt(&mut group, b"to the last resort").expect("encrypt");
    assert_eq!(
        plaintext_of(b1.process(&mut g_b1, &sealed, &everyone, &mut bob.trust).expect("read")),
        b"to the last resort"
    );
}

#[test]
fn a_device_rejoins_a_group_that_still_holds_a_former_members_leaf_and_removes_it() {
    let mut c = conversation();
    let everyone = c.roster();
    // Bob leaves the conversation; before any commit removes his leaf, a2 loses its state.
    let alice_only = roster(&[&c.alice]);
    c.a2.forget(&mut c.g_a2).expect("forget");
    let info = c.a1.group_info(&c.g_a1).expect("group info");
    let (mut rejoined, out) = c.a2.rejoin(&info, &alice_only, &mut c.alice.trust).expect("rejoin past bob's leaf");
    c.a2.merge_pending(&mut rejoined).expect("merge");
    c.a1.process(&mut c.g_a1, &out.commit, &alice_only, &mut c.alice.trust).expect("a1 takes the rejoin");
    c.b1.process(&mut c.g_b1, &out.commit, &everyone, &mut c.bob.trust).expect("b1 takes it too");
    // The rejoined device removes the former member's leaf before sending; Bob reads nothing after.
    let removal = c.a2.remove(&mut rejoined, &[c.b1.device_id()]).expect("remove bob's leaf");
    c.a2.merge_pending(&mut rejoined).expect("merge");
    c.a1.process(&mut c.g_a1, &removal.commit, &alice_only, &mut c.alice.trust).expect("a1 takes the removal");
    let sealed = c.a2.encrypt(&mut rejoined, b"after bob left").expect("encrypt");
    assert_eq!(
        plaintext_of(c.a1.process(&mut c.g_a1, &sealed, &alice_only, &mut c.alice.trust).expect("read")),
        b"after bob left"
    );
    assert!(c.b1.process(&mut c.g_b1, &sealed, &everyone, &mut c.bob.trust).is_err(), "bob reads nothing after");
}
