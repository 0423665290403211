-- Calls get the lifecycle the data plane enforces (dataplane/src/calls/state.rs, docs/calls.md):
-- a call rings, becomes active when a callee accepts, and ends (hung up, cancelled, declined or
-- missed); each member is invited, joins on one device, leaves, declines or misses it.

ALTER TABLE call_sessions DROP CONSTRAINT call_sessions_media_check;
ALTER TABLE call_sessions ADD CONSTRAINT call_sessions_media_check CHECK (media IN ('audio', 'video', 'screen'));
ALTER TABLE call_sessions DROP CONSTRAINT call_sessions_end_reason_check;
ALTER TABLE call_sessions ADD CONSTRAINT call_sessions_end_reason_check
    CHECK (end_reason IN ('hangup', 'cancelled', 'declined', 'missed', 'failed'));
-- When the first callee accepted (the call's duration counts from here); null for a call that
-- never connected.
ALTER TABLE call_sessions ADD COLUMN answered_at timestamptz;
ALTER TABLE call_sessions ADD CONSTRAINT call_sessions_answered_check
    CHECK (answered_at IS NULL OR answered_at >= started_at);

ALTER TABLE call_participants DROP CONSTRAINT call_participants_state_check;
ALTER TABLE call_participants ADD CONSTRAINT call_participants_state_check
    CHECK (state IN ('invited', 'joined', 'left', 'declined', 'missed'));

-- A device is in one call at a time ("busy" is per device): a second join fails here even when
-- two calls race.
CREATE UNIQUE INDEX call_participants_device_busy ON call_participants (device_id) WHERE state = 'joined';
-- The list of a conversation's calls, newest first.
CREATE INDEX call_sessions_by_conversation ON call_sessions (conversation_id, started_at DESC);
