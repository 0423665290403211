-- Conclave schema, bot scopes (issue 20): two more scopes a BotAgent can hold.
--
-- `pins:write` lets a bot pin and unpin messages (before, pinning came with `messages:write`);
-- `calls:read` lets it read a conversation's call records and receive the `call_updated` and
-- `call_signal` frames on its WebSocket. Bots still cannot start, join or signal calls. The list
-- is the one of `conclave_protocol::bots::SCOPES` and of the BotAgent resource's `BotScope`.
ALTER TABLE bot_agents DROP CONSTRAINT bot_agents_scopes_check;
ALTER TABLE bot_agents ADD CONSTRAINT bot_agents_scopes_check
    CHECK (scopes <@ ARRAY['messages:read', 'messages:write', 'conversations:read', 'conversations:write',
                           'members:read', 'reactions:write', 'pins:write', 'calls:read', 'files:read',
                           'files:write']::text[]);
