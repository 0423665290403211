-- Protocol v2 (MLS): a conversation's key generation is its MLS group's epoch. The row of an epoch
-- keeps the commit that opened it (for devices catching up), the group info of that epoch (for a
-- device rejoining by external commit) and the Welcome for the devices the commit added; the
-- devices a Welcome is for get a member_key_wraps row without HPKE wraps, so the server hands the
-- Welcome to them only.
-- Epoch 0 is the group its creator made alone; the first commit opens epoch 1.
ALTER TABLE conversation_encryption_keys
    ADD COLUMN commit_message bytea CHECK (octet_length(commit_message) BETWEEN 2 AND 1048576),
    ADD COLUMN group_info bytea CHECK (octet_length(group_info) BETWEEN 2 AND 1048576),
    ADD COLUMN welcome bytea CHECK (octet_length(welcome) BETWEEN 2 AND 1048576),
    ADD CONSTRAINT conversation_encryption_keys_mls_whole
        CHECK ((commit_message IS NULL) = (group_info IS NULL) AND (welcome IS NULL OR commit_message IS NOT NULL));

-- A Welcome row names its device and carries no HPKE wraps.
ALTER TABLE member_key_wraps
    ALTER COLUMN encapsulated_key DROP NOT NULL,
    ALTER COLUMN wrapped_key DROP NOT NULL,
    ADD CONSTRAINT member_key_wraps_hpke_whole CHECK ((encapsulated_key IS NULL) = (wrapped_key IS NULL));

CREATE INDEX conversation_encryption_keys_commits ON conversation_encryption_keys (conversation_id, generation)
    WHERE commit_message IS NOT NULL;

COMMENT ON TABLE device_key_packages IS 'Domain: Devices. An MLS key package a device published; one-time ones are deleted when claimed.';
COMMENT ON COLUMN conversation_encryption_keys.commit_message IS 'Protocol v2: the MLS commit that opened this epoch (generation).';
COMMENT ON COLUMN conversation_encryption_keys.welcome IS 'Protocol v2: the MLS Welcome for the devices that commit added.';
