-- Conclave schema, part 5: what the data-plane role may do, and row-level security.
--
-- Row-level security is the second wall behind the application's own checks: even a handler
-- that forgets a `WHERE organization_id = ...` cannot read or write another tenant's rows,
-- because the `conclave_app` role only ever sees rows of the organization set on its transaction.
-- The owner role (migrations, operator) owns the tables and is not subject to these policies.

-- Global tables: accounts, credentials, devices and contacts belong to people, not tenants.
GRANT SELECT, INSERT, UPDATE, DELETE ON
    user_accounts, user_profiles, user_security_states,
    email_confirmation_tokens, password_reset_tokens, totp_secrets, totp_recovery_codes,
    devices, session_tokens, refresh_tokens, push_subscriptions,
    contact_links, contact_invitations, privacy_requests
TO conclave_app;

-- Tenant tables the data plane reads and writes.
GRANT SELECT, INSERT, UPDATE, DELETE ON
    organization_memberships, organization_invitations, workspace_memberships,
    conversations, conversation_members, conversation_encryption_keys, member_key_wraps, conversation_invites,
    messages, message_deliveries, message_attachments, message_reactions, message_pins,
    call_sessions, call_participants, notification_preferences, outbound_notifications
TO conclave_app;

-- Tenant tables the operator owns: the data plane reads them and updates only what it measures.
GRANT SELECT ON organizations, workspaces, webhook_endpoints, bot_agents TO conclave_app;
GRANT UPDATE (attachment_bytes_used) ON organizations TO conclave_app;
GRANT UPDATE (last_delivery_at, last_delivery_status, last_delivery_error, consecutive_failures) ON webhook_endpoints TO conclave_app;

-- The audit trail: insert and read, never change.
GRANT SELECT, INSERT ON audit_logs TO conclave_app;
REVOKE UPDATE, DELETE, TRUNCATE ON audit_logs FROM conclave_app;

-- One policy shape for every table that carries organization_id.
DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY[
        'organization_invitations', 'workspaces', 'workspace_memberships',
        'conversations', 'conversation_members', 'conversation_encryption_keys', 'member_key_wraps',
        'conversation_invites', 'messages', 'message_deliveries', 'message_attachments',
        'message_reactions', 'message_pins', 'call_sessions', 'call_participants',
        'webhook_endpoints', 'bot_agents', 'outbound_notifications'
    ] LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format(
            'CREATE POLICY tenant_isolation ON %I TO conclave_app
                 USING (organization_id = conclave_current_organization())
                 WITH CHECK (organization_id = conclave_current_organization())', t);
    END LOOP;
END
$$;

-- A person sees their own memberships in every organization (to list where they belong),
-- and every membership of the organization set on the transaction.
ALTER TABLE organization_memberships ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON organization_memberships TO conclave_app
    USING (organization_id = conclave_current_organization() OR user_id = conclave_current_user())
    WITH CHECK (organization_id = conclave_current_organization());

-- An organization is visible when it is the one set, or when the current user belongs to it.
ALTER TABLE organizations ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON organizations TO conclave_app
    USING (id = conclave_current_organization()
           OR EXISTS (SELECT 1 FROM organization_memberships m
                       WHERE m.organization_id = organizations.id AND m.user_id = conclave_current_user()))
    WITH CHECK (id = conclave_current_organization());

-- Account-wide preferences belong to their user; scoped ones to their organization.
ALTER TABLE notification_preferences ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON notification_preferences TO conclave_app
    USING ((organization_id IS NULL AND user_id = conclave_current_user())
           OR organization_id = conclave_current_organization())
    WITH CHECK ((organization_id IS NULL AND user_id = conclave_current_user())
                OR organization_id = conclave_current_organization());

-- Account-level audit entries (organization_id NULL: logins, password changes) are readable by
-- their actor; organization entries by that organization's context.
ALTER TABLE audit_logs ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON audit_logs TO conclave_app
    USING (organization_id = conclave_current_organization()
           OR (organization_id IS NULL AND actor_user_id = conclave_current_user()))
    WITH CHECK (organization_id IS NULL OR organization_id = conclave_current_organization());

GRANT EXECUTE ON FUNCTION conclave_uuid_v7(), conclave_current_organization(), conclave_current_user() TO conclave_app;
