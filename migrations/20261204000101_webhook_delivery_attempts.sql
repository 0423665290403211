-- The delivery log keeps every attempt, not only the last: when, how it went (succeeded,
-- failed or refused by the address guard), the HTTP status if the receiver answered, how long it
-- took (none for a call never made) and the error. Organization admins read them through
-- `GET .../webhooks/{endpoint}/deliveries/{delivery}/attempts`; they go with their delivery.
CREATE TABLE webhook_delivery_attempts (
    id              uuid PRIMARY KEY DEFAULT conclave_uuid_v7(),
    organization_id uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    delivery_id     uuid NOT NULL REFERENCES outbound_notifications (id) ON DELETE CASCADE,
    attempted_at    timestamptz NOT NULL DEFAULT now(),
    status          text NOT NULL CHECK (status IN ('succeeded', 'failed', 'refused')),
    status_code     integer CHECK (status_code BETWEEN 100 AND 599),
    latency_ms      integer CHECK (latency_ms >= 0),
    error           text CHECK (length(error) <= 1024)
);
CREATE INDEX webhook_delivery_attempts_by_delivery ON webhook_delivery_attempts (delivery_id, id);

ALTER TABLE webhook_delivery_attempts ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON webhook_delivery_attempts TO conclave_app
    USING (organization_id = conclave_current_organization())
    WITH CHECK (organization_id = conclave_current_organization());
GRANT SELECT, INSERT ON webhook_delivery_attempts TO conclave_app;
COMMENT ON TABLE webhook_delivery_attempts IS 'Domain: Integrations. One attempt at a webhook delivery: when, its outcome, HTTP status, latency and error.';
