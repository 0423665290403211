//! Calls through the SDK: two devices on two replicas ring, answer, exchange sealed signals and
//! set up a real WebRTC connection (str0m) with a data channel, directly on loopback and through
//! a real coturn with relay candidates only; tampered signals are refused.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use conclave_client::Error;
use conclave_client::calls::peer::{Peer, PeerOptions};
use conclave_client::calls::signal::{Signal, SignalError, sdp_fingerprints};
use conclave_client::messenger::{
    CallChange, CallDirection, CallOutcome, ListenEvent, Listener, ListenerOptions, Messenger, ReceivedSignal,
    RelayedSignal, TimelineItem,
};
use conclave_protocol::calls::{Call, CallKind, CallStatus, EndReason, TurnCredentials};
use conclave_testkit::turn::Coturn;
use uuid::Uuid;

use crate::messaging::group;
use crate::support::{Person, TestApp};

const SECRET: &str = "sdk-calls-turn-secret";
const WAIT: Duration = Duration::from_secs(15);
const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// The next listener event `pick` accepts, skipping others, within [`WAIT`].
async fn next_where<T>(listener: &mut Listener, mut pick: impl FnMut(ListenEvent) -> Option<T>) -> T {
    tokio::time::timeout(WAIT, async {
        loop {
            if let Some(found) = pick(listener.next().await.expect("listener")) {
                return found;
            }
        }
    })
    .await
    .expect("the event within the wait")
}

async fn next_change(listener: &mut Listener, want: CallChange) -> Call {
    next_where(listener, |event| match event {
        ListenEvent::CallUpdated { call, change } if change == want => Some(call),
        _ => None,
    })
    .await
}

async fn next_signal(listener: &mut Listener) -> ReceivedSignal {
    next_where(listener, |event| match event {
        ListenEvent::CallSignal(signal) => Some(signal),
        ListenEvent::CallSignalRejected { error, .. } => panic!("a genuine signal was refused: {error}"),
        _ => None,
    })
    .await
}

/// One side of a call as a test drives it.
struct Side<'a> {
    messenger: &'a Messenger,
    listener: Listener,
}

/// Rings Bob, Bob answers, the two connect through sealed signals with `options` each, and send
/// each other a line over the data channel; then both hang up. Returns both peers (closed).
async fn call_and_connect(
    org: Uuid,
    conversation: Uuid,
    alice: &mut Side<'_>,
    bob: &mut Side<'_>,
    options: &PeerOptions,
) -> (Peer, Peer) {
    let started = alice.messenger.start_call(org, conversation, CallKind::Audio).await.expect("start");
    assert_eq!(started.status, CallStatus::Ringing);
    let ringing = next_change(&mut bob.listener, CallChange::Ringing).await;
    assert_eq!(ringing.id, started.id);
    let accepted = bob.messenger.accept_call(org, conversation, ringing.id).await.expect("accept");
    assert_eq!(accepted.status, CallStatus::Active);
    let answered = next_change(&mut alice.listener, CallChange::InCall).await;
    let _alice_beats = alice.messenger.heartbeat(org, conversation, answered.id);
    let _bob_beats = bob.messenger.heartbeat(org, conversation, answered.id);
    let (alice_device, bob_device) = (alice.messenger.device_id(), bob.messenger.device_id());

    let mut caller = Peer::new(options).await.expect("alice's peer");
    let offer = caller.offer().expect("offer");
    alice
        .messenger
        .send_signal(org, conversation, started.id, bob_device, Signal::Offer { sdp: offer })
        .await
        .expect("offer sent");
    let received = next_signal(&mut bob.listener).await;
    assert_eq!((received.call_id, received.from_device_id), (started.id, alice_device));
    let Signal::Offer { sdp: offer } = received.signal else { panic!("an offer: {:?}", received.signal) };

    let mut callee = Peer::new(options).await.expect("bob's peer");
    let answer = callee.answer(&offer).await.expect("answer");
    bob.messenger
        .send_signal(org, conversation, started.id, alice_device, Signal::Answer { sdp: answer })
        .await
        .expect("answer sent");
    let received = next_signal(&mut alice.listener).await;
    assert_eq!(received.from_device_id, bob_device);
    let Signal::Answer { sdp: answer } = received.signal else { panic!("an answer: {:?}", received.signal) };
    caller.accept_answer(&answer).await.expect("answer taken");

    let (a, b) = tokio::join!(caller.wait_open(WAIT), callee.wait_open(WAIT));
    a.expect("alice's data channel opens");
    b.expect("bob's data channel opens");
    caller.send(b"hello from alice").expect("alice sends");
    callee.send(b"hello from bob").expect("bob sends");
    let (to_alice, to_bob) = tokio::join!(caller.recv(WAIT), callee.recv(WAIT));
    assert_eq!(to_bob.expect("bob receives"), b"hello from alice");
    assert_eq!(to_alice.expect("alice receives"), b"hello from bob");

    // The DTLS fingerprint each side holds the other to is the one the other side sent.
    fingerprints_match(&mut caller, &mut callee);
    fingerprints_match(&mut callee, &mut caller);

    if caller.relayed_address().is_some() {
        // What the connection does every few minutes, now: renew the relay while in the call.
        caller.refresh_relay().await.expect("renewals sent");
        caller.flush(Duration::from_millis(500)).await.expect("driven");
    }
    caller.close();
    alice.messenger.hang_up(org, conversation, started.id).await.expect("alice hangs up");
    callee.close();
    let ended = bob.messenger.hang_up(org, conversation, started.id).await.expect("bob hangs up");
    assert_eq!((ended.status, ended.end_reason), (CallStatus::Ended, Some(EndReason::Hangup)));
    let record = alice.messenger.calls(org, conversation).await.expect("records");
    assert_eq!(record[0].id, started.id);
    assert!(record[0].answered_at.is_some() && record[0].ended_at.is_some(), "{:?}", record[0]);
    (caller, callee)
}

/// `local` sent its certificate's fingerprint in its SDP, and `remote` saw exactly that one.
fn fingerprints_match(local: &mut Peer, remote: &mut Peer) {
    let sent = sdp_fingerprints(local.local_sdp().expect("local sdp"));
    assert_eq!(sent, vec![local.local_fingerprint()], "an SDP carries its own certificate's fingerprint");
    assert_eq!(sdp_fingerprints(remote.remote_sdp().expect("remote sdp")), sent);
    assert_eq!(remote.remote_fingerprint(), Some(sent[0].clone()));
}

async fn people(app: &TestApp) -> (Person, Person, Uuid, Uuid) {
    let alice = app.person("alice@calls.test").await;
    let bob = app.person("bob@calls.test").await;
    let (org, conversation) = group(app, &alice, &[&bob]).await;
    (alice, bob, org, conversation)
}

async fn listen(messenger: &Messenger, org: Uuid, conversation: Uuid) -> Listener {
    messenger.listen(org, &[conversation], ListenerOptions::default()).await.expect("listen")
}

#[tokio::test]
async fn two_devices_on_two_replicas_connect_directly_over_loopback_through_sealed_signals() {
    let app = TestApp::start().await;
    let (alice, bob, org, conversation) = people(&app).await;
    let (replica, _stop) = app.replica().await;
    let bob_on_2 = bob.on(&replica);
    let mut alice_side =
        Side { messenger: &alice.messenger, listener: listen(&alice.messenger, org, conversation).await };
    let mut bob_side = Side { messenger: &bob_on_2, listener: listen(&bob_on_2, org, conversation).await };

    let options = PeerOptions { bind: LOOPBACK, host_candidate: true, turn: None };
    let (caller, callee) = call_and_connect(org, conversation, &mut alice_side, &mut bob_side, &options).await;
    for sdp in [caller.local_sdp(), callee.local_sdp()] {
        let sdp = sdp.expect("sdp");
        assert!(sdp.contains("typ host") && !sdp.contains("typ relay"), "{sdp}");
    }
    for traffic in [caller.traffic(), callee.traffic()] {
        assert!(traffic.sent_direct > 0 && traffic.received_direct > 0, "{traffic:?}");
        assert_eq!(traffic.relay_renewals, 0, "{traffic:?}");
        assert_eq!((traffic.sent_relayed, traffic.received_relayed), (0, 0), "{traffic:?}");
    }
}

#[tokio::test]
async fn two_devices_connect_through_a_real_coturn_with_relay_candidates_only() {
    let turn = Coturn::start(SECRET).await.expect("coturn");
    let app = TestApp::start_with(&["--turn-urls", &turn.uri(), "--turn-shared-secret", SECRET]).await;
    let (alice, bob, org, conversation) = people(&app).await;
    let (replica, _stop) = app.replica().await;
    let bob_on_2 = bob.on(&replica);
    let credentials: TurnCredentials = alice.messenger.client().turn_credentials().await.expect("turn credentials");
    assert_eq!(credentials.urls, vec![turn.uri()]);
    let mut alice_side =
        Side { messenger: &alice.messenger, listener: listen(&alice.messenger, org, conversation).await };
    let mut bob_side = Side { messenger: &bob_on_2, listener: listen(&bob_on_2, org, conversation).await };

    // Each side with its own credentials, as two devices would fetch them.
    let options = PeerOptions { bind: LOOPBACK, host_candidate: false, turn: Some(credentials) };
    let (caller, callee) = call_and_connect(org, conversation, &mut alice_side, &mut bob_side, &options).await;
    for peer in [&caller, &callee] {
        let sdp = peer.local_sdp().expect("sdp");
        assert!(sdp.contains("typ relay") && !sdp.contains("typ host"), "{sdp}");
        let relayed = peer.relayed_address().expect("a relay");
        assert!(sdp.contains(&format!("{} {} typ relay", relayed.ip(), relayed.port())), "{sdp}");
        assert_ne!(relayed.port(), turn.addr.port());
        // Every datagram went through coturn: ICE, DTLS and the data channel.
        let traffic = peer.traffic();
        assert!(traffic.sent_relayed > 0 && traffic.received_relayed > 0, "{traffic:?}");
        assert_eq!((traffic.sent_direct, traffic.received_direct), (0, 0), "{traffic:?}");
    }
    // The relay was renewed (the allocation, and the permission for the other side's address)
    // with the credentials and nonce it holds: coturn granted both.
    assert_eq!(caller.traffic().relay_renewals, 2, "{:?}", caller.traffic());
}

#[tokio::test]
async fn tampered_redirected_misattributed_and_outsider_signals_are_refused() {
    let app = TestApp::start().await;
    let alice = app.person("alice@tamper.test").await;
    let bob = app.person("bob@tamper.test").await;
    let carol = app.person("carol@tamper.test").await;
    let (org, conversation) = group(&app, &alice, &[&bob, &carol]).await;
    let call = alice.messenger.start_call(org, conversation, CallKind::Video).await.expect("start");
    bob.messenger.accept_call(org, conversation, call.id).await.expect("bob answers");
    let offer = || Signal::Offer { sdp: "v=0 an offer for bob".into() };
    let relayed = |from: &Person, body: &conclave_protocol::calls::CallSignal| RelayedSignal {
        conversation_id: conversation,
        call_id: call.id,
        from_user_id: from.user_id,
        from_device_id: from.device_id,
        key_generation: body.key_generation,
        ciphertext: &[],
    };
    let seal = |to: Uuid| alice.messenger.seal_signal(org, conversation, call.id, to, offer());

    // The genuine article opens.
    let body = seal(bob.device_id).await.expect("sealed");
    let opened =
        bob.messenger.open_signal(org, RelayedSignal { ciphertext: &body.ciphertext, ..relayed(&alice, &body) }).await;
    assert_eq!(opened.expect("a genuine signal opens").signal, offer());

    let refused = |result: conclave_client::Result<ReceivedSignal>| match result {
        Err(Error::Signal(error)) => error,
        other => panic!("expected a refusal, got {other:?}"),
    };
    // Altered in transit: MLS refuses it.
    let body = seal(bob.device_id).await.expect("sealed");
    let mut altered = body.ciphertext.clone();
    let last = altered.len() - 1;
    altered[last] ^= 0x01;
    let error =
        refused(bob.messenger.open_signal(org, RelayedSignal { ciphertext: &altered, ..relayed(&alice, &body) }).await);
    assert!(matches!(error, SignalError::Unopenable(_)), "{error:?}");

    // Relayed to another device of the group (Carol's): it names Bob's.
    let body = seal(bob.device_id).await.expect("sealed");
    let error = refused(
        carol
            .messenger
            .open_signal(org, RelayedSignal { ciphertext: &body.ciphertext, ..relayed(&alice, &body) })
            .await,
    );
    assert_eq!(error, SignalError::NotForThisDevice { addressed: bob.device_id });

    // Attributed by the relay to Carol's device, sealed by Alice's leaf.
    let body = seal(bob.device_id).await.expect("sealed");
    let error = refused(
        bob.messenger.open_signal(org, RelayedSignal { ciphertext: &body.ciphertext, ..relayed(&carol, &body) }).await,
    );
    assert_eq!(error, SignalError::SenderMismatch { claimed: carol.device_id, sealed_by: alice.device_id });

    // Carol is in the group but not in the call: the server refuses her signal, and Bob too.
    let outsider =
        carol.messenger.seal_signal(org, conversation, call.id, bob.device_id, offer()).await.expect("sealed");
    let error =
        carol.messenger.client().send_call_signal(org, conversation, call.id, &outsider).await.expect_err("refused");
    assert!(error.is_api("call_state_conflict"), "{error}");
    let error = refused(
        bob.messenger
            .open_signal(org, RelayedSignal { ciphertext: &outsider.ciphertext, ..relayed(&carol, &outsider) })
            .await,
    );
    assert_eq!(error, SignalError::NotAParticipant { call_id: call.id, device: carol.device_id });

    // Moved by the relay into another call.
    let body = bob.messenger.seal_signal(org, conversation, call.id, alice.device_id, offer()).await.expect("sealed");
    let other_call = Uuid::now_v7();
    let moved = RelayedSignal { call_id: other_call, ciphertext: &body.ciphertext, ..relayed(&bob, &body) };
    let error = refused(alice.messenger.open_signal(org, moved).await);
    assert_eq!(error, SignalError::WrongCall { named: call.id, relayed_in: other_call });
    alice
        .messenger
        .send_signal(org, conversation, call.id, bob.device_id, offer())
        .await
        .expect("a genuine one still goes");

    // A signal sealed before a commit moved the epoch on is refused by the server as stale; the
    // SDK's send syncs the group and seals it again in the new epoch.
    let before = seal(bob.device_id).await.expect("sealed");
    let epoch = bob.messenger.rotate(org, conversation).await.expect("bob's commit");
    assert_eq!(i64::from(epoch), i64::from(before.key_generation) + 1);
    let client = alice.messenger.client();
    let stale = client.send_call_signal(org, conversation, call.id, &before).await.expect_err("stale");
    assert!(stale.is_api("stale_generation"), "{stale}");
    alice.messenger.send_signal(org, conversation, call.id, bob.device_id, offer()).await.expect("sealed again");
}

#[tokio::test]
async fn each_device_hears_what_a_call_means_to_it_answered_elsewhere_declined_and_ended() {
    let app = TestApp::start().await;
    let alice = app.person("alice@ring.test").await;
    let bob = app.person("bob@ring.test").await;
    let carol = app.person("carol@ring.test").await;
    let bob_phone =
        crate::signin::sign_in_new_device(&app.base, "bob@ring.test", app.home.0.join("profiles").join("bob-phone"))
            .await;
    let (org, conversation) = group(&app, &alice, &[&bob, &carol]).await;
    let mut alice_hears = listen(&alice.messenger, org, conversation).await;
    let mut laptop_hears = listen(&bob.messenger, org, conversation).await;
    let mut phone_hears = listen(&bob_phone.messenger, org, conversation).await;
    let mut carol_hears = listen(&carol.messenger, org, conversation).await;

    let call = alice.messenger.start_call(org, conversation, CallKind::Audio).await.expect("start");
    assert_eq!(next_change(&mut alice_hears, CallChange::Outgoing).await.id, call.id);
    for hears in [&mut laptop_hears, &mut phone_hears, &mut carol_hears] {
        assert_eq!(next_change(hears, CallChange::Ringing).await.id, call.id, "every callee device rings");
    }
    // Bob answers on his phone: his laptop stops ringing; a late answer there is refused.
    bob_phone.messenger.accept_call(org, conversation, call.id).await.expect("the phone answers");
    let elsewhere = CallChange::AnsweredElsewhere { device_id: bob_phone.device_id };
    next_change(&mut laptop_hears, elsewhere).await;
    let late = bob.messenger.accept_call(org, conversation, call.id).await.expect_err("answered already");
    assert!(late.is_api("call_answered_elsewhere"), "{late}");
    next_change(&mut phone_hears, CallChange::InCall).await;
    next_change(&mut alice_hears, CallChange::InCall).await;
    // Carol declines; then both in the call hang up and it ends for everyone.
    carol.messenger.decline_call(org, conversation, call.id).await.expect("carol declines");
    next_change(&mut carol_hears, CallChange::Declined).await;
    let _beats = bob_phone.messenger.heartbeat(org, conversation, call.id);
    alice.messenger.hang_up(org, conversation, call.id).await.expect("alice hangs up");
    bob_phone.messenger.hang_up(org, conversation, call.id).await.expect("bob hangs up");
    let ended = CallChange::Ended { reason: Some(EndReason::Hangup) };
    for hears in [&mut alice_hears, &mut laptop_hears, &mut phone_hears, &mut carol_hears] {
        assert_eq!(next_change(hears, ended).await.status, CallStatus::Ended);
    }
    assert!(alice.messenger.known_call(call.id).is_none(), "an ended call is forgotten");
    let error = alice.messenger.hang_up(org, conversation, call.id).await.expect_err("over");
    assert!(error.is_api("call_ended"), "{error}");
}

/// A timeline entry as the test reads it: a message's text, or a call's kind, direction and
/// outcome, and whether it has a duration.
#[derive(Debug, PartialEq)]
enum Seen {
    Text(String),
    Call(CallKind, CallDirection, CallOutcome, bool),
}

fn seen(items: &[TimelineItem]) -> Vec<Seen> {
    items
        .iter()
        .map(|item| match item {
            TimelineItem::Message(message) => Seen::Text(message.body.text().expect("a text").to_owned()),
            TimelineItem::Call(call) => Seen::Call(call.kind(), call.direction, call.outcome, call.duration.is_some()),
        })
        .collect()
}

/// Reads a whole timeline `page` entries at a time, newest page first, and puts it in order.
async fn timeline_in_pages(messenger: &Messenger, org: Uuid, conversation: Uuid, page: u32) -> Vec<TimelineItem> {
    let mut read = messenger.timeline(org, conversation, page).await.expect("timeline");
    let mut items = Vec::new();
    let mut pages = 1;
    loop {
        assert!(read.items.len() <= page as usize, "a page holds at most {page}");
        read.items.append(&mut items);
        items = std::mem::take(&mut read.items);
        let Some(cursor) = read.older else { break };
        read = messenger.timeline_before(org, conversation, cursor, page).await.expect("older");
        pages += 1;
        assert!(pages <= 20, "the pages end");
    }
    items
}

#[tokio::test]
async fn calls_appear_in_each_sides_timeline_between_the_messages_with_their_outcome() {
    let app = TestApp::start().await;
    let (alice, bob, org, conversation) = people(&app).await;
    let (replica, _stop) = app.replica().await;
    let bob = bob.on(&replica);
    let alice = &alice.messenger;

    alice.send_text(org, conversation, "call you?").await.expect("send");
    bob.send_text(org, conversation, "sure").await.expect("send");
    // Alice calls, Bob answers; they talk a little over a second and both hang up.
    let talked = alice.start_call(org, conversation, CallKind::Video).await.expect("start");
    bob.accept_call(org, conversation, talked.id).await.expect("bob answers");
    tokio::time::sleep(Duration::from_millis(1200)).await;
    alice.hang_up(org, conversation, talked.id).await.expect("alice hangs up");
    let ended = bob.hang_up(org, conversation, talked.id).await.expect("bob hangs up");
    assert_eq!(ended.end_reason, Some(EndReason::Hangup));
    alice.send_text(org, conversation, "thanks!").await.expect("send");
    // Bob calls back; Alice declines.
    let declined = bob.start_call(org, conversation, CallKind::Audio).await.expect("start");
    alice.decline_call(org, conversation, declined.id).await.expect("alice declines");
    bob.send_text(org, conversation, "later then").await.expect("send");
    // Alice calls and gives up before Bob answers: to him, a missed call.
    let cancelled = alice.start_call(org, conversation, CallKind::Audio).await.expect("start");
    alice.hang_up(org, conversation, cancelled.id).await.expect("alice cancels");
    bob.send_text(org, conversation, "missed you").await.expect("send");

    use CallDirection::{Incoming, Outgoing};
    use CallOutcome::{Answered, Cancelled, Declined, Missed};
    let text = |t: &str| Seen::Text(t.to_owned());
    let alice_sees = vec![
        text("call you?"),
        text("sure"),
        Seen::Call(CallKind::Video, Outgoing, Answered, true),
        text("thanks!"),
        Seen::Call(CallKind::Audio, Incoming, Declined, false),
        text("later then"),
        Seen::Call(CallKind::Audio, Outgoing, Cancelled, false),
        text("missed you"),
    ];
    let bob_sees = vec![
        text("call you?"),
        text("sure"),
        Seen::Call(CallKind::Video, Incoming, Answered, true),
        text("thanks!"),
        Seen::Call(CallKind::Audio, Outgoing, Declined, false),
        text("later then"),
        Seen::Call(CallKind::Audio, Incoming, Missed, false),
        text("missed you"),
    ];
    for (who, messenger, expected) in [("alice", alice, &alice_sees), ("bob", &bob, &bob_sees)] {
        let page = messenger.timeline(org, conversation, 50).await.expect("timeline");
        assert_eq!(&seen(&page.items), expected, "{who}'s timeline");
        assert!(page.older.is_none(), "{who} read it all");
        assert!(page.items.windows(2).all(|pair| pair[0].at() <= pair[1].at()), "{who}: in time order");
        let TimelineItem::Call(call) = &page.items[2] else { panic!("{who}: the answered call") };
        assert_eq!(call.call.id, talked.id);
        let duration = call.duration.expect("a duration");
        assert!(duration >= Duration::from_secs(1) && duration < Duration::from_secs(30), "{duration:?}");
        // The same timeline, read in pages of every size, neither skips nor repeats.
        for size in [1, 2, 3, 5] {
            let paged = timeline_in_pages(messenger, org, conversation, size).await;
            assert_eq!(&seen(&paged), expected, "{who} in pages of {size}");
        }
        // The newest page alone: the last three entries.
        let newest = messenger.timeline(org, conversation, 3).await.expect("newest");
        assert_eq!(seen(&newest.items), expected[5..], "{who}'s newest page");
        assert!(newest.older.is_some());
    }

    // A call still going on is in the timeline too, ongoing for both.
    let live = alice.start_call(org, conversation, CallKind::Screen).await.expect("start");
    let last = bob.timeline(org, conversation, 1).await.expect("timeline").items.pop().expect("one");
    assert_eq!(
        seen(std::slice::from_ref(&last)),
        [Seen::Call(CallKind::Screen, Incoming, CallOutcome::Ongoing, false)]
    );
    alice.hang_up(org, conversation, live.id).await.expect("cancel");
}
