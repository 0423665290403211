-- Conclave schema, part 61: privacy exports nobody downloaded in time are deleted (docs/compliance.md).
--
-- An export archive holds everything about a person; it waits 7 days for its one download. The
-- retention sweep asks this function, across tenants, which archives are past that, then forgets
-- each in a transaction acting for its organization and deletes the blob.

-- Index of the archives still stored, by when they stop being downloadable.
CREATE INDEX privacy_requests_stored_exports ON privacy_requests (result_expires_at)
    WHERE result_location IS NOT NULL;

CREATE FUNCTION conclave_expired_privacy_exports(max_rows integer)
RETURNS TABLE (organization_id uuid, id uuid)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    SELECT r.organization_id, r.id FROM privacy_requests r
     WHERE r.result_location IS NOT NULL AND r.result_expires_at < now()
     ORDER BY r.result_expires_at
     LIMIT max_rows
$$;
REVOKE ALL ON FUNCTION conclave_expired_privacy_exports(integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION conclave_expired_privacy_exports(integer) TO conclave_app;
