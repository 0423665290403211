-- Conclave schema, part 2: users, their credentials and devices, tenants and memberships, contacts.
--
-- Users, credentials, devices and contacts are global: one person may belong to several
-- organizations with the same account. Everything inside an organization carries its
-- `organization_id` and is fenced by row-level security (part 5).

------------------------------------------------------------------------------------------------
-- Users
------------------------------------------------------------------------------------------------

CREATE TABLE user_accounts (
    id                 uuid PRIMARY KEY DEFAULT conclave_uuid_v7(),
    email              conclave_email NOT NULL UNIQUE,
    -- An argon2id PHC string ($argon2id$v=19$m=...,t=...,p=...$salt$hash).
    password_hash      text NOT NULL CHECK (password_hash LIKE '$argon2id$%'),
    email_confirmed_at timestamptz,
    status             text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'disabled', 'erased')),
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now()
);
CREATE TRIGGER user_accounts_touch BEFORE UPDATE ON user_accounts
    FOR EACH ROW EXECUTE FUNCTION conclave_touch_updated_at();

CREATE TABLE user_profiles (
    user_id      uuid PRIMARY KEY REFERENCES user_accounts (id) ON DELETE CASCADE,
    display_name text NOT NULL CHECK (length(btrim(display_name)) BETWEEN 1 AND 100),
    avatar_url   text CHECK (avatar_url ~ '^https://'),
    time_zone    text CHECK (length(time_zone) <= 64),
    locale       text CHECK (locale ~ '^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$'),
    updated_at   timestamptz NOT NULL DEFAULT now()
);
CREATE TRIGGER user_profiles_touch BEFORE UPDATE ON user_profiles
    FOR EACH ROW EXECUTE FUNCTION conclave_touch_updated_at();

CREATE TABLE user_security_states (
    user_id             uuid PRIMARY KEY REFERENCES user_accounts (id) ON DELETE CASCADE,
    failed_login_count  integer NOT NULL DEFAULT 0 CHECK (failed_login_count >= 0),
    locked_until        timestamptz,
    last_login_at       timestamptz,
    last_failed_at      timestamptz,
    password_changed_at timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now()
);
CREATE TRIGGER user_security_states_touch BEFORE UPDATE ON user_security_states
    FOR EACH ROW EXECUTE FUNCTION conclave_touch_updated_at();

------------------------------------------------------------------------------------------------
-- Security tokens: only SHA-256 digests of the tokens are stored, never the tokens.
------------------------------------------------------------------------------------------------

CREATE TABLE email_confirmation_tokens (
    id          uuid PRIMARY KEY DEFAULT conclave_uuid_v7(),
    user_id     uuid NOT NULL REFERENCES user_accounts (id) ON DELETE CASCADE,
    email       conclave_email NOT NULL,
    token_hash  conclave_sha256 NOT NULL UNIQUE,
    expires_at  timestamptz NOT NULL,
    consumed_at timestamptz,
    created_at  timestamptz NOT NULL DEFAULT now(),
    CHECK (expires_at > created_at)
);
CREATE INDEX email_confirmation_tokens_user ON email_confirmation_tokens (user_id);

CREATE TABLE password_reset_tokens (
    id          uuid PRIMARY KEY DEFAULT conclave_uuid_v7(),
    user_id     uuid NOT NULL REFERENCES user_accounts (id) ON DELETE CASCADE,
    token_hash  conclave_sha256 NOT NULL UNIQUE,
    expires_at  timestamptz NOT NULL,
    consumed_at timestamptz,
    created_at  timestamptz NOT NULL DEFAULT now(),
    CHECK (expires_at > created_at)
);
CREATE INDEX password_reset_tokens_user ON password_reset_tokens (user_id);

CREATE TABLE totp_secrets (
    user_id          uuid PRIMARY KEY REFERENCES user_accounts (id) ON DELETE CASCADE,
    -- The shared secret must be readable to verify codes, so it is sealed with the data plane's
    -- at-rest key (AEAD, nonce prepended) rather than hashed.
    secret_sealed    bytea NOT NULL CHECK (octet_length(secret_sealed) BETWEEN 28 AND 256),
    confirmed_at     timestamptz,
    -- The last accepted RFC 6238 time step: a code is never accepted twice.
    last_used_step   bigint CHECK (last_used_step >= 0),
    created_at       timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE totp_recovery_codes (
    id         uuid PRIMARY KEY DEFAULT conclave_uuid_v7(),
    user_id    uuid NOT NULL REFERENCES totp_secrets (user_id) ON DELETE CASCADE,
    code_hash  conclave_sha256 NOT NULL,
    used_at    timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (user_id, code_hash)
);

------------------------------------------------------------------------------------------------
-- Devices and sessions
------------------------------------------------------------------------------------------------

CREATE TABLE devices (
    id                 uuid PRIMARY KEY DEFAULT conclave_uuid_v7(),
    user_id            uuid NOT NULL REFERENCES user_accounts (id) ON DELETE CASCADE,
    name               text NOT NULL CHECK (length(btrim(name)) BETWEEN 1 AND 100),
    platform           text NOT NULL CHECK (platform IN ('ios', 'android', 'web', 'desktop', 'cli', 'bot')),
    -- Raw 32-byte public keys; the signature is Ed25519 over the X25519 key (see docs/protocol.md).
    x25519_public_key  bytea NOT NULL CHECK (octet_length(x25519_public_key) = 32),
    ed25519_public_key bytea NOT NULL UNIQUE CHECK (octet_length(ed25519_public_key) = 32),
    key_signature      bytea NOT NULL CHECK (octet_length(key_signature) = 64),
    created_at         timestamptz NOT NULL DEFAULT now(),
    last_seen_at       timestamptz,
    revoked_at         timestamptz,
    UNIQUE (user_id, id)
);
CREATE INDEX devices_active_by_user ON devices (user_id) WHERE revoked_at IS NULL;

CREATE TABLE session_tokens (
    id           uuid PRIMARY KEY DEFAULT conclave_uuid_v7(),
    user_id      uuid NOT NULL,
    device_id    uuid NOT NULL,
    token_hash   conclave_sha256 NOT NULL UNIQUE,
    expires_at   timestamptz NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz,
    revoked_at   timestamptz,
    user_agent   text CHECK (length(user_agent) <= 512),
    CHECK (expires_at > created_at),
    FOREIGN KEY (user_id, device_id) REFERENCES devices (user_id, id) ON DELETE CASCADE
);
CREATE INDEX session_tokens_device ON session_tokens (device_id) WHERE revoked_at IS NULL;
CREATE INDEX session_tokens_user ON session_tokens (user_id) WHERE revoked_at IS NULL;

CREATE TABLE refresh_tokens (
    id             uuid PRIMARY KEY DEFAULT conclave_uuid_v7(),
    user_id        uuid NOT NULL REFERENCES user_accounts (id) ON DELETE CASCADE,
    session_id     uuid NOT NULL REFERENCES session_tokens (id) ON DELETE CASCADE,
    -- Every token minted by rotation from one login shares a family; reuse of a rotated token
    -- revokes the whole family (RFC 9700, section 4.14).
    family_id      uuid NOT NULL,
    parent_id      uuid REFERENCES refresh_tokens (id) ON DELETE SET NULL,
    token_hash     conclave_sha256 NOT NULL UNIQUE,
    expires_at     timestamptz NOT NULL,
    rotated_at     timestamptz,
    revoked_at     timestamptz,
    revoked_reason text CHECK (revoked_reason IN ('logout', 'reuse_detected', 'password_reset', 'password_changed', 'device_revoked', 'admin')),
    created_at     timestamptz NOT NULL DEFAULT now(),
    CHECK (expires_at > created_at),
    CHECK ((revoked_at IS NULL) = (revoked_reason IS NULL))
);
CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_session ON refresh_tokens (session_id);

CREATE TABLE push_subscriptions (
    id         uuid PRIMARY KEY DEFAULT conclave_uuid_v7(),
    user_id    uuid NOT NULL,
    device_id  uuid NOT NULL,
    endpoint   text NOT NULL CHECK (endpoint ~ '^https://' AND length(endpoint) <= 2048),
    -- Web Push (RFC 8291) keys: an uncompressed P-256 point and a 16-byte auth secret.
    p256dh     bytea NOT NULL CHECK (octet_length(p256dh) = 65),
    auth       bytea NOT NULL CHECK (octet_length(auth) = 16),
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (device_id, endpoint),
    FOREIGN KEY (user_id, device_id) REFERENCES devices (user_id, id) ON DELETE CASCADE
);

------------------------------------------------------------------------------------------------
-- Tenancy
------------------------------------------------------------------------------------------------

CREATE TABLE organizations (
    id                       uuid PRIMARY KEY DEFAULT conclave_uuid_v7(),
    slug                     conclave_slug NOT NULL UNIQUE,
    display_name             text NOT NULL CHECK (length(btrim(display_name)) BETWEEN 1 AND 200),
    status                   text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'suspended')),
    -- Limits; NULL means unlimited.
    max_members              integer CHECK (max_members > 0),
    max_workspaces           integer CHECK (max_workspaces > 0),
    attachment_quota_bytes   bigint CHECK (attachment_quota_bytes >= 0),
    attachment_bytes_used    bigint NOT NULL DEFAULT 0 CHECK (attachment_bytes_used >= 0),
    -- Retention of messages in days; NULL keeps them until deleted.
    message_retention_days   integer CHECK (message_retention_days > 0),
    -- Security policy.
    require_totp             boolean NOT NULL DEFAULT false,
    allowed_email_domains    text[] NOT NULL DEFAULT '{}'
        CHECK (array_position(allowed_email_domains, NULL) IS NULL),
    session_lifetime_seconds integer CHECK (session_lifetime_seconds BETWEEN 300 AND 31536000),
    -- The custom resource that declares it, when the operator manages it.
    k8s_namespace            text,
    k8s_name                 text,
    created_at               timestamptz NOT NULL DEFAULT now(),
    updated_at               timestamptz NOT NULL DEFAULT now(),
    CHECK ((k8s_namespace IS NULL) = (k8s_name IS NULL)),
    UNIQUE (k8s_namespace, k8s_name)
);
CREATE TRIGGER organizations_touch BEFORE UPDATE ON organizations
    FOR EACH ROW EXECUTE FUNCTION conclave_touch_updated_at();

CREATE TABLE organization_memberships (
    id              uuid PRIMARY KEY DEFAULT conclave_uuid_v7(),
    organization_id uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    user_id         uuid NOT NULL REFERENCES user_accounts (id) ON DELETE CASCADE,
    role            text NOT NULL CHECK (role IN ('owner', 'admin', 'member', 'guest')),
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (organization_id, user_id)
);
CREATE INDEX organization_memberships_user ON organization_memberships (user_id);
CREATE TRIGGER organization_memberships_touch BEFORE UPDATE ON organization_memberships
    FOR EACH ROW EXECUTE FUNCTION conclave_touch_updated_at();

CREATE TABLE organization_invitations (
    id              uuid PRIMARY KEY DEFAULT conclave_uuid_v7(),
    organization_id uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    email           conclave_email NOT NULL,
    role            text NOT NULL CHECK (role IN ('owner', 'admin', 'member', 'guest')),
    token_hash      conclave_sha256 NOT NULL UNIQUE,
    invited_by      uuid REFERENCES user_accounts (id) ON DELETE SET NULL,
    expires_at      timestamptz NOT NULL,
    accepted_at     timestamptz,
    accepted_by     uuid REFERENCES user_accounts (id) ON DELETE SET NULL,
    revoked_at      timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    CHECK (expires_at > created_at),
    CHECK (accepted_at IS NULL OR revoked_at IS NULL)
);
-- At most one open invitation per address and organization.
CREATE UNIQUE INDEX organization_invitations_open ON organization_invitations (organization_id, email)
    WHERE accepted_at IS NULL AND revoked_at IS NULL;

CREATE TABLE workspaces (
    id                     uuid PRIMARY KEY DEFAULT conclave_uuid_v7(),
    organization_id        uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    slug                   conclave_slug NOT NULL,
    display_name           text NOT NULL CHECK (length(btrim(display_name)) BETWEEN 1 AND 200),
    message_retention_days integer CHECK (message_retention_days > 0),
    guest_access           boolean NOT NULL DEFAULT false,
    k8s_namespace          text,
    k8s_name               text,
    created_at             timestamptz NOT NULL DEFAULT now(),
    updated_at             timestamptz NOT NULL DEFAULT now(),
    UNIQUE (organization_id, slug),
    UNIQUE (organization_id, id),
    CHECK ((k8s_namespace IS NULL) = (k8s_name IS NULL)),
    UNIQUE (k8s_namespace, k8s_name)
);
CREATE TRIGGER workspaces_touch BEFORE UPDATE ON workspaces
    FOR EACH ROW EXECUTE FUNCTION conclave_touch_updated_at();

CREATE TABLE workspace_memberships (
    id              uuid PRIMARY KEY DEFAULT conclave_uuid_v7(),
    organization_id uuid NOT NULL,
    workspace_id    uuid NOT NULL,
    user_id         uuid NOT NULL,
    role            text NOT NULL DEFAULT 'member' CHECK (role IN ('admin', 'member', 'guest')),
    created_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (workspace_id, user_id),
    UNIQUE (organization_id, workspace_id, user_id),
    FOREIGN KEY (organization_id, workspace_id) REFERENCES workspaces (organization_id, id) ON DELETE CASCADE,
    -- Leaving the organization leaves its workspaces.
    FOREIGN KEY (organization_id, user_id) REFERENCES organization_memberships (organization_id, user_id) ON DELETE CASCADE
);
CREATE INDEX workspace_memberships_user ON workspace_memberships (user_id);

------------------------------------------------------------------------------------------------
-- Contacts (between accounts, across organizations)
------------------------------------------------------------------------------------------------

CREATE TABLE contact_links (
    id              uuid PRIMARY KEY DEFAULT conclave_uuid_v7(),
    user_id         uuid NOT NULL REFERENCES user_accounts (id) ON DELETE CASCADE,
    contact_user_id uuid NOT NULL REFERENCES user_accounts (id) ON DELETE CASCADE,
    -- An accepted contact is a pair of rows, one per direction; a block is one row.
    status          text NOT NULL CHECK (status IN ('accepted', 'blocked')),
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (user_id, contact_user_id),
    CHECK (user_id <> contact_user_id)
);
CREATE INDEX contact_links_contact ON contact_links (contact_user_id);
CREATE TRIGGER contact_links_touch BEFORE UPDATE ON contact_links
    FOR EACH ROW EXECUTE FUNCTION conclave_touch_updated_at();

CREATE TABLE contact_invitations (
    id              uuid PRIMARY KEY DEFAULT conclave_uuid_v7(),
    inviter_user_id uuid NOT NULL REFERENCES user_accounts (id) ON DELETE CASCADE,
    -- Either addressed to an email, or an open code shared out of band (stored hashed).
    invitee_email   conclave_email,
    code_hash       conclave_sha256 UNIQUE,
    invitee_user_id uuid REFERENCES user_accounts (id) ON DELETE CASCADE,
    status          text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'accepted', 'declined', 'revoked')),
    expires_at      timestamptz NOT NULL,
    responded_at    timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    CHECK (invitee_email IS NOT NULL OR code_hash IS NOT NULL),
    CHECK ((status = 'pending') = (responded_at IS NULL)),
    CHECK (expires_at > created_at)
);
CREATE INDEX contact_invitations_inviter ON contact_invitations (inviter_user_id);
CREATE INDEX contact_invitations_email ON contact_invitations (invitee_email) WHERE status = 'pending';
