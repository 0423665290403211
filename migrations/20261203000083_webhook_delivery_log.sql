-- The delivery log that organization admins read through the API: each webhook row's last
-- attempt's HTTP status and latency, beside its status, attempts and last error.
ALTER TABLE outbound_notifications
    ADD COLUMN last_status_code integer CHECK (last_status_code BETWEEN 100 AND 599),
    ADD COLUMN last_latency_ms integer CHECK (last_latency_ms >= 0);
-- An endpoint's log is read newest first.
CREATE INDEX outbound_notifications_by_endpoint ON outbound_notifications (webhook_endpoint_id, id DESC)
    WHERE webhook_endpoint_id IS NOT NULL;
GRANT UPDATE (last_status_code, last_latency_ms) ON outbound_notifications TO conclave_app;
