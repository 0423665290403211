-- Protocol v2 (MLS, RFC 9420) for messages: a message's ciphertext is an MLS PrivateMessage that
-- carries its own framing and authenticates its sender to the group's members, so the v1 nonce and
-- the per-message Ed25519 signature (which only the server could check) are gone. The send batch
-- function loses those two arrays and the message columns they filled; everything else it checks
-- and writes is unchanged (migration 14's definition, less those columns).

DROP FUNCTION conclave_send_messages(uuid[], uuid[], uuid[], uuid[], uuid[], uuid[], integer[], bytea[], bytea[],
                                     bytea[], uuid[], integer[], uuid[]);

-- The CHECK tying ciphertext, nonce and signature together goes with the columns.
ALTER TABLE messages DROP COLUMN nonce, DROP COLUMN signature;

COMMENT ON TABLE messages IS
    'Domain: Messages. An end-to-end-encrypted message: an MLS application message (PrivateMessage) of the conversation''s group, with its epoch.';

CREATE FUNCTION conclave_send_messages(
    organization_ids uuid[], user_ids uuid[], session_ids uuid[], device_ids uuid[], conversation_ids uuid[],
    client_message_ids uuid[], key_generations integer[], ciphertexts bytea[],
    reply_to_ids uuid[], attachment_entries integer[], attachment_ids uuid[])
RETURNS TABLE (entry integer, outcome text, current_generation integer, must_rotate boolean,
               lifetime_seconds integer, message_id uuid, message_seq bigint, message_sender_user_id uuid,
               message_key_generation integer, message_ciphertext bytea, message_reply_to_id uuid,
               message_created_at timestamptz,
               message_edited_at timestamptz, message_deleted_at timestamptz)
LANGUAGE plpgsql SET search_path = public, pg_temp SET plan_cache_mode = force_generic_plan AS $$
#variable_conflict use_column
DECLARE
    tenant uuid;
BEGIN
    FOR tenant IN SELECT DISTINCT o FROM unnest(organization_ids) AS o ORDER BY 1 LOOP
        PERFORM set_config('conclave.organization_id', tenant::text, true),
                set_config('conclave.user_id', '', true);

        -- Sends, rotations and membership changes of a conversation serialise on its row. Only
        -- the conversations the entry's sender is a member of, and only the sender's own
        -- uploads in them, are locked: an entry cannot hold up anyone else's.
        PERFORM 1 FROM conversations c
         WHERE c.id IN (SELECT t.c FROM unnest(organization_ids, conversation_ids, user_ids) AS t(o, c, u)
                          JOIN conversation_members cm ON cm.conversation_id = t.c AND cm.user_id = t.u
                         WHERE t.o = tenant)
         ORDER BY c.id
           FOR UPDATE OF c;
        IF coalesce(cardinality(attachment_ids), 0) > 0 THEN
            PERFORM 1 FROM message_attachments a
              JOIN unnest(attachment_entries, attachment_ids) AS x(n, id) ON a.id = x.id
             WHERE organization_ids[x.n] = tenant AND a.conversation_id = conversation_ids[x.n]
               AND a.uploader_user_id = user_ids[x.n]
             ORDER BY a.id
               FOR UPDATE OF a;
        END IF;

        RETURN QUERY
        WITH e AS (
            SELECT t.*
              FROM unnest(organization_ids, user_ids, session_ids, device_ids, conversation_ids, client_message_ids,
                          key_generations, ciphertexts, reply_to_ids)
                   WITH ORDINALITY AS t(organization_id, user_id, session_id, device_id, conversation_id,
                                        client_message_id, key_generation, ciphertext, reply_to_id, n)
             WHERE t.organization_id = tenant
        ),
        -- The attachments each entry names; an id named twice in the batch belongs to the first.
        wanted AS (
            SELECT DISTINCT ON (x.id) x.n, x.id
              FROM unnest(attachment_entries, attachment_ids) AS x(n, id)
             WHERE organization_ids[x.n] = tenant
             ORDER BY x.id, x.n
        ),
        named AS (
            SELECT x.n, count(DISTINCT x.id) AS named
              FROM unnest(attachment_entries, attachment_ids) AS x(n, id)
             WHERE organization_ids[x.n] = tenant
             GROUP BY x.n
        ),
        checked AS (
            SELECT e.*, pol.session_ok, pol.member, pol.too_old, pol.totp_missing, pol.session_lifetime_seconds,
                   seat.current_key_generation, seat.rotation_required, seat.last_seq,
                   ex.id AS existing_id,
                   reply.id AS reply_id,
                   coalesce(nm.named, 0) AS named,
                   (SELECT count(*) FROM message_attachments a
                     WHERE a.id = ANY (ARRAY(SELECT w.id FROM wanted w WHERE w.n = e.n))
                       AND a.conversation_id = e.conversation_id AND a.uploader_user_id = e.user_id
                       AND a.status = 'stored' AND a.message_id IS NULL) AS usable
              FROM e
              -- The session (the caller checked only the access token's signature) and the
              -- organization's policies.
              LEFT JOIN LATERAL (
                  SELECT true AS session_ok, m.user_id IS NOT NULL AS member, o.session_lifetime_seconds,
                         coalesce(now() - s.created_at > make_interval(secs => o.session_lifetime_seconds), false)
                             AS too_old,
                         coalesce(o.require_totp, false)
                             AND NOT EXISTS (SELECT 1 FROM totp_secrets t
                                              WHERE t.user_id = s.user_id AND t.confirmed_at IS NOT NULL)
                             AS totp_missing
                    FROM session_tokens s
                    JOIN devices d ON d.id = s.device_id
                    JOIN user_accounts u ON u.id = s.user_id
                    LEFT JOIN (organization_memberships m
                               JOIN organizations o ON o.id = m.organization_id AND o.status = 'active')
                           ON m.organization_id = e.organization_id AND m.user_id = s.user_id
                   WHERE s.id = e.session_id AND s.user_id = e.user_id AND s.device_id = e.device_id
                     AND s.revoked_at IS NULL AND s.expires_at > now()
                     AND d.revoked_at IS NULL AND u.status = 'active'
              ) pol ON true
              LEFT JOIN LATERAL (
                  SELECT c.current_key_generation, c.rotation_required, c.last_seq
                    FROM conversations c
                    JOIN conversation_members cm ON cm.conversation_id = c.id AND cm.user_id = e.user_id
                   WHERE c.id = e.conversation_id
              ) seat ON true
              -- A lookup per entry by the unique key, never a join over the organization's
              -- messages: planned while the table was nearly empty, a merge join read every
              -- message of the organization for every batch. LIMIT keeps the planner from
              -- flattening the lookup back into such a join.
              LEFT JOIN LATERAL (
                  SELECT x.id FROM messages x
                   WHERE x.conversation_id = e.conversation_id AND x.sender_device_id = e.device_id
                     AND x.client_message_id = e.client_message_id
                   LIMIT 1
              ) ex ON true
              LEFT JOIN named nm ON nm.n = e.n
              -- The message replied to must be one of this conversation's (row-level security
              -- already hides other organizations' messages; this keeps other conversations out).
              LEFT JOIN LATERAL (
                  SELECT r.id FROM messages r WHERE r.id = e.reply_to_id AND r.conversation_id = e.conversation_id
                   LIMIT 1
              ) reply ON true
        ),
        -- Each entry's own verdict, as if it were alone.
        own AS (
            SELECT c.*,
                   CASE
                       WHEN c.session_ok IS NULL THEN 'session_revoked'
                       WHEN NOT c.member THEN 'no_organization'
                       WHEN c.too_old THEN 'session_expired_by_organization'
                       WHEN c.totp_missing THEN 'totp_required_by_organization'
                       WHEN c.last_seq IS NULL THEN 'no_conversation'
                       WHEN c.existing_id IS NOT NULL THEN 'existing'
                       WHEN c.rotation_required OR c.key_generation <> c.current_key_generation THEN 'generation'
                       WHEN c.usable < c.named THEN 'unknown_attachment'
                       WHEN c.reply_to_id IS NOT NULL AND c.reply_id IS NULL THEN 'unknown_reply'
                       ELSE 'created'
                   END AS verdict
              FROM checked c
        ),
        -- A copy after the first acceptable one is a retry of it: `existing`, as if sent after.
        judged AS (
            SELECT o.*,
                   CASE
                       WHEN o.verdict IN ('created', 'generation', 'unknown_attachment', 'unknown_reply')
                            AND o.n > o.first_created
                           THEN 'existing'
                       ELSE o.verdict
                   END AS final
              FROM (SELECT own.*,
                           min(own.n) FILTER (WHERE own.verdict = 'created')
                               OVER (PARTITION BY own.conversation_id, own.device_id, own.client_message_id)
                               AS first_created
                      FROM own) o
        ),
        accepted AS (
            SELECT j.*, j.last_seq + row_number() OVER (PARTITION BY j.conversation_id ORDER BY j.n) AS seq
              FROM judged j
             WHERE j.final = 'created'
        ),
        stored AS (
            INSERT INTO messages (organization_id, conversation_id, seq, sender_user_id, sender_device_id,
                                  client_message_id, key_generation, ciphertext, reply_to_id)
            SELECT a.organization_id, a.conversation_id, a.seq, a.user_id, a.device_id, a.client_message_id,
                   a.key_generation, a.ciphertext, a.reply_id
              FROM accepted a
             ORDER BY a.conversation_id, a.seq
            RETURNING *
        ),
        bumped AS (
            UPDATE conversations c SET last_seq = k.top
              FROM (SELECT a.conversation_id, max(a.seq) AS top FROM accepted a GROUP BY a.conversation_id) k
             WHERE c.id = k.conversation_id
        ),
        -- The senders have, by definition, seen their own messages.
        seen AS (
            UPDATE conversation_members m
               SET delivered_seq = GREATEST(m.delivered_seq, k.top), read_seq = GREATEST(m.read_seq, k.top)
              FROM (SELECT a.conversation_id, a.user_id, max(a.seq) AS top FROM accepted a
                     GROUP BY a.conversation_id, a.user_id) k
             WHERE m.conversation_id = k.conversation_id AND m.user_id = k.user_id
        ),
        attached AS (
            UPDATE message_attachments x SET message_id = s.id, status = 'attached'
              FROM wanted w
              JOIN accepted a ON a.n = w.n
              JOIN stored s ON s.conversation_id = a.conversation_id AND s.seq = a.seq
             WHERE x.id = w.id
        ),
        -- Outbox rows: one per enabled webhook subscribed to message.created in this
        -- organization (or this conversation's workspace), one push per member with a
        -- subscription other than the sender. Payloads carry ids, never content.
        outbox AS (
            INSERT INTO outbound_notifications (organization_id, channel, event_type, webhook_endpoint_id,
                                                recipient_user_id, payload)
            SELECT s.organization_id, 'webhook', 'message.created', w.id, NULL,
                   jsonb_build_object('conversation_id', s.conversation_id, 'message_id', s.id, 'seq', s.seq)
              FROM stored s
              JOIN conversations c ON c.id = s.conversation_id
              JOIN webhook_endpoints w
                ON w.enabled AND 'message.created' = ANY (w.event_types)
               AND (w.workspace_id IS NULL OR w.workspace_id = c.workspace_id)
            UNION ALL
            SELECT DISTINCT s.organization_id, 'push', 'message.created', NULL::uuid, m.user_id,
                   jsonb_build_object('conversation_id', s.conversation_id, 'message_id', s.id, 'seq', s.seq)
              FROM stored s
              JOIN conversation_members m ON m.conversation_id = s.conversation_id AND m.user_id <> s.sender_user_id
              JOIN push_subscriptions p ON p.user_id = m.user_id
        )
        SELECT j.n::integer, j.final,
               CASE WHEN j.final IN ('created', 'generation') THEN j.current_key_generation END,
               CASE WHEN j.final IN ('created', 'generation') THEN j.rotation_required END,
               CASE WHEN j.final = 'session_expired_by_organization' THEN j.session_lifetime_seconds END,
               m.id, m.seq, m.sender_user_id, m.key_generation, m.ciphertext,
               m.reply_to_id, m.created_at, m.edited_at, m.deleted_at
          FROM judged j
          LEFT JOIN LATERAL (
              SELECT s.* FROM stored s
               WHERE j.final IN ('created', 'existing') AND j.existing_id IS NULL
                 AND s.conversation_id = j.conversation_id AND s.sender_device_id = j.device_id
                 AND s.client_message_id = j.client_message_id
              UNION ALL
              SELECT x.* FROM messages x WHERE x.id = j.existing_id
          ) m ON true;
    END LOOP;
END
$$;
