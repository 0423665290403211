-- Conclave schema, bots as members (issue 20): a bot is a member device like any other.
--
-- The first time a bot opens a session with its token (`POST /v1/bot/sessions`), the data plane
-- gives it an account of its own: a `user_accounts` row linked here to its `bot_agents` row, a
-- member of the bot's organization and workspace, with no usable password (bots sign in with
-- their token only). Its devices, key packages, identity key and conversation memberships are
-- then ordinary rows, so MLS treats the bot like any member. Deleting the BotAgent deletes the
-- account and with it the bot's devices, sessions and memberships.
ALTER TABLE user_accounts ADD COLUMN bot_id uuid UNIQUE REFERENCES bot_agents (id) ON DELETE CASCADE;
COMMENT ON COLUMN user_accounts.bot_id IS 'The bot this account is the principal of; NULL for people.';

-- A bot's session lives as long as the token that opened it: the digest of that token (never the
-- token) is kept on the session, and every request checks it against the bot's current token, or
-- the previous one while its rotation overlap lasts (`conclave_bot_by_token`). So a rotation ends
-- the sessions of the old token when the overlap ends, and disabling the bot ends them at once.
ALTER TABLE session_tokens ADD COLUMN bot_token_hash conclave_sha256;
COMMENT ON COLUMN session_tokens.bot_token_hash IS
    'For a bot''s session: the SHA-256 of the bot token that opened it; the session ends with that token.';
