-- Protocol v2: the delivery service's Remove proposals (it is its groups' MLS external sender)
-- that a commit includes by reference. Every member needs them to process that commit, so they
-- are kept with it, in the order the committer received them, and listed with it to devices that
-- catch up. The members verify each against the group's external sender key; the server only
-- checks that each is a proposal of this group in the commit's epoch.
ALTER TABLE conversation_encryption_keys
    ADD COLUMN proposals bytea[] NOT NULL DEFAULT '{}'
        CHECK (cardinality(proposals) <= 1000 AND (commit_message IS NOT NULL OR cardinality(proposals) = 0));

COMMENT ON COLUMN conversation_encryption_keys.proposals IS
    'Protocol v2: the delivery service''s Remove proposals the commit that opened this epoch includes by reference.';
