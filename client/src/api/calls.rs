//! Calls (docs/calls.md): the lifecycle routes of a conversation's calls, the device-to-device
//! signal relay, and TURN credentials.

use conclave_protocol::calls::{Call as CallRecord, CallKind, CallSignal, StartCall, TurnCredentials};
use reqwest::Method;
use uuid::Uuid;

use super::conversations::conversation_path;
use super::{Call, Client, Result};

fn calls_path(org: Uuid, conversation: Uuid) -> String {
    format!("{}/calls", conversation_path(org, conversation))
}

fn call_path(org: Uuid, conversation: Uuid, call: Uuid, action: &str) -> String {
    format!("{}/{call}/{action}", calls_path(org, conversation))
}

impl Client {
    /// `POST .../conversations/{c}/calls`: starts a call; this device joins it, every other
    /// member is invited (their devices ring).
    pub async fn start_call(&self, org: Uuid, conversation: Uuid, kind: CallKind) -> Result<CallRecord> {
        self.post(&calls_path(org, conversation), &StartCall { kind }).await
    }

    /// `GET .../conversations/{c}/calls`: the last 100 calls, newest first.
    pub async fn calls(&self, org: Uuid, conversation: Uuid) -> Result<Vec<CallRecord>> {
        self.get(calls_path(org, conversation)).await
    }

    /// `GET .../conversations/{c}/calls?before_call_id=&limit=`: at most `limit` (1 to 200)
    /// calls older than `before_call_id` (the newest when `None`), newest first: the record's
    /// next page.
    pub async fn calls_before(
        &self,
        org: Uuid,
        conversation: Uuid,
        before_call_id: Option<Uuid>,
        limit: u32,
    ) -> Result<Vec<CallRecord>> {
        let mut query = vec![("limit", limit.to_string())];
        query.extend(before_call_id.map(|id| ("before_call_id", id.to_string())));
        self.get_query(calls_path(org, conversation), query).await
    }

    /// `POST .../calls/{call}/accept`: joins on this device.
    pub async fn accept_call(&self, org: Uuid, conversation: Uuid, call: Uuid) -> Result<CallRecord> {
        self.act(call_path(org, conversation, call, "accept")).await
    }

    /// `POST .../calls/{call}/decline`: refuses a ringing call.
    pub async fn decline_call(&self, org: Uuid, conversation: Uuid, call: Uuid) -> Result<CallRecord> {
        self.act(call_path(org, conversation, call, "decline")).await
    }

    /// `POST .../calls/{call}/leave`: hangs up (the caller's, before an answer, cancels).
    pub async fn leave_call(&self, org: Uuid, conversation: Uuid, call: Uuid) -> Result<CallRecord> {
        self.act(call_path(org, conversation, call, "leave")).await
    }

    /// `POST .../calls/{call}/heartbeat`: keeps this device in the call.
    pub async fn call_heartbeat(&self, org: Uuid, conversation: Uuid, call: Uuid) -> Result<()> {
        self.send_ignoring_body(Call::new(Method::POST, call_path(org, conversation, call, "heartbeat"), true)).await
    }

    /// `POST .../calls/{call}/signal`: relays a sealed signal to one device in the call.
    pub async fn send_call_signal(&self, org: Uuid, conversation: Uuid, call: Uuid, body: &CallSignal) -> Result<()> {
        self.send_ignoring_body(Call::post(&call_path(org, conversation, call, "signal"), body, true)?).await
    }

    /// `POST /v1/calls/turn-credentials`: short-lived credentials for the deployment's TURN
    /// servers (503 `turn_not_configured` without any).
    pub async fn turn_credentials(&self) -> Result<TurnCredentials> {
        super::decode(&self.execute(Call::new(Method::POST, "/v1/calls/turn-credentials".into(), true)).await?)
    }

    /// A bodiless `POST` answered with the call.
    async fn act(&self, path: String) -> Result<CallRecord> {
        super::decode(&self.execute(Call::new(Method::POST, path, true)).await?)
    }
}
