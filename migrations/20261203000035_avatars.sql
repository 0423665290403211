-- Uploaded avatars. The picture is a blob in the attachment store under a key the server makes
-- (`avatar-<uuid>`); the profile row holds the key, the media type and the size. It is not
-- end-to-end encrypted: a profile is what the people who share an organization see, like the
-- display name. Replacing or removing it deletes the old blob.
ALTER TABLE user_profiles
    ADD COLUMN avatar_key text CHECK (avatar_key ~ '^avatar-[0-9a-f-]{36}$'),
    ADD COLUMN avatar_media_type text CHECK (avatar_media_type IN ('image/png', 'image/jpeg', 'image/webp')),
    ADD COLUMN avatar_size_bytes integer CHECK (avatar_size_bytes BETWEEN 1 AND 262144),
    ADD CONSTRAINT user_profiles_avatar_whole CHECK (
        (avatar_key IS NULL) = (avatar_media_type IS NULL) AND (avatar_key IS NULL) = (avatar_size_bytes IS NULL)
    );

COMMENT ON COLUMN user_profiles.avatar_key IS 'The uploaded picture''s blob in the attachment store; NULL when none.';
