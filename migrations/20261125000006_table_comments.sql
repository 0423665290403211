-- Conclave schema, part 6: every table says which domain it belongs to and what it holds.
-- `cargo xtask schema-docs` groups the generated diagrams by the "Domain:" prefix, so the
-- diagrams come from the database itself and cannot drift from it.

COMMENT ON TABLE organizations IS 'Domain: Tenancy. A tenant: limits, retention and security policy.';
COMMENT ON TABLE organization_memberships IS 'Domain: Tenancy. A person''s role in an organization.';
COMMENT ON TABLE organization_invitations IS 'Domain: Tenancy. An emailed invitation to join an organization with a role.';
COMMENT ON TABLE workspaces IS 'Domain: Tenancy. A space inside an organization that holds conversations.';
COMMENT ON TABLE workspace_memberships IS 'Domain: Tenancy. Who has joined a workspace.';
COMMENT ON TABLE user_accounts IS 'Domain: Users. A login: email and argon2id password hash.';
COMMENT ON TABLE user_profiles IS 'Domain: Users. How a person presents themself.';
COMMENT ON TABLE user_security_states IS 'Domain: Users. Failed attempts, lockout and login times.';
COMMENT ON TABLE email_confirmation_tokens IS 'Domain: Security. Single-use email confirmation tokens (hashed).';
COMMENT ON TABLE password_reset_tokens IS 'Domain: Security. Single-use password reset tokens (hashed).';
COMMENT ON TABLE refresh_tokens IS 'Domain: Security. Rotating refresh tokens (hashed) grouped in families.';
COMMENT ON TABLE totp_secrets IS 'Domain: Security. A sealed RFC 6238 secret and the last accepted step.';
COMMENT ON TABLE totp_recovery_codes IS 'Domain: Security. Single-use TOTP recovery codes (hashed).';
COMMENT ON TABLE devices IS 'Domain: Devices. A client device and its public keys.';
COMMENT ON TABLE session_tokens IS 'Domain: Devices. A login session bound to one device (hashed).';
COMMENT ON TABLE push_subscriptions IS 'Domain: Devices. A Web Push subscription of a device.';
COMMENT ON TABLE contact_links IS 'Domain: Contacts. An accepted or blocked contact, one row per direction.';
COMMENT ON TABLE contact_invitations IS 'Domain: Contacts. An invitation to become contacts, by email or code.';
COMMENT ON TABLE conversations IS 'Domain: Conversations. A direct, group or channel conversation and its key generation.';
COMMENT ON TABLE conversation_members IS 'Domain: Conversations. A member of a conversation and their receipt cursors.';
COMMENT ON TABLE conversation_encryption_keys IS 'Domain: Conversations. A key generation of a conversation (no key material).';
COMMENT ON TABLE member_key_wraps IS 'Domain: Conversations. A generation''s key, HPKE-wrapped for one device.';
COMMENT ON TABLE conversation_invites IS 'Domain: Conversations. A link to join a conversation, with expiry and use limit.';
COMMENT ON TABLE messages IS 'Domain: Messages. An end-to-end-encrypted message: ciphertext, nonce, signature.';
COMMENT ON TABLE message_deliveries IS 'Domain: Messages. Per-recipient delivered and read receipts.';
COMMENT ON TABLE message_attachments IS 'Domain: Messages. An encrypted blob uploaded for a message.';
COMMENT ON TABLE message_reactions IS 'Domain: Messages. An encrypted reaction to a message.';
COMMENT ON TABLE message_pins IS 'Domain: Messages. A message pinned in its conversation.';
COMMENT ON TABLE call_sessions IS 'Domain: Calls. A call''s signalling state.';
COMMENT ON TABLE call_participants IS 'Domain: Calls. A participant of a call.';
COMMENT ON TABLE notification_preferences IS 'Domain: Notifications. What a person wants to be notified of, by scope.';
COMMENT ON TABLE outbound_notifications IS 'Domain: Notifications. The outbox of push, email and webhook deliveries.';
COMMENT ON TABLE webhook_endpoints IS 'Domain: Integrations. An HTTPS endpoint that receives signed events.';
COMMENT ON TABLE bot_agents IS 'Domain: Integrations. A bot with scopes and a hashed token.';
COMMENT ON TABLE audit_logs IS 'Domain: Compliance. The append-only, hash-chained audit trail.';
COMMENT ON TABLE privacy_requests IS 'Domain: Compliance. GDPR export and erasure requests.';
