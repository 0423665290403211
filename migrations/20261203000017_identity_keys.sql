-- Protocol v2's identity chain (docs/protocol-v2.md): each user has an identity key (Ed25519) that
-- signs their devices' credentials. The server keeps the public half so that a client can check a
-- listing and show safety numbers, each device's credential so that listings carry what verifies
-- them, and, for a few minutes, an identity key sealed by one of the user's devices for another
-- (it cannot open it: the seal is to a key the new device showed its owner out of band).
CREATE TABLE identity_keys (
    id         uuid PRIMARY KEY DEFAULT conclave_uuid_v7(),
    user_id    uuid NOT NULL REFERENCES user_accounts (id) ON DELETE CASCADE,
    public_key bytea NOT NULL CHECK (octet_length(public_key) = 32),
    created_at timestamptz NOT NULL DEFAULT now(),
    -- Set when the user replaced the key (every device lost); the history stays for audits.
    retired_at timestamptz,
    CHECK (retired_at IS NULL OR retired_at >= created_at)
);
CREATE UNIQUE INDEX identity_keys_one_current ON identity_keys (user_id) WHERE retired_at IS NULL;
CREATE INDEX identity_keys_by_user ON identity_keys (user_id, created_at);
COMMENT ON TABLE identity_keys IS 'Domain: Devices. A user''s identity public key (protocol v2); one current, earlier ones retired.';
GRANT SELECT, INSERT, UPDATE ON identity_keys TO conclave_app;

-- The device's credential under its user's identity key (133 bytes, CNC2 layout), verified by the
-- server when stored and by every client that uses it.
ALTER TABLE devices ADD COLUMN credential bytea CHECK (octet_length(credential) = 133);

CREATE TABLE identity_transfers (
    -- One pending transfer per receiving device: a new one replaces it.
    device_id      uuid PRIMARY KEY REFERENCES devices (id) ON DELETE CASCADE,
    from_device_id uuid NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    -- HPKE enc || ciphertext; opaque to the server.
    sealed         bytea NOT NULL CHECK (octet_length(sealed) BETWEEN 48 AND 256),
    created_at     timestamptz NOT NULL DEFAULT now(),
    expires_at     timestamptz NOT NULL,
    CHECK (device_id <> from_device_id),
    CHECK (expires_at > created_at)
);
CREATE INDEX identity_transfers_from ON identity_transfers (from_device_id);
COMMENT ON TABLE identity_transfers IS 'Domain: Devices. An identity key sealed by one device for another of the same user; handed out once.';
GRANT SELECT, INSERT, UPDATE, DELETE ON identity_transfers TO conclave_app;
