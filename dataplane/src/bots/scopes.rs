//! What a bot's session may call: the one declaration of which endpoint needs which BotAgent
//! scope. [`crate::context::session::AuthUser`] applies it to every request of a bot's session,
//! and [`crate::openapi`] documents the 403 each operation can give from it, so the rule, the
//! enforcement and the document cannot drift.
//!
//! Default deny: an endpoint that is not listed here answers a bot 403 `bot_not_allowed`
//! (accounts, contacts, taking part in calls, invitations, administration, compliance,
//! webhooks); one that is listed with a scope the BotAgent does not grant answers 403
//! `bot_scope_missing`, naming it.
//!
//! Call events are `calls:read`: the conversation's call records here, and the `call_updated` and
//! `call_signal` frames on the bot's WebSocket, which [`receives_call_events`] holds back from a
//! bot without it. Pinning and unpinning is `pins:write`; reading the pins is `messages:read`.
//!
//! Reading a conversation's messages needs `messages:read`, and so does everything that hands a
//! device key material: uploading key packages (without them nobody can add the bot's device to
//! a conversation's MLS group), fetching a Welcome, commits or group info. A bot without
//! `messages:read` therefore never holds a conversation's keys, even when it is a member.

use crate::error::{ApiError, ErrorCode};
use axum::http::Method;

/// What an endpoint asks of a bot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Any bot: its own session, device, identity key and organizations.
    Open,
    /// A bot holding this scope.
    Scope(&'static str),
    /// No bot.
    Closed,
}

const ORG: &str = "/v1/organizations/{organization_id}";

/// Pinning and unpinning messages.
pub const PINS_WRITE: &str = "pins:write";
/// A conversation's call records, and its call events on the WebSocket.
pub const CALLS_READ: &str = "calls:read";

/// `(method, path template after the organization prefix or absolute, access)`.
const TABLE: &[(&str, &str, Access)] = {
    use Access::{Open, Scope};
    const READ: Access = Scope("messages:read");
    const WRITE: Access = Scope("messages:write");
    &[
        // The bot's own session, devices and identity.
        ("GET", "/v1/me", Open),
        ("POST", "/v1/auth/logout", Open),
        ("GET", "/v1/devices", Open),
        ("POST", "/v1/devices", Open),
        ("DELETE", "/v1/devices/{device_id}", Open),
        ("GET", "/v1/identity", Open),
        ("PUT", "/v1/identity", Open),
        ("GET", "/v1/key-packages", Open),
        ("GET", "/v1/profile", Open),
        ("GET", "/v1/organizations", Open),
        ("GET", "{org}", Open),
        // Key material and reading.
        ("POST", "/v1/key-packages", READ),
        ("GET", "/v1/ws", READ),
        ("POST", "{org}/key-packages/claim", READ),
        ("GET", "{org}/unread", READ),
        ("GET", "{org}/members/{user_id}/identity", READ),
        ("GET", "{org}/conversations/{conversation_id}", READ),
        ("GET", "{org}/conversations/{conversation_id}/messages", READ),
        ("GET", "{org}/conversations/{conversation_id}/welcome", READ),
        ("GET", "{org}/conversations/{conversation_id}/commits", READ),
        ("POST", "{org}/conversations/{conversation_id}/commits", READ),
        ("GET", "{org}/conversations/{conversation_id}/group-info", READ),
        ("GET", "{org}/conversations/{conversation_id}/proposals", READ),
        ("GET", "/v1/mls/delivery-service", READ),
        ("GET", "{org}/conversations/{conversation_id}/devices", READ),
        ("GET", "{org}/conversations/{conversation_id}/messages/{message_id}/reactions", READ),
        ("GET", "{org}/conversations/{conversation_id}/pins", READ),
        ("POST", "{org}/conversations/{conversation_id}/receipts", READ),
        // Writing.
        ("POST", "{org}/conversations/{conversation_id}/messages", WRITE),
        ("PATCH", "{org}/conversations/{conversation_id}/messages/{message_id}", WRITE),
        ("DELETE", "{org}/conversations/{conversation_id}/messages/{message_id}", WRITE),
        ("POST", "{org}/conversations/{conversation_id}/messages/{message_id}/mentions", WRITE),
        ("POST", "{org}/conversations/{conversation_id}/pins", Scope(PINS_WRITE)),
        ("DELETE", "{org}/conversations/{conversation_id}/pins/{message_id}", Scope(PINS_WRITE)),
        ("POST", "{org}/conversations/{conversation_id}/messages/{message_id}/reactions", Scope("reactions:write")),
        (
            "DELETE",
            "{org}/conversations/{conversation_id}/messages/{message_id}/reactions/{value_tag}",
            Scope("reactions:write"),
        ),
        // Conversations and people.
        ("GET", "{org}/conversations", Scope("conversations:read")),
        ("POST", "{org}/workspaces/{workspace_id}/conversations", Scope("conversations:write")),
        ("POST", "{org}/conversations/{conversation_id}/members", Scope("conversations:write")),
        ("DELETE", "{org}/conversations/{conversation_id}/members/{user_id}", Scope("conversations:write")),
        ("GET", "{org}/members", Scope("members:read")),
        ("GET", "{org}/members/{user_id}/profile", Scope("members:read")),
        ("GET", "{org}/members/{user_id}/avatar", Scope("members:read")),
        ("GET", "{org}/workspaces", Scope("members:read")),
        ("GET", "{org}/workspaces/{workspace_id}", Scope("members:read")),
        ("GET", "{org}/workspaces/{workspace_id}/members", Scope("members:read")),
        ("GET", "{org}/presence", Scope("members:read")),
        // Calls: their records (and, on the socket, their events); never taking part.
        ("GET", "{org}/conversations/{conversation_id}/calls", Scope(CALLS_READ)),
        // Files.
        ("POST", "{org}/conversations/{conversation_id}/attachments", Scope("files:write")),
        ("GET", "{org}/conversations/{conversation_id}/attachments/{attachment_id}", Scope("files:read")),
    ]
};

/// What `method` on the path template `path` asks of a bot.
pub fn access(method: &Method, path: &str) -> Access {
    let relative = path.strip_prefix(ORG).map(|rest| ("{org}", rest));
    TABLE
        .iter()
        .find(|(m, p, _)| {
            *m == method.as_str()
                && match (p.strip_prefix("{org}"), relative) {
                    (Some(tail), Some((_, rest))) => tail == rest,
                    (None, _) => *p == path,
                    (Some(_), None) => false,
                }
        })
        .map_or(Access::Closed, |(_, _, access)| *access)
}

/// Refuses a bot holding `scopes` the call `method path` unless its scopes allow it.
pub fn authorize(scopes: &[String], method: &Method, path: &str) -> Result<(), ApiError> {
    match access(method, path) {
        Access::Open => Ok(()),
        Access::Scope(scope) if scopes.iter().any(|s| s == scope) => Ok(()),
        Access::Scope(scope) => Err(ApiError::new(
            ErrorCode::BotScopeMissing,
            format!("this bot lacks the scope `{scope}`; grant it in the BotAgent's spec.scopes"),
        )),
        Access::Closed => Err(ApiError::new(ErrorCode::BotNotAllowed, "bots cannot use this endpoint")),
    }
}

/// Whether a session with these bot scopes (`None`: a person's session) is sent call events
/// (`call_updated`, `call_signal`) on its WebSocket.
pub fn receives_call_events(scopes: Option<&[String]>) -> bool {
    scopes.is_none_or(|scopes| scopes.iter().any(|s| s == CALLS_READ))
}

/// The error code a bot can get from `method path`, for the API document.
pub fn refusal(method: &Method, path: &str) -> Option<ErrorCode> {
    match access(method, path) {
        Access::Open => None,
        Access::Scope(_) => Some(ErrorCode::BotScopeMissing),
        Access::Closed => Some(ErrorCode::BotNotAllowed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scopes(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn every_scope_in_the_table_is_one_a_bot_agent_can_hold() {
        for (_, _, access) in TABLE {
            if let Access::Scope(scope) = access {
                assert!(conclave_protocol::bots::SCOPES.contains(scope), "{scope}");
            }
        }
    }

    #[test]
    fn organization_routes_match_by_their_template_and_unlisted_ones_are_closed() {
        let send = "/v1/organizations/{organization_id}/conversations/{conversation_id}/messages";
        assert_eq!(access(&Method::POST, send), Access::Scope("messages:write"));
        assert_eq!(access(&Method::GET, send), Access::Scope("messages:read"));
        assert_eq!(access(&Method::GET, "/v1/organizations/{organization_id}"), Access::Open);
        assert_eq!(access(&Method::GET, "/v1/me"), Access::Open);
        assert_eq!(access(&Method::POST, "/v1/organizations/{organization_id}/invitations"), Access::Closed);
        assert_eq!(access(&Method::GET, "/v1/contacts"), Access::Closed);
        assert_eq!(access(&Method::GET, "/v1/organizations/abc/conversations/def/messages"), Access::Closed);
        assert_eq!(access(&Method::GET, "{org}"), Access::Closed, "the table's shorthand is no path");
    }

    #[test]
    fn a_missing_scope_is_named_and_a_closed_endpoint_refused() {
        let send = "/v1/organizations/{organization_id}/conversations/{conversation_id}/messages";
        let err = authorize(&scopes(&["messages:read"]), &Method::POST, send).expect_err("no write scope");
        assert_eq!(err.code, ErrorCode::BotScopeMissing);
        assert!(err.message.contains("messages:write"), "{}", err.message);
        assert!(authorize(&scopes(&["messages:write"]), &Method::POST, send).is_ok());
        let err =
            authorize(&scopes(&conclave_protocol::bots::SCOPES), &Method::GET, "/v1/contacts").expect_err("closed");
        assert_eq!(err.code, ErrorCode::BotNotAllowed);
        assert!(authorize(&[], &Method::GET, "/v1/me").is_ok());
    }

    #[test]
    fn pins_and_call_events_have_scopes_of_their_own() {
        let conversation = "/v1/organizations/{organization_id}/conversations/{conversation_id}";
        assert_eq!(access(&Method::POST, &format!("{conversation}/pins")), Access::Scope("pins:write"));
        assert_eq!(
            access(&Method::DELETE, &format!("{conversation}/pins/{{message_id}}")),
            Access::Scope("pins:write")
        );
        assert_eq!(access(&Method::GET, &format!("{conversation}/pins")), Access::Scope("messages:read"));
        assert_eq!(access(&Method::GET, &format!("{conversation}/calls")), Access::Scope("calls:read"));
        assert_eq!(
            access(&Method::POST, &format!("{conversation}/calls")),
            Access::Closed,
            "bots take no part in calls"
        );
        assert!(receives_call_events(None), "people always do");
        assert!(!receives_call_events(Some(&scopes(&["messages:read"]))));
        assert!(receives_call_events(Some(&scopes(&["messages:read", "calls:read"]))));
    }
}
