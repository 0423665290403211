-- Webhook signing secrets rotate with an overlap: after a rotation the operator keeps the
-- previous secret, sealed like the current one, until `previous_secret_expires_at`; until then the
-- data plane signs every delivery with both (Standard Webhooks allows several space-separated
-- `v1,` signatures), so a receiver can switch to the new secret at any time within the window.
ALTER TABLE webhook_endpoints
    ADD COLUMN previous_signing_secret_sealed bytea
        CHECK (octet_length(previous_signing_secret_sealed) BETWEEN 28 AND 256),
    ADD COLUMN previous_secret_expires_at timestamptz,
    ADD CONSTRAINT webhook_endpoints_previous_secret_has_a_deadline
        CHECK ((previous_signing_secret_sealed IS NULL) = (previous_secret_expires_at IS NULL));

COMMENT ON COLUMN webhook_endpoints.previous_signing_secret_sealed IS
    'The signing secret before the last rotation (sealed with the at-rest key under the same context as the current one), also used to sign until previous_secret_expires_at.';
