-- Conclave schema, part 70: one answer to "does this organization's audit chain hold?".
--
-- The data plane's `GET .../audit/verify` and the operator's Organization status both ask it;
-- both read it from here, so they cannot disagree. One row: how many entries the organization
-- has, and the first entry that breaks the chain (all NULL when it holds).
CREATE FUNCTION conclave_audit_check(org uuid)
RETURNS TABLE (entries bigint, first_broken_seq bigint, first_broken_id uuid, problem text)
LANGUAGE sql STABLE AS $$
    SELECT (SELECT count(*) FROM audit_logs a WHERE a.organization_id = org),
           v.chain_seq, v.id, v.problem
      FROM (SELECT) AS one
      LEFT JOIN conclave_audit_verify(org) AS v ON true
$$;
