//! The WebSocket feature (`GET /v1/ws`): one client's socket with authentication, subscriptions,
//! resume, ordering and heartbeats, fed by the fan-out in `crate::realtime`.
//!
//! A writer loop owns everything sent on the socket, so ordering has one place to live: live
//! events arrive through a bounded queue; resume requests, resyncs and closes through a control
//! channel. For messages the writer keeps the last sequence number sent per conversation,
//! drops what it already sent and fills any gap from the database first.

use crate::AppState;
use crate::context::session::AuthUser;
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::extract::{ApiQuery, WebSocketRequest};
use crate::messages::fetch_range;
use crate::realtime::Delivery;
use crate::realtime::hub::{Control, QUEUE};
use axum::extract::State;
use axum::extract::ws::{CloseFrame, Message as WsMessage, WebSocket};
use axum::http::HeaderMap;
use axum::response::Response;
use conclave_protocol::events::{ClientFrame, ServerFrame, close};
use conclave_protocol::rich::PresenceStatus;
use futures::{SinkExt, StreamExt};
use serde::Deserialize;
use std::collections::HashMap;
use std::time::Duration;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

/// How often the replica's heartbeat runs: a client not heard from since its previous run is
/// pinged, so an idle client every second run (`crate::realtime::hub::Hub::sweep`).
pub const PING_EVERY: Duration = Duration::from_secs(20);
/// A client not heard from (any frame, pongs included) for this long is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
const BACKFILL_PAGE: i64 = 200;
/// Each socket's read buffer. Clients send only small control frames (resume, ping, typing);
/// a larger frame still arrives whole, the buffer grows to fit it.
const READ_BUFFER: usize = 1024;
/// Outgoing frames are written once this much is buffered (or at once when flushed, which every
/// send does); the buffer grows only as large as the frames sent.
const WRITE_BUFFER: usize = 4 * 1024;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(upgrade))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct WsQuery {
    /// Browsers cannot set headers on a WebSocket handshake.
    access_token: Option<String>,
    /// Only this organization's conversations (default: all of the user's organizations).
    organization_id: Option<Uuid>,
}

#[utoipa::path(
    get,
    path = "/v1/ws",
    tag = "realtime",
    operation_id = "websocket",
    params(WsQuery),
    description = "Upgrades to a WebSocket carrying JSON frames (`{\"type\": ...}`): see docs/protocol.md, \"WebSocket protocol\". Authenticate with `Authorization: Bearer` or, from a browser, the `access_token` query parameter.",
    responses(
        (status = 101, description = "Switching protocols: the socket is open and sends a `ready` frame"),
        (status = 426, description = "`websocket_required`: not a WebSocket handshake", body = crate::error::ErrorBody),
    )
)]
async fn upgrade(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiQuery(query): ApiQuery<WsQuery>,
    WebSocketRequest(ws): WebSocketRequest,
) -> ApiResult<Response> {
    let header_token = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")));
    let token = header_token.or(query.access_token.as_deref()).ok_or_else(|| {
        ApiError::new(ErrorCode::MissingToken, "send an access token (Authorization header or access_token)")
    })?;
    let route = crate::context::session::Route { method: &axum::http::Method::GET, path: "/v1/ws" };
    let (auth, bot_scopes) = AuthUser::with_bot_scopes(&state, token, route).await?;
    // A bot's scopes as of the handshake: a change of its BotAgent's scopes reaches the sockets
    // its next session opens (every request of its session already checks them anew).
    let call_events = crate::bots::scopes::receives_call_events(bot_scopes.as_deref());
    let subscriptions = subscriptions(&state, auth, query.organization_id).await?;
    // Small per-socket buffers: tungstenite's defaults (128 KiB each way) dominated the memory
    // of an idle socket (docs/benchmarks.md); larger frames still pass, the buffers grow to fit.
    Ok(ws
        .max_message_size(64 * 1024)
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(WRITE_BUFFER)
        .on_upgrade(move |socket| run(state, auth, call_events, subscriptions, socket)))
}

/// The conversations (with their organization) the user belongs to.
async fn subscriptions(state: &AppState, auth: AuthUser, only: Option<Uuid>) -> ApiResult<HashMap<Uuid, Uuid>> {
    let mut tx = crate::db::user_tx(state, auth.user_id).await?;
    let organizations =
        sqlx::query_scalar!("SELECT organization_id FROM organization_memberships WHERE user_id = $1", auth.user_id)
            .fetch_all(&mut *tx)
            .await?;
    tx.commit().await?;
    let mut map = HashMap::new();
    for organization_id in organizations.into_iter().filter(|o| only.is_none_or(|only| only == *o)) {
        let mut tx = crate::db::tenant_tx(state, organization_id, auth.user_id).await?;
        let conversations =
            sqlx::query_scalar!("SELECT conversation_id FROM conversation_members WHERE user_id = $1", auth.user_id)
                .fetch_all(&mut *tx)
                .await?;
        tx.commit().await?;
        map.extend(conversations.into_iter().map(|c| (c, organization_id)));
    }
    if let Some(only) = only
        && !map.values().any(|o| *o == only)
    {
        // Either not a member or a member of no conversation: both look the same from outside.
        let mut tx = crate::db::user_tx(state, auth.user_id).await?;
        let member = sqlx::query_scalar!(
            r#"SELECT EXISTS (SELECT 1 FROM organization_memberships WHERE user_id = $1 AND organization_id = $2) AS "m!""#,
            auth.user_id,
            only
        )
        .fetch_one(&mut *tx)
        .await?;
        if !member {
            return Err(ApiError::not_found("organization"));
        }
    }
    Ok(map)
}

fn text(frame: &ServerFrame) -> WsMessage {
    WsMessage::Text(serde_json::to_string(frame).unwrap_or_default().into())
}

struct Writer {
    state: AppState,
    auth: AuthUser,
    /// Whether call events are sent (not to a bot without `calls:read`).
    call_events: bool,
    /// Conversation → organization, for the conversations this socket receives.
    conversations: HashMap<Uuid, Uuid>,
    /// Conversation → last message sequence number sent on this socket.
    last_seq: HashMap<Uuid, i64>,
}

impl Writer {
    /// Sends messages of `conversation` after `after` (up to `upto`) from the database.
    async fn backfill<S>(&mut self, sink: &mut S, conversation: Uuid, after: i64, upto: i64) -> Result<(), ()>
    where
        S: SinkExt<WsMessage> + Unpin,
    {
        let Some(&organization) = self.conversations.get(&conversation) else { return Ok(()) };
        let mut cursor = after;
        loop {
            // Boxed: the database calls' state is large, and inline it would be part of every
            // socket's task for as long as the socket lives (docs/benchmarks.md, idle sockets).
            let page = Box::pin(async {
                let mut tx = crate::db::tenant_tx(&self.state, organization, self.auth.user_id).await?;
                crate::context::seat(&mut tx, self.auth.user_id, conversation, false).await?;
                let page = fetch_range(&mut tx, conversation, cursor, upto, BACKFILL_PAGE).await?;
                tx.commit().await?;
                ApiResult::Ok(page)
            })
            .await;
            let Ok(page) = page else {
                // No longer a member, or the database is unavailable: nothing to send now.
                return Ok(());
            };
            let done = (page.len() as i64) < BACKFILL_PAGE;
            for message in page {
                cursor = message.seq;
                self.last_seq.insert(conversation, message.seq);
                sink.send(text(&ServerFrame::MessageCreated { message })).await.map_err(|_| ())?;
            }
            if done {
                return Ok(());
            }
        }
    }

    async fn live<S>(&mut self, sink: &mut S, delivery: &Delivery) -> Result<(), ()>
    where
        S: SinkExt<WsMessage> + Unpin,
    {
        let conversation = delivery.conversation_id;
        match delivery.membership {
            Some((true, user)) if user == self.auth.user_id => {
                self.conversations.insert(conversation, delivery.organization_id);
            }
            _ => {}
        }
        if !self.conversations.contains_key(&conversation) || (delivery.call && !self.call_events) {
            return Ok(());
        }
        if let Some(seq) = delivery.seq {
            match self.last_seq.get(&conversation).copied() {
                Some(last) if seq <= last => return Ok(()),
                Some(last) if seq > last + 1 => Box::pin(self.backfill(sink, conversation, last, seq - 1)).await?,
                _ => {}
            }
            self.last_seq.insert(conversation, seq);
        }
        sink.send(WsMessage::Text(delivery.text.to_string().into())).await.map_err(|_| ())?;
        if let Some((false, user)) = delivery.membership
            && user == self.auth.user_id
        {
            self.conversations.remove(&conversation);
            self.last_seq.remove(&conversation);
        }
        Ok(())
    }
}

enum Incoming {
    Close,
    Resume(std::collections::BTreeMap<Uuid, i64>),
    Pong,
    Typing(Uuid),
    Presence(PresenceStatus),
    Invalid(String),
}

/// What a client frame asks for; `None` for frames that only show the client is there (pongs,
/// binary frames, which the protocol does not use).
fn incoming(frame: WsMessage) -> Option<Incoming> {
    match frame {
        WsMessage::Text(text) => Some(match serde_json::from_str::<ClientFrame>(&text) {
            Ok(ClientFrame::Resume { cursors }) => Incoming::Resume(cursors),
            Ok(ClientFrame::Ping) => Incoming::Pong,
            Ok(ClientFrame::Typing { conversation_id }) => Incoming::Typing(conversation_id),
            Ok(ClientFrame::Presence { status }) => Incoming::Presence(status),
            Err(e) => Incoming::Invalid(e.to_string()),
        }),
        WsMessage::Close(_) => Some(Incoming::Close),
        _ => None,
    }
}

async fn run(
    state: AppState,
    auth: AuthUser,
    call_events: bool,
    conversations: HashMap<Uuid, Uuid>,
    socket: WebSocket,
) {
    let (mut sink, mut stream) = socket.split();
    let registration = state.hub.register(auth.user_id, auth.device_id, conversations.keys().copied(), QUEUE);
    let mailbox = registration.mailbox.clone();
    let mut writer = Writer { state: state.clone(), auth, call_events, conversations, last_seq: HashMap::new() };
    // This socket counts towards its user's presence until it ends (`crate::presence`).
    let mut presence = crate::presence::Connection::new(auth.user_id);
    let mut typed: HashMap<Uuid, std::time::Instant> = HashMap::new();

    let hello = ServerFrame::Ready {
        user_id: auth.user_id,
        device_id: auth.device_id,
        protocol_version: conclave_protocol::PROTOCOL_VERSION,
    };
    if sink.send(text(&hello)).await.is_err() {
        return;
    }
    Box::pin(presence.update(&state, true, &writer.conversations)).await;
    mailbox.set_presence(Some((presence.id, presence.status == PresenceStatus::Idle)));

    // One task per socket: client frames are read in the same loop that writes (an idle socket
    // costs one task, not a reader and a writer with a channel between them), and no timer of
    // its own: the replica's heartbeat (`crate::presence::spawn_heartbeat`) renews its presence
    // and orders the pings and the closing of a silent client through the mailbox.
    let mut shutdown = state.shutdown.clone();
    let close = loop {
        tokio::select! {
            biased;
            _ = shutdown.changed() => break Some((close::GOING_AWAY, "server shutting down")),
            control = mailbox.control() => match control {
                Control::Close(code, reason) => break Some((code, reason)),
                Control::Resync => {
                    let known: Vec<(Uuid, i64)> = writer.last_seq.iter().map(|(c, s)| (*c, *s)).collect();
                    let mut failed = false;
                    for (conversation, last) in known {
                        if Box::pin(writer.backfill(&mut sink, conversation, last, i64::MAX)).await.is_err() {
                            failed = true;
                            break;
                        }
                    }
                    if failed { break None; }
                }
                Control::Ping => {
                    if sink.send(WsMessage::Ping(Vec::new().into())).await.is_err() { break None; }
                }
                Control::PresenceRestored => Box::pin(presence.restored(&state, &writer.conversations)).await,
            },
            frame = stream.next() => {
                let request = match frame {
                    Some(Ok(frame)) => {
                        mailbox.heard();
                        incoming(frame)
                    }
                    Some(Err(_)) | None => break None,
                };
                match request {
                    None => {}
                    Some(Incoming::Close) => break None,
                    Some(Incoming::Resume(cursors)) => {
                        let mut failed = false;
                        let count = cursors.len();
                        for (conversation, after) in cursors {
                            if !writer.conversations.contains_key(&conversation) {
                                continue;
                            }
                            writer.last_seq.insert(conversation, after.max(0));
                            if Box::pin(writer.backfill(&mut sink, conversation, after.max(0), i64::MAX)).await.is_err() {
                                failed = true;
                                break;
                            }
                        }
                        if failed || sink.send(text(&ServerFrame::Resumed { conversations: count })).await.is_err() {
                            break None;
                        }
                    }
                    Some(Incoming::Pong) => {
                        let answered = sink.send(text(&ServerFrame::Pong)).await;
                        if answered.is_err() { break None; }
                    }
                    Some(Incoming::Typing(conversation)) => {
                        let due = typed.get(&conversation).is_none_or(|at| at.elapsed().as_millis() >= crate::presence::TYPING_EVERY_MS);
                        match writer.conversations.get(&conversation).copied() {
                            Some(organization) if due => {
                                typed.insert(conversation, std::time::Instant::now());
                                Box::pin(crate::presence::typing(&state, organization, conversation, auth.user_id)).await;
                            }
                            Some(_) => {}
                            None => {
                                let frame = ServerFrame::Error { code: "not_found".to_owned(), message: "no such conversation on this socket".to_owned() };
                                if sink.send(text(&frame)).await.is_err() { break None; }
                            }
                        }
                    }
                    Some(Incoming::Presence(status)) => {
                        if status == PresenceStatus::Offline {
                            let frame = ServerFrame::Error { code: "invalid_frame".to_owned(), message: "a socket is online or idle; close it to go offline".to_owned() };
                            if sink.send(text(&frame)).await.is_err() { break None; }
                        } else {
                            presence.status = status;
                            Box::pin(presence.update(&state, true, &writer.conversations)).await;
                            mailbox.set_presence(Some((presence.id, status == PresenceStatus::Idle)));
                        }
                    }
                    Some(Incoming::Invalid(message)) => {
                        let frame = ServerFrame::Error { code: "invalid_frame".to_owned(), message };
                        if sink.send(text(&frame)).await.is_err() { break None; }
                    }
                }
            }
            delivery = mailbox.live() => {
                if writer.live(&mut sink, &delivery).await.is_err() { break None; }
            },
        }
    };
    if let Some((code, reason)) = close {
        let _ = sink.send(WsMessage::Close(Some(CloseFrame { code, reason: reason.into() }))).await;
    }
    let _ = sink.close().await;
    mailbox.set_presence(None);
    Box::pin(presence.update(&state, false, &writer.conversations)).await;
}
