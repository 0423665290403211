-- A delivery the data plane refuses to make (the URL's host resolves to a loopback, private,
-- link-local, metadata, ... address that the DataPlane's allow-list does not name) is recorded as
-- `refused`, with the reason in last_delivery_error, so the WebhookEndpoint's status tells it
-- apart from a receiver that failed.
ALTER TABLE webhook_endpoints
    DROP CONSTRAINT webhook_endpoints_last_delivery_status_check,
    ADD CONSTRAINT webhook_endpoints_last_delivery_status_check
        CHECK (last_delivery_status IN ('succeeded', 'failed', 'refused'));
