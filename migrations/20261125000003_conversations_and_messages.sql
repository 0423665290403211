-- Conclave schema, part 3: conversations, their keys, messages, and calls.
--
-- The server holds ciphertext, public keys and wrapped keys only (docs/protocol.md). Tenant
-- consistency is enforced by composite foreign keys that include `organization_id`, so a child
-- row can never point at a parent in another organization.

CREATE TABLE conversations (
    id                     uuid PRIMARY KEY DEFAULT conclave_uuid_v7(),
    organization_id        uuid NOT NULL,
    workspace_id           uuid NOT NULL,
    kind                   text NOT NULL CHECK (kind IN ('direct', 'group', 'channel')),
    -- Channel names are routing metadata, not message content; groups and direct conversations
    -- carry their title inside encrypted messages.
    name                   conclave_slug,
    created_by             uuid REFERENCES user_accounts (id) ON DELETE SET NULL,
    -- The key generation messages must use; 0 until the creator uploads generation 1.
    current_key_generation integer NOT NULL DEFAULT 0 CHECK (current_key_generation >= 0),
    -- Set when a member left or a device was revoked: sends are refused until a new generation.
    rotation_required      boolean NOT NULL DEFAULT false,
    -- The last sequence number handed out; messages are numbered 1, 2, 3, ... per conversation.
    last_seq               bigint NOT NULL DEFAULT 0 CHECK (last_seq >= 0),
    archived_at            timestamptz,
    created_at             timestamptz NOT NULL DEFAULT now(),
    updated_at             timestamptz NOT NULL DEFAULT now(),
    UNIQUE (organization_id, id),
    CHECK ((kind = 'channel') = (name IS NOT NULL)),
    FOREIGN KEY (organization_id, workspace_id) REFERENCES workspaces (organization_id, id) ON DELETE CASCADE
);
CREATE UNIQUE INDEX conversations_channel_name ON conversations (workspace_id, name) WHERE kind = 'channel';
CREATE INDEX conversations_workspace ON conversations (workspace_id);
CREATE TRIGGER conversations_touch BEFORE UPDATE ON conversations
    FOR EACH ROW EXECUTE FUNCTION conclave_touch_updated_at();

CREATE TABLE conversation_members (
    id              uuid PRIMARY KEY DEFAULT conclave_uuid_v7(),
    organization_id uuid NOT NULL,
    conversation_id uuid NOT NULL,
    user_id         uuid NOT NULL,
    role            text NOT NULL DEFAULT 'member' CHECK (role IN ('owner', 'admin', 'member')),
    -- Receipts as cursors: everything up to these sequence numbers is delivered / read. This
    -- keeps a send to a channel of thousands one insert, not one per member (docs/receipts.md).
    delivered_seq   bigint NOT NULL DEFAULT 0 CHECK (delivered_seq >= 0),
    read_seq        bigint NOT NULL DEFAULT 0 CHECK (read_seq >= 0 AND read_seq <= delivered_seq),
    joined_at       timestamptz NOT NULL DEFAULT now(),
    UNIQUE (conversation_id, user_id),
    UNIQUE (organization_id, conversation_id, user_id),
    FOREIGN KEY (organization_id, conversation_id) REFERENCES conversations (organization_id, id) ON DELETE CASCADE,
    FOREIGN KEY (organization_id, user_id) REFERENCES organization_memberships (organization_id, user_id) ON DELETE CASCADE
);
CREATE INDEX conversation_members_user ON conversation_members (user_id);

CREATE TABLE conversation_encryption_keys (
    id                   uuid PRIMARY KEY DEFAULT conclave_uuid_v7(),
    organization_id      uuid NOT NULL,
    conversation_id      uuid NOT NULL,
    generation           integer NOT NULL CHECK (generation > 0),
    created_by_device_id uuid REFERENCES devices (id) ON DELETE SET NULL,
    reason               text NOT NULL CHECK (reason IN ('initial', 'member_added', 'member_left', 'member_removed', 'device_revoked', 'scheduled', 'manual')),
    created_at           timestamptz NOT NULL DEFAULT now(),
    UNIQUE (conversation_id, generation),
    UNIQUE (organization_id, conversation_id, generation),
    FOREIGN KEY (organization_id, conversation_id) REFERENCES conversations (organization_id, id) ON DELETE CASCADE
);

CREATE TABLE member_key_wraps (
    id                  uuid PRIMARY KEY DEFAULT conclave_uuid_v7(),
    organization_id     uuid NOT NULL,
    conversation_id     uuid NOT NULL,
    generation          integer NOT NULL,
    recipient_user_id   uuid NOT NULL,
    recipient_device_id uuid NOT NULL,
    -- HPKE (RFC 9180) output: the 32-byte encapsulated X25519 key and the sealed 32-byte
    -- conversation key plus its 16-byte tag.
    encapsulated_key    bytea NOT NULL CHECK (octet_length(encapsulated_key) = 32),
    wrapped_key         bytea NOT NULL CHECK (octet_length(wrapped_key) = 48),
    created_at          timestamptz NOT NULL DEFAULT now(),
    UNIQUE (conversation_id, generation, recipient_device_id),
    FOREIGN KEY (organization_id, conversation_id, generation)
        REFERENCES conversation_encryption_keys (organization_id, conversation_id, generation) ON DELETE CASCADE,
    FOREIGN KEY (recipient_user_id, recipient_device_id) REFERENCES devices (user_id, id) ON DELETE CASCADE
);
CREATE INDEX member_key_wraps_device ON member_key_wraps (recipient_device_id, conversation_id, generation);

CREATE TABLE conversation_invites (
    id              uuid PRIMARY KEY DEFAULT conclave_uuid_v7(),
    organization_id uuid NOT NULL,
    conversation_id uuid NOT NULL,
    created_by      uuid REFERENCES user_accounts (id) ON DELETE SET NULL,
    token_hash      conclave_sha256 NOT NULL UNIQUE,
    max_uses        integer CHECK (max_uses > 0),
    use_count       integer NOT NULL DEFAULT 0,
    expires_at      timestamptz NOT NULL,
    revoked_at      timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    CHECK (expires_at > created_at),
    CONSTRAINT conversation_invites_use_limit CHECK (use_count >= 0 AND (max_uses IS NULL OR use_count <= max_uses)),
    FOREIGN KEY (organization_id, conversation_id) REFERENCES conversations (organization_id, id) ON DELETE CASCADE
);
CREATE INDEX conversation_invites_conversation ON conversation_invites (conversation_id);

------------------------------------------------------------------------------------------------
-- Messages
------------------------------------------------------------------------------------------------

CREATE TABLE messages (
    id                uuid PRIMARY KEY DEFAULT conclave_uuid_v7(),
    organization_id   uuid NOT NULL,
    conversation_id   uuid NOT NULL,
    seq               bigint NOT NULL CHECK (seq > 0),
    sender_user_id    uuid REFERENCES user_accounts (id) ON DELETE SET NULL,
    sender_device_id  uuid REFERENCES devices (id) ON DELETE SET NULL,
    -- Chosen by the client; a retried send with the same id returns the stored message.
    client_message_id uuid NOT NULL,
    key_generation    integer NOT NULL CHECK (key_generation > 0),
    -- AEAD ciphertext and nonce; NULL once deleted (a tombstone keeps the sequence gap-free).
    nonce             bytea CHECK (octet_length(nonce) = 12),
    ciphertext        bytea CHECK (octet_length(ciphertext) BETWEEN 16 AND 262144),
    signature         bytea CHECK (octet_length(signature) = 64),
    reply_to_id       uuid REFERENCES messages (id) ON DELETE SET NULL,
    created_at        timestamptz NOT NULL DEFAULT now(),
    edited_at         timestamptz,
    deleted_at        timestamptz,
    UNIQUE (conversation_id, seq),
    UNIQUE (organization_id, id),
    UNIQUE (conversation_id, sender_device_id, client_message_id),
    CHECK ((deleted_at IS NULL) = (ciphertext IS NOT NULL)),
    CHECK ((ciphertext IS NULL) = (nonce IS NULL) AND (ciphertext IS NULL) = (signature IS NULL)),
    FOREIGN KEY (organization_id, conversation_id) REFERENCES conversations (organization_id, id) ON DELETE CASCADE,
    FOREIGN KEY (organization_id, conversation_id, key_generation)
        REFERENCES conversation_encryption_keys (organization_id, conversation_id, generation)
);
-- Retention sweeps walk messages by age.
CREATE INDEX messages_created ON messages (organization_id, created_at);

CREATE TABLE message_deliveries (
    organization_id   uuid NOT NULL,
    message_id        uuid NOT NULL,
    recipient_user_id uuid NOT NULL REFERENCES user_accounts (id) ON DELETE CASCADE,
    delivered_at      timestamptz,
    read_at           timestamptz,
    PRIMARY KEY (message_id, recipient_user_id),
    CHECK (read_at IS NULL OR delivered_at IS NOT NULL),
    FOREIGN KEY (organization_id, message_id) REFERENCES messages (organization_id, id) ON DELETE CASCADE
);
CREATE INDEX message_deliveries_recipient ON message_deliveries (recipient_user_id, message_id);

CREATE TABLE message_attachments (
    id               uuid PRIMARY KEY DEFAULT conclave_uuid_v7(),
    organization_id  uuid NOT NULL,
    conversation_id  uuid NOT NULL,
    -- NULL until a message references it; unattached uploads are collected after a grace period.
    message_id       uuid,
    uploader_user_id uuid REFERENCES user_accounts (id) ON DELETE SET NULL,
    -- Size and SHA-256 of the encrypted blob as stored.
    size_bytes       bigint NOT NULL CHECK (size_bytes > 0),
    content_sha256   conclave_sha256 NOT NULL,
    storage_key      text NOT NULL UNIQUE CHECK (length(storage_key) <= 512),
    status           text NOT NULL DEFAULT 'uploading' CHECK (status IN ('uploading', 'stored', 'attached', 'deleted')),
    created_at       timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (organization_id, conversation_id) REFERENCES conversations (organization_id, id) ON DELETE CASCADE,
    FOREIGN KEY (organization_id, message_id) REFERENCES messages (organization_id, id) ON DELETE SET NULL (message_id)
);
CREATE INDEX message_attachments_message ON message_attachments (message_id);
CREATE INDEX message_attachments_collectable ON message_attachments (created_at) WHERE message_id IS NULL;

CREATE TABLE message_reactions (
    id                  uuid PRIMARY KEY DEFAULT conclave_uuid_v7(),
    organization_id     uuid NOT NULL,
    message_id          uuid NOT NULL,
    user_id             uuid NOT NULL REFERENCES user_accounts (id) ON DELETE CASCADE,
    key_generation      integer NOT NULL CHECK (key_generation > 0),
    -- The reaction itself is encrypted like a message; `value_tag` is a keyed hash of it
    -- (docs/protocol.md) so "one reaction per user per value" holds without the server reading it.
    nonce               bytea NOT NULL CHECK (octet_length(nonce) = 12),
    ciphertext          bytea NOT NULL CHECK (octet_length(ciphertext) BETWEEN 16 AND 1024),
    value_tag           conclave_sha256 NOT NULL,
    created_at          timestamptz NOT NULL DEFAULT now(),
    UNIQUE (message_id, user_id, value_tag),
    FOREIGN KEY (organization_id, message_id) REFERENCES messages (organization_id, id) ON DELETE CASCADE
);

CREATE TABLE message_pins (
    id              uuid PRIMARY KEY DEFAULT conclave_uuid_v7(),
    organization_id uuid NOT NULL,
    conversation_id uuid NOT NULL,
    message_id      uuid NOT NULL UNIQUE,
    pinned_by       uuid REFERENCES user_accounts (id) ON DELETE SET NULL,
    pinned_at       timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (organization_id, conversation_id) REFERENCES conversations (organization_id, id) ON DELETE CASCADE,
    FOREIGN KEY (organization_id, message_id) REFERENCES messages (organization_id, id) ON DELETE CASCADE
);
CREATE INDEX message_pins_conversation ON message_pins (conversation_id, pinned_at);

------------------------------------------------------------------------------------------------
-- Calls (signalling state only; media flows peer to peer or through TURN)
------------------------------------------------------------------------------------------------

CREATE TABLE call_sessions (
    id              uuid PRIMARY KEY DEFAULT conclave_uuid_v7(),
    organization_id uuid NOT NULL,
    conversation_id uuid NOT NULL,
    started_by      uuid REFERENCES user_accounts (id) ON DELETE SET NULL,
    media           text NOT NULL CHECK (media IN ('audio', 'video')),
    status          text NOT NULL DEFAULT 'ringing' CHECK (status IN ('ringing', 'active', 'ended')),
    started_at      timestamptz NOT NULL DEFAULT now(),
    ended_at        timestamptz,
    end_reason      text CHECK (end_reason IN ('hangup', 'declined', 'missed', 'failed')),
    UNIQUE (organization_id, id),
    CHECK ((status = 'ended') = (ended_at IS NOT NULL)),
    CHECK (ended_at IS NULL OR ended_at >= started_at),
    FOREIGN KEY (organization_id, conversation_id) REFERENCES conversations (organization_id, id) ON DELETE CASCADE
);
-- One call at a time per conversation.
CREATE UNIQUE INDEX call_sessions_live ON call_sessions (conversation_id) WHERE status <> 'ended';

CREATE TABLE call_participants (
    id              uuid PRIMARY KEY DEFAULT conclave_uuid_v7(),
    organization_id uuid NOT NULL,
    call_id         uuid NOT NULL,
    user_id         uuid NOT NULL REFERENCES user_accounts (id) ON DELETE CASCADE,
    device_id       uuid REFERENCES devices (id) ON DELETE SET NULL,
    state           text NOT NULL DEFAULT 'invited' CHECK (state IN ('invited', 'joined', 'left', 'declined')),
    joined_at       timestamptz,
    left_at         timestamptz,
    UNIQUE (call_id, user_id),
    CHECK (left_at IS NULL OR joined_at IS NULL OR left_at >= joined_at),
    FOREIGN KEY (organization_id, call_id) REFERENCES call_sessions (organization_id, id) ON DELETE CASCADE
);
