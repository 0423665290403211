-- An endpoint that keeps failing is disabled by the data plane after its failure budget
-- (docs/webhooks.md): `failing_since` is the first failure since the last success, and
-- `disabled_at`/`disabled_reason` say when and why deliveries stopped. The operator shows it as
-- Ready=False and re-enables the endpoint when its spec changes (`disabled_generation`: the
-- resource's generation when the operator first saw it disabled) or when the annotation
-- `conclave.io/re-enable` gets a new value (`reenable_handled`: the value last acted on).
ALTER TABLE webhook_endpoints
    ADD COLUMN failing_since timestamptz,
    ADD COLUMN disabled_at timestamptz,
    ADD COLUMN disabled_reason text CHECK (length(disabled_reason) <= 1024),
    ADD COLUMN disabled_generation bigint,
    ADD COLUMN reenable_handled text CHECK (length(reenable_handled) <= 253),
    ADD CONSTRAINT webhook_endpoints_disabled_has_a_reason CHECK ((disabled_at IS NULL) = (disabled_reason IS NULL));

-- The data plane records results and disables; re-enabling is the operator's.
GRANT UPDATE (failing_since, disabled_at, disabled_reason) ON webhook_endpoints TO conclave_app;
