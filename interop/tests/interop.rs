//! The bar for `docs/protocol-v2.md`: a client written from the document with another MLS
//! library joins a conversation and exchanges messages with the SDK. Alice uses the real SDK
//! (openmls); Bob is `conclave-interop`'s independent client (mls-rs, and the document's layouts
//! written anew); between them, the real data plane with its PostgreSQL and Redis.

// The SDK's own test harness, shared by path as the end-to-end suite shares it: a data plane
// started in-process on its own database, and people signed in through the SDK. Only Alice is one.
#[allow(dead_code)]
#[path = "../../client/tests/sdk/signin.rs"]
mod signin;
#[allow(dead_code)]
#[path = "../../client/tests/sdk/support.rs"]
mod support;

use conclave_interop::chain::ChainError;
use conclave_interop::content::{self, Content};
use conclave_interop::credential::CredentialError;
use conclave_interop::reaction;
use conclave_interop::{At, Independent};
use conclave_protocol::api::{ConversationKind, CreateConversation};
use conclave_testkit::accounts::{PASSWORD, register_confirmed};
use mls_rs::identity::SigningIdentity;
use mls_rs::identity::basic::BasicCredential;
use support::TestApp;

#[tokio::test]
async fn an_mls_rs_client_written_from_the_document_talks_with_the_sdk() {
    let app = TestApp::start().await;
    let alice = app.person("alice@example.org").await;
    // Bob's account is registered and confirmed by plain HTTP (testkit); his device registers,
    // makes the identity key, publishes its credential and key packages with this crate alone.
    let bob_id = register_confirmed(&reqwest::Client::new(), &app.base, &app.mail, "bob@example.org", PASSWORD, "bob")
        .await
        .expect("bob registers");
    let bob = Independent::sign_in_new_device(&app.base, "bob@example.org", PASSWORD).await.expect("bob signs in");
    assert_eq!(bob.user_id, bob_id);
    let stock = bob.publish_key_packages(2).await.expect("bob's key packages (mls-rs)");
    assert_eq!(stock.available, 2);

    let (org, workspace) = app.organization("interop", &[alice.user_id, bob.user_id]).await;
    let conversation = alice
        .messenger
        .client()
        .create_conversation(
            org,
            workspace,
            &CreateConversation { kind: ConversationKind::Group, name: None, member_user_ids: vec![bob.user_id] },
        )
        .await
        .expect("conversation");
    let at = At { org, conversation: conversation.id };

    // Alice writes first: her SDK makes the group, claims the key package Bob made with mls-rs,
    // checks its leaf against his identity chain, commits the Add with a Welcome, then sends.
    let hello = "Hello Bob, from openmls \u{1f44b} \"quoted\" \\ and a tab\t";
    let from_alice = alice.messenger.send_text(org, conversation.id, hello).await.expect("alice sends");
    assert_eq!(from_alice.key_generation, 1, "the group was made at epoch 0 and Bob added by the first commit");

    // Bob joins from the Welcome with mls-rs, which checked every leaf against the chain.
    let mut group = bob.join(at).await.expect("bob joins from the Welcome");
    assert_eq!(group.current_epoch(), 1);
    assert_eq!(group.roster().members().len(), 2);
    assert!(bob.chain.refused().is_empty(), "{:?}", bob.chain.refused());
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
    let history = alice.messenger.history(org, conversation.id, 10).await.expect("alice reads");
    let read = history.iter().find(|m| m.id == from_bob.id).expect("bob's message in alice's history");
    assert_eq!(read.body.text(), Some(reply), "{:?}", read.body);
    assert_eq!(read.sender_device_id, Some(bob.device_id));

    // The reaction key: the same MLS exporter output on both sides, byte for byte.
    let alice_key =
        |epoch: u32| alice.messenger.with_keystore(|k| k.key(conversation.id, epoch).map(|key| *key.expose_secret()));
    let bob_key = Independent::reaction_key(&group).expect("bob's exporter");
    assert_eq!(alice_key(1), Some(bob_key), "the reaction key of epoch 1");

    // Alice reacts through the SDK: Bob opens it and the tag is the one he computes.
    let thumbs = alice.messenger.react(org, conversation.id, from_bob.id, "\u{1f44d}").await.expect("alice reacts");
    assert_eq!(thumbs.key_generation, 1);
    assert_eq!(Independent::open_reaction(&group, &thumbs).expect("bob opens alice's reaction"), "\u{1f44d}");
    assert_eq!(thumbs.value_tag, reaction::value_tag(&bob_key, from_bob.id, alice.user_id, "\u{1f44d}"));
    // Bob reacts: Alice's SDK opens it and accepts its tag.
    let party = bob.react(at, &group, from_alice.id, "\u{1f389}").await.expect("bob reacts");
    let opened = alice.messenger.reactions(org, conversation.id, from_alice.id).await.expect("alice's reactions");
    let opened = opened.iter().find(|r| r.id == party.id).expect("bob's reaction");
    assert_eq!(opened.value(), Some("\u{1f389}"), "{:?}", opened.value);
    assert_eq!(opened.value_tag, party.value_tag);

    // Bob refreshes his leaf (a commit with a path, mls-rs); Alice's SDK takes it before its next
    // send, checking his new leaf against the chain again; both continue in epoch 2.
    let epoch = bob.self_update(at, &mut group).await.expect("bob's self-update");
    assert_eq!((epoch, group.current_epoch()), (2, 2));
    let after = "after your update";
    let second = alice.messenger.send_text(org, conversation.id, after).await.expect("alice sends in epoch 2");
    assert_eq!(second.key_generation, 2);
    let messages = bob.api.messages_after(at, from_bob.seq).await.expect("bob lists").messages;
    let message = messages.iter().find(|m| m.id == second.id).expect("alice's second message");
    let received = bob.read(at, &mut group, message).await.expect("bob decrypts in epoch 2");
    assert_eq!(received.content, Ok(Content::Text { body: after.to_owned() }));
    let last = bob.send_text(at, &mut group, "still here").await.expect("bob sends in epoch 2");
    let history = alice.messenger.history(org, conversation.id, 10).await.expect("alice reads");
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
