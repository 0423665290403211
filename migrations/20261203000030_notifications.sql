-- Conclave schema, part 30: notifications (preferences, profiles, Web Push delivery, digests).
--
-- 1. Profiles gain a status text (what a colleague sees beside the name). The time zone is the
--    one quiet hours and digests are computed in.
-- 2. Preferences get their full shape. One row per scope: account-wide (organization_id NULL),
--    one organization, one workspace in it, or one conversation in it. The account row holds
--    the defaults and everything that only makes sense once per person (push and email on or
--    off, quiet hours, the email delay and digest frequency); scoped rows override the level
--    (NULL: inherit) and may mute until a time. The most specific level wins; any mute in the
--    chain mutes.
-- 3. Push subscriptions may point at plain http on loopback: only a data plane started with
--    `--push-allow-loopback-http` accepts such an endpoint (tests, local trials); every other
--    endpoint must be https, as before.
-- 4. Email digests: the last digest per person, and one-click unsubscribe tokens (RFC 8058),
--    stored as SHA-256 digests like every other emailed token.
-- 5. Mentions: the server cannot read a message, so a sender declares whom it mentions
--    (docs/notifications.md says what that reveals); one row per mentioned member.

ALTER TABLE user_profiles ADD COLUMN status_text text CHECK (length(status_text) <= 140);

ALTER TABLE notification_preferences
    ADD COLUMN workspace_id        uuid,
    ADD COLUMN quiet_hours_start   smallint CHECK (quiet_hours_start BETWEEN 0 AND 1439),
    ADD COLUMN quiet_hours_end     smallint CHECK (quiet_hours_end BETWEEN 0 AND 1439),
    ADD COLUMN email_delay_minutes integer NOT NULL DEFAULT 60 CHECK (email_delay_minutes BETWEEN 5 AND 10080),
    ADD COLUMN digest_frequency    text NOT NULL DEFAULT 'daily' CHECK (digest_frequency IN ('hourly', 'daily', 'weekly')),
    ADD COLUMN last_digest_at      timestamptz,
    ALTER COLUMN level DROP NOT NULL,
    DROP CONSTRAINT notification_preferences_user_id_organization_id_conversati_key,
    ADD CONSTRAINT notification_preferences_scope_key
        UNIQUE NULLS NOT DISTINCT (user_id, organization_id, workspace_id, conversation_id),
    -- The account row always has a level; a scoped row without one inherits it.
    ADD CONSTRAINT notification_preferences_account_level CHECK (organization_id IS NOT NULL OR level IS NOT NULL),
    ADD CONSTRAINT notification_preferences_one_scope CHECK (workspace_id IS NULL OR conversation_id IS NULL),
    ADD CONSTRAINT notification_preferences_workspace_in_organization CHECK (workspace_id IS NULL OR organization_id IS NOT NULL),
    -- Quiet hours are the person's, not a scope's: both ends or neither, and not an empty span.
    ADD CONSTRAINT notification_preferences_quiet_hours CHECK (
        (quiet_hours_start IS NULL) = (quiet_hours_end IS NULL)
        AND (quiet_hours_start IS NULL OR (organization_id IS NULL AND quiet_hours_start <> quiet_hours_end))),
    ADD FOREIGN KEY (organization_id, workspace_id) REFERENCES workspaces (organization_id, id) ON DELETE CASCADE;

ALTER TABLE push_subscriptions
    DROP CONSTRAINT push_subscriptions_endpoint_check,
    ADD CONSTRAINT push_subscriptions_endpoint_check CHECK (
        (endpoint ~ '^https://' OR endpoint ~ '^http://(127\.0\.0\.1|localhost|\[::1\])(:[0-9]+)?/')
        AND length(endpoint) <= 2048);

-- One-click unsubscribe links: the token is in the email, its digest here. A token turns email
-- notifications off for its user; it works without signing in, once, until it expires.
CREATE TABLE unsubscribe_tokens (
    id           uuid PRIMARY KEY DEFAULT conclave_uuid_v7(),
    user_id      uuid NOT NULL REFERENCES user_accounts (id) ON DELETE CASCADE,
    token_hash   conclave_sha256 NOT NULL UNIQUE,
    expires_at   timestamptz NOT NULL,
    used_at      timestamptz,
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX unsubscribe_tokens_user ON unsubscribe_tokens (user_id);
GRANT SELECT, INSERT, UPDATE, DELETE ON unsubscribe_tokens TO conclave_app;
COMMENT ON TABLE unsubscribe_tokens IS
    'Domain: Notifications. Digests of one-click unsubscribe tokens (RFC 8058) sent in notification emails.';

-- Sender-declared mentions, for the notification pipeline only (never shown as content).
CREATE TABLE message_mentions (
    organization_id   uuid NOT NULL,
    message_id        uuid NOT NULL,
    mentioned_user_id uuid NOT NULL REFERENCES user_accounts (id) ON DELETE CASCADE,
    PRIMARY KEY (message_id, mentioned_user_id),
    FOREIGN KEY (organization_id, message_id) REFERENCES messages (organization_id, id) ON DELETE CASCADE
);
CREATE INDEX message_mentions_user ON message_mentions (mentioned_user_id);
GRANT SELECT, INSERT, DELETE ON message_mentions TO conclave_app;
ALTER TABLE message_mentions ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON message_mentions TO conclave_app
    USING (organization_id = conclave_current_organization())
    WITH CHECK (organization_id = conclave_current_organization());
COMMENT ON TABLE message_mentions IS
    'Domain: Notifications. Members a sender declared as mentioned in a message (the server cannot read it).';

-- The push worker's queue depth and oldest pending row, for /metrics, across tenants (the
-- data-plane role sees no outbox row without an organization on its transaction).
CREATE FUNCTION conclave_outbox_backlog()
RETURNS TABLE (channel text, pending bigint, oldest_seconds double precision)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    SELECT o.channel, count(*), coalesce(extract(epoch FROM now() - min(o.created_at)), 0)::double precision
      FROM outbound_notifications o
     WHERE o.status IN ('pending', 'failed', 'sending')
     GROUP BY o.channel
$$;
REVOKE ALL ON FUNCTION conclave_outbox_backlog() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION conclave_outbox_backlog() TO conclave_app;

-- A push the recipient's preferences hold back (muted, quiet hours, level, already read) is
-- `skipped`, its reason in last_error: processed, not delivered, never retried.
ALTER TABLE outbound_notifications
    DROP CONSTRAINT outbound_notifications_status_check,
    ADD CONSTRAINT outbound_notifications_status_check
        CHECK (status IN ('pending', 'sending', 'delivered', 'failed', 'dead', 'skipped'));

-- Email digests: who is due one. A person is due when email is on, their last digest is at
-- least one period old, and some conversation of theirs has a message of someone else, after
-- their read cursor and not deleted, older than their email delay. Preferences and memberships
-- of every tenant are read, so this runs as the owner (SECURITY DEFINER) and answers only the
-- people claimed; claiming sets `last_digest_at`, with SKIP LOCKED so replicas never claim the
-- same person twice: at most one digest per period.
CREATE FUNCTION conclave_claim_digests(max_items integer)
RETURNS TABLE (user_id uuid, email text, email_delay_minutes integer)
LANGUAGE sql SECURITY DEFINER SET search_path = public, pg_temp AS $$
    UPDATE notification_preferences p SET last_digest_at = now()
      FROM (SELECT d.id FROM notification_preferences d
              JOIN user_accounts u ON u.id = d.user_id AND u.status = 'active' AND u.email_confirmed_at IS NOT NULL
             WHERE d.organization_id IS NULL AND d.email_enabled
               AND (d.last_digest_at IS NULL OR d.last_digest_at <= now() - CASE d.digest_frequency
                        WHEN 'hourly' THEN interval '1 hour' WHEN 'daily' THEN interval '1 day'
                        ELSE interval '7 days' END)
               AND EXISTS (SELECT 1 FROM conversation_members m
                             JOIN messages x ON x.conversation_id = m.conversation_id AND x.seq > m.read_seq
                            WHERE m.user_id = d.user_id AND x.sender_user_id IS DISTINCT FROM d.user_id
                              AND x.deleted_at IS NULL
                              AND x.created_at <= now() - make_interval(mins => d.email_delay_minutes))
             ORDER BY d.last_digest_at NULLS FIRST
             LIMIT max_items
               FOR UPDATE OF d SKIP LOCKED) due
     WHERE p.id = due.id
    RETURNING p.user_id, (SELECT u.email::text FROM user_accounts u WHERE u.id = p.user_id), p.email_delay_minutes
$$;
REVOKE ALL ON FUNCTION conclave_claim_digests(integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION conclave_claim_digests(integer) TO conclave_app;
