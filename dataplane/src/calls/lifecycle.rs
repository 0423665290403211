//! Starting, answering, declining and leaving calls. Every change of a call locks its row, asks
//! [`super::state`] what the change does, stores the answer and publishes the whole call as a
//! `call_updated` frame to the conversation's sockets on every replica (through Redis, like
//! messages). The rows are the record: a socket that missed a frame lists the calls.

use super::state::{self, Action};
use crate::AppState;
use crate::context::member_tx;
use crate::context::seat;
use crate::context::session::AuthUser;
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::outbox::events::{self, Event};
use crate::realtime::{self, LiveEvent};
use axum::extract::State;
use axum::http::StatusCode;
use conclave_protocol::calls::{
    Call, CallKind, CallParticipant, CallSignal, CallStatus, EndReason, MAX_SIGNAL_LEN, ParticipantState, StartCall,
};
use conclave_protocol::events::ServerFrame;
use serde_json::json;
use sqlx::PgConnection;
use uuid::Uuid;

/// A join refused by the index that keeps a device in one call at a time becomes `device_busy`.
fn busy(err: sqlx::Error) -> ApiError {
    let constraint = err.as_database_error().and_then(|e| e.constraint().map(str::to_owned));
    if constraint.as_deref() == Some("call_participants_device_busy") {
        return ApiError::new(ErrorCode::DeviceBusy, "this device is already in another call");
    }
    err.into()
}

/// The call with its participants, as stored.
pub(super) async fn load(conn: &mut PgConnection, call_id: Uuid) -> ApiResult<Call> {
    let row = sqlx::query!(
        r#"SELECT id, conversation_id, media AS "kind: CallKind", status AS "status: CallStatus", started_by,
                  started_at, answered_at, ended_at, end_reason AS "end_reason: EndReason"
             FROM call_sessions WHERE id = $1"#,
        call_id
    )
    .fetch_optional(&mut *conn)
    .await?
    .ok_or_else(|| ApiError::not_found("call"))?;
    let participants = sqlx::query_as!(
        CallParticipant,
        r#"SELECT user_id, device_id, state AS "state: ParticipantState", joined_at, left_at
             FROM call_participants WHERE call_id = $1 ORDER BY id"#,
        call_id
    )
    .fetch_all(&mut *conn)
    .await?;
    Ok(Call {
        id: row.id,
        conversation_id: row.conversation_id,
        kind: row.kind,
        status: row.status,
        started_by: row.started_by,
        started_at: row.started_at,
        answered_at: row.answered_at,
        ended_at: row.ended_at,
        end_reason: row.end_reason,
        participants,
    })
}

pub(super) async fn publish(state: &AppState, organization_id: Uuid, call: &Call) {
    let frame = ServerFrame::CallUpdated { call: call.clone() };
    realtime::publish(state, LiveEvent::frame(organization_id, call.conversation_id, frame)).await;
}

#[utoipa::path(
    post,
    path = "/v1/organizations/{organization_id}/conversations/{conversation_id}/calls",
    tag = "calls",
    operation_id = "start_call",
    request_body = StartCall,
    responses(
        (status = 201, description = "The call rings on every device of the other members (`call_updated`)", body = Call),
        (status = 409, description = "`call_in_progress` (join that call), `device_busy`", body = crate::error::ErrorBody),
    )
)]
#[tracing::instrument(skip_all, fields(%conversation_id))]
pub(super) async fn start(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiPath((organization_id, conversation_id)): ApiPath<(Uuid, Uuid)>,
    ApiJson(body): ApiJson<StartCall>,
) -> ApiResult<(StatusCode, axum::Json<Call>)> {
    let (mut tx, _) = member_tx(&state, auth, organization_id).await?;
    // The conversation's row lock serialises starts: one live call per conversation.
    seat(&mut tx, auth.user_id, conversation_id, true).await?;
    let live = sqlx::query_scalar!(
        "SELECT id FROM call_sessions WHERE conversation_id = $1 AND status <> 'ended'",
        conversation_id
    )
    .fetch_optional(&mut *tx)
    .await?;
    if live.is_some() {
        return Err(ApiError::new(ErrorCode::CallInProgress, "this conversation already has a call: join it"));
    }
    let call_id = sqlx::query_scalar!(
        "INSERT INTO call_sessions (organization_id, conversation_id, started_by, media) VALUES ($1, $2, $3, $4)
         RETURNING id",
        organization_id,
        conversation_id,
        auth.user_id,
        body.kind as CallKind
    )
    .fetch_one(&mut *tx)
    .await?;
    sqlx::query!(
        "INSERT INTO call_participants (organization_id, call_id, user_id, device_id, state, joined_at, last_seen_at)
         SELECT $1, $2, m.user_id, CASE WHEN m.user_id = $3 THEN $4::uuid END,
                CASE WHEN m.user_id = $3 THEN 'joined' ELSE 'invited' END,
                CASE WHEN m.user_id = $3 THEN now() END, CASE WHEN m.user_id = $3 THEN now() END
           FROM conversation_members m WHERE m.conversation_id = $5",
        organization_id,
        call_id,
        auth.user_id,
        auth.device_id,
        conversation_id
    )
    .execute(&mut *tx)
    .await
    .map_err(busy)?;
    let call = load(&mut tx, call_id).await?;
    let started = json!({
        "conversation_id": conversation_id, "call_id": call_id, "kind": body.kind, "started_by": auth.user_id,
    });
    events::in_conversation(&mut tx, organization_id, conversation_id, Event::CallStarted, started).await?;
    tx.commit().await?;
    publish(&state, organization_id, &call).await;
    Ok((StatusCode::CREATED, axum::Json(call)))
}

/// `GET .../calls`: a page of the record, newest first.
#[derive(serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(super) struct CallsQuery {
    /// Only calls older than this one (started before it; of two started in the same
    /// microsecond, the smaller id is the older): the last id of the previous page.
    before_call_id: Option<Uuid>,
    /// At most this many (1 to 200; 100 when absent).
    limit: Option<i64>,
}

/// Calls answered when no `limit` is given (what the route answered before it had one).
const DEFAULT_CALLS_PAGE: i64 = 100;

#[utoipa::path(
    get,
    path = "/v1/organizations/{organization_id}/conversations/{conversation_id}/calls",
    tag = "calls",
    operation_id = "list_calls",
    params(CallsQuery),
    responses(
        (status = 200, description = "The conversation's calls, newest first (by `started_at`, then id): who, when, how long, how they ended", body = Vec<Call>),
        (status = 422, description = "`invalid_query`: an unknown parameter, or one that is not a number or a UUID; `validation_failed`: `limit` outside 1 to 200, or a `before_call_id` that is no call of this conversation", body = crate::error::ErrorBody),
    )
)]
pub(super) async fn list(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiPath((organization_id, conversation_id)): ApiPath<(Uuid, Uuid)>,
    ApiQuery(query): ApiQuery<CallsQuery>,
) -> ApiResult<axum::Json<Vec<Call>>> {
    let limit = crate::limits::page_limit(query.limit, DEFAULT_CALLS_PAGE)?;
    let (mut tx, _) = member_tx(&state, auth, organization_id).await?;
    seat(&mut tx, auth.user_id, conversation_id, false).await?;
    let before = match query.before_call_id {
        None => None,
        Some(id) => Some(
            sqlx::query_scalar!(
                "SELECT started_at FROM call_sessions WHERE id = $1 AND conversation_id = $2",
                id,
                conversation_id
            )
            .fetch_optional(&mut *tx)
            .await?
            .map(|started_at| (started_at, id))
            .ok_or_else(|| ApiError::validation("before_call_id", "is not a call of this conversation"))?,
        ),
    };
    let (before_at, before_id) = before.unzip();
    let ids = sqlx::query_scalar!(
        "SELECT id FROM call_sessions
          WHERE conversation_id = $1 AND ($2::timestamptz IS NULL OR (started_at, id) < ($2, $3::uuid))
          ORDER BY started_at DESC, id DESC LIMIT $4",
        conversation_id,
        before_at,
        before_id,
        limit
    )
    .fetch_all(&mut *tx)
    .await?;
    let mut calls = Vec::with_capacity(ids.len());
    for id in ids {
        calls.push(load(&mut tx, id).await?);
    }
    tx.commit().await?;
    Ok(axum::Json(calls))
}

/// Applies `action` of this device to the call, stores and publishes the result.
async fn act(
    state: &AppState,
    auth: AuthUser,
    (organization_id, conversation_id, call_id): (Uuid, Uuid, Uuid),
    action: Action,
) -> ApiResult<axum::Json<Call>> {
    let (mut tx, _) = member_tx(state, auth, organization_id).await?;
    seat(&mut tx, auth.user_id, conversation_id, false).await?;
    let call = sqlx::query!(
        r#"SELECT status AS "status: CallStatus", started_by FROM call_sessions
            WHERE id = $1 AND conversation_id = $2 FOR UPDATE"#,
        call_id,
        conversation_id
    )
    .fetch_optional(&mut *tx)
    .await?
    .ok_or_else(|| ApiError::not_found("call"))?;
    let states = sqlx::query!(
        r#"SELECT user_id, device_id, state AS "state: ParticipantState" FROM call_participants WHERE call_id = $1"#,
        call_id
    )
    .fetch_all(&mut *tx)
    .await?;
    let joined = states.iter().filter(|p| p.state == ParticipantState::Joined).count();
    // A member who joined the conversation after the call started was never rung: like one
    // who missed it, they may join while it is active.
    let mine = states.iter().position(|p| p.user_id == auth.user_id);
    let me = mine.map_or(ParticipantState::Missed, |i| states[i].state);
    if action == Action::Leave && mine.is_some_and(|i| states[i].device_id != Some(auth.device_id)) {
        return Err(ApiError::new(ErrorCode::CallStateConflict, "this device is not the one in the call"));
    }
    let next = state::transition(call.status, me, action, joined)
        .map_err(|code| ApiError::new(code, format!("cannot {action:?} a {:?} call as {me:?}", call.status)))?;
    let device = (action == Action::Accept).then_some(auth.device_id);
    store_participant(&mut tx, (organization_id, call_id, auth.user_id), device, next).await?;
    let mut all: Vec<ParticipantState> = states.iter().map(|p| p.state).collect();
    match mine {
        Some(i) => all[i] = next,
        None => all.push(next),
    }
    let by_caller = action == Action::Leave && call.started_by == Some(auth.user_id);
    let (status, reason) = state::settle(call.status, &all, by_caller);
    if status != call.status {
        settle_call(&mut tx, call_id, status, reason).await?;
    }
    let stored = load(&mut tx, call_id).await?;
    tx.commit().await?;
    publish(state, organization_id, &stored).await;
    Ok(axum::Json(stored))
}

/// Stores a participant's new state (inserting the row of a member added after the start):
/// joining records the device, the time and a first heartbeat; leaving, the time.
pub(super) async fn store_participant(
    conn: &mut PgConnection,
    (organization_id, call_id, user_id): (Uuid, Uuid, Uuid),
    device: Option<Uuid>,
    next: ParticipantState,
) -> ApiResult<()> {
    sqlx::query!(
        "INSERT INTO call_participants (organization_id, call_id, user_id, device_id, state, joined_at, left_at, last_seen_at)
         VALUES ($1, $2, $3, $4, $5, CASE WHEN $5 = 'joined' THEN now() END, CASE WHEN $5 = 'left' THEN now() END,
                 CASE WHEN $5 = 'joined' THEN now() END)
         ON CONFLICT (call_id, user_id) DO UPDATE SET
             state = EXCLUDED.state,
             device_id = COALESCE(EXCLUDED.device_id, call_participants.device_id),
             joined_at = COALESCE(EXCLUDED.joined_at, call_participants.joined_at),
             left_at = CASE WHEN EXCLUDED.state = 'joined' THEN NULL ELSE EXCLUDED.left_at END,
             last_seen_at = COALESCE(EXCLUDED.last_seen_at, call_participants.last_seen_at)",
        organization_id,
        call_id,
        user_id,
        device,
        next as ParticipantState
    )
    .execute(&mut *conn)
    .await
    .map_err(busy)?;
    Ok(())
}

/// Stores the call's new status. An ended call leaves nobody behind: its remaining invitations
/// become `missed`, and a caller still waiting (declined, missed) has left.
pub(super) async fn settle_call(
    conn: &mut PgConnection,
    call_id: Uuid,
    status: CallStatus,
    reason: Option<EndReason>,
) -> ApiResult<()> {
    let call = sqlx::query!(
        r#"UPDATE call_sessions SET status = $2,
                answered_at = CASE WHEN $2 = 'active' THEN COALESCE(answered_at, now()) ELSE answered_at END,
                ended_at = CASE WHEN $2 = 'ended' THEN now() END,
                end_reason = $3
          WHERE id = $1
          RETURNING organization_id, conversation_id, media,
                    COALESCE(extract(epoch FROM ended_at - answered_at), 0)::bigint AS "talked_seconds!""#,
        call_id,
        status as CallStatus,
        reason as Option<EndReason>
    )
    .fetch_one(&mut *conn)
    .await?;
    if status == CallStatus::Ended {
        // Whoever is still rung has missed it (a trigger queues their `call.missed` push).
        sqlx::query!(
            "UPDATE call_participants
                SET state = CASE state WHEN 'invited' THEN 'missed' ELSE 'left' END,
                    left_at = CASE state WHEN 'joined' THEN now() ELSE left_at END
              WHERE call_id = $1 AND state IN ('invited', 'joined')",
            call_id
        )
        .execute(&mut *conn)
        .await?;
        let ended = json!({
            "conversation_id": call.conversation_id, "call_id": call_id, "kind": call.media,
            "reason": reason, "duration_seconds": call.talked_seconds,
        });
        events::in_conversation(conn, call.organization_id, call.conversation_id, Event::CallEnded, ended).await?;
    }
    Ok(())
}

macro_rules! call_action {
    ($name:ident, $action:expr, $path:literal, $id:literal, $what:literal) => {
        #[utoipa::path(
            post,
            path = $path,
            tag = "calls",
            operation_id = $id,
            responses(
                (status = 200, description = $what, body = Call),
                (status = 409, description = "`call_ended`, `call_state_conflict`, `call_answered_elsewhere`, `call_full`, `device_busy`", body = crate::error::ErrorBody),
            )
        )]
        #[tracing::instrument(skip_all, fields(%call_id))]
        pub(super) async fn $name(
            State(state): State<AppState>,
            auth: AuthUser,
            ApiPath((organization_id, conversation_id, call_id)): ApiPath<(Uuid, Uuid, Uuid)>,
        ) -> ApiResult<axum::Json<Call>> {
            act(&state, auth, (organization_id, conversation_id, call_id), $action).await
        }
    };
}

call_action!(
    accept,
    Action::Accept,
    "/v1/organizations/{organization_id}/conversations/{conversation_id}/calls/{call_id}/accept",
    "accept_call",
    "Joined on this device: the call is active, the user's other devices stop ringing"
);
call_action!(
    decline,
    Action::Decline,
    "/v1/organizations/{organization_id}/conversations/{conversation_id}/calls/{call_id}/decline",
    "decline_call",
    "Declined: the user's devices stop ringing; a call every callee declined ends"
);
call_action!(
    leave,
    Action::Leave,
    "/v1/organizations/{organization_id}/conversations/{conversation_id}/calls/{call_id}/leave",
    "leave_call",
    "Hung up from the device in the call (the caller's before an answer cancels it); the last one out ends the call"
);

#[utoipa::path(
    post,
    path = "/v1/organizations/{organization_id}/conversations/{conversation_id}/calls/{call_id}/heartbeat",
    tag = "calls",
    operation_id = "call_heartbeat",
    responses(
        (status = 204, description = "Still in the call: send one every 10 s; after `--call-heartbeat-timeout-secs` (default 30) without one the device leaves"),
        (status = 409, description = "`call_state_conflict`: this device is not in the call (it left, or timed out)", body = crate::error::ErrorBody),
    )
)]
pub(super) async fn heartbeat(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiPath((organization_id, conversation_id, call_id)): ApiPath<(Uuid, Uuid, Uuid)>,
) -> ApiResult<StatusCode> {
    let (mut tx, _) = member_tx(&state, auth, organization_id).await?;
    seat(&mut tx, auth.user_id, conversation_id, false).await?;
    let seen = sqlx::query!(
        "UPDATE call_participants p SET last_seen_at = now()
           FROM call_sessions c
          WHERE c.id = p.call_id AND c.id = $1 AND c.conversation_id = $2
            AND p.user_id = $3 AND p.device_id = $4 AND p.state = 'joined'",
        call_id,
        conversation_id,
        auth.user_id,
        auth.device_id
    )
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if seen == 0 {
        load(&mut tx, call_id).await.and_then(|call| match call.conversation_id == conversation_id {
            true => Ok(()),
            false => Err(ApiError::not_found("call")),
        })?;
        return Err(ApiError::new(ErrorCode::CallStateConflict, "this device is not in the call"));
    }
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    post,
    path = "/v1/organizations/{organization_id}/conversations/{conversation_id}/calls/{call_id}/signal",
    tag = "calls",
    operation_id = "send_call_signal",
    request_body = CallSignal,
    responses(
        (status = 202, description = "Relayed to that one device (as `call_signal`), if it is connected: signalling is live only, never stored"),
        (status = 409, description = "`call_state_conflict`: this device or the addressed one is not in the call; `stale_generation` / `unknown_generation`: `key_generation` is not the conversation's current epoch (`details.current_key_generation`)", body = crate::error::ErrorBody),
        (status = 413, description = "`payload_too_large` (16 KiB at most)", body = crate::error::ErrorBody),
        (status = 422, description = "`invalid_mls_message`: not an MLS application message of this group in `key_generation`", body = crate::error::ErrorBody),
    )
)]
#[tracing::instrument(skip_all, fields(%call_id))]
pub(super) async fn signal(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiPath((organization_id, conversation_id, call_id)): ApiPath<(Uuid, Uuid, Uuid)>,
    ApiJson(body): ApiJson<CallSignal>,
) -> ApiResult<StatusCode> {
    if body.ciphertext.len() > MAX_SIGNAL_LEN {
        return Err(ApiError::new(ErrorCode::PayloadTooLarge, format!("a signal is at most {MAX_SIGNAL_LEN} bytes")));
    }
    crate::messages::check_framing(conversation_id, body.key_generation, &body.ciphertext)?;
    let (mut tx, _) = member_tx(&state, auth, organization_id).await?;
    let current_epoch = seat(&mut tx, auth.user_id, conversation_id, false).await?.current_key_generation;
    let call = load(&mut tx, call_id).await?;
    tx.commit().await?;
    if call.conversation_id != conversation_id {
        return Err(ApiError::not_found("call"));
    }
    let joined = |device: Uuid| {
        call.participants.iter().find(|p| p.state == ParticipantState::Joined && p.device_id == Some(device))
    };
    let (Some(_), Some(target)) = (joined(auth.device_id), joined(body.to_device_id)) else {
        return Err(ApiError::new(
            ErrorCode::CallStateConflict,
            "signals go from a device in the call to another device in the call",
        ));
    };
    if body.to_device_id == auth.device_id {
        return Err(ApiError::new(ErrorCode::CallStateConflict, "a device does not signal itself"));
    }
    check_signal_epoch(current_epoch, body.key_generation)?;
    let frame = ServerFrame::CallSignal {
        conversation_id,
        call_id,
        from_user_id: auth.user_id,
        from_device_id: auth.device_id,
        key_generation: body.key_generation,
        ciphertext: body.ciphertext,
    };
    let event = LiveEvent::for_device(organization_id, conversation_id, (target.user_id, body.to_device_id), frame);
    realtime::publish(&state, event).await;
    Ok(StatusCode::ACCEPTED)
}

/// A signal is sealed in the group's current epoch, as a message is: an older epoch is a sender
/// that missed a commit (it syncs and seals again), a later one was never opened. Unlike a
/// message, a signal is not held back while a removal waits for its commit: it goes to one
/// device in the call, never to the member being removed.
fn check_signal_epoch(current: i32, generation: i32) -> ApiResult<()> {
    let details = crate::error::ErrorDetails::KeyGeneration { current_key_generation: current };
    let code = match generation.cmp(&current) {
        std::cmp::Ordering::Equal => return Ok(()),
        std::cmp::Ordering::Less => ErrorCode::StaleGeneration,
        std::cmp::Ordering::Greater => ErrorCode::UnknownGeneration,
    };
    Err(ApiError::new(code, format!("signals are sealed in the conversation's current epoch, {current}"))
        .with_details(details))
}
