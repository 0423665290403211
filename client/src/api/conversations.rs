//! Conversations, their keys, messages, receipts, members and invites (organization-scoped).

use conclave_protocol::api::{
    AcceptInvite, AddMember, Conversation, CreateConversation, CreateInvite, EditMessage, Invite, Member, MemberDevice,
    Message, MessagePage, SendMessage, UpdateReceipts,
};
use reqwest::Method;
use uuid::Uuid;

use super::{Call, Client, Result};

/// Which page of a conversation's messages to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageQuery {
    /// Messages with `seq > after_seq`, oldest first.
    After {
        /// The last sequence number already seen (0 for the beginning).
        after_seq: i64,
        /// At most this many.
        limit: u32,
    },
    /// Messages with `seq < before_seq`, newest first.
    Before {
        /// The sequence number to stop before.
        before_seq: i64,
        /// At most this many.
        limit: u32,
    },
}

pub(super) fn conversation_path(org: Uuid, conversation: Uuid) -> String {
    format!("/v1/organizations/{org}/conversations/{conversation}")
}

impl Client {
    /// `POST /v1/organizations/{org}/workspaces/{ws}/conversations`.
    pub async fn create_conversation(
        &self,
        org: Uuid,
        workspace: Uuid,
        body: &CreateConversation,
    ) -> Result<Conversation> {
        self.post(&format!("/v1/organizations/{org}/workspaces/{workspace}/conversations"), body).await
    }

    /// `GET /v1/organizations/{org}/conversations`: the caller's conversations.
    pub async fn conversations(&self, org: Uuid) -> Result<Vec<Conversation>> {
        self.get(format!("/v1/organizations/{org}/conversations")).await
    }

    /// `GET /v1/organizations/{org}/conversations/{c}`.
    pub async fn conversation(&self, org: Uuid, conversation: Uuid) -> Result<Conversation> {
        self.get(conversation_path(org, conversation)).await
    }

    /// `GET .../conversations/{c}/devices`: the active devices of the current members, which a
    /// new generation must be wrapped for.
    pub async fn conversation_devices(&self, org: Uuid, conversation: Uuid) -> Result<Vec<MemberDevice>> {
        self.get(format!("{}/devices", conversation_path(org, conversation))).await
    }

    /// `POST .../conversations/{c}/messages`: stores an MLS application message (or returns the one
    /// already stored under the same `client_message_id`).
    pub async fn send_message(&self, org: Uuid, conversation: Uuid, body: &SendMessage) -> Result<Message> {
        self.post(&format!("{}/messages", conversation_path(org, conversation)), body).await
    }

    /// `GET .../conversations/{c}/messages`: one page.
    pub async fn messages(&self, org: Uuid, conversation: Uuid, query: MessageQuery) -> Result<MessagePage> {
        let query = match query {
            MessageQuery::After { after_seq, limit } => {
                vec![("after_seq", after_seq.to_string()), ("limit", limit.to_string())]
            }
            MessageQuery::Before { before_seq, limit } => {
                vec![("before_seq", before_seq.to_string()), ("limit", limit.to_string())]
            }
        };
        self.get_query(format!("{}/messages", conversation_path(org, conversation)), query).await
    }

    /// `PATCH .../messages/{m}`: replaces a message's content (its sender only).
    pub async fn edit_message(
        &self,
        org: Uuid,
        conversation: Uuid,
        message: Uuid,
        body: &EditMessage,
    ) -> Result<Message> {
        let path = format!("{}/messages/{message}", conversation_path(org, conversation));
        let call = Call::with_body(Method::PATCH, &path, body, true)?;
        super::decode(&self.execute(call).await?)
    }

    /// `DELETE .../messages/{m}`.
    pub async fn delete_message(&self, org: Uuid, conversation: Uuid, message: Uuid) -> Result<()> {
        let path = format!("{}/messages/{message}", conversation_path(org, conversation));
        self.send_ignoring_body(Call::new(Method::DELETE, path, true)).await
    }

    /// `POST .../conversations/{c}/receipts`: moves the caller's delivered and read cursors.
    pub async fn update_receipts(&self, org: Uuid, conversation: Uuid, body: &UpdateReceipts) -> Result<Member> {
        self.post(&format!("{}/receipts", conversation_path(org, conversation)), body).await
    }

    /// `POST .../conversations/{c}/members`.
    pub async fn add_member(&self, org: Uuid, conversation: Uuid, user_id: Uuid) -> Result<()> {
        let call =
            Call::post(&format!("{}/members", conversation_path(org, conversation)), &AddMember { user_id }, true)?;
        self.send_ignoring_body(call).await
    }

    /// `DELETE .../conversations/{c}/members/{user}`: removes a member (oneself: leaves).
    pub async fn remove_member(&self, org: Uuid, conversation: Uuid, user_id: Uuid) -> Result<()> {
        let path = format!("{}/members/{user_id}", conversation_path(org, conversation));
        self.send_ignoring_body(Call::new(Method::DELETE, path, true)).await
    }

    /// `POST .../conversations/{c}/invites`.
    pub async fn create_invite(&self, org: Uuid, conversation: Uuid, body: &CreateInvite) -> Result<Invite> {
        self.post(&format!("{}/invites", conversation_path(org, conversation)), body).await
    }

    /// `POST /v1/organizations/{org}/conversation-invites/accept`.
    pub async fn accept_conversation_invite(&self, org: Uuid, token: &str) -> Result<Conversation> {
        self.post(
            &format!("/v1/organizations/{org}/conversation-invites/accept"),
            &AcceptInvite { token: token.to_owned() },
        )
        .await
    }
}
