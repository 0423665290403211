-- Conclave schema, part 7: why a conversation needs a new key generation, and the one
-- privileged step device revocation needs.

-- Recorded when rotation becomes required, copied to the new generation's `reason`.
ALTER TABLE conversations
    ADD COLUMN rotation_reason text
        CHECK (rotation_reason IN ('initial', 'member_added', 'member_left', 'member_removed', 'device_revoked', 'scheduled', 'manual')),
    ADD CONSTRAINT conversations_rotation_reason_present CHECK (NOT rotation_required OR rotation_reason IS NOT NULL);

-- Revoking a device is an account-level action (no organization on the transaction), but the
-- conversations whose current key that device holds live in tenant tables the data plane's
-- role cannot see from there. This function does exactly that one update, for exactly the
-- conversations the device holds a current wrap of, and returns them (with their organization)
-- so the caller can announce the rotation. SECURITY DEFINER runs it as the owner.
CREATE FUNCTION conclave_require_rotation_for_device(revoked_device uuid)
RETURNS TABLE (organization_id uuid, conversation_id uuid)
LANGUAGE sql SECURITY DEFINER SET search_path = public, pg_temp AS $$
    UPDATE conversations c
       SET rotation_required = true, rotation_reason = 'device_revoked'
      FROM member_key_wraps w
     WHERE w.recipient_device_id = revoked_device
       AND w.conversation_id = c.id
       AND w.generation = c.current_key_generation
       AND NOT c.rotation_required
    RETURNING c.organization_id, c.id
$$;
REVOKE ALL ON FUNCTION conclave_require_rotation_for_device(uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION conclave_require_rotation_for_device(uuid) TO conclave_app;
