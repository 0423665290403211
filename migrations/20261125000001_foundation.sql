-- Conclave schema, part 1: roles, helper functions and the tenant context.
--
-- Database roles
-- ==============
-- * The *owner* role is whoever runs these migrations (the operator and `conclave-dataplane
--   migrate` connect as it). It owns every table, so row-level security does not apply to it:
--   provisioning tenants, deleting them and repairing drift are its job.
-- * `conclave_app` is the role the data plane works as. It owns nothing, holds only the
--   grants below, and is subject to every row-level security policy. The data plane either
--   logs in as a `conclave_app` login role, or logs in as another role that is a member of
--   `conclave_app` and runs `SET ROLE conclave_app` on every new connection.
--   If the migrating role may not create roles (for example a CloudNativePG `app` user), create
--   `conclave_app` beforehand (CloudNativePG: `spec.managed.roles`) and grant it to the owner.
--
-- The tenant context
-- ==================
-- Every data-plane transaction sets `conclave.organization_id` (and, once authenticated,
-- `conclave.user_id`) with `set_config(..., true)`, which lasts for the transaction only.
-- Policies compare rows to `conclave_current_organization()`; with nothing set, it is NULL and
-- no tenant row matches, so a forgotten context fails closed.

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'conclave_app') THEN
        BEGIN
            CREATE ROLE conclave_app NOLOGIN;
        EXCEPTION WHEN insufficient_privilege THEN
            RAISE EXCEPTION 'role conclave_app does not exist and % may not create it', current_user
                USING HINT = 'create the role conclave_app (NOLOGIN is enough) as a superuser, then rerun the migrations';
        END;
    END IF;
END
$$;

-- Let the owner drop to conclave_app (SET ROLE) when the data plane shares its login.
DO $$
BEGIN
    IF NOT pg_has_role(current_user, 'conclave_app', 'MEMBER') THEN
        EXECUTE format('GRANT conclave_app TO %I', current_user);
    END IF;
END
$$;

GRANT USAGE ON SCHEMA public TO conclave_app;

-- Time-ordered UUIDs (RFC 9562 version 7): a 48-bit millisecond timestamp followed by random
-- bits, so primary-key indexes grow at their right edge instead of splitting at random pages.
CREATE FUNCTION conclave_uuid_v7() RETURNS uuid
LANGUAGE sql VOLATILE PARALLEL SAFE AS $$
    SELECT encode(
        set_bit(
            set_bit(
                overlay(uuid_send(gen_random_uuid())
                        PLACING substring(int8send((extract(epoch FROM clock_timestamp()) * 1000)::bigint) FROM 3)
                        FROM 1 FOR 6),
                52, 1),
            53, 1),
        'hex')::uuid
$$;

CREATE FUNCTION conclave_current_organization() RETURNS uuid
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT nullif(current_setting('conclave.organization_id', true), '')::uuid
$$;

CREATE FUNCTION conclave_current_user() RETURNS uuid
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT nullif(current_setting('conclave.user_id', true), '')::uuid
$$;

-- Keeps `updated_at` honest without every UPDATE having to remember it.
CREATE FUNCTION conclave_touch_updated_at() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END
$$;

-- Email addresses are stored lower-cased and trimmed; the application parses them properly,
-- this only keeps obviously broken values out.
CREATE DOMAIN conclave_email AS text
    CHECK (VALUE = lower(btrim(VALUE)) AND length(VALUE) <= 254 AND VALUE ~ '^[^@\s]+@[^@\s]+\.[^@\s]+$');

-- A URL-safe identifier: lower-case letters, digits and inner hyphens (DNS-label shaped).
CREATE DOMAIN conclave_slug AS text
    CHECK (VALUE ~ '^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$');

-- SHA-256 digests: how every token, code and secret the server only needs to recognise is kept.
CREATE DOMAIN conclave_sha256 AS bytea
    CHECK (octet_length(VALUE) = 32);
