-- Conclave schema, part 4: notifications, webhooks and bots, audit and privacy requests.

CREATE TABLE notification_preferences (
    id              uuid PRIMARY KEY DEFAULT conclave_uuid_v7(),
    user_id         uuid NOT NULL REFERENCES user_accounts (id) ON DELETE CASCADE,
    -- Scope: account-wide (both NULL), one organization, or one conversation in it.
    organization_id uuid REFERENCES organizations (id) ON DELETE CASCADE,
    conversation_id uuid,
    level           text NOT NULL DEFAULT 'all' CHECK (level IN ('all', 'mentions', 'none')),
    push_enabled    boolean NOT NULL DEFAULT true,
    email_enabled   boolean NOT NULL DEFAULT false,
    muted_until     timestamptz,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE NULLS NOT DISTINCT (user_id, organization_id, conversation_id),
    CHECK (conversation_id IS NULL OR organization_id IS NOT NULL),
    FOREIGN KEY (organization_id, conversation_id) REFERENCES conversations (organization_id, id) ON DELETE CASCADE
);
CREATE TRIGGER notification_preferences_touch BEFORE UPDATE ON notification_preferences
    FOR EACH ROW EXECUTE FUNCTION conclave_touch_updated_at();

CREATE TABLE webhook_endpoints (
    id                     uuid PRIMARY KEY DEFAULT conclave_uuid_v7(),
    organization_id        uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    -- NULL: organization-wide.
    workspace_id           uuid,
    url                    text NOT NULL CHECK (url ~ '^https?://[^\s]+$' AND length(url) <= 2048),
    event_types            text[] NOT NULL CHECK (cardinality(event_types) > 0 AND array_position(event_types, NULL) IS NULL),
    -- HMAC signing secret, sealed with the data plane's at-rest key: it must be usable, not just
    -- recognisable, so it cannot be hashed.
    signing_secret_sealed  bytea NOT NULL CHECK (octet_length(signing_secret_sealed) BETWEEN 28 AND 256),
    enabled                boolean NOT NULL DEFAULT true,
    last_delivery_at       timestamptz,
    last_delivery_status   text CHECK (last_delivery_status IN ('succeeded', 'failed')),
    last_delivery_error    text CHECK (length(last_delivery_error) <= 1024),
    consecutive_failures   integer NOT NULL DEFAULT 0 CHECK (consecutive_failures >= 0),
    k8s_namespace          text,
    k8s_name               text,
    created_at             timestamptz NOT NULL DEFAULT now(),
    updated_at             timestamptz NOT NULL DEFAULT now(),
    UNIQUE (organization_id, id),
    CHECK ((k8s_namespace IS NULL) = (k8s_name IS NULL)),
    UNIQUE (k8s_namespace, k8s_name),
    FOREIGN KEY (organization_id, workspace_id) REFERENCES workspaces (organization_id, id) ON DELETE CASCADE
);
CREATE TRIGGER webhook_endpoints_touch BEFORE UPDATE ON webhook_endpoints
    FOR EACH ROW EXECUTE FUNCTION conclave_touch_updated_at();

CREATE TABLE bot_agents (
    id                        uuid PRIMARY KEY DEFAULT conclave_uuid_v7(),
    organization_id           uuid NOT NULL,
    workspace_id              uuid NOT NULL,
    display_name              text NOT NULL CHECK (length(btrim(display_name)) BETWEEN 1 AND 100),
    scopes                    text[] NOT NULL DEFAULT '{}'
        CHECK (scopes <@ ARRAY['messages:read', 'messages:write', 'conversations:read', 'conversations:write', 'members:read', 'reactions:write', 'files:read', 'files:write']::text[]),
    enabled                   boolean NOT NULL DEFAULT true,
    -- The bot token lives in a Kubernetes Secret; here only its digest. During a rotation the
    -- previous digest stays valid until `previous_token_expires_at`.
    token_hash                conclave_sha256 NOT NULL UNIQUE,
    previous_token_hash       conclave_sha256 UNIQUE,
    previous_token_expires_at timestamptz,
    token_rotated_at          timestamptz NOT NULL DEFAULT now(),
    k8s_namespace             text,
    k8s_name                  text,
    created_at                timestamptz NOT NULL DEFAULT now(),
    updated_at                timestamptz NOT NULL DEFAULT now(),
    UNIQUE (organization_id, id),
    CHECK ((previous_token_hash IS NULL) = (previous_token_expires_at IS NULL)),
    CHECK ((k8s_namespace IS NULL) = (k8s_name IS NULL)),
    UNIQUE (k8s_namespace, k8s_name),
    FOREIGN KEY (organization_id, workspace_id) REFERENCES workspaces (organization_id, id) ON DELETE CASCADE
);
CREATE TRIGGER bot_agents_touch BEFORE UPDATE ON bot_agents
    FOR EACH ROW EXECUTE FUNCTION conclave_touch_updated_at();

-- The outbox: written in the same transaction as the event that causes it (a message send),
-- drained by workers. Payloads carry ids and metadata, never message content.
CREATE TABLE outbound_notifications (
    id                  uuid PRIMARY KEY DEFAULT conclave_uuid_v7(),
    organization_id     uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    channel             text NOT NULL CHECK (channel IN ('push', 'email', 'webhook')),
    event_type          text NOT NULL CHECK (event_type ~ '^[a-z_]+(\.[a-z_]+)+$'),
    recipient_user_id   uuid REFERENCES user_accounts (id) ON DELETE CASCADE,
    webhook_endpoint_id uuid,
    payload             jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(payload) = 'object'),
    status              text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sending', 'delivered', 'failed', 'dead')),
    attempts            integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_at     timestamptz NOT NULL DEFAULT now(),
    last_error          text CHECK (length(last_error) <= 1024),
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    delivered_at        timestamptz,
    CHECK ((channel = 'webhook') = (webhook_endpoint_id IS NOT NULL)),
    CHECK (channel = 'webhook' OR recipient_user_id IS NOT NULL),
    CHECK ((status = 'delivered') = (delivered_at IS NOT NULL)),
    FOREIGN KEY (organization_id, webhook_endpoint_id) REFERENCES webhook_endpoints (organization_id, id) ON DELETE CASCADE
);
-- Workers claim due work with `... WHERE status IN ('pending', 'failed') AND next_attempt_at <= now()
-- ORDER BY next_attempt_at FOR UPDATE SKIP LOCKED`.
CREATE INDEX outbound_notifications_due ON outbound_notifications (status, next_attempt_at)
    WHERE status IN ('pending', 'failed', 'sending');
CREATE TRIGGER outbound_notifications_touch BEFORE UPDATE ON outbound_notifications
    FOR EACH ROW EXECUTE FUNCTION conclave_touch_updated_at();

------------------------------------------------------------------------------------------------
-- Audit: append-only and tamper-evident.
------------------------------------------------------------------------------------------------

-- Each organization (and the account-level chain, organization_id NULL) is a hash chain:
-- hash = SHA-256(prev_hash || canonical text of the row). Altering or removing a row breaks
-- every later hash, which `conclave_audit_verify` detects. The data-plane role may only
-- insert and read (part 5); the organization id has no foreign key so the trail outlives the
-- tenant it describes.
CREATE TABLE audit_logs (
    id              uuid PRIMARY KEY DEFAULT conclave_uuid_v7(),
    organization_id uuid,
    chain_seq       bigint NOT NULL,
    actor_kind      text NOT NULL CHECK (actor_kind IN ('user', 'bot', 'operator', 'system')),
    actor_user_id   uuid,
    actor_device_id uuid,
    action          text NOT NULL CHECK (action ~ '^[a-z_]+(\.[a-z_]+)+$'),
    target_type     text CHECK (target_type ~ '^[a-z_]+$'),
    target_id       uuid,
    ip_address      inet,
    details         jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(details) = 'object'),
    created_at      timestamptz NOT NULL DEFAULT now(),
    prev_hash       conclave_sha256,
    hash            conclave_sha256 NOT NULL,
    UNIQUE NULLS NOT DISTINCT (organization_id, chain_seq)
);
CREATE INDEX audit_logs_org_time ON audit_logs (organization_id, created_at);
CREATE INDEX audit_logs_actor ON audit_logs (actor_user_id, created_at);

CREATE FUNCTION conclave_audit_row_text(a audit_logs) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT concat_ws('|', a.id::text, coalesce(a.organization_id::text, '-'), a.chain_seq::text,
                     a.actor_kind, coalesce(a.actor_user_id::text, '-'), coalesce(a.actor_device_id::text, '-'),
                     a.action, coalesce(a.target_type, '-'), coalesce(a.target_id::text, '-'),
                     coalesce(host(a.ip_address), '-'), a.details::text,
                     to_char(a.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'))
$$;

-- SECURITY DEFINER: the chain head must be read whatever the caller's row-level security
-- allows, and the function only ever reads the one chain it appends to.
CREATE FUNCTION conclave_audit_chain() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    head audit_logs%ROWTYPE;
BEGIN
    -- Serialise appends per chain so two transactions never pick the same predecessor.
    PERFORM pg_advisory_xact_lock(hashtextextended('conclave.audit:' || coalesce(NEW.organization_id::text, '-'), 0));
    SELECT * INTO head FROM audit_logs
     WHERE organization_id IS NOT DISTINCT FROM NEW.organization_id
     ORDER BY chain_seq DESC LIMIT 1;
    NEW.created_at := clock_timestamp();
    IF head.id IS NULL THEN
        NEW.chain_seq := 1;
        NEW.prev_hash := NULL;
    ELSE
        NEW.chain_seq := head.chain_seq + 1;
        NEW.prev_hash := head.hash;
    END IF;
    NEW.hash := sha256(coalesce(NEW.prev_hash, '\x'::bytea) || convert_to(conclave_audit_row_text(NEW), 'UTF8'));
    RETURN NEW;
END
$$;
CREATE TRIGGER audit_logs_chain BEFORE INSERT ON audit_logs
    FOR EACH ROW EXECUTE FUNCTION conclave_audit_chain();

CREATE FUNCTION conclave_audit_forbid_update() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_logs is append-only' USING ERRCODE = 'insufficient_privilege';
END
$$;
CREATE TRIGGER audit_logs_append_only BEFORE UPDATE ON audit_logs
    FOR EACH ROW EXECUTE FUNCTION conclave_audit_forbid_update();

-- Returns the first row of a chain whose hash does not match, or no row when it is intact.
CREATE FUNCTION conclave_audit_verify(org uuid)
RETURNS TABLE (chain_seq bigint, id uuid, problem text)
LANGUAGE plpgsql STABLE AS $$
DECLARE
    r audit_logs%ROWTYPE;
    expected_prev bytea := NULL;
    expected_seq bigint := 1;
BEGIN
    FOR r IN SELECT * FROM audit_logs a WHERE a.organization_id IS NOT DISTINCT FROM org ORDER BY a.chain_seq LOOP
        IF r.chain_seq <> expected_seq THEN
            chain_seq := r.chain_seq; id := r.id; problem := 'gap before this entry';
            RETURN NEXT; RETURN;
        END IF;
        IF r.prev_hash IS DISTINCT FROM expected_prev
           OR r.hash <> sha256(coalesce(r.prev_hash, '\x'::bytea) || convert_to(conclave_audit_row_text(r), 'UTF8')) THEN
            chain_seq := r.chain_seq; id := r.id; problem := 'hash mismatch';
            RETURN NEXT; RETURN;
        END IF;
        expected_prev := r.hash;
        expected_seq := r.chain_seq + 1;
    END LOOP;
END
$$;

CREATE TABLE privacy_requests (
    id              uuid PRIMARY KEY DEFAULT conclave_uuid_v7(),
    -- Kept after an erasure completes (user_id becomes NULL) as the record that it happened.
    user_id         uuid REFERENCES user_accounts (id) ON DELETE SET NULL,
    kind            text NOT NULL CHECK (kind IN ('export', 'erasure')),
    status          text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'processing', 'completed', 'rejected')),
    requested_at    timestamptz NOT NULL DEFAULT now(),
    completed_at    timestamptz,
    -- Where an export can be fetched (an object key), until it expires.
    result_location text CHECK (length(result_location) <= 1024),
    result_expires_at timestamptz,
    details         jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(details) = 'object'),
    CHECK ((status IN ('completed', 'rejected')) = (completed_at IS NOT NULL))
);
CREATE INDEX privacy_requests_user ON privacy_requests (user_id);
CREATE INDEX privacy_requests_open ON privacy_requests (requested_at) WHERE status IN ('pending', 'processing');
