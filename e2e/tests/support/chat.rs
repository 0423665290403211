//! The end users' side: accounts, invitations and an encrypted conversation through the SDK,
//! against the data plane the operator configured.

use super::Scenario;
use super::signin::{Person, sign_up};
use base64::Engine;
use conclave_client::messenger::{ListenEvent, ListenerOptions};
use conclave_protocol::api::{ConversationKind, CreateConversation};
use sha2::{Digest, Sha256};
use std::time::Duration;
use uuid::Uuid;

impl Scenario {
    async fn mailed_token(&self, to: &str, subject: &str, prefix: &str, timeout: Duration) -> Option<String> {
        self.mail.wait_for(to, subject, timeout).await.and_then(|m| m.token(prefix))
    }

    async fn person(&self, email: &str, name: &str) -> Person {
        let person = sign_up(&self.base, &self.mail, email, name, self.home.join(name)).await;
        eprintln!("[e2e]     {email} registered, confirmed by email, signed in with a new device {}", person.device_id);
        person
    }

    pub async fn register_people(&mut self) {
        let alice = self.person("alice@example.org", "alice").await;
        let bob = self.person("bob@example.org", "bob").await;
        self.people = vec![alice, bob];
    }

    /// An owner invitation the operator created from `initialOwners`: the data plane emails it
    /// with a fresh token (its outbox worker, for people who had an account when the operator
    /// created the invitation). If this data plane has no outbox worker yet, the test stands in
    /// for it by minting a token and storing its digest, the exact write the worker does, and
    /// says so.
    async fn owner_invitation_token(&self, org: Uuid, email: &str) -> String {
        if let Some(token) = self.mailed_token(email, "invited", "cvi_", Duration::from_secs(20)).await {
            eprintln!("[e2e]     the data plane emailed {email} the owner invitation the operator created");
            return token;
        }
        eprintln!(
            "[e2e]     NOTE: no owner-invitation email for {email} (this data plane has no outbox worker); minting the token as the worker would"
        );
        let random = [Uuid::new_v4().into_bytes(), Uuid::new_v4().into_bytes()].concat();
        let token = format!("cvi_{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random));
        sqlx::query(
            "UPDATE organization_invitations SET token_hash = $3 WHERE organization_id = $1 AND email = $2 AND accepted_at IS NULL",
        )
        .bind(org)
        .bind(email)
        .bind(Sha256::digest(token.as_bytes()).to_vec())
        .execute(&self.stack.db.owner)
        .await
        .expect("stand-in for the outbox worker");
        token
    }

    pub async fn people_chat(&mut self) {
        let [alice, bob] = &self.people[..] else { panic!("two people") };
        let org = self.org_id("acme");
        let workspace = self.workspace_id("acme-general");

        for p in [alice, bob] {
            let token = self.owner_invitation_token(org, &p.email).await;
            p.messenger.client().accept_organization_invitation(org, &token).await.expect("accept the invitation");
            eprintln!("[e2e]     {} accepted the owner invitation", p.email);
        }
        for p in [alice, bob] {
            p.messenger.client().join_workspace(org, workspace).await.expect("join");
        }
        let listed = bob.messenger.client().workspaces(org).await.expect("workspaces");
        assert!(listed.iter().any(|w| w.id == workspace && w.display_name == "General"), "{listed:?}");

        let body = CreateConversation { kind: ConversationKind::Group, name: None, member_user_ids: vec![bob.user_id] };
        let conversation =
            alice.messenger.client().create_conversation(org, workspace, &body).await.expect("create").id;
        let mut bob_listens = bob.messenger.listen(org, &[], ListenerOptions::default()).await.expect("listen");
        alice
            .messenger
            .send_text(org, conversation, "hello bob, from a cluster-provisioned workspace")
            .await
            .expect("send");
        let received = tokio::time::timeout(Duration::from_secs(15), async {
            loop {
                if let ListenEvent::Message(m) = bob_listens.next().await.expect("bob's socket") {
                    return m;
                }
            }
        })
        .await
        .expect("bob receives alice's message within 15 s");
        assert_eq!(received.body.text(), Some("hello bob, from a cluster-provisioned workspace"));
        assert_eq!(received.sender_user_id, Some(alice.user_id));
        eprintln!("[e2e]     bob decrypted: {:?}", received.body.text().unwrap_or_default());
        bob.messenger.send_text(org, conversation, "hi alice, loud and clear").await.expect("reply");
        let history = alice.messenger.history(org, conversation, 10).await.expect("history");
        let texts: Vec<_> = history.iter().filter_map(|m| m.body.text().map(str::to_owned)).collect();
        assert_eq!(texts, ["hello bob, from a cluster-provisioned workspace", "hi alice, loud and clear"]);
        eprintln!("[e2e]     alice decrypted the history: {texts:?}");
        bob_listens.close().await;
        self.conversation = Some((org, conversation));

        // PostgreSQL holds ciphertext only.
        let stored: Vec<Vec<u8>> = sqlx::query_scalar("SELECT ciphertext FROM messages WHERE conversation_id = $1")
            .bind(conversation)
            .fetch_all(&self.stack.db.owner)
            .await
            .expect("messages");
        assert_eq!(stored.len(), 2);
        for c in stored {
            assert!(!c.windows(5).any(|w| w == b"hello" || w == b"alice"), "no plaintext at rest");
        }
    }
}

impl Scenario {
    /// The bot signs in to the data plane with the token the operator put in its Secret.
    pub async fn bot_authenticates(&self) {
        let token = self.secret_value("helper-bot-token", "token");
        let http = reqwest::Client::new();
        let response =
            http.get(format!("{}/v1/bot", self.base)).bearer_auth(token.trim()).send().await.expect("request");
        assert_eq!(response.status(), 200, "the bot's token is accepted");
        let me: serde_json::Value = response.json().await.expect("json");
        assert_eq!(me["organization_id"], serde_json::json!(self.org_id("acme")));
        assert_eq!(me["display_name"], "Helper");
        assert_eq!(me["previous_token"], false);
        let response =
            http.get(format!("{}/v1/bot", self.base)).bearer_auth("cbot_not-the-token").send().await.expect("request");
        assert_eq!(response.status(), 401);
        eprintln!("[e2e]     the bot authenticated with the token from its Secret (scopes {})", me["scopes"]);
    }
}
