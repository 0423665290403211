-- Conclave schema, part 40: retention that deletes, and legal holds that stop it (docs/compliance.md).
--
-- Messages older than their workspace's `message_retention_days` (the organization's when the
-- workspace sets none) are deleted for real by the data plane's retention sweep: the message
-- rows, and with them (foreign keys) their receipts, reactions and pins; their attachments are
-- detached and collected (blob and row) by the attachment collector; key generations no
-- retained message needs any more go too. A legal hold stops all of that for what it covers.

-- A hold on the whole organization (no target), a workspace, a conversation or a user (the
-- messages they sent and every conversation they are a member of). A hold is lifted, never
-- deleted, so the record of who held what and when stays.
CREATE TABLE legal_holds (
    id              uuid PRIMARY KEY DEFAULT conclave_uuid_v7(),
    organization_id uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    scope           text NOT NULL CHECK (scope IN ('organization', 'workspace', 'conversation', 'user')),
    -- The workspace, conversation or user held; NULL for the organization. Not a foreign key:
    -- the target is one of three tables, and the hold's record outlives it.
    target_id       uuid,
    -- A case or matter reference for the people managing holds; never message content.
    reason          text NOT NULL CHECK (length(btrim(reason)) BETWEEN 1 AND 500),
    placed_by       uuid REFERENCES user_accounts (id) ON DELETE SET NULL,
    placed_at       timestamptz NOT NULL DEFAULT now(),
    lifted_by       uuid REFERENCES user_accounts (id) ON DELETE SET NULL,
    lifted_at       timestamptz,
    UNIQUE (organization_id, id),
    CHECK ((scope = 'organization') = (target_id IS NULL)),
    CHECK (lifted_at IS NULL OR lifted_at >= placed_at)
);
-- The sweep asks "is anything holding this?" for every batch.
CREATE INDEX legal_holds_active ON legal_holds (organization_id, scope, target_id) WHERE lifted_at IS NULL;
COMMENT ON TABLE legal_holds IS 'Domain: Compliance. A legal hold on an organization, workspace, conversation or user: retention deletes nothing it covers until it is lifted.';

GRANT SELECT, INSERT, UPDATE ON legal_holds TO conclave_app;
ALTER TABLE legal_holds ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON legal_holds TO conclave_app
    USING (organization_id = conclave_current_organization())
    WITH CHECK (organization_id = conclave_current_organization());

-- Leases for cluster-wide jobs that must run on one replica at a time. Not tenant data: a row
-- names a job, the replica holding it and until when. A replica that dies stops renewing and
-- another takes over once `expires_at` passes.
CREATE TABLE worker_leases (
    name        text PRIMARY KEY CHECK (name ~ '^[a-z_]+$'),
    holder      uuid NOT NULL,
    acquired_at timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    CHECK (expires_at > acquired_at)
);
COMMENT ON TABLE worker_leases IS 'Domain: Compliance. Which data-plane replica runs a cluster-wide job (the retention sweep) and until when.';
GRANT SELECT, INSERT, UPDATE, DELETE ON worker_leases TO conclave_app;

-- What clients read to learn that history was removed: every message with a smaller sequence
-- number may be gone (a held one may remain), so clients delete their local copies too.
ALTER TABLE conversations
    ADD COLUMN history_removed_before_seq bigint NOT NULL DEFAULT 0 CHECK (history_removed_before_seq >= 0);
COMMENT ON COLUMN conversations.history_removed_before_seq IS 'Retention removed messages below this sequence number (0: none).';

-- The oldest key generation a conversation's retained messages use is found through this index,
-- and deleting a generation checks the messages' foreign key through it instead of a scan.
CREATE INDEX messages_key_generation ON messages (conversation_id, key_generation);

-- Deleting a message sets `reply_to_id` to NULL in the replies to it (the foreign key), which
-- without an index is a scan of every message for each one deleted: measured at over 100 s for a
-- batch of 1 000 among a million messages. Only replies are indexed.
CREATE INDEX messages_reply_to ON messages (reply_to_id) WHERE reply_to_id IS NOT NULL;

-- Where the sweep has work: every workspace of an active organization with a retention period,
-- unless the organization or the workspace is held. Read across tenants (as the owner); each
-- workspace is then swept in a transaction acting for its organization, where holds on
-- conversations and users are checked batch by batch.
CREATE FUNCTION conclave_retention_targets()
RETURNS TABLE (organization_id uuid, workspace_id uuid, retention_days integer)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    SELECT w.organization_id, w.id, coalesce(w.message_retention_days, o.message_retention_days)
      FROM workspaces w JOIN organizations o ON o.id = w.organization_id
     WHERE o.status = 'active'
       AND coalesce(w.message_retention_days, o.message_retention_days) IS NOT NULL
       AND NOT EXISTS (SELECT 1 FROM legal_holds h
                        WHERE h.organization_id = w.organization_id AND h.lifted_at IS NULL
                          AND (h.scope = 'organization' OR (h.scope = 'workspace' AND h.target_id = w.id)))
     ORDER BY w.organization_id, w.id
$$;
REVOKE ALL ON FUNCTION conclave_retention_targets() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION conclave_retention_targets() TO conclave_app;
