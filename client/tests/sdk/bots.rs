//! Bots through the SDK's bot framework against the real data plane: a bot is a member device
//! like any other, reading and answering end-to-end encrypted messages; without the read scope
//! it gets no key material; removing it moves the group to a new epoch; a token rotation does
//! not disconnect it.

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use conclave_client::bot::{Bot, BotToken, Context};
use conclave_client::messenger::{Messenger, ReceivedMessage};
use conclave_protocol::api::{ConversationKind, CreateConversation};
use sha2::{Digest as _, Sha256};
use tokio::sync::oneshot;
use uuid::Uuid;

use crate::signin::Person;
use crate::support::TestApp;

const EVERYTHING: [&str; 4] = ["messages:read", "messages:write", "conversations:read", "reactions:write"];

/// A BotAgent of the organization's workspace, as the operator would create it.
async fn agent(app: &TestApp, org: Uuid, workspace: Uuid, token: &str, scopes: &[&str]) -> Uuid {
    conclave_testkit::seed_bot_agent(&app.db.owner, org, workspace, "Echo bot", scopes, token).await.expect("bot")
}

fn token() -> String {
    format!("cbot_{}{}", Uuid::new_v4().simple(), Uuid::new_v4().simple())
}

/// Alice (owner) and Bob in an organization.
async fn two_people(app: &TestApp) -> (Person, Person, Uuid, Uuid) {
    let alice = app.person("alice@example.org").await;
    let bob = app.person("bob@example.org").await;
    let slug = format!("bots-{}", &Uuid::new_v4().simple().to_string()[..8]);
    let (org, workspace) = app.organization(&slug, &[alice.user_id, bob.user_id]).await;
    (alice, bob, org, workspace)
}

async fn group(owner: &Person, org: Uuid, workspace: Uuid, members: &[Uuid]) -> Uuid {
    let body = CreateConversation { kind: ConversationKind::Group, name: None, member_user_ids: members.to_vec() };
    owner.messenger.client().create_conversation(org, workspace, &body).await.expect("create").id
}

/// What the sample bots do: `/echo words` replies the words, `/ack` reacts with a thumbs up.
async fn echo(ctx: Context) -> conclave_client::api::Result<()> {
    match ctx.command.as_ref().map(|c| (c.name.as_str(), c.rest.clone())) {
        Some(("echo", rest)) => ctx.reply(&rest).await.map(drop),
        Some(("ack", _)) => ctx.react("👍").await,
        _ => Ok(()),
    }
}

/// Runs `bot` with the echo handler until the returned sender fires (or is dropped).
fn run(bot: Bot) -> (oneshot::Sender<()>, tokio::task::JoinHandle<conclave_client::api::Result<()>>) {
    let (stop, stopped) = oneshot::channel::<()>();
    let shutdown = async move {
        let _ = stopped.await;
    };
    (stop, tokio::spawn(bot.run(shutdown, echo)))
}

/// Waits (bounded) until `check` finds what it looks for in `who`'s view of the conversation.
async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    for _ in 0..100 {
        if let Some(found) = check().await {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{what}: not within 10 seconds");
}

/// The newest message in `conversation` from `user` whose text is `text`, as `reader` reads it.
async fn find(reader: &Messenger, org: Uuid, conversation: Uuid, user: Uuid, text: &str) -> Option<ReceivedMessage> {
    let history = reader.history(org, conversation, 50).await.expect("history");
    history.into_iter().rev().find(|m| m.sender_user_id == Some(user) && m.body.text() == Some(text))
}

fn state_dir(app: &TestApp, name: &str) -> PathBuf {
    app.home.0.join("bots").join(name)
}

#[tokio::test]
async fn a_bot_in_a_conversation_of_two_people_reads_and_answers_on_another_replica() {
    let app = TestApp::start().await;
    let (alice, bob, org, workspace) = two_people(&app).await;
    let secret = token();
    agent(&app, org, workspace, &secret, &EVERYTHING).await;
    let (replica, _stop_replica) = app.replica().await;
    let bot = Bot::builder(&replica, BotToken::Value(secret))
        .state_dir(state_dir(&app, "echo"))
        .connect()
        .await
        .expect("the bot connects");
    let bot_user = bot.user_id();
    // The bot runs before anyone adds it: the conversation reaches it when it is added.
    let (stop, running) = run(bot);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let conversation = group(&alice, org, workspace, &[bob.user_id]).await;
    alice.messenger.client().add_member(org, conversation, bot_user).await.expect("alice adds the bot");
    let asked = alice.messenger.send_text(org, conversation, "/echo hello from alice").await.expect("send");
    // Bob reads the bot's answer, encrypted by the bot's own device and decrypted by his.
    let answer =
        eventually("the bot's reply", || find(&bob.messenger, org, conversation, bot_user, "hello from alice")).await;
    assert_eq!(answer.reply_to_id, Some(asked.id));
    // The bot reacts too, sealed like any member's reaction.
    let acked = alice.messenger.send_text(org, conversation, "/ack").await.expect("send");
    let reaction = eventually("the bot's reaction", || async {
        let reactions = alice.messenger.reactions(org, conversation, acked.id).await.expect("reactions");
        reactions.into_iter().find(|r| r.user_id == bot_user)
    })
    .await;
    assert_eq!(reaction.value(), Some("👍"));
    // Ordinary messages get no answer; the bot stops when asked.
    bob.messenger.send_text(org, conversation, "no command here").await.expect("send");
    stop.send(()).expect("the bot is running");
    tokio::time::timeout(Duration::from_secs(10), running).await.expect("stops").expect("task").expect("clean stop");
    let history = alice.messenger.history(org, conversation, 50).await.expect("history");
    assert_eq!(history.iter().filter(|m| m.sender_user_id == Some(bot_user)).count(), 1, "one reply only");
}

#[tokio::test]
async fn a_bot_without_the_read_scope_gets_no_key_material_and_cannot_read() {
    let app = TestApp::start().await;
    let (alice, bob, org, workspace) = two_people(&app).await;
    let secret = token();
    agent(&app, org, workspace, &secret, &["messages:write", "conversations:read"]).await;
    let refused = Bot::builder(&app.base, BotToken::Value(secret.clone()))
        .state_dir(state_dir(&app, "blind"))
        .connect()
        .await
        .err()
        .expect("no key packages without messages:read");
    assert!(refused.is_api("bot_scope_missing"), "{refused:?}");
    // Its account exists (the session opened): an admin can make it a member, but its device has
    // no key package, so no commit adds it to the group and no Welcome is ever made for it.
    let bot_user: Uuid = sqlx::query_scalar(
        "SELECT u.id FROM user_accounts u JOIN bot_agents b ON b.id = u.bot_id WHERE b.token_hash = $1",
    )
    .bind(Sha256::digest(secret.as_bytes()).to_vec())
    .fetch_one(&app.db.owner)
    .await
    .expect("the bot's account");
    let conversation = group(&alice, org, workspace, &[bob.user_id, bot_user]).await;
    alice.messenger.send_text(org, conversation, "not for bots").await.expect("send");
    find(&bob.messenger, org, conversation, alice.user_id, "not for bots").await.expect("bob reads it");
    let welcomes = |user: Uuid| {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM member_key_wraps WHERE recipient_user_id = $1")
            .bind(user)
            .fetch_one(&app.db.owner)
    };
    assert!(welcomes(bob.user_id).await.expect("count") > 0, "Bob's device was welcomed");
    assert_eq!(welcomes(bot_user).await.expect("count"), 0, "no key material for the bot's device");
    // And with its own session it can fetch neither the messages nor a Welcome.
    // (A session on a device of its own: the bot's device proves itself with keys only the bot
    // process holds.)
    let client = conclave_client::api::Client::new(&app.base).expect("client");
    let keys = conclave_client::crypto::DeviceKeys::generate().expect("keys");
    let registration = keys.registration("probe", conclave_protocol::devices::Platform::Bot);
    let request = conclave_protocol::bots::BotSessionRequest::new_device(registration);
    client.open_bot_session(&secret, &request).await.expect("session");
    let query = conclave_client::api::MessageQuery::Before { before_seq: 100, limit: 10 };
    let err = client.messages(org, conversation, query).await.expect_err("no read scope");
    assert!(err.is_api("bot_scope_missing"), "{err:?}");
    let err = client.welcome(org, conversation).await.expect_err("no read scope");
    assert!(err.is_api("bot_scope_missing"), "{err:?}");
}

#[tokio::test]
async fn removing_the_bot_moves_the_group_to_a_new_epoch_it_cannot_read() {
    let app = TestApp::start().await;
    let (alice, bob, org, workspace) = two_people(&app).await;
    let secret = token();
    agent(&app, org, workspace, &secret, &EVERYTHING).await;
    let bot = Bot::builder(&app.base, BotToken::Value(secret))
        .state_dir(state_dir(&app, "removed"))
        .connect()
        .await
        .expect("bot");
    let bot_user = bot.user_id();
    let bot_messenger = bot.messenger().clone();
    let conversation = group(&alice, org, workspace, &[bob.user_id, bot_user]).await;
    let (stop, running) = run(bot);
    alice.messenger.send_text(org, conversation, "/echo still here").await.expect("send");
    let reply = eventually("the reply", || find(&bob.messenger, org, conversation, bot_user, "still here")).await;
    alice.messenger.client().remove_member(org, conversation, bot_user).await.expect("remove the bot");
    let after = alice.messenger.send_text(org, conversation, "/echo gone").await.expect("send");
    assert!(
        after.key_generation > reply.key_generation,
        "a new epoch: {} then {}",
        reply.key_generation,
        after.key_generation
    );
    let reason: String = sqlx::query_scalar(
        "SELECT reason FROM conversation_encryption_keys WHERE conversation_id = $1 AND generation = $2",
    )
    .bind(conversation)
    .bind(after.key_generation)
    .fetch_one(&app.db.owner)
    .await
    .expect("reason");
    assert_eq!(reason, "member_removed");
    find(&bob.messenger, org, conversation, alice.user_id, "/echo gone").await.expect("bob reads the new epoch");
    let err = bot_messenger.history(org, conversation, 10).await.expect_err("not a member any more");
    assert!(err.is_api("not_found"), "{err:?}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(find(&alice.messenger, org, conversation, bot_user, "gone").await.is_none(), "the bot did not answer");
    stop.send(()).expect("running");
    running.await.expect("task").expect("clean stop");
}

#[tokio::test]
async fn a_token_rotation_keeps_the_bot_answering_through_the_overlap_and_after() {
    let app = TestApp::start().await;
    let (alice, bob, org, workspace) = two_people(&app).await;
    let (old, new) = (token(), token());
    let bot_id = agent(&app, org, workspace, &old, &EVERYTHING).await;
    let dir = state_dir(&app, "rotated");
    std::fs::create_dir_all(&dir).expect("dir");
    let secret_file = dir.join("token");
    std::fs::write(&secret_file, format!("{old}\n")).expect("secret");
    let bot =
        Bot::builder(&app.base, BotToken::File(secret_file.clone())).state_dir(&dir).connect().await.expect("bot");
    let (bot_user, bot_device) = (bot.user_id(), bot.device_id());
    let conversation = group(&alice, org, workspace, &[bob.user_id, bot_user]).await;
    let (stop, running) = run(bot);
    alice.messenger.send_text(org, conversation, "/echo before").await.expect("send");
    eventually("a reply before", || find(&bob.messenger, org, conversation, bot_user, "before")).await;
    // The operator rotates the token; the kubelet updates the mounted Secret.
    conclave_testkit::rotate_bot_token(&app.db.owner, bot_id, &new, 3600.0).await.expect("rotate");
    std::fs::write(&secret_file, format!("{new}\n")).expect("new secret");
    alice.messenger.send_text(org, conversation, "/echo during").await.expect("send");
    eventually("a reply during the overlap", || find(&bob.messenger, org, conversation, bot_user, "during")).await;
    // The overlap ends: the old token's session with it. The bot opens one with the new token
    // and answers what came in meanwhile.
    conclave_testkit::end_bot_token_overlap(&app.db.owner, bot_id).await.expect("overlap ends");
    alice.messenger.send_text(org, conversation, "/echo after").await.expect("send");
    eventually("a reply after the overlap", || find(&bob.messenger, org, conversation, bot_user, "after")).await;
    let sessions: Vec<bool> =
        sqlx::query_scalar("SELECT bot_token_hash = $2 FROM session_tokens WHERE device_id = $1 ORDER BY created_at")
            .bind(bot_device)
            .bind(Sha256::digest(new.as_bytes()).to_vec())
            .fetch_all(&app.db.owner)
            .await
            .expect("sessions");
    assert_eq!(sessions, vec![false, true], "a second session, on the same device, with the new token");
    stop.send(()).expect("running");
    running.await.expect("task").expect("clean stop");
}
