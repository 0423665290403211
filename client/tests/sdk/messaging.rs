use std::time::Duration;

use conclave_client::api::MessageQuery;
use conclave_client::messenger::{Body, ListenEvent, Listener, ListenerOptions};
use conclave_protocol::api::{ConversationKind, CreateConversation};
use uuid::Uuid;

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
    // The server now refuses generation 1; the SDK rotates (fresh key, wrapped for Alice and Bob
    // only) and resends.
    let after = alice.messenger.send_text(org, conversation, "after").await.expect("send after removal");
    assert_eq!((before.key_generation, after.key_generation), (1, 2));

    let bob_reads = bob.messenger.history(org, conversation, 10).await.expect("bob reads");
    let texts: Vec<_> = bob_reads.iter().map(|m| m.body.text()).collect();
    assert_eq!(texts, vec![Some("before"), Some("after")]);

    // Even handed the new ciphertext, Carol has no key for generation 2; she still reads what
    // she was sent while a member.
    assert_eq!(carol.messenger.open(org, &after).await.expect("open").body, Body::MissingKey { generation: 2 });
    assert_eq!(carol.messenger.open(org, &before).await.expect("open").body.text(), Some("before"));
    assert!(carol.messenger.with_keystore(|k| k.key(conversation, 2).is_none()));
    assert!(carol.messenger.history(org, conversation, 10).await.is_err(), "no longer a member");
}

#[tokio::test]
async fn a_revoked_device_forces_a_rotation_that_the_next_sender_performs() {
    let app = TestApp::start().await;
    let alice = app.person("alice@example.org").await;
    let bob = app.person("bob@example.org").await;
    let (org, conversation) = group(&app, &alice, &[&bob]).await;
    alice.messenger.send_text(org, conversation, "one").await.expect("send");

    // Bob signs in on a second device, which receives generation 2 when Alice rotates...
    let second = app.cli(&["--profile", "bob-phone", "login", "--email", "bob@example.org"]).await.expect("login");
    assert!(second.contains("new device registered"), "{second}");
    assert_eq!(alice.messenger.rotate(org, conversation).await.expect("rotate"), 2);
    let phone_reads = app
        .cli(&[
            "--profile",
            "bob-phone",
            "history",
            "--org",
            &org.to_string(),
            "--conversation",
            &conversation.to_string(),
        ])
        .await
        .expect("the phone reads");
    assert!(phone_reads.contains("[no key for generation 1]"), "joined after generation 1: {phone_reads}");
    // ...then Bob revokes it: the server requires a generation the phone does not get.
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
async fn a_message_from_an_unknown_device_is_shown_as_unverifiable_not_as_text() {
    let app = TestApp::start().await;
    let alice = app.person("alice@example.org").await;
    let bob = app.person("bob@example.org").await;
    let (org, conversation) = group(&app, &alice, &[&bob]).await;
    let mut message = alice.messenger.send_text(org, conversation, "signed by alice").await.expect("send");

    // A message attributed to a device nobody has seen cannot be verified.
    message.sender_device_id = Some(Uuid::new_v4());
    assert_eq!(bob.messenger.open(org, &message).await.expect("open").body, Body::CannotVerify);
    // And one whose signature does not match its sender device is rejected.
    message.sender_device_id = Some(bob.device_id);
    assert!(matches!(bob.messenger.open(org, &message).await.expect("open").body, Body::Rejected { .. }));
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
