-- Conclave schema, part 10: how the data plane recognises a bot by its token.
--
-- A bot presents the token from its Kubernetes Secret; the data plane knows nothing else about
-- it yet, not even its organization, and `bot_agents` is a tenant table. This function does the
-- one cross-tenant lookup that needs: by the token's SHA-256 digest, the current token, or the
-- previous one while its rotation overlap lasts, of an enabled bot.
CREATE FUNCTION conclave_bot_by_token(digest bytea)
RETURNS TABLE (organization_id uuid, bot_id uuid, workspace_id uuid, display_name text, scopes text[],
               previous_token boolean)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    SELECT b.organization_id, b.id, b.workspace_id, b.display_name, b.scopes, b.token_hash <> digest
      FROM bot_agents b JOIN organizations o ON o.id = b.organization_id
     WHERE b.enabled AND o.status = 'active'
       AND (b.token_hash = digest
            OR (b.previous_token_hash = digest AND b.previous_token_expires_at > now()))
$$;
REVOKE ALL ON FUNCTION conclave_bot_by_token(bytea) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION conclave_bot_by_token(bytea) TO conclave_app;
