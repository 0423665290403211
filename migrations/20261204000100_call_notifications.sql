-- Calls notify like messages do. A member rung by a call gets a `call.incoming` push; one whose
-- ringing ended unanswered (the ring timed out, the caller cancelled, the call ended first) gets
-- a `call.missed` push. A trigger queues both where the participant's state changes, so every
-- path that changes it (the API's actions, the call sweeper, a call's end) queues them in its own
-- transaction. Only people with a push subscription get rows, as for messages; the outbox worker
-- (dataplane/src/outbox/push.rs) then decides with their preferences. A member added to the
-- conversation after the call started was never rung, and gets neither.
CREATE FUNCTION conclave_call_push() RETURNS trigger
LANGUAGE plpgsql SET search_path = public, pg_temp AS $$
DECLARE
    event text;
BEGIN
    IF TG_OP = 'INSERT' AND NEW.state = 'invited' THEN
        event := 'call.incoming';
    ELSIF TG_OP = 'UPDATE' AND OLD.state = 'invited' AND NEW.state = 'missed' THEN
        event := 'call.missed';
    ELSE
        RETURN NULL;
    END IF;
    INSERT INTO outbound_notifications (organization_id, channel, event_type, recipient_user_id, payload)
    SELECT NEW.organization_id, 'push', event, NEW.user_id,
           jsonb_build_object('conversation_id', c.conversation_id, 'call_id', c.id, 'media', c.media)
      FROM call_sessions c
     WHERE c.id = NEW.call_id
       AND EXISTS (SELECT 1 FROM push_subscriptions p WHERE p.user_id = NEW.user_id);
    RETURN NULL;
END
$$;

CREATE TRIGGER call_participants_push AFTER INSERT OR UPDATE OF state ON call_participants
    FOR EACH ROW EXECUTE FUNCTION conclave_call_push();
