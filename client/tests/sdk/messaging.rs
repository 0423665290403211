use std::time::Duration;

use conclave_client::api::MessageQuery;
use conclave_client::messenger::{Body, ListenEvent, Listener, ListenerOptions, UpdatePolicy};
use conclave_protocol::api::{ConversationKind, CreateConversation};
use uuid::Uuid;

use crate::identity::link_code;
use crate::partition::Relay;
use crate::signin::sign_in_new_device;
use crate::support::{Person, TestApp};

pub(crate) async fn group(app: &TestApp, owner: &Person, others: &[&Person]) -> (Uuid, Uuid) {
    let mut members = vec![owner.user_id];
    members.extend(others.iter().map(|p| p.user_id));
    let (org, workspace) = app.organization("acme", &members).await;
    let body = CreateConversation {
        kind: ConversationKind::Group,
        name: None,
        member_user_ids: others.iter().map(|p| p.user_id).collect(),
    };
    let conversation = owner.messenger.client().create_conversation(org, workspace, &body).await.expect("create");
    (org, conversation.id)
}

/// The next message event, skipping the others, within a few seconds.
pub(crate) async fn next_message(listener: &mut Listener) -> conclave_client::messenger::ReceivedMessage {
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let ListenEvent::Message(message) = listener.next().await.expect("listener") {
                return message;
            }
        }
    })
    .await
    .expect("a message within 10 s")
}

#[tokio::test]
async fn alice_and_bob_exchange_encrypted_messages_through_the_sdk_and_the_websocket() {
    let app = TestApp::start().await;
    let alice = app.person("alice@example.org").await;
    let bob = app.person("bob@example.org").await;
    let (org, conversation) = group(&app, &alice, &[&bob]).await;

    // Alice talks to replica 1, Bob to replica 2: Redis carries the message between them.
    let (replica, _stop) = app.replica().await;
    let bob_on_2 = bob.on(&replica);
    let mut bob_listens = bob_on_2.listen(org, &[], ListenerOptions::default()).await.expect("listen");
    // The first send finds no key yet: the SDK makes generation 1 for both devices.
    let sent = alice.messenger.send_text(org, conversation, "hello bob").await.expect("send");
    assert_eq!((sent.seq, sent.key_generation), (1, 1));

    let received = next_message(&mut bob_listens).await;
    assert_eq!(received.body.text(), Some("hello bob"));
    assert_eq!((received.sender_user_id, received.sender_device_id), (Some(alice.user_id), Some(alice.device_id)));
    assert_eq!(bob_listens.cursors().get(&conversation), Some(&1));

    bob_on_2.send_text(org, conversation, "hi alice").await.expect("reply");
    let echoed = next_message(&mut bob_listens).await;
    assert_eq!(echoed.body.text(), Some("hi alice"), "a sender's own messages come back on its socket too");

    let history = alice.messenger.history(org, conversation, 10).await.expect("history");
    let texts: Vec<_> = history.iter().map(|m| (m.seq, m.body.text())).collect();
    assert_eq!(texts, vec![(1, Some("hello bob")), (2, Some("hi alice"))]);

    // The server holds ciphertext only.
    let page = alice
        .messenger
        .client()
        .messages(org, conversation, MessageQuery::After { after_seq: 0, limit: 10 })
        .await
        .expect("raw page");
    for message in &page.messages {
        let ciphertext = message.ciphertext.as_deref().expect("ciphertext");
        assert!(!ciphertext.windows(5).any(|w| w == b"hello" || w == b"hi al"));
    }
    // Delivered receipts were posted by Bob's listener.
    let conv = alice.messenger.client().conversation(org, conversation).await.expect("conversation");
    let bob_member = conv.members.iter().find(|m| m.user_id == bob.user_id).expect("bob is a member");
    assert!(bob_member.delivered_seq >= 1, "{bob_member:?}");
    bob_listens.close().await;

    // No table anywhere holds either plaintext, as text or as bytes.
    for plaintext in ["hello bob", "hi alice"] {
        let found = plaintext_rows(&app, plaintext).await;
        assert!(found.is_empty(), "{plaintext:?} found in {found:?}");
    }
    assert!(!plaintext_rows(&app, "alice@example.org").await.is_empty(), "the scan does find what is stored");
}

/// Tables with a row whose text form contains `needle`, or whose bytea columns contain its bytes
/// (a bytea column's text form is its hex).
async fn plaintext_rows(app: &TestApp, needle: &str) -> Vec<String> {
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT relname::text FROM pg_class WHERE relkind = 'r' AND relnamespace = 'public'::regnamespace",
    )
    .fetch_all(&app.db.owner)
    .await
    .expect("tables");
    let hex: String = needle.bytes().map(|b| format!("{b:02x}")).collect();
    let mut found = Vec::new();
    for table in tables {
        let sql = format!(
            "SELECT count(*) FROM \"{table}\" t WHERE t::text LIKE '%' || $1 || '%' OR t::text LIKE '%' || $2 || '%'"
        );
        let count: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .bind(needle)
            .bind(&hex)
            .fetch_one(&app.db.owner)
            .await
            .expect("scan");
        if count > 0 {
            found.push(table);
        }
    }
    found
}

#[tokio::test]
async fn a_removed_member_cannot_decrypt_later_messages() {
    let app = TestApp::start().await;
    let alice = app.person("alice@example.org").await;
    let bob = app.person("bob@example.org").await;
    let carol = app.person("carol@example.org").await;
    let (org, conversation) = group(&app, &alice, &[&bob, &carol]).await;

    let before = alice.messenger.send_text(org, conversation, "before").await.expect("send");
    let seen = carol.messenger.history(org, conversation, 10).await.expect("carol reads");
    assert_eq!(seen[0].body.text(), Some("before"));

    alice.messenger.client().remove_member(org, conversation, carol.user_id).await.expect("remove carol");
    // The server now refuses epoch 1 until a commit removes Carol's leaf; the SDK commits it and
    // sends in epoch 2.
    let after = alice.messenger.send_text(org, conversation, "after").await.expect("send after removal");
    assert_eq!((before.key_generation, after.key_generation), (1, 2));

    let bob_reads = bob.messenger.history(org, conversation, 10).await.expect("bob reads");
    let texts: Vec<_> = bob_reads.iter().map(|m| m.body.text()).collect();
    assert_eq!(texts, vec![Some("before"), Some("after")], "{bob_reads:?}");

    // Even handed the new ciphertext, Carol cannot decrypt epoch 2; she still reads what she was
    // sent while a member (kept since she first read it).
    assert_eq!(carol.messenger.open(org, &after).await.expect("open").body, Body::MissingKey { generation: 2 });
    assert_eq!(carol.messenger.open(org, &before).await.expect("open").body.text(), Some("before"));
    assert!(carol.messenger.with_keystore(|k| k.key(conversation, 2).is_none()));
    assert!(carol.messenger.history(org, conversation, 10).await.is_err(), "no longer a member");
}

#[tokio::test]
async fn a_revoked_device_forces_a_commit_that_the_next_sender_makes() {
    let app = TestApp::start().await;
    let alice = app.person("alice@example.org").await;
    let bob = app.person("bob@example.org").await;
    let (org, conversation) = group(&app, &alice, &[&bob]).await;
    alice.messenger.send_text(org, conversation, "one").await.expect("send");

    // Bob signs in on a second device and links it (his identity key carried over); Alice's next
    // commit adds it, opening epoch 2...
    let phone = sign_in_new_device(&app.base, "bob@example.org", app.home.0.join("profiles").join("bob-phone")).await;
    let code = link_code(&phone.messenger.ensure_identity().await.expect("the phone waits for a link"));
    bob.messenger.link_device(&code).await.expect("link");
    phone.messenger.ensure_identity().await.expect("the phone receives the identity key");
    assert_eq!(alice.messenger.rotate(org, conversation).await.expect("rotate"), 2);
    let phone_reads = phone.messenger.history(org, conversation, 10).await.expect("the phone reads");
    assert_eq!(phone_reads[0].body, Body::MissingKey { generation: 1 }, "joined after epoch 1");
    assert!(phone_reads[0].body.display().contains("messages may be missing"));
    // ...then Bob revokes it: the server requires a commit, which removes the phone's leaf.
    let devices = bob.messenger.client().devices().await.expect("devices");
    let phone = devices.iter().find(|d| !d.current).expect("the second device");
    bob.messenger.client().revoke_device(phone.id).await.expect("revoke");
    let conv = bob.messenger.client().conversation(org, conversation).await.expect("conversation");
    assert!(conv.rotation_required);

    let sent = bob.messenger.send_text(org, conversation, "two").await.expect("send after revocation");
    assert_eq!(sent.key_generation, 3);
    let texts: Vec<_> = alice
        .messenger
        .history(org, conversation, 10)
        .await
        .expect("history")
        .into_iter()
        .map(|m| m.body.display())
        .collect();
    assert_eq!(texts, vec!["one", "two"]);
}

#[tokio::test]
async fn a_message_attributed_to_another_device_is_shown_as_unverifiable_not_as_text() {
    let app = TestApp::start().await;
    let alice = app.person("alice@example.org").await;
    let bob = app.person("bob@example.org").await;
    let (org, conversation) = group(&app, &alice, &[&bob]).await;
    let mut message = alice.messenger.send_text(org, conversation, "signed by alice").await.expect("send");

    let genuine = message.clone();

    // The server attributing it to another device than the one MLS authenticates: not shown.
    message.sender_device_id = Some(Uuid::new_v4());
    assert_eq!(bob.messenger.open(org, &message).await.expect("open").body, Body::CannotVerify);
    message.sender_device_id = Some(bob.device_id);
    assert_eq!(bob.messenger.open(org, &message).await.expect("open").body, Body::CannotVerify);
    // The lie spent nothing: under its true attribution it reads.
    assert_eq!(bob.messenger.open(org, &genuine).await.expect("open").body.text(), Some("signed by alice"));
    // A ciphertext changed in transit does not decrypt.
    let mut tampered = genuine.clone();
    tampered.id = Uuid::now_v7();
    if let Some(byte) = tampered.ciphertext.as_mut().and_then(|c| c.last_mut()) {
        *byte ^= 1;
    }
    let body = bob.messenger.open(org, &tampered).await.expect("open").body;
    assert!(matches!(body, Body::Rejected { .. } | Body::MissingKey { .. }), "{body:?}");
}

#[tokio::test]
async fn a_listener_reconnects_after_a_server_restart_and_resumes_what_it_missed() {
    let mut app = TestApp::start().await;
    let alice = app.person("alice@example.org").await;
    let bob = app.person("bob@example.org").await;
    let (org, conversation) = group(&app, &alice, &[&bob]).await;
    let mut bob_listens = bob.messenger.listen(org, &[], ListenerOptions::default()).await.expect("listen");
    alice.messenger.send_text(org, conversation, "one").await.expect("send");
    assert_eq!(next_message(&mut bob_listens).await.body.text(), Some("one"));

    // The server restarts while Bob's listener is not reading; Alice sends twice meanwhile.
    app.restart().await;
    alice.messenger.send_text(org, conversation, "two").await.expect("send after the restart");
    alice.messenger.send_text(org, conversation, "three").await.expect("send");

    // Bob's listener notices the closed socket, reconnects, resumes after "one": each missed
    // message arrives once, in order.
    let mut disconnected = false;
    let mut texts = Vec::new();
    tokio::time::timeout(Duration::from_secs(15), async {
        while texts.len() < 2 {
            match bob_listens.next().await.expect("the listener carries on") {
                ListenEvent::Message(message) => texts.push((message.seq, message.body.display())),
                ListenEvent::Disconnected { .. } => disconnected = true,
                _ => {}
            }
        }
    })
    .await
    .expect("the missed messages within 15 s");
    assert!(disconnected);
    assert_eq!(texts, vec![(2, "two".to_owned()), (3, "three".to_owned())]);
    assert_eq!(bob_listens.cursors().get(&conversation), Some(&3));
}

/// The events a listener reports until `until` accepts one, within `limit`.
async fn events_until(
    listener: &mut Listener,
    limit: Duration,
    mut until: impl FnMut(&ListenEvent) -> bool,
) -> Vec<ListenEvent> {
    let mut events = Vec::new();
    let waited = tokio::time::timeout(limit, async {
        loop {
            let event = listener.next().await.expect("the listener carries on");
            let done = until(&event);
            events.push(event);
            if done {
                return;
            }
        }
    })
    .await;
    assert!(waited.is_ok(), "not within {limit:?}; events so far: {events:?}");
    events
}

#[tokio::test]
async fn a_listener_whose_connection_goes_silent_reconnects_and_resumes() {
    let app = TestApp::start().await;
    let alice = app.person("alice@example.org").await;
    let bob = app.person("bob@example.org").await;
    let (org, conversation) = group(&app, &alice, &[&bob]).await;
    // Bob reaches the server through a relay that can cut the network without a word.
    let relay = Relay::start(&app.base).await;
    let bob_relayed = bob.on(&relay.base);
    let options = ListenerOptions {
        mark_delivered: false,
        ping_interval: Duration::from_millis(500),
        pong_timeout: Duration::from_millis(500),
        connect_timeout: Duration::from_millis(700),
        max_backoff: Duration::from_millis(500),
        ..ListenerOptions::default()
    };
    let mut bob_listens = bob_relayed.listen(org, &[], options).await.expect("listen");
    alice.messenger.send_text(org, conversation, "before").await.expect("send");
    assert_eq!(next_message(&mut bob_listens).await.body.text(), Some("before"));

    // The route vanishes: no close frame, no reset. Alice sends meanwhile.
    relay.cut();
    alice.messenger.send_text(org, conversation, "during").await.expect("send during the cut");
    // The open connection is given up once a ping goes unanswered...
    let events =
        events_until(&mut bob_listens, Duration::from_secs(10), |e| matches!(e, ListenEvent::Disconnected { .. }))
            .await;
    let Some(ListenEvent::Disconnected { reason, .. }) = events.last() else { unreachable!() };
    assert!(reason.contains("not heard from"), "{reason}");
    assert!(events.iter().all(|e| !matches!(e, ListenEvent::Message(_))), "{events:?}");
    // ...and a new one that the server never answers is given up at the connect deadline.
    let events =
        events_until(&mut bob_listens, Duration::from_secs(10), |e| matches!(e, ListenEvent::Disconnected { .. }))
            .await;
    let Some(ListenEvent::Disconnected { reason, .. }) = events.last() else { unreachable!() };
    assert!(reason.contains("did not answer within 700ms"), "{reason}");

    // The network heals: the listener reconnects by itself and resumes with what it missed.
    relay.heal();
    let events = events_until(&mut bob_listens, Duration::from_secs(10), |e| matches!(e, ListenEvent::Resumed)).await;
    let missed: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            ListenEvent::Message(m) => Some((m.seq, m.body.display())),
            _ => None,
        })
        .collect();
    assert_eq!(missed, vec![(2, "during".to_owned())], "{events:?}");
    alice.messenger.send_text(org, conversation, "after").await.expect("send after");
    assert_eq!(next_message(&mut bob_listens).await.body.text(), Some("after"));
}

#[tokio::test]
async fn a_device_that_loses_its_group_state_rejoins_and_says_what_it_missed() {
    let app = TestApp::start().await;
    let alice = app.person("alice@example.org").await;
    let bob = app.person("bob@example.org").await;
    let (org, conversation) = group(&app, &alice, &[&bob]).await;
    alice.messenger.send_text(org, conversation, "one").await.expect("send");
    let read = bob.messenger.history(org, conversation, 10).await.expect("bob reads");
    assert_eq!(read[0].body.text(), Some("one"));

    // Bob's device loses its group (corrupt storage, a restore from an old backup...), and Alice
    // sends while it has none.
    bob.messenger
        .with_mls(|device| {
            let mut group = device.load(conversation)?.expect("bob's group");
            Ok(device.forget(&mut group)?)
        })
        .expect("forget the group");
    let two = alice.messenger.send_text(org, conversation, "two").await.expect("send");

    // Within one read it rejoins by external commit: what it had read stays, what was sent in the
    // epochs it skipped is marked, and it carries on in the new epoch.
    let read = bob.messenger.history(org, conversation, 10).await.expect("bob reads again");
    assert_eq!(read[0].body.text(), Some("one"), "kept from before");
    assert_eq!(read[1].body, Body::MissingKey { generation: two.key_generation });
    assert!(read[1].body.display().contains("messages may be missing"), "{}", read[1].body.display());
    let three = bob.messenger.send_text(org, conversation, "three").await.expect("bob sends after rejoining");
    assert!(three.key_generation > two.key_generation, "the rejoin opened a new epoch");
    let texts: Vec<_> = alice
        .messenger
        .history(org, conversation, 10)
        .await
        .expect("alice reads")
        .iter()
        .map(|m| m.body.display())
        .collect();
    assert_eq!(texts, vec!["one", "two", "three"]);
}

#[tokio::test]
async fn a_listening_device_that_rejoins_says_messages_may_be_missing_before_what_it_cannot_read() {
    let app = TestApp::start().await;
    let alice = app.person("alice@example.org").await;
    let bob = app.person("bob@example.org").await;
    let (org, conversation) = group(&app, &alice, &[&bob]).await;
    let mut bob_listens = bob.messenger.listen(org, &[], ListenerOptions::default()).await.expect("listen");
    alice.messenger.send_text(org, conversation, "one").await.expect("send");
    assert_eq!(next_message(&mut bob_listens).await.body.text(), Some("one"));

    bob.messenger
        .with_mls(|device| {
            let mut group = device.load(conversation)?.expect("bob's group");
            Ok(device.forget(&mut group)?)
        })
        .expect("forget the group");
    let two = alice.messenger.send_text(org, conversation, "two").await.expect("send");
    let mut seen = Vec::new();
    let message = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match bob_listens.next().await.expect("listener") {
                ListenEvent::Message(message) => return message,
                other => seen.push(other),
            }
        }
    })
    .await
    .expect("the message within 10 s");
    assert_eq!(message.body, Body::MissingKey { generation: two.key_generation });
    let announced: Vec<(Uuid, u64)> = seen
        .iter()
        .filter_map(|e| match e {
            ListenEvent::MessagesMayBeMissing { conversation_id, epoch } => Some((*conversation_id, *epoch)),
            _ => None,
        })
        .collect();
    let two_epoch = u64::try_from(two.key_generation).expect("epoch");
    assert_eq!(announced, vec![(conversation, two_epoch + 1)], "one notice, at the epoch the rejoin opened: {seen:?}");

    // Said once: what follows reads normally, with no new notice.
    alice.messenger.send_text(org, conversation, "three").await.expect("send");
    let mut after = Vec::new();
    let three = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match bob_listens.next().await.expect("listener") {
                ListenEvent::Message(message) => return message,
                other => after.push(other),
            }
        }
    })
    .await
    .expect("the next message within 10 s");
    assert_eq!(three.body.text(), Some("three"));
    assert!(!after.iter().any(|e| matches!(e, ListenEvent::MessagesMayBeMissing { .. })), "{after:?}");
    bob_listens.close().await;
}

#[tokio::test]
async fn a_sender_refreshes_its_leaf_as_its_update_policy_says() {
    let app = TestApp::start().await;
    let alice = app.person("alice@example.org").await;
    let bob = app.person("bob@example.org").await;
    let (org, conversation) = group(&app, &alice, &[&bob]).await;
    alice.messenger.set_update_policy(UpdatePolicy { after_messages: 2, max_age: Duration::from_secs(3600) });

    let mut epochs = Vec::new();
    for text in ["one", "two", "three", "four", "five"] {
        epochs.push(alice.messenger.send_text(org, conversation, text).await.expect("send").key_generation);
    }
    // Two messages per epoch, then a self-update before the next: each new epoch is a fresh leaf.
    assert_eq!(epochs, vec![1, 1, 2, 2, 3]);
    let commits = alice.messenger.client().commits(org, conversation, 1).await.expect("commits");
    assert!(commits.iter().all(|c| c.committed_by_device_id == Some(alice.device_id)), "alice's own updates");
    let texts: Vec<_> = bob
        .messenger
        .history(org, conversation, 10)
        .await
        .expect("bob reads")
        .iter()
        .map(|m| m.body.display())
        .collect();
    assert_eq!(texts, vec!["one", "two", "three", "four", "five"]);

    // An epoch older than the policy's age is refreshed at the next send, whatever the count.
    alice.messenger.set_update_policy(UpdatePolicy { after_messages: 1_000, max_age: Duration::ZERO });
    let six = alice.messenger.send_text(org, conversation, "six").await.expect("send");
    assert_eq!(six.key_generation, 4);
}

#[tokio::test]
async fn a_deleted_or_expired_message_leaves_no_copy_on_the_device() {
    let app = TestApp::start().await;
    let alice = app.person("alice@example.org").await;
    let bob = app.person("bob@example.org").await;
    let (org, conversation) = group(&app, &alice, &[&bob]).await;
    let mut sent = Vec::new();
    for text in ["one", "two", "three"] {
        sent.push(alice.messenger.send_text(org, conversation, text).await.expect("send"));
    }
    bob.messenger.history(org, conversation, 10).await.expect("bob reads");
    let kept = |person: &Person| {
        let mut ids = person.messenger.with_keystore(|k| k.kept(conversation));
        ids.sort();
        ids
    };
    assert_eq!(kept(&bob), vec![sent[0].id, sent[1].id, sent[2].id], "decrypted once, kept");

    // Alice deletes "two": Bob's listener hears it and drops his copy; so does Alice's device.
    let mut bob_listens = bob.messenger.listen(org, &[], ListenerOptions::default()).await.expect("listen");
    alice.messenger.client().delete_message(org, conversation, sent[1].id).await.expect("delete");
    tokio::time::timeout(Duration::from_secs(10), async {
        while !matches!(bob_listens.next().await.expect("listener"), ListenEvent::Deleted { .. }) {}
    })
    .await
    .expect("the deletion within 10 s");
    assert_eq!(kept(&bob), vec![sent[0].id, sent[2].id]);
    let read = alice.messenger.history(org, conversation, 10).await.expect("alice reads");
    assert_eq!(read[1].body, Body::Deleted);
    assert!(!kept(&alice).contains(&sent[1].id), "a history read drops the copy too");

    // Retention removed what is below seq 3 on the server: the copies below it go as well.
    assert_eq!(bob.messenger.forget_removed(conversation, None, Some(3)).expect("forget"), 1);
    assert_eq!(kept(&bob), vec![sent[2].id]);
    let reloaded = bob.profile.load_keystore().expect("keystore");
    assert_eq!(reloaded.kept(conversation), vec![sent[2].id], "on disk too");
    bob_listens.close().await;
}
