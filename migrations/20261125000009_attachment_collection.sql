-- Conclave schema, part 9: collecting attachment blobs nobody can reach any more.
--
-- An attachment is collectable when its message was deleted (a tombstone: `deleted_at` set),
-- when its message row is gone (`message_id` set to NULL by the foreign key while the row was
-- `attached`), or when it was uploaded but never sent within `grace_seconds`. Attachments are
-- tenant rows, and the collector serves every tenant, so claiming is done across tenants by this
-- function (as the owner): it marks up to `max_items` of them `deleted` and returns them. The
-- collector then deletes each blob and, in a transaction acting for the row's organization,
-- deletes the row and gives its bytes back to the organization's quota. A collector that dies
-- half-way leaves rows `deleted`; they are returned again by the next claim (deleting a blob
-- twice is harmless, and only the transaction that deletes the row releases quota).
CREATE FUNCTION conclave_claim_collectable_attachments(grace_seconds integer, max_items integer)
RETURNS TABLE (id uuid, organization_id uuid, storage_key text, size_bytes bigint)
LANGUAGE sql SECURITY DEFINER SET search_path = public, pg_temp AS $$
    UPDATE message_attachments a
       SET status = 'deleted'
     WHERE a.id IN (
           SELECT d.id FROM message_attachments d
             LEFT JOIN messages m ON m.id = d.message_id
            WHERE d.status = 'deleted'
               OR (d.message_id IS NULL AND d.status = 'attached')
               OR m.deleted_at IS NOT NULL
               OR (d.message_id IS NULL AND d.created_at < now() - make_interval(secs => grace_seconds))
            ORDER BY d.created_at
            LIMIT max_items
              FOR UPDATE OF d SKIP LOCKED)
    RETURNING a.id, a.organization_id, a.storage_key, a.size_bytes
$$;
REVOKE ALL ON FUNCTION conclave_claim_collectable_attachments(integer, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION conclave_claim_collectable_attachments(integer, integer) TO conclave_app;
