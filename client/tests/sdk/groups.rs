//! Keeping a conversation's MLS group in step with the server's membership, through the SDK and
//! the real data plane: the first device to act makes the group and adds every member device;
//! later members, new devices, removals and revocations become commits; a device whose state is
//! lost rejoins and knows that messages may be missing; two devices making the first group at once
//! end in one group.

use conclave_client::messenger::{IdentityState, Messenger};
use conclave_client::mls::{
    DeliveryError, Device, ExternalSenderKey, GroupAddress, Incoming, MlsError, MlsGroup, Opened, TrustStore,
};
use conclave_protocol::api::{ConversationKind, CreateConversation};
use std::sync::Arc;

use crate::signin::{Person, sign_in_new_device};
use crate::support::TestApp;

/// A device taking part: its MLS side (from its messenger, with the account's identity key) and
/// its trust store.
struct Participant {
    messenger: Messenger,
    device: Arc<Device>,
    trust: TrustStore,
}

impl Participant {
    async fn of(person: &Person) -> Self {
        let state = person.messenger.ensure_identity().await.expect("identity");
        assert!(matches!(state, IdentityState::Ready { .. }), "{state:?}");
        Self::ready(person.messenger.clone())
    }

    fn ready(messenger: Messenger) -> Self {
        let device = messenger.mls().expect("mls side");
        Self { messenger, device, trust: TrustStore::default() }
    }

    async fn sync(&mut self, at: GroupAddress) -> Result<(MlsGroup, Opened), DeliveryError> {
        let result = self.device.sync_group(self.messenger.client(), at, &mut self.trust).await;
        self.messenger.save_mls().expect("save");
        result
    }

    fn devices(group: &MlsGroup) -> Vec<uuid::Uuid> {
        let mut devices: Vec<_> = Device::leaves(group).into_iter().map(|leaf| leaf.device_id).collect();
        devices.sort();
        devices
    }
}

/// `from` seals `text` in its group; `to` must read exactly that.
fn say(from: &Participant, from_group: &mut MlsGroup, to: &mut Participant, to_group: &mut MlsGroup, text: &str) {
    let sealed = from.device.encrypt(from_group, text.as_bytes()).expect("encrypt");
    let roster = conclave_client::mls::Roster {
        members: Device::leaves(to_group).into_iter().map(|leaf| leaf.user_id).collect(),
        ..Default::default()
    };
    match to.device.process(to_group, &sealed, &roster, &mut to.trust).expect("read") {
        Incoming::Application { plaintext, .. } => assert_eq!(plaintext, text.as_bytes()),
        other => panic!("expected a message, got {other:?}"),
    }
}

/// A group conversation of `owner` with `members`, in an organization that also has `others`.
async fn conversation(
    app: &TestApp,
    owner: &Person,
    members: &[&Person],
    others: &[&Person],
) -> (GroupAddress, uuid::Uuid) {
    let all: Vec<uuid::Uuid> = std::iter::once(owner)
        .chain(members.iter().copied())
        .chain(others.iter().copied())
        .map(|p| p.user_id)
        .collect();
    let (org, workspace) = app.organization("groups", &all).await;
    let conversation = owner
        .messenger
        .client()
        .create_conversation(
            org,
            workspace,
            &CreateConversation {
                kind: ConversationKind::Group,
                name: None,
                member_user_ids: members.iter().map(|p| p.user_id).collect(),
            },
        )
        .await
        .expect("conversation");
    (GroupAddress { organization_id: org, conversation_id: conversation.id }, org)
}

#[tokio::test]
async fn the_group_follows_the_members_their_new_devices_removals_and_revocations() {
    let app = TestApp::start().await;
    let (alice_p, bob_p, carol_p) = (
        app.person("alice@example.org").await,
        app.person("bob@example.org").await,
        app.person("carol@example.org").await,
    );
    let (mut alice, mut bob, mut carol) =
        (Participant::of(&alice_p).await, Participant::of(&bob_p).await, Participant::of(&carol_p).await);
    // Bob's phone, with his identity key carried over from his laptop.
    let phone_p = sign_in_new_device(&app.base, "bob@example.org", app.home.0.join("profiles").join("bob-phone")).await;
    let IdentityState::AwaitingLink { code } = phone_p.messenger.ensure_identity().await.expect("phone") else {
        panic!("the phone waits for Bob's key")
    };
    bob.messenger.link_device(&code).await.expect("link");
    let mut phone = Participant::of(&phone_p).await;

    let (at, org) = conversation(&app, &alice_p, &[&bob_p], &[&carol_p]).await;
    // Alice acts first: she makes the group and adds all three of Bob's and her devices.
    let (mut alice_group, opened) = alice.sync(at).await.expect("alice");
    assert_eq!((opened, alice_group.epoch().as_u64()), (Opened::Created, 1));
    let mut expected = vec![alice_p.device_id, bob_p.device_id, phone_p.device_id];
    expected.sort();
    assert_eq!(Participant::devices(&alice_group), expected);
    let (mut bob_group, opened) = bob.sync(at).await.expect("bob");
    assert_eq!((opened, bob_group.epoch().as_u64()), (Opened::Joined, 1));
    let (mut phone_group, opened) = phone.sync(at).await.expect("phone");
    assert_eq!(opened, Opened::Joined);
    say(&alice, &mut alice_group, &mut bob, &mut bob_group, "hello both of Bob's devices");
    say(&alice, &mut alice_group, &mut phone, &mut phone_group, "and the phone");
    // Nothing to change: syncing again makes no commit.
    let (alice_group, opened) = alice.sync(at).await.expect("again");
    assert_eq!((opened, alice_group.epoch().as_u64()), (Opened::Loaded, 1));

    // Carol joins the conversation: the next device to act (Bob) adds her device.
    alice_p.messenger.client().add_member(org, at.conversation_id, carol_p.user_id).await.expect("add carol");
    let (mut bob_group, _) = bob.sync(at).await.expect("bob adds carol");
    assert_eq!(bob_group.epoch().as_u64(), 2);
    let (mut carol_group, opened) = carol.sync(at).await.expect("carol");
    assert_eq!((opened, carol_group.epoch().as_u64()), (Opened::Joined, 2));
    say(&bob, &mut bob_group, &mut carol, &mut carol_group, "welcome carol");

    // Bob revokes his phone: Alice's next sync removes its leaf.
    bob_p.messenger.client().revoke_device(phone_p.device_id).await.expect("revoke");
    let (mut alice_group, _) = alice.sync(at).await.expect("alice removes the phone");
    assert_eq!(alice_group.epoch().as_u64(), 3);
    assert!(!Participant::devices(&alice_group).contains(&phone_p.device_id));
    let after_revocation = alice.device.encrypt(&mut alice_group, b"not for the phone").expect("encrypt");
    let roster = conclave_client::mls::Roster::default();
    let refused =
        phone.device.process(&mut phone_group, &after_revocation, &roster, &mut phone.trust).expect_err("revoked");
    assert!(matches!(refused, MlsError::WrongEpoch { .. } | MlsError::CannotDecrypt), "{refused:?}");

    // Carol is removed from the conversation: Bob's next sync removes her leaf; she can neither
    // sync nor read what follows.
    alice_p.messenger.client().remove_member(org, at.conversation_id, carol_p.user_id).await.expect("remove carol");
    let (mut bob_group, _) = bob.sync(at).await.expect("bob removes carol");
    assert_eq!(bob_group.epoch().as_u64(), 4);
    let err = carol.sync(at).await.expect_err("carol is out");
    assert!(matches!(&err, DeliveryError::Api(e) if e.is_api("not_found")), "{err:?}");
    let after_removal = bob.device.encrypt(&mut bob_group, b"not for carol").expect("encrypt");
    let refused =
        carol.device.process(&mut carol_group, &after_removal, &roster, &mut carol.trust).expect_err("removed");
    assert!(matches!(refused, MlsError::WrongEpoch { .. } | MlsError::CannotDecrypt), "{refused:?}");
    let (mut alice_group, _) = alice.sync(at).await.expect("alice catches up");
    say(&bob, &mut bob_group, &mut alice, &mut alice_group, "just us");
}

#[tokio::test]
async fn a_device_that_lost_its_state_rejoins_and_knows_messages_may_be_missing() {
    let app = TestApp::start().await;
    let (alice_p, bob_p) = (app.person("alice@example.org").await, app.person("bob@example.org").await);
    let (mut alice, mut bob) = (Participant::of(&alice_p).await, Participant::of(&bob_p).await);
    let (at, _) = conversation(&app, &alice_p, &[&bob_p], &[]).await;
    let (mut alice_group, _) = alice.sync(at).await.expect("alice");
    let (mut bob_group, _) = bob.sync(at).await.expect("bob");
    say(&alice, &mut alice_group, &mut bob, &mut bob_group, "before");

    // Bob's device loses its group state (deleted mid-conversation).
    bob.device.forget(&mut bob_group).expect("forget");
    let (mut bob_group, opened) = bob.sync(at).await.expect("bob rejoins");
    assert_eq!((opened, bob_group.epoch().as_u64()), (Opened::Rejoined, 2));
    let (mut alice_group, opened) = alice.sync(at).await.expect("alice catches up");
    assert_eq!((opened, alice_group.epoch().as_u64()), (Opened::Loaded, 2));
    assert_eq!(Participant::devices(&alice_group).len(), 2, "Bob's old leaf was replaced, not doubled");
    say(&alice, &mut alice_group, &mut bob, &mut bob_group, "after");
    say(&bob, &mut bob_group, &mut alice, &mut alice_group, "back");
}

#[tokio::test]
async fn two_devices_making_the_first_group_at_once_end_in_one_group() {
    let app = TestApp::start().await;
    let (alice_p, bob_p) = (app.person("alice@example.org").await, app.person("bob@example.org").await);
    let (mut alice, mut bob) = (Participant::of(&alice_p).await, Participant::of(&bob_p).await);
    let (at, _) = conversation(&app, &alice_p, &[&bob_p], &[]).await;
    let (a, b) = tokio::join!(alice.sync(at), bob.sync(at));
    let (_, a_opened) = a.expect("alice");
    let (_, b_opened) = b.expect("bob");
    assert!(a_opened == Opened::Created || b_opened == Opened::Created, "{a_opened:?} {b_opened:?}");
    // Whoever lost joined the winner's group: after a sync both are at the same epoch and talk.
    let (mut alice_group, _) = alice.sync(at).await.expect("alice again");
    let (mut bob_group, _) = bob.sync(at).await.expect("bob again");
    assert_eq!(alice_group.epoch(), bob_group.epoch());
    say(&alice, &mut alice_group, &mut bob, &mut bob_group, "one group");
    say(&bob, &mut bob_group, &mut alice, &mut alice_group, "indeed");
}

/// The delivery service's removal key rotates (the operator's `conclave.io/rotate-keys`: the old
/// key stays as the previous one for the overlap). The group made with the old key still gets
/// removal proposals it can verify, signed with the old key; the next member device to act moves
/// it to the new key (a group-context-extensions commit); a device that fetched the keys before
/// the rotation does not move it back; and the removals after that are signed with the new key.
#[tokio::test]
async fn a_rotated_removal_key_reaches_the_group_and_every_removal_verifies_on_the_way() {
    let mut app = TestApp::start().await;
    let (alice_p, bob_p, carol_p, dave_p) = (
        app.person("alice@example.org").await,
        app.person("bob@example.org").await,
        app.person("carol@example.org").await,
        app.person("dave@example.org").await,
    );
    let mut alice = Participant::of(&alice_p).await;
    let mut bob = Participant::of(&bob_p).await;
    for other in [&carol_p, &dave_p] {
        Participant::of(other).await;
    }
    let (at, org) = conversation(&app, &alice_p, &[&bob_p, &carol_p, &dave_p], &[]).await;
    let (alice_group, _) = alice.sync(at).await.expect("alice makes the group");
    let old = alice.messenger.client().delivery_service().await.expect("service").removal_key.expect("a key");
    let old_key = ExternalSenderKey { public_key: old };
    assert!(Device::external_sender_is(&alice_group, &old_key));
    bob.sync(at).await.expect("bob joins");

    app.rotate_removal_key().await;
    let service = bob.messenger.client().delivery_service().await.expect("service");
    let new = service.removal_key.expect("a key");
    assert_ne!(new, old);
    assert_eq!(service.previous_removal_key, Some(old));

    // During the overlap: Carol's removal is proposed with the old key, which the group names.
    let client = alice.messenger.client();
    client.remove_member(org, at.conversation_id, carol_p.user_id).await.expect("remove carol");
    let pending = client.proposals(org, at.conversation_id).await.expect("proposals");
    assert_eq!((pending.epoch, pending.proposals.len()), (1, 1));
    // Bob's device commits it, then moves the group to the new key once it asks for the keys
    // again (every ten minutes: here, now).
    bob.device.forget_removal_keys();
    let (bob_group, _) = bob.sync(at).await.expect("bob removes carol and moves the group");
    assert_eq!(bob_group.epoch().as_u64(), 3);
    assert!(!Participant::devices(&bob_group).contains(&carol_p.device_id));
    let new_key = ExternalSenderKey { public_key: new };
    assert!(Device::external_sender_is(&bob_group, &new_key));
    let conversation = client.conversation(org, at.conversation_id).await.expect("conversation");
    assert!(!conversation.rotation_required);

    // Alice's device fetched the keys before the rotation: it follows, and does not move back.
    client.remove_member(org, at.conversation_id, dave_p.user_id).await.expect("remove dave");
    let (mut alice_group, _) = alice.sync(at).await.expect("alice removes dave with the new key's proposal");
    assert_eq!(alice_group.epoch().as_u64(), 4);
    assert!(Device::external_sender_is(&alice_group, &new_key));
    assert!(!Participant::devices(&alice_group).contains(&dave_p.device_id));
    let (mut bob_group, _) = bob.sync(at).await.expect("bob catches up");
    assert_eq!(bob_group.epoch().as_u64(), 4);
    say(&alice, &mut alice_group, &mut bob, &mut bob_group, "two of us, on the new key");
}
