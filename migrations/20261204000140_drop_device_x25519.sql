-- Protocol v2: a device has one key, Ed25519, which signs its sign-in proofs and its MLS leaves.
-- Version 1 wrapped conversation keys to each device's X25519 key; MLS made that obsolete, so the
-- key goes (its size check goes with the column). `key_signature` stays, with a new meaning: the
-- device's Ed25519 signature over "conclave/v2/device-key" || 0x00 || ed25519_public_key, its
-- proof of possession at registration (docs/protocol.md, "Device registration"). Rows stored
-- before this migration hold a version 1 binding signature there; there are no deployments of
-- version 1, so none is rewritten.
ALTER TABLE devices DROP COLUMN x25519_public_key;

COMMENT ON COLUMN devices.key_signature IS
    'Ed25519 signature by ed25519_public_key over "conclave/v2/device-key" || 0x00 || ed25519_public_key: proof of possession at registration.';
