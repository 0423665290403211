use conclave_resources::bot::{BotAgentSpec, BotScope};
use conclave_resources::organization::{OrganizationLimits, OrganizationSpec, SecurityPolicy};
use conclave_resources::webhook::WebhookEndpointSpec;
use conclave_resources::workspace::WorkspaceSpec;
use conclave_resources::{BotAgent, DeletionPolicy, LocalRef, Organization, WebhookEndpoint, Workspace};
use conclave_testkit::TestDb;

pub const NS: &str = "tenants";

pub async fn db() -> TestDb {
    TestDb::new().await.expect("a test database (is the stack up? scripts/stack.sh up)")
}

pub fn mk_org(name: &str, slug: &str, policy: DeletionPolicy) -> Organization {
    let mut org = Organization::new(
        name,
        OrganizationSpec {
            slug: slug.into(),
            display_name: format!("{slug} Inc."),
            limits: Some(OrganizationLimits {
                max_members: Some(100),
                max_workspaces: Some(10),
                attachment_storage: Some("1Gi".into()),
            }),
            message_retention_days: Some(90),
            security: Some(SecurityPolicy {
                require_totp: true,
                allowed_email_domains: vec![format!("{slug}.example")],
                session_lifetime_seconds: Some(86_400),
            }),
            initial_owners: vec![],
            legal_holds: vec![],
            deletion_policy: policy,
        },
    );
    org.metadata.namespace = Some(NS.into());
    org
}

pub fn mk_workspace(name: &str, org: &str, channels: &[&str], policy: DeletionPolicy) -> Workspace {
    let mut ws = Workspace::new(
        name,
        WorkspaceSpec {
            organization_ref: LocalRef { name: org.into() },
            slug: name.into(),
            display_name: format!("Workspace {name}"),
            message_retention_days: Some(30),
            guest_access: false,
            default_channels: channels.iter().map(|c| (*c).to_owned()).collect(),
            deletion_policy: policy,
        },
    );
    ws.metadata.namespace = Some(NS.into());
    ws
}

pub fn mk_webhook(name: &str, workspace: &str) -> WebhookEndpoint {
    let mut endpoint = WebhookEndpoint::new(
        name,
        WebhookEndpointSpec {
            workspace_ref: Some(LocalRef { name: workspace.into() }),
            organization_ref: None,
            url: "https://hooks.example/conclave".into(),
            allow_insecure_http: false,
            event_types: vec!["message.created".into(), "member.joined".into()],
            signing_secret_ref: None,
            enabled: true,
            secret_overlap_seconds: 3600,
        },
    );
    endpoint.metadata.namespace = Some(NS.into());
    endpoint
}

pub fn mk_bot(name: &str, workspace: &str) -> BotAgent {
    let mut bot = BotAgent::new(
        name,
        BotAgentSpec {
            workspace_ref: LocalRef { name: workspace.into() },
            display_name: "Helper".into(),
            scopes: vec![BotScope::MessagesRead, BotScope::MessagesWrite],
            enabled: true,
            token_overlap_seconds: 3600,
            deployment: None,
        },
    );
    bot.metadata.namespace = Some(NS.into());
    bot
}
