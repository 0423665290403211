-- Conclave schema, part 60: privacy requests (export, erasure) and an audit trail that names
-- people through erasable pseudonyms (docs/compliance.md).
--
-- The audit trail is append-only and hash-chained, so it can never be edited to forget a person.
-- Instead it never names one: every id of a person (a user, a user's device) is replaced, as the
-- entry is appended, by a pseudonym from `audit_pseudonyms`. That table is the only link from a
-- pseudonym back to the person, and its rows go with the account (foreign key, cascade): after
-- an erasure the entries still verify, and nothing left in them leads to the person.

CREATE TABLE audit_pseudonyms (
    -- Random, not time-ordered: it stands in for the person in every audit entry.
    pseudonym  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    -- The real id the pseudonym stands for: a user's or one of their devices'.
    subject_id uuid NOT NULL UNIQUE,
    -- The person it belongs to: deleting the account deletes the link.
    user_id    uuid NOT NULL REFERENCES user_accounts (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX audit_pseudonyms_user ON audit_pseudonyms (user_id);
COMMENT ON TABLE audit_pseudonyms IS 'Domain: Compliance. The erasable link from the pseudonyms the audit trail names people by to the people (users and their devices).';
-- Readable (to show admins who did what); written only by the audit trigger below.
GRANT SELECT ON audit_pseudonyms TO conclave_app;

-- The pseudonym of a person's id, created on first use; NULL when the person does not exist (an
-- id that names nobody is not kept either).
CREATE FUNCTION conclave_audit_pseudonym(subject uuid, person uuid) RETURNS uuid
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    found uuid;
BEGIN
    IF subject IS NULL OR person IS NULL THEN
        RETURN NULL;
    END IF;
    SELECT p.pseudonym INTO found FROM audit_pseudonyms p WHERE p.subject_id = subject;
    IF found IS NOT NULL THEN
        RETURN found;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM user_accounts u WHERE u.id = person) THEN
        RETURN NULL;
    END IF;
    INSERT INTO audit_pseudonyms (subject_id, user_id) VALUES (subject, person)
        ON CONFLICT (subject_id) DO NOTHING;
    SELECT p.pseudonym INTO found FROM audit_pseudonyms p WHERE p.subject_id = subject;
    RETURN found;
END
$$;
REVOKE ALL ON FUNCTION conclave_audit_pseudonym(uuid, uuid) FROM PUBLIC;

-- Replaces every id of a person in an entry by its pseudonym: the actor, the actor's device, a
-- target that is a user, member or device, `details.user_id`, and the target of a hold on a user.
CREATE FUNCTION conclave_audit_pseudonymize(a audit_logs) RETURNS audit_logs
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    owner uuid;
BEGIN
    IF a.actor_device_id IS NOT NULL THEN
        SELECT d.user_id INTO owner FROM devices d WHERE d.id = a.actor_device_id;
        a.actor_device_id := conclave_audit_pseudonym(a.actor_device_id, coalesce(owner, a.actor_user_id));
    END IF;
    a.actor_user_id := conclave_audit_pseudonym(a.actor_user_id, a.actor_user_id);
    IF a.target_type IN ('user', 'member') THEN
        a.target_id := conclave_audit_pseudonym(a.target_id, a.target_id);
    ELSIF a.target_type = 'device' AND a.target_id IS NOT NULL THEN
        SELECT d.user_id INTO owner FROM devices d WHERE d.id = a.target_id;
        a.target_id := conclave_audit_pseudonym(a.target_id, owner);
    END IF;
    IF jsonb_typeof(a.details -> 'user_id') = 'string' THEN
        a.details := jsonb_set(a.details, '{user_id}',
            coalesce(to_jsonb(conclave_audit_pseudonym((a.details ->> 'user_id')::uuid, (a.details ->> 'user_id')::uuid)), 'null'::jsonb));
    END IF;
    -- A legal hold on a user names them as its target.
    IF a.details ->> 'scope' = 'user' AND jsonb_typeof(a.details -> 'target_id') = 'string' THEN
        a.details := jsonb_set(a.details, '{target_id}',
            coalesce(to_jsonb(conclave_audit_pseudonym((a.details ->> 'target_id')::uuid, (a.details ->> 'target_id')::uuid)), 'null'::jsonb));
    END IF;
    RETURN a;
END
$$;
REVOKE ALL ON FUNCTION conclave_audit_pseudonymize(audit_logs) FROM PUBLIC;

-- Runs before the chain trigger of part 4 (triggers fire in name order), so what is hashed is
-- what is stored.
CREATE FUNCTION conclave_audit_pseudonymize_row() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    RETURN conclave_audit_pseudonymize(NEW);
END
$$;
CREATE TRIGGER audit_logs_a_pseudonymize BEFORE INSERT ON audit_logs
    FOR EACH ROW EXECUTE FUNCTION conclave_audit_pseudonymize_row();

-- The entries written before this migration named people directly. They are rewritten once,
-- here, and every chain is hashed again from its first entry: the only time the trail is
-- changed, by the schema owner, in this migration's transaction. Emails and public keys some
-- entries carried in `details` are dropped (the invitation or key they describe is the target).
ALTER TABLE audit_logs DISABLE TRIGGER audit_logs_append_only;
UPDATE audit_logs a SET
    actor_user_id = p.actor_user_id, actor_device_id = p.actor_device_id,
    target_id = p.target_id, details = p.details - 'email' - 'public_key'
  FROM audit_logs src, LATERAL conclave_audit_pseudonymize(src) p
 WHERE a.id = src.id;
DO $$
DECLARE
    chain uuid;
    r audit_logs%ROWTYPE;
    prev bytea;
BEGIN
    FOR chain IN SELECT DISTINCT organization_id FROM audit_logs LOOP
        prev := NULL;
        FOR r IN SELECT * FROM audit_logs WHERE organization_id IS NOT DISTINCT FROM chain ORDER BY chain_seq LOOP
            r.prev_hash := prev;
            r.hash := sha256(coalesce(prev, '\x'::bytea) || convert_to(conclave_audit_row_text(r), 'UTF8'));
            UPDATE audit_logs SET prev_hash = r.prev_hash, hash = r.hash WHERE id = r.id;
            prev := r.hash;
        END LOOP;
    END LOOP;
END
$$;
ALTER TABLE audit_logs ENABLE TRIGGER audit_logs_append_only;

-- A person's own account-level entries: through their pseudonym now.
DROP POLICY tenant_isolation ON audit_logs;
CREATE POLICY tenant_isolation ON audit_logs TO conclave_app
    USING (organization_id = conclave_current_organization()
           OR (organization_id IS NULL AND actor_user_id IN (
               SELECT p.pseudonym FROM audit_pseudonyms p WHERE p.user_id = conclave_current_user())))
    WITH CHECK (organization_id IS NULL OR organization_id = conclave_current_organization());
-- Filtering an organization's trail by actor, target and time.
CREATE INDEX audit_logs_org_target ON audit_logs (organization_id, target_id);
CREATE INDEX audit_logs_org_seq_actor ON audit_logs (organization_id, actor_user_id, chain_seq);

------------------------------------------------------------------------------------------------
-- Privacy requests: filed by a person with one of their organizations, handled by its admins.
------------------------------------------------------------------------------------------------

-- No API wrote these before; a request nobody can attribute to an organization is dropped.
ALTER TABLE privacy_requests ADD COLUMN organization_id uuid REFERENCES organizations (id) ON DELETE CASCADE;
UPDATE privacy_requests r SET organization_id = (
    SELECT m.organization_id FROM organization_memberships m WHERE m.user_id = r.user_id ORDER BY m.created_at LIMIT 1);
DELETE FROM privacy_requests WHERE organization_id IS NULL;
ALTER TABLE privacy_requests ALTER COLUMN organization_id SET NOT NULL;

ALTER TABLE privacy_requests DROP CONSTRAINT privacy_requests_status_check;
ALTER TABLE privacy_requests DROP CONSTRAINT privacy_requests_check;
UPDATE privacy_requests SET status = CASE status WHEN 'pending' THEN 'received' WHEN 'processing' THEN 'in_progress' ELSE status END;
ALTER TABLE privacy_requests
    ALTER COLUMN status SET DEFAULT 'received',
    -- Thirty days from filing (GDPR article 12(3)).
    ADD COLUMN due_at timestamptz NOT NULL DEFAULT now() + interval '30 days',
    ADD COLUMN decided_by uuid REFERENCES user_accounts (id) ON DELETE SET NULL,
    ADD COLUMN decided_at timestamptz,
    -- Why it was rejected (or a note on approval): for the person, never their data.
    ADD COLUMN reason text CHECK (length(btrim(reason)) BETWEEN 1 AND 500),
    -- The one-time download link of an export: its token's digest, until when it works, and
    -- when it was used.
    ADD COLUMN download_token_hash conclave_sha256,
    ADD COLUMN download_expires_at timestamptz,
    ADD COLUMN downloaded_at timestamptz;
-- Requests filed before: due 30 days after they were filed, decided when they left `received`,
-- and a rejection gets a reason.
UPDATE privacy_requests SET due_at = requested_at + interval '30 days',
    decided_at = CASE WHEN status = 'received' THEN NULL ELSE coalesce(completed_at, requested_at) END,
    reason = CASE WHEN status = 'rejected' THEN 'rejected before reasons were recorded' END;
ALTER TABLE privacy_requests
    ADD CONSTRAINT privacy_requests_status_check CHECK (status IN ('received', 'in_progress', 'completed', 'rejected')),
    ADD CONSTRAINT privacy_requests_closed_check CHECK ((status IN ('completed', 'rejected')) = (completed_at IS NOT NULL)),
    ADD CONSTRAINT privacy_requests_download_expiry_check CHECK ((download_token_hash IS NULL) = (download_expires_at IS NULL)),
    ADD CONSTRAINT privacy_requests_rejected_reason_check CHECK (status <> 'rejected' OR reason IS NOT NULL),
    ADD CONSTRAINT privacy_requests_decided_check CHECK ((status = 'received') = (decided_at IS NULL)),
    ADD CONSTRAINT privacy_requests_download_check CHECK (download_token_hash IS NULL OR kind = 'export'),
    ADD CONSTRAINT privacy_requests_org_id_unique UNIQUE (organization_id, id);
-- One open request of each kind per person and organization.
CREATE UNIQUE INDEX privacy_requests_one_open ON privacy_requests (organization_id, user_id, kind)
    WHERE status IN ('received', 'in_progress');
CREATE INDEX privacy_requests_org ON privacy_requests (organization_id, requested_at);
CREATE UNIQUE INDEX privacy_requests_download ON privacy_requests (download_token_hash) WHERE download_token_hash IS NOT NULL;

-- A person sees their own requests in every organization; admins those of the organization set.
ALTER TABLE privacy_requests ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON privacy_requests TO conclave_app
    USING (organization_id = conclave_current_organization() OR user_id = conclave_current_user())
    WITH CHECK (organization_id = conclave_current_organization());

-- What an erasure does with the person's messages in this organization: `delete` them (the
-- default), or keep them as `anonymize`d ciphertext that names no sender.
ALTER TABLE organizations ADD COLUMN erasure_messages text NOT NULL DEFAULT 'delete'
    CHECK (erasure_messages IN ('delete', 'anonymize'));
COMMENT ON COLUMN organizations.erasure_messages IS 'On a privacy erasure: delete the person''s messages, or keep them anonymized.';
