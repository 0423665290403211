-- Conclave schema, part 71: legal holds declared on the Organization resource.
--
-- The operator places and lifts the holds listed in an Organization's `spec.legalHolds`; each
-- row it places carries the hold's name there. Holds placed through the API have none, and the
-- operator never touches them. A name stands at most once in an organization.
ALTER TABLE legal_holds ADD COLUMN k8s_name text CHECK (length(k8s_name) BETWEEN 1 AND 63);
CREATE UNIQUE INDEX legal_holds_declared ON legal_holds (organization_id, k8s_name)
    WHERE lifted_at IS NULL AND k8s_name IS NOT NULL;
COMMENT ON COLUMN legal_holds.k8s_name IS 'The name of the hold in the Organization resource''s spec.legalHolds, for holds the operator placed; NULL for holds placed through the API.';

-- The lock between placing holds (exclusive) and deleting what a hold could cover (shared:
-- retention batches, erasures), per organization, until the end of the transaction. The data
-- plane and the operator both place holds, so the lock is named here, once.
CREATE FUNCTION conclave_lock_holds(org uuid, shared boolean)
RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF shared THEN
        PERFORM pg_advisory_xact_lock_shared(hashtextextended('conclave.holds:' || org::text, 0));
    ELSE
        PERFORM pg_advisory_xact_lock(hashtextextended('conclave.holds:' || org::text, 0));
    END IF;
END
$$;
