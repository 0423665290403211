//! The bar for `docs/protocol-v2.md`: a client written from the document with another MLS
//! library joins a conversation and exchanges messages with the SDK. Alice uses the real SDK
//! (openmls); Bob is `conclave-interop`'s independent client (mls-rs, and the document's layouts
//! written anew); between them, the real data plane with its PostgreSQL and Redis.

// The SDK's own test harness, shared by path as the end-to-end suite shares it: a data plane
// started in-process on its own database, and people signed in through the SDK: Alice and Carol.
#[allow(dead_code)]
#[path = "../../client/tests/sdk/signin.rs"]
mod signin;
#[allow(dead_code)]
#[path = "../../client/tests/sdk/support.rs"]
mod support;

use conclave_interop::chain::{Chain, ChainError, DELIVERY_SERVICE_IDENTITY};
use conclave_interop::content::{self, Content};
use conclave_interop::credential::CredentialError;
use conclave_interop::device::Rejoined;
use conclave_interop::reaction;
use conclave_interop::{At, Independent, MlsGroup};
use conclave_protocol::api::{ConversationKind, CreateConversation, Message};
use conclave_testkit::accounts::{PASSWORD, register_confirmed};
use mls_rs::MlsMessage;
use mls_rs::error::MlsError;
use mls_rs::group::proposal::Proposal;
use mls_rs::group::{CommitEffect, ProposalSender, Sender};
use mls_rs::identity::SigningIdentity;
use mls_rs::identity::basic::BasicCredential;
use support::{Person, TestApp};
use uuid::Uuid;

/// Alice (the SDK) has made a conversation with Bob (mls-rs) and, when asked, Carol (the SDK):
/// her first message made the group and added the others in epoch 1, and Bob joined from the
/// Welcome. The server stops when this is dropped.
struct Conversation {
    alice: Person,
    bob: Independent,
    carol: Option<Person>,
    org: Uuid,
    at: At,
    /// Bob's group, at epoch 1.
    group: MlsGroup,
    /// Alice's first message, in epoch 1.
    hello: Message,
    _app: TestApp,
}

const HELLO: &str = "Hello Bob, from openmls \u{1f44b} \"quoted\" \\ and a tab\t";

impl Conversation {
    async fn start(with_carol: bool) -> Self {
        let app = TestApp::start().await;
        let alice = app.person("alice@example.org").await;
        let carol = if with_carol { Some(app.person("carol@example.org").await) } else { None };
        // Bob's account is registered and confirmed by plain HTTP (testkit); his device registers,
        // makes the identity key, publishes its credential and key packages with this crate alone.
        let bob_id =
            register_confirmed(&reqwest::Client::new(), &app.base, &app.mail, "bob@example.org", PASSWORD, "bob")
                .await
                .expect("bob registers");
        let bob = Independent::sign_in_new_device(&app.base, "bob@example.org", PASSWORD).await.expect("bob signs in");
        assert_eq!(bob.user_id, bob_id);
        let stock = bob.publish_key_packages(2).await.expect("bob's key packages (mls-rs)");
        assert_eq!(stock.available, 2);

        let others: Vec<Uuid> = std::iter::once(bob.user_id).chain(carol.as_ref().map(|c| c.user_id)).collect();
        let everyone: Vec<Uuid> = std::iter::once(alice.user_id).chain(others.iter().copied()).collect();
        let (org, workspace) = app.organization("interop", &everyone).await;
        let conversation = alice
            .messenger
            .client()
            .create_conversation(
                org,
                workspace,
                &CreateConversation { kind: ConversationKind::Group, name: None, member_user_ids: others },
            )
            .await
            .expect("conversation");
        let at = At { org, conversation: conversation.id };

        // Alice writes first: her SDK makes the group, claims the key package Bob made with mls-rs,
        // checks its leaf against his identity chain, commits the Add with a Welcome, then sends.
        let hello = alice.messenger.send_text(org, at.conversation, HELLO).await.expect("alice sends");
        assert_eq!(hello.key_generation, 1, "the group was made at epoch 0 and the others added by the first commit");

        // Bob joins from the Welcome with mls-rs, which checked every leaf against the chain.
        let group = bob.join(at).await.expect("bob joins from the Welcome");
        assert_eq!(group.current_epoch(), 1);
        assert_eq!(group.roster().members().len(), everyone.len());
        assert!(bob.chain.refused().is_empty(), "{:?}", bob.chain.refused());
        Self { alice, bob, carol, org, at, group, hello, _app: app }
    }
}

#[tokio::test]
async fn an_mls_rs_client_written_from_the_document_talks_with_the_sdk() {
    let Conversation { alice, bob, org, at, mut group, hello: from_alice, _app, .. } = Conversation::start(false).await;
    let hello = HELLO;
    // The group's external sender is the delivery service under the key the data plane publishes.
    let removal_key = bob.api.delivery_service().await.expect("delivery service").removal_key.expect("a removal key");
    assert_eq!(bob.chain.external_senders_accepted(), [removal_key]);
    // Alice's identity key, pinned from her leaf (first seen), is the one the server publishes.
    let alice_identity = bob.api.member_identity(org, alice.user_id).await.expect("alice's identity").public_key;
    assert_eq!(bob.chain.pinned(alice.user_id), Some(alice_identity));

    let messages = bob.api.messages_after(at, 0).await.expect("bob lists").messages;
    let message = messages.iter().find(|m| m.id == from_alice.id).expect("alice's message");
    let received = bob.read(at, &mut group, message).await.expect("bob decrypts alice's message");
    assert_eq!((received.sender.user_id, received.sender.device_id), (alice.user_id, alice.device_id));
    assert_eq!(received.content, Ok(Content::Text { body: hello.to_owned() }));
    // The SDK writes exactly the bytes the document's writer does.
    assert_eq!(received.plaintext, content::write_text(hello));

    // Bob answers; Alice's SDK decrypts it, MLS authenticating his leaf.
    let reply = "Hi Alice, from mls-rs \u{1f980}";
    let from_bob = bob.send_text(at, &mut group, reply).await.expect("bob sends");
    let history = alice.messenger.history(org, at.conversation, 10).await.expect("alice reads");
    let read = history.iter().find(|m| m.id == from_bob.id).expect("bob's message in alice's history");
    assert_eq!(read.body.text(), Some(reply), "{:?}", read.body);
    assert_eq!(read.sender_device_id, Some(bob.device_id));

    // The reaction key: the same MLS exporter output on both sides, byte for byte.
    let alice_key =
        |epoch: u32| alice.messenger.with_keystore(|k| k.key(at.conversation, epoch).map(|key| *key.expose_secret()));
    let bob_key = Independent::reaction_key(&group).expect("bob's exporter");
    assert_eq!(alice_key(1), Some(bob_key), "the reaction key of epoch 1");

    // Alice reacts through the SDK: Bob opens it and the tag is the one he computes.
    let thumbs = alice.messenger.react(org, at.conversation, from_bob.id, "\u{1f44d}").await.expect("alice reacts");
    assert_eq!(thumbs.key_generation, 1);
    assert_eq!(Independent::open_reaction(&group, &thumbs).expect("bob opens alice's reaction"), "\u{1f44d}");
    assert_eq!(thumbs.value_tag, reaction::value_tag(&bob_key, from_bob.id, alice.user_id, "\u{1f44d}"));
    // Bob reacts: Alice's SDK opens it and accepts its tag.
    let party = bob.react(at, &group, from_alice.id, "\u{1f389}").await.expect("bob reacts");
    let opened = alice.messenger.reactions(org, at.conversation, from_alice.id).await.expect("alice's reactions");
    let opened = opened.iter().find(|r| r.id == party.id).expect("bob's reaction");
    assert_eq!(opened.value(), Some("\u{1f389}"), "{:?}", opened.value);
    assert_eq!(opened.value_tag, party.value_tag);

    // Bob refreshes his leaf (a commit with a path, mls-rs); Alice's SDK takes it before its next
    // send, checking his new leaf against the chain again; both continue in epoch 2.
    let epoch = bob.self_update(at, &mut group).await.expect("bob's self-update");
    assert_eq!((epoch, group.current_epoch()), (2, 2));
    let after = "after your update";
    let second = alice.messenger.send_text(org, at.conversation, after).await.expect("alice sends in epoch 2");
    assert_eq!(second.key_generation, 2);
    let messages = bob.api.messages_after(at, from_bob.seq).await.expect("bob lists").messages;
    let message = messages.iter().find(|m| m.id == second.id).expect("alice's second message");
    let received = bob.read(at, &mut group, message).await.expect("bob decrypts in epoch 2");
    assert_eq!(received.content, Ok(Content::Text { body: after.to_owned() }));
    let last = bob.send_text(at, &mut group, "still here").await.expect("bob sends in epoch 2");
    let history = alice.messenger.history(org, at.conversation, 10).await.expect("alice reads");
    let read = history.iter().find(|m| m.id == last.id).expect("bob's last message");
    assert_eq!(read.body.text(), Some("still here"), "{:?}", read.body);
    let bob_key_2 = Independent::reaction_key(&group).expect("bob's exporter");
    assert_eq!(alice_key(2), Some(bob_key_2), "the reaction key of epoch 2");
    assert_ne!(bob_key_2, bob_key, "a new epoch, a new key");

    // Controls, so that the above can fail: a message altered in transit does not decrypt, a
    // reaction of another epoch does not open under this one's key, and the chain refuses
    // Alice's credential on another leaf key.
    let mut altered = message.clone();
    if let Some(bytes) = altered.ciphertext.as_mut() {
        let at_end = bytes.len() - 1;
        bytes[at_end] ^= 1;
    }
    assert!(bob.read(at, &mut group, &altered).await.is_err(), "an altered message decrypts");
    assert!(Independent::open_reaction(&group, &thumbs).is_err(), "an epoch-1 reaction opens in epoch 2");
    let alice_leaf = group
        .roster()
        .members()
        .into_iter()
        .find(|m| conclave_interop::chain::Chain::leaf(&m.signing_identity).is_some_and(|l| l.user_id == alice.user_id))
        .expect("alice's leaf")
        .signing_identity;
    let basic = alice_leaf.credential.as_basic().expect("basic").identifier().to_vec();
    let forged =
        SigningIdentity::new(BasicCredential::new(basic).into_credential(), bob.device_public_key().to_vec().into());
    assert_eq!(
        bob.chain.check(&forged),
        Err(ChainError::Credential(CredentialError::BadSignature {
            user_id: alice.user_id,
            device_id: alice.device_id
        }))
    );
}

/// Alice's SDK removes Bob through the HTTP API; the data plane proposes the `Remove` of his leaf
/// as the group's external sender, signed with its removal key, and Alice's next send commits it
/// by reference. Bob's mls-rs client takes the proposal (from the delivery service, a `Remove` of
/// his own leaf) and the commit, sees that it removed him, and cannot read what Alice sends next;
/// Carol, still a member on the SDK, reads it.
#[tokio::test]
async fn the_delivery_service_removes_the_mls_rs_device_and_it_reads_nothing_after() {
    let Conversation { alice, bob, carol, org, at, mut group, hello, _app } = Conversation::start(true).await;
    let carol = carol.expect("carol");
    fn text(history: &[conclave_client::messenger::ReceivedMessage], id: Uuid) -> Option<String> {
        history.iter().find(|m| m.id == id).and_then(|m| m.body.text().map(str::to_owned))
    }
    // Everyone reads Alice's first message in epoch 1.
    let read = bob.read(at, &mut group, &hello).await.expect("bob reads alice's first message");
    assert_eq!(read.content, Ok(Content::Text { body: HELLO.to_owned() }));
    let history = carol.messenger.history(org, at.conversation, 10).await.expect("carol reads");
    assert_eq!(text(&history, hello.id).as_deref(), Some(HELLO));
    let bob_leaf = group.current_member_index();
    let alice_leaf = group
        .roster()
        .members()
        .into_iter()
        .find(|m| Chain::leaf(&m.signing_identity).is_some_and(|l| l.device_id == alice.device_id))
        .expect("alice's leaf")
        .index;

    alice.messenger.client().remove_member(org, at.conversation, bob.user_id).await.expect("alice removes bob");
    // A conversation Bob is no longer in answers him like one that does not exist.
    let refused = bob.api.commits(at, 1).await.expect_err("a removed member lists the commits");
    assert!(refused.to_string().contains("404 Not Found"), "{refused:#}");

    // Alice's next send first commits the delivery service's proposal, by reference.
    let secret = "said after Bob was removed";
    let after = alice.messenger.send_text(org, at.conversation, secret).await.expect("alice sends after the removal");
    assert_eq!(after.key_generation, 2);
    // The commit as the server keeps it, with the proposal it includes (Bob is handed what a member
    // lists: the server no longer serves him the conversation).
    let stored = alice.messenger.client().commits(org, at.conversation, 1).await.expect("the removal commit");
    assert_eq!(stored.len(), 1);
    let removal = &stored[0];
    assert_eq!((removal.epoch, removal.committed_by_device_id), (2, Some(alice.device_id)));
    assert_eq!(removal.proposals.len(), 1, "the delivery service's proposal goes with the commit");

    // Control: the proposal with its signature altered is refused, and changes nothing.
    let mut forged = removal.clone();
    let signature_end = forged.proposals[0].0.len() - 1;
    forged.proposals[0].0[signature_end] ^= 1;
    let error = bob.process_commit(&mut group, &forged).expect_err("a forged proposal is taken");
    assert!(matches!(error.downcast_ref::<MlsError>(), Some(MlsError::InvalidSignature)), "{error:#}");
    assert_eq!(group.current_epoch(), 1);

    let processed = bob.process_commit(&mut group, removal).expect("bob takes the removal");
    assert_eq!(processed.epoch, 2);
    let [proposal] = &processed.proposals[..] else { panic!("{:?}", processed.proposals) };
    // From the group's external sender 0, the delivery service under the key the data plane
    // publishes; a Remove of Bob's own leaf.
    assert_eq!(proposal.sender, ProposalSender::External(0));
    let removal_key = bob.api.delivery_service().await.expect("delivery service").removal_key.expect("a removal key");
    let sender = Independent::external_sender(&group, 0).expect("the group's external sender");
    assert_eq!(sender.signature_key.as_bytes(), removal_key);
    assert_eq!(sender.credential.as_basic().map(|b| b.identifier()), Some(DELIVERY_SERVICE_IDENTITY));
    assert!(matches!(&proposal.proposal, Proposal::Remove(r) if r.to_remove() == bob_leaf), "{:?}", proposal.proposal);
    // Committed by Alice; its effect, for Bob: removed, by the delivery service's proposal.
    assert_eq!(processed.commit.committer, alice_leaf);
    assert!(processed.removed_this_device());
    match &processed.commit.effect {
        CommitEffect::Removed { new_epoch, remover } => {
            assert_eq!((new_epoch.epoch(), *remover), (2, Sender::External(0)));
        }
        other => panic!("not removed: {other:?}"),
    }
    // mls-rs keeps the group at the epoch it was removed from: it has no secrets of epoch 2.
    assert_eq!(group.current_epoch(), 1);
    let error = bob.open(&mut group, &after).expect_err("bob reads a message sent after his removal");
    assert!(matches!(error.downcast_ref::<MlsError>(), Some(MlsError::EpochNotFound)), "{error:#}");

    // Carol, still a member, reads it (her SDK took the same proposal and commit).
    let history = carol.messenger.history(org, at.conversation, 10).await.expect("carol reads after the removal");
    assert_eq!(text(&history, after.id).as_deref(), Some(secret));
    let by_alice = history.iter().find(|m| m.id == after.id).and_then(|m| m.sender_device_id);
    assert_eq!(by_alice, Some(alice.device_id));
}

/// Bob's mls-rs device loses its group state and rejoins by external commit from the group info
/// the server keeps, removing its own old leaf (a resync); Alice's SDK takes the external commit
/// on her next send, and both talk again in the new epoch. What was sent before it stays unread.
#[tokio::test]
async fn the_mls_rs_device_rejoins_by_external_commit_and_the_sdk_takes_it() {
    let Conversation { alice, bob, org, at, mut group, hello, _app, .. } = Conversation::start(false).await;
    // Bob sends in epoch 1, and Alice reads it; then Bob's device loses its group state, before
    // reading Alice's first message.
    let before = bob.send_text(at, &mut group, "before I lost my state").await.expect("bob sends in epoch 1");
    let history = alice.messenger.history(org, at.conversation, 10).await.expect("alice reads");
    let read = history.iter().find(|m| m.id == before.id).expect("bob's message");
    assert_eq!(read.body.text(), Some("before I lost my state"), "{:?}", read.body);
    let old_leaf = group.current_member_index();
    drop(group);

    let (mut group, rejoined) = bob.rejoin(at).await.expect("bob rejoins by external commit");
    assert_eq!(rejoined, Rejoined { from_epoch: 1, epoch: 2, replaced_leaf: old_leaf });
    assert_eq!(group.current_epoch(), 2);
    assert_eq!(group.roster().members().len(), 2, "his old leaf went in the same commit");
    assert!(bob.chain.refused().is_empty(), "{:?}", bob.chain.refused());
    // The server keeps the group info Bob made for epoch 2, for the next device that rejoins.
    let info = bob.api.group_info(at).await.expect("the group info");
    assert_eq!(info.epoch, 2);
    let info = MlsMessage::from_bytes(&info.group_info.0).expect("an MLSMessage");
    let info = info.as_group_info().expect("a GroupInfo");
    assert_eq!((info.group_context().epoch, info.sender()), (2, group.current_member_index()));
    let stored = bob.api.commits(at, 1).await.expect("the external commit");
    assert_eq!(
        stored.iter().map(|c| (c.epoch, c.committed_by_device_id)).collect::<Vec<_>>(),
        [(2, Some(bob.device_id))]
    );

    // Alice's SDK takes the external commit before her next send (it brings back a device that
    // was in the group), and sends in epoch 2; Bob reads it.
    let welcome_back = "welcome back, mls-rs";
    let sent = alice.messenger.send_text(org, at.conversation, welcome_back).await.expect("alice sends in epoch 2");
    assert_eq!(sent.key_generation, 2);
    let received = bob.read(at, &mut group, &sent).await.expect("bob reads in epoch 2");
    assert_eq!((received.epoch, received.sender.device_id), (2, alice.device_id));
    assert_eq!(received.content, Ok(Content::Text { body: welcome_back.to_owned() }));
    // And the other way.
    let back = "glad to be back";
    let reply = bob.send_text(at, &mut group, back).await.expect("bob sends in epoch 2");
    assert_eq!(reply.key_generation, 2);
    let history = alice.messenger.history(org, at.conversation, 10).await.expect("alice reads");
    let read = history.iter().find(|m| m.id == reply.id).expect("bob's reply");
    assert_eq!(read.body.text(), Some(back), "{:?}", read.body);
    assert_eq!(read.sender_device_id, Some(bob.device_id));
    // Both hold the same epoch-2 secrets: the reaction key, from the exporter.
    let alice_key = alice.messenger.with_keystore(|k| k.key(at.conversation, 2).map(|key| *key.expose_secret()));
    assert_eq!(alice_key, Some(Independent::reaction_key(&group).expect("bob's exporter")));
    assert_eq!(group.current_epoch(), 2);

    // What was sent before the rejoin cannot be read: the rejoined group has no epoch-1 secrets.
    let error = bob.open(&mut group, &hello).expect_err("bob reads a message of the epoch he lost");
    assert!(matches!(error.downcast_ref::<MlsError>(), Some(MlsError::EpochNotFound)), "{error:#}");
}
