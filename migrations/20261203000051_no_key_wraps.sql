-- Protocol v2 (MLS) finishes replacing version 1's key wraps. No client uploads or fetches an
-- HPKE-wrapped conversation key any more: a device receives an epoch's secrets through an MLS
-- Welcome (when a commit adds it) or the commits it processes. `member_key_wraps` keeps its
-- meaning of "the key material of an epoch for one device": each row now names a device an
-- epoch's Welcome is for, so that the server hands that Welcome to it only.

ALTER TABLE member_key_wraps
    DROP CONSTRAINT member_key_wraps_hpke_whole,
    DROP COLUMN encapsulated_key,
    DROP COLUMN wrapped_key;

COMMENT ON TABLE member_key_wraps IS
    'Domain: Conversations. A device that an epoch''s MLS Welcome is for: the server hands that Welcome to it only.';

-- A revoked device must leave every group it is in. Version 1 found those conversations by the
-- device's wrap of the current generation; under MLS a device has a row only for the epoch whose
-- Welcome added it, not for the epochs after, so that test missed a device added earlier. Every
-- conversation of the device's user that has a group (epoch 1 or later) now waits for a commit;
-- when the device never got a leaf, that commit is a member's self-update.
CREATE OR REPLACE FUNCTION conclave_require_rotation_for_device(revoked_device uuid)
RETURNS TABLE (organization_id uuid, conversation_id uuid)
LANGUAGE sql SECURITY DEFINER SET search_path = public, pg_temp AS $$
    UPDATE conversations c
       SET rotation_required = true, rotation_reason = 'device_revoked'
      FROM conversation_members m
      JOIN devices d ON d.user_id = m.user_id
     WHERE d.id = revoked_device
       AND m.conversation_id = c.id
       AND c.current_key_generation > 0
       AND NOT c.rotation_required
    RETURNING c.organization_id, c.id
$$;
REVOKE ALL ON FUNCTION conclave_require_rotation_for_device(uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION conclave_require_rotation_for_device(uuid) TO conclave_app;
