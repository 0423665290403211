-- Conclave schema, part 8: how the data plane's workers take work from the outbox.
--
-- Outbox rows are tenant rows, so the data-plane role sees none of them without an
-- organization on its transaction. A worker serves every tenant, so claiming is the one step
-- done across tenants, by this function (as the owner): it marks up to `max_items` due rows
-- `sending` for `lease_seconds` and returns them. Each row is then processed in a transaction
-- acting for its own organization. A worker that dies leaves its rows `sending` with an expired
-- lease, and they are claimed again. `FOR UPDATE SKIP LOCKED` lets replicas claim side by side.
CREATE FUNCTION conclave_claim_outbox(channels text[], max_items integer, lease_seconds integer)
RETURNS TABLE (id uuid, organization_id uuid, channel text, event_type text, recipient_user_id uuid,
               webhook_endpoint_id uuid, payload jsonb, attempts integer)
LANGUAGE sql SECURITY DEFINER SET search_path = public, pg_temp AS $$
    UPDATE outbound_notifications o
       SET status = 'sending', attempts = o.attempts + 1,
           next_attempt_at = now() + make_interval(secs => lease_seconds)
     WHERE o.id IN (
           SELECT d.id FROM outbound_notifications d
            WHERE d.channel = ANY (channels)
              AND d.status IN ('pending', 'failed', 'sending')
              AND d.next_attempt_at <= now()
            ORDER BY d.next_attempt_at
            LIMIT max_items
              FOR UPDATE SKIP LOCKED)
    RETURNING o.id, o.organization_id, o.channel, o.event_type, o.recipient_user_id,
              o.webhook_endpoint_id, o.payload, o.attempts
$$;
REVOKE ALL ON FUNCTION conclave_claim_outbox(text[], integer, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION conclave_claim_outbox(text[], integer, integer) TO conclave_app;
