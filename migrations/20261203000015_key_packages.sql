-- Protocol v2 (MLS, RFC 9420): the key packages a device publishes so that others can add it to a
-- conversation's group while it is offline. One-time packages are handed out at most once (the
-- claim deletes the row it returns); each device may keep one last-resort package, returned when
-- its one-time packages run out and never deleted by a claim (RFC 9420 section 16.8).
CREATE TABLE device_key_packages (
    id          uuid PRIMARY KEY DEFAULT conclave_uuid_v7(),
    -- Upload order (ids made in the same millisecond are not ordered): the oldest goes first.
    seq         bigint GENERATED ALWAYS AS IDENTITY,
    device_id   uuid NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    -- A TLS-encoded MLSMessage carrying a KeyPackage; the server cannot check more than its size,
    -- the claiming client verifies it.
    key_package bytea NOT NULL CHECK (octet_length(key_package) BETWEEN 64 AND 8192),
    last_resort boolean NOT NULL DEFAULT false,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX device_key_packages_one_last_resort ON device_key_packages (device_id) WHERE last_resort;
CREATE INDEX device_key_packages_oldest_first ON device_key_packages (device_id, seq) WHERE NOT last_resort;

-- UPDATE only because a claim locks the row it takes (SELECT ... FOR UPDATE needs it); rows are
-- never updated.
GRANT SELECT, INSERT, UPDATE, DELETE ON device_key_packages TO conclave_app;
