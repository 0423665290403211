//! Protocol v2's identity chain through the SDK and the CLI, against the real data plane: the
//! first device makes the account's identity key, a later device receives it sealed by an earlier
//! one (never readable by the server), safety numbers match on both sides, and a changed key is a
//! warning until its owner accepts it.

use conclave_client::Error;
use conclave_client::messenger::IdentityState;
use conclave_client::mls::{FirstContact, MlsError, Trust};

use crate::messaging::group;
use crate::signin::sign_in_new_device;
use crate::support::TestApp;

pub(crate) fn link_code(state: &IdentityState) -> String {
    match state {
        IdentityState::AwaitingLink { code } => code.clone(),
        other => panic!("expected to wait for a link, got {other:?}"),
    }
}

#[tokio::test]
async fn the_cli_carries_the_identity_key_to_a_new_device_through_a_link_code() {
    let app = TestApp::start().await;
    let (email, name) = ("alice@example.org", "Alice");
    app.cli(&["--profile", "alice", "register", "--email", email, "--display-name", name]).await.expect("register");
    let token = app.confirmation_token(email).await;
    app.cli(&["--profile", "alice", "confirm", &token]).await.expect("confirm");
    let out = app.cli(&["--profile", "alice", "login", "--email", email]).await.expect("login");
    assert!(out.contains("Identity key created on this device"), "{out}");
    let laptop_fingerprint = out.lines().last().expect("fingerprint").trim().to_owned();
    assert_eq!(laptop_fingerprint.split(' ').count(), 6, "30 digits in groups of five: {out}");

    // The phone signs in: the key is elsewhere, so it shows a link code.
    let out = app.cli(&["--profile", "phone", "login", "--email", email]).await.expect("login");
    let code = out.split_whitespace().find(|w| w.starts_with("cnl1-")).expect("a link code").to_owned();
    assert!(out.contains("conclave devices link"), "{out}");
    let out = app.cli(&["--profile", "phone", "identity"]).await.expect("identity");
    assert!(out.contains(&code), "the same code until the key arrives: {out}");

    // A mistyped code is refused on the laptop; the right one sends the key.
    let mut typo = code.clone();
    typo.replace_range(10..11, if &code[10..11] == "A" { "B" } else { "A" });
    let err = app.cli(&["--profile", "alice", "devices", "link", &typo]).await.expect_err("typo");
    assert!(err.to_string().contains("mistyped"), "{err}");
    let out = app.cli(&["--profile", "alice", "devices", "link", &code]).await.expect("link");
    assert!(out.contains("Sent your identity key"), "{out}");

    let out = app.cli(&["--profile", "phone", "identity"]).await.expect("identity");
    assert!(out.contains("Identity key on this device"), "{out}");
    assert_eq!(out.lines().last().expect("fingerprint").trim(), laptop_fingerprint, "the same key on both devices");
    // Both devices' credentials are now listed, each under the account's key.
    let devices = app.cli(&["--profile", "phone", "--json", "devices"]).await.expect("devices");
    let devices: serde_json::Value = serde_json::from_str(&devices).expect("json");
    assert!(devices.as_array().expect("list").iter().all(|d| d["credential"].is_string()), "{devices}");

    // Whom the phone writes to: trust on first use until told otherwise, and kept.
    let out = app.cli(&["--profile", "phone", "trust"]).await.expect("trust");
    assert!(out.starts_with("Trust: first-use"), "{out}");
    app.cli(&["--profile", "phone", "trust", "verified-only"]).await.expect("set");
    let out = app.cli(&["--profile", "phone", "--json", "trust"]).await.expect("trust");
    assert_eq!(serde_json::from_str::<serde_json::Value>(&out).expect("json")["trust"], "verified-only");
    assert!(app.cli(&["--profile", "phone", "trust", "everyone"]).await.is_err(), "not a policy");
}

#[tokio::test]
async fn safety_numbers_match_on_both_sides_and_a_changed_key_is_a_warning_until_accepted() {
    let app = TestApp::start().await;
    let alice = app.person("alice@example.org").await;
    let bob = app.person("bob@example.org").await;
    let (org, _) = app.organization("safety", &[alice.user_id, bob.user_id]).await;
    for person in [&alice, &bob] {
        // Made when they signed in (the account's first device); asking again keeps it.
        let state = person.messenger.ensure_identity().await.expect("identity");
        assert!(matches!(state, IdentityState::Ready { created: false, .. }), "{state:?}");
    }

    let alice_sees = alice.messenger.safety_check(org, bob.user_id).await.expect("alice's check");
    let bob_sees = bob.messenger.safety_check(org, alice.user_id).await.expect("bob's check");
    assert_eq!(alice_sees.safety_number, bob_sees.safety_number);
    assert_eq!(alice_sees.safety_number.len(), 60);
    assert_eq!((alice_sees.trust, bob_sees.trust), (Trust::New, Trust::New));
    assert_eq!(alice.messenger.safety_check(org, bob.user_id).await.expect("again").trust, Trust::Unverified);
    assert_eq!(alice.messenger.mark_verified(org, bob.user_id).await.expect("verify").trust, Trust::Verified);
    assert_eq!(alice.messenger.safety_check(org, bob.user_id).await.expect("kept").trust, Trust::Verified);

    // Bob starts a new identity: Alice's client refuses it until she accepts the change, and the
    // number she then sees is new and unverified, and again the same as Bob's.
    bob.messenger.replace_identity().await.expect("replace");
    let changed = alice.messenger.safety_check(org, bob.user_id).await.expect_err("changed");
    assert!(
        matches!(changed, Error::Mls(MlsError::IdentityChanged { user_id }) if user_id == bob.user_id),
        "{changed:?}"
    );
    let accepted = alice.messenger.accept_identity_change(org, bob.user_id).await.expect("accept");
    assert_eq!(accepted.trust, Trust::Unverified);
    assert_ne!(accepted.safety_number, alice_sees.safety_number);
    let bob_now = bob.messenger.safety_check(org, alice.user_id).await.expect("bob again");
    assert_eq!(bob_now.safety_number, accepted.safety_number);
}

/// A device set to `VerifiedOnly` writes to no one whose safety number its owner has not
/// confirmed (`Unverified`), not even in a conversation made before; once confirmed, it does, and
/// the other side (trusting on first use, the default) reads it. The policy is kept.
#[tokio::test]
async fn a_verified_only_device_writes_to_no_one_unconfirmed() {
    let app = TestApp::start().await;
    let alice = app.person("alice@example.org").await;
    let bob = app.person("bob@example.org").await;
    let (org, conversation) = group(&app, &alice, &[&bob]).await;
    assert_eq!(alice.messenger.first_contact(), FirstContact::TrustOnFirstUse);
    alice.messenger.send_text(org, conversation, "before the policy").await.expect("send");

    alice.messenger.set_first_contact(FirstContact::VerifiedOnly).expect("policy");
    let refused = alice.messenger.send_text(org, conversation, "unconfirmed").await.expect_err("unverified");
    assert!(matches!(refused, Error::Mls(MlsError::Unverified { user_id }) if user_id == bob.user_id), "{refused:?}");
    let alice_sees = alice.messenger.safety_check(org, bob.user_id).await.expect("alice's check");
    let bob_sees = bob.messenger.safety_check(org, alice.user_id).await.expect("bob's check");
    assert_eq!(alice_sees.safety_number, bob_sees.safety_number, "compared in person");
    alice.messenger.mark_verified(org, bob.user_id).await.expect("confirmed");
    alice.messenger.send_text(org, conversation, "confirmed").await.expect("send once confirmed");
    let texts: Vec<_> = bob.messenger.history(org, conversation, 10).await.expect("bob reads").into_iter().collect();
    let texts: Vec<_> = texts.iter().map(|m| m.body.text()).collect();
    assert_eq!(texts, [Some("before the policy"), Some("confirmed")]);
    assert_eq!(alice.messenger.first_contact(), FirstContact::VerifiedOnly);
}

#[tokio::test]
async fn a_device_takes_a_transferred_key_only_if_it_is_the_accounts() {
    let app = TestApp::start().await;
    let laptop = app.person("alice@example.org").await;
    laptop.messenger.ensure_identity().await.expect("identity");
    let phone = sign_in_new_device(&app.base, "alice@example.org", app.home.0.join("profiles").join("phone")).await;
    let code = link_code(&phone.messenger.ensure_identity().await.expect("phone"));

    // Someone on another account cannot send the phone anything: the phone is not their device.
    let mallory = app.person("mallory@example.org").await;
    mallory.messenger.ensure_identity().await.expect("mallory");
    let err = mallory.messenger.link_device(&code).await.expect_err("not mallory's device");
    assert!(matches!(err, Error::Protocol(_)), "{err:?}");

    // The laptop seals the key, then the account's key is replaced before the phone takes it: the
    // phone refuses a key that is not the one the account publishes.
    assert_eq!(laptop.messenger.link_device(&code).await.expect("link"), phone.device_id);
    laptop.messenger.replace_identity().await.expect("replace");
    let err = phone.messenger.ensure_identity().await.expect_err("stale key");
    assert!(matches!(err, Error::Mls(MlsError::TransferRejected)), "{err:?}");
    assert!(phone.messenger.with_keystore(|k| k.identity().is_none()));

    // Sent again, the current key is taken, kept, and the phone's credential published.
    let code = link_code(&phone.messenger.ensure_identity().await.expect("phone waits"));
    laptop.messenger.link_device(&code).await.expect("link again");
    let state = phone.messenger.ensure_identity().await.expect("phone receives");
    let laptop_key = laptop.messenger.with_keystore(|k| k.identity().map(|i| i.public())).expect("laptop key");
    assert_eq!(state, IdentityState::Ready { public_key: laptop_key, created: false });
    let reloaded = phone.profile.load_keystore().expect("keystore");
    assert_eq!(reloaded.identity().map(|i| i.public()), Some(laptop_key), "kept on disk");
}

#[tokio::test]
async fn key_packages_are_kept_topped_up_and_their_keys_survive_a_restart() {
    use conclave_client::messenger::{KEY_PACKAGE_LOW_WATER, KEY_PACKAGE_TARGET};
    use conclave_client::mls::{GroupAddress, Roster, TrustStore};
    use conclave_protocol::api::{ConversationKind, CreateConversation};

    let app = TestApp::start().await;
    let alice = app.person("alice@example.org").await;
    let bob = app.person("bob@example.org").await;
    let (org, workspace) = app.organization("kp", &[alice.user_id, bob.user_id]).await;
    for person in [&alice, &bob] {
        person.messenger.ensure_identity().await.expect("identity");
    }
    let bob_api = bob.messenger.client();
    let stock = bob_api.key_package_stock().await.expect("stock");
    assert_eq!((stock.available, stock.last_resort), (KEY_PACKAGE_TARGET, true));

    // Claimed down below the low-water mark, the stock is topped up again (and only then).
    let claims = KEY_PACKAGE_TARGET - KEY_PACKAGE_LOW_WATER + 1;
    for _ in 0..claims {
        alice.messenger.client().claim_key_packages(org, vec![bob.user_id]).await.expect("claim");
    }
    assert_eq!(bob.messenger.top_up_key_packages().await.expect("top up").available, KEY_PACKAGE_TARGET);
    assert_eq!(bob.messenger.top_up_key_packages().await.expect("nothing to do").available, KEY_PACKAGE_TARGET);

    // Alice adds Bob's device with a package claimed now; Bob's process restarts (a new engine
    // from his profile on disk) and still opens the Welcome: the package's private key was saved.
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
    let at = GroupAddress { organization_id: org, conversation_id: conversation.id };
    let roster = Roster { members: [alice.user_id, bob.user_id].into(), ..Roster::default() };
    let device = alice.messenger.mls().expect("alice's mls side");
    let mut group = device.create_group(conversation.id, None).expect("group");
    let mut trust = TrustStore::default();
    let epoch = device
        .add_users(alice.messenger.client(), at, &mut group, vec![bob.user_id], &roster, &mut trust)
        .await
        .expect("add bob");
    assert_eq!(epoch, 1);
    alice.messenger.save_mls().expect("save");

    let restarted = bob.on(&app.base);
    let bob_device = restarted.mls().expect("bob's mls side from disk");
    let mut bob_group = bob_device
        .join_from_server(restarted.client(), at, &roster, &mut TrustStore::default())
        .await
        .expect("the welcome opens after a restart");
    restarted.save_mls().expect("save");
    let sealed = device.encrypt(&mut group, b"hello after the restart").expect("encrypt");
    match bob_device.process(&mut bob_group, &sealed, &roster, &mut TrustStore::default()).expect("read") {
        conclave_client::mls::Incoming::Application { plaintext, .. } => {
            assert_eq!(plaintext, b"hello after the restart")
        }
        other => panic!("expected a message, got {other:?}"),
    }
}
