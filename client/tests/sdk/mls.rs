//! Protocol v2 over the real data plane: MLS devices of the SDK publish key packages, make a
//! group, and the server orders their commits (one per epoch), routes the Welcome, and serves the
//! group info a device that lost its state rejoins from.

use std::sync::Arc;

use conclave_client::messenger::KEY_PACKAGE_TARGET;
use conclave_client::mls::DeliveryError;
use conclave_client::mls::{Device, GroupAddress, Incoming, MlsError, Roster, TrustStore};
use conclave_protocol::api::{ConversationKind, CreateConversation};
use conclave_protocol::handshake::{MlsBytes, UploadCommit};
use conclave_protocol::mls_wire::{content_type, fake};

use crate::support::{Person, TestApp};

struct Member<'a> {
    person: &'a Person,
    device: Arc<Device>,
    trust: TrustStore,
}

fn member(person: &Person) -> Member<'_> {
    // The device's own MLS side: signing in made the account's identity key and published key
    // packages from it, which the server may hand out below.
    let device = person.messenger.mls().expect("mls device");
    Member { person, device, trust: TrustStore::default() }
}

fn plaintext(incoming: Incoming) -> Vec<u8> {
    match incoming {
        Incoming::Application { plaintext, .. } => plaintext,
        other => panic!("expected an application message, got {other:?}"),
    }
}

#[tokio::test]
async fn devices_form_a_group_through_the_server_which_orders_commits_and_routes_welcomes() {
    let app = TestApp::start().await;
    let (alice_p, bob_p, carol_p) = (
        app.person("alice@example.org").await,
        app.person("bob@example.org").await,
        app.person("carol@example.org").await,
    );
    let (org, workspace) = app.organization("mls", &[alice_p.user_id, bob_p.user_id, carol_p.user_id]).await;
    let conversation = alice_p
        .messenger
        .client()
        .create_conversation(
            org,
            workspace,
            &CreateConversation { kind: ConversationKind::Group, name: None, member_user_ids: vec![bob_p.user_id] },
        )
        .await
        .expect("conversation");
    let at = GroupAddress { organization_id: org, conversation_id: conversation.id };
    let roster = Roster { members: [alice_p.user_id, bob_p.user_id].into(), ..Roster::default() };
    let (mut alice, mut bob, carol) = (member(&alice_p), member(&bob_p), member(&carol_p));
    let (alice_api, bob_api) = (alice.person.messenger.client(), bob.person.messenger.client());

    let stock = bob.device.publish_key_packages(bob_api, 3, true).await.expect("bob's key packages");
    assert_eq!((stock.available, stock.last_resort), (KEY_PACKAGE_TARGET + 3, true), "3 more than signing in left");
    carol.device.publish_key_packages(carol.person.messenger.client(), 1, false).await.expect("carol's");

    // Alice makes the group and adds Bob's device: epoch 0 -> 1, the Welcome goes to Bob's device.
    let mut alice_group = alice.device.create_group(conversation.id, None).expect("group");
    let epoch = alice
        .device
        .add_users(alice_api, at, &mut alice_group, vec![bob.person.user_id], &roster, &mut alice.trust)
        .await
        .expect("add bob");
    assert_eq!(epoch, 1);
    assert_eq!(
        bob_api.key_package_stock().await.expect("stock").available,
        KEY_PACKAGE_TARGET + 2,
        "one package was claimed"
    );
    let mut bob_group = bob.device.join_from_server(bob_api, at, &roster, &mut bob.trust).await.expect("bob joins");
    assert_eq!(bob_group.epoch().as_u64(), 1);
    // Carol is not in the conversation: no Welcome for her, nor the commits.
    let carol_api = carol.person.messenger.client();
    assert!(carol_api.welcome(org, conversation.id).await.expect_err("carol's welcome").is_api("not_found"));
    assert!(carol_api.commits(org, conversation.id, 0).await.expect_err("carol's commits").is_api("not_found"));

    let sealed = alice.device.encrypt(&mut alice_group, b"hello bob").expect("encrypt");
    assert_eq!(
        plaintext(bob.device.process(&mut bob_group, &sealed, &roster, &mut bob.trust).expect("read")),
        b"hello bob"
    );

    // Both update their leaves in epoch 1: the server takes the first, the second rebases.
    let from_alice = alice.device.self_update(&mut alice_group).expect("alice update");
    let from_bob = bob.device.self_update(&mut bob_group).expect("bob update");
    assert_eq!(alice.device.push(alice_api, at, &mut alice_group, from_alice).await.expect("alice first"), 2);
    match bob.device.push(bob_api, at, &mut bob_group, from_bob).await {
        Err(DeliveryError::Rebase { made_in: 1, current: 2 }) => {}
        other => panic!("expected a rebase, got {other:?}"),
    }
    let caught = bob.device.catch_up(bob_api, at, &mut bob_group, &roster, &mut bob.trust).await.expect("catch up");
    assert!(matches!(caught.as_slice(), [Incoming::Commit { epoch: 2, .. }]), "{caught:?}");
    let again = bob.device.self_update(&mut bob_group).expect("bob update again");
    assert_eq!(bob.device.push(bob_api, at, &mut bob_group, again).await.expect("bob's turn"), 3);
    alice.device.catch_up(alice_api, at, &mut alice_group, &roster, &mut alice.trust).await.expect("alice catches up");
    assert_eq!(alice_group.epoch().as_u64(), 3);

    // The server welcomes only active devices of members.
    let group = conversation.id.as_bytes();
    let bogus = UploadCommit {
        epoch: 3,
        commit: MlsBytes(fake::private_message(group, 3, content_type::COMMIT, &[1, 2, 3])),
        group_info: MlsBytes(fake::group_info(group, 4, &[4, 5, 6])),
        welcome: Some(MlsBytes(fake::welcome(&[7, 8, 9]))),
        welcomed_devices: vec![carol.person.device_id],
        proposals: vec![],
    };
    let refused = alice_api.upload_commit(org, conversation.id, &bogus).await.expect_err("carol welcomed");
    assert!(refused.is_api("wrap_set_mismatch"), "{refused}");
    // A commit's proposals are public proposals of the group in the commit's epoch, or refused.
    for proposal in [
        fake::private_message(group, 3, content_type::PROPOSAL, &[1]),
        conclave_protocol::mls_wire::external_remove(&[9; 16], 3, 0, 1).signed(&[0; 64]),
        conclave_protocol::mls_wire::external_remove(group, 2, 0, 1).signed(&[0; 64]),
    ] {
        let body = UploadCommit {
            welcome: None,
            welcomed_devices: vec![],
            proposals: vec![MlsBytes(proposal)],
            ..bogus.clone()
        };
        let refused = alice_api.upload_commit(org, conversation.id, &body).await.expect_err("bad proposal");
        assert!(refused.is_api("invalid_mls_message") && refused.to_string().contains("proposals"), "{refused}");
    }
    // A replayed commit of an old epoch is refused by the server, and by the devices.
    let old = alice_api.commits(org, conversation.id, 1).await.expect("commits");
    let replay = UploadCommit {
        epoch: 1,
        commit: old[0].commit.clone(),
        group_info: MlsBytes(fake::group_info(group, 2, &[1, 1])),
        welcome: None,
        welcomed_devices: vec![],
        proposals: vec![],
    };
    assert!(
        alice_api.upload_commit(org, conversation.id, &replay).await.expect_err("replay").is_api("stale_generation")
    );
    assert_eq!(
        bob.device.process(&mut bob_group, &old[0].commit.0, &roster, &mut bob.trust).expect_err("bob replays"),
        MlsError::WrongEpoch { message: 1, group: 3 }
    );

    // Bob's device loses its state: it rejoins from the group info by external commit.
    bob.device.forget(&mut bob_group).expect("forget");
    let mut bob_group = bob.device.rejoin_from_server(bob_api, at, &roster, &mut bob.trust).await.expect("rejoin");
    let caught =
        alice.device.catch_up(alice_api, at, &mut alice_group, &roster, &mut alice.trust).await.expect("alice");
    match caught.as_slice() {
        [Incoming::Commit { epoch: 4, committer: Some(leaf), .. }] => assert_eq!(leaf.device_id, bob.person.device_id),
        other => panic!("expected bob's external commit, got {other:?}"),
    }
    let sealed = alice.device.encrypt(&mut alice_group, b"welcome back").expect("encrypt");
    assert_eq!(
        plaintext(bob.device.process(&mut bob_group, &sealed, &roster, &mut bob.trust).expect("read")),
        b"welcome back"
    );
}
