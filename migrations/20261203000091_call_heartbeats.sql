-- Calls never stay live forever: a joined participant's device sends heartbeats
-- (`last_seen_at`), and the data plane's call sweeper (dataplane/src/calls/sweep.rs) makes a
-- participant silent for too long leave, and a ring nobody answered in time `missed`.
ALTER TABLE call_participants ADD COLUMN last_seen_at timestamptz;
UPDATE call_participants SET last_seen_at = COALESCE(joined_at, now()) WHERE state = 'joined';
ALTER TABLE call_participants ADD CONSTRAINT call_participants_seen_check
    CHECK (state <> 'joined' OR last_seen_at IS NOT NULL);
CREATE INDEX call_participants_joined_seen ON call_participants (last_seen_at) WHERE state = 'joined';
CREATE INDEX call_sessions_live_started ON call_sessions (started_at) WHERE status <> 'ended';

-- The calls the sweeper has work in, across tenants (it then acts in a transaction for each
-- call's organization): a ring older than `ring_seconds` with someone still invited, or a joined
-- participant silent for `heartbeat_seconds`. Oldest first, at most `max_items`.
CREATE FUNCTION conclave_stale_calls(ring_seconds integer, heartbeat_seconds integer, max_items integer)
RETURNS TABLE (id uuid, organization_id uuid)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    SELECT c.id, c.organization_id FROM call_sessions c
     WHERE c.status <> 'ended'
       AND ((c.started_at < now() - make_interval(secs => ring_seconds)
             AND EXISTS (SELECT 1 FROM call_participants p WHERE p.call_id = c.id AND p.state = 'invited'))
         OR EXISTS (SELECT 1 FROM call_participants p
                     WHERE p.call_id = c.id AND p.state = 'joined'
                       AND p.last_seen_at < now() - make_interval(secs => heartbeat_seconds)))
     ORDER BY c.started_at
     LIMIT max_items
$$;
REVOKE ALL ON FUNCTION conclave_stale_calls(integer, integer, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION conclave_stale_calls(integer, integer, integer) TO conclave_app;
