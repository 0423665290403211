-- Conclave schema, part 11: sends stored in batches, one commit for many messages.
--
-- A send used to be its own transaction of about nine statements, each a round trip, each
-- commit a WAL flush; under load the database spent its time on round trips and commits, not on
-- rows. The data plane now queues sends and hands whatever has gathered to this function in one
-- call: one statement, one transaction, one commit for the whole batch (group commit).
--
-- Every entry gets exactly the checks a single send had, in the same order, and its own
-- outcome; a refused entry writes nothing and does not disturb the others:
--   session_revoked                  the access token's session, device or account has ended
--   no_organization                  not a member, or the organization is not active
--   session_expired_by_organization  the session is older than the organization allows
--   totp_required_by_organization    the organization requires TOTP and the user has none
--   no_conversation                  not a member of the conversation
--   existing                         a retry: this device already stored this client message id
--   generation                       rotation required, or not the current key generation
--   unknown_attachment               an attachment is not this sender's stored upload here
--   created                          stored, with its sequence number and outbox rows
-- The caller verified the access token's signature and the message's Ed25519 signature
-- before queueing it; only what needs the database is checked here.
--
-- The function runs as the caller (the data-plane role), and sets the tenant context of each
-- entry before touching its rows, so row-level security applies to every entry as it did to a
-- single send. Entries are taken in conversation order, so two batches lock conversations in
-- the same order and cannot deadlock each other; messages to one conversation keep the order
-- they were queued in.
CREATE FUNCTION conclave_send_messages(
    organization_ids uuid[], user_ids uuid[], session_ids uuid[], device_ids uuid[], conversation_ids uuid[],
    client_message_ids uuid[], key_generations integer[], nonces bytea[], ciphertexts bytea[], signatures bytea[],
    reply_to_ids uuid[], attachment_entries integer[], attachment_ids uuid[])
RETURNS TABLE (entry integer, outcome text, current_generation integer, must_rotate boolean,
               lifetime_seconds integer, message_id uuid, message_seq bigint, message_sender_user_id uuid,
               message_key_generation integer, message_nonce bytea, message_ciphertext bytea,
               message_signature bytea, message_reply_to_id uuid, message_created_at timestamptz,
               message_edited_at timestamptz, message_deleted_at timestamptz)
LANGUAGE plpgsql SET search_path = public, pg_temp AS $$
DECLARE
    e record;
    policy record;
    seat record;
    stored messages%ROWTYPE;
    wanted uuid[];
BEGIN
    FOR e IN
        SELECT t.*
          FROM unnest(organization_ids, user_ids, session_ids, device_ids, conversation_ids, client_message_ids,
                      key_generations, nonces, ciphertexts, signatures, reply_to_ids)
               WITH ORDINALITY AS t(organization_id, user_id, session_id, device_id, conversation_id,
                                    client_message_id, key_generation, nonce, ciphertext, signature, reply_to_id, n)
         ORDER BY t.conversation_id, t.n
    LOOP
        entry := e.n;
        outcome := NULL; current_generation := NULL; must_rotate := NULL; lifetime_seconds := NULL;
        message_id := NULL; message_seq := NULL; message_sender_user_id := NULL; message_key_generation := NULL;
        message_nonce := NULL; message_ciphertext := NULL; message_signature := NULL; message_reply_to_id := NULL;
        message_created_at := NULL; message_edited_at := NULL; message_deleted_at := NULL;
        PERFORM set_config('conclave.organization_id', e.organization_id::text, true),
                set_config('conclave.user_id', e.user_id::text, true);

        -- The session (the caller checked only the access token's signature) and the
        -- organization's policies, in one statement.
        SELECT m.user_id IS NOT NULL AS member, o.require_totp, o.session_lifetime_seconds,
               EXISTS (SELECT 1 FROM totp_secrets t WHERE t.user_id = s.user_id AND t.confirmed_at IS NOT NULL) AS has_totp,
               coalesce(now() - s.created_at > make_interval(secs => o.session_lifetime_seconds), false) AS too_old
          INTO policy
          FROM session_tokens s
          JOIN devices d ON d.id = s.device_id
          JOIN user_accounts u ON u.id = s.user_id
          LEFT JOIN (organization_memberships m JOIN organizations o ON o.id = m.organization_id AND o.status = 'active')
                 ON m.organization_id = e.organization_id AND m.user_id = s.user_id
         WHERE s.id = e.session_id AND s.user_id = e.user_id AND s.device_id = e.device_id
           AND s.revoked_at IS NULL AND s.expires_at > now()
           AND d.revoked_at IS NULL AND u.status = 'active';
        IF NOT FOUND THEN
            outcome := 'session_revoked'; RETURN NEXT; CONTINUE;
        END IF;
        IF NOT policy.member THEN
            outcome := 'no_organization'; RETURN NEXT; CONTINUE;
        END IF;
        IF policy.too_old THEN
            outcome := 'session_expired_by_organization'; lifetime_seconds := policy.session_lifetime_seconds;
            RETURN NEXT; CONTINUE;
        END IF;
        IF policy.require_totp AND NOT policy.has_totp THEN
            outcome := 'totp_required_by_organization'; RETURN NEXT; CONTINUE;
        END IF;

        -- The conversation's row lock serialises its sends, rotations and membership changes:
        -- sequence numbers stay gap-free and generations ordered.
        SELECT c.current_key_generation, c.rotation_required, c.last_seq INTO seat
          FROM conversations c JOIN conversation_members cm ON cm.conversation_id = c.id AND cm.user_id = e.user_id
         WHERE c.id = e.conversation_id
           FOR UPDATE OF c;
        IF NOT FOUND THEN
            outcome := 'no_conversation'; RETURN NEXT; CONTINUE;
        END IF;

        SELECT * INTO stored FROM messages
         WHERE conversation_id = e.conversation_id AND sender_device_id = e.device_id
           AND client_message_id = e.client_message_id;
        IF NOT FOUND THEN
            current_generation := seat.current_key_generation; must_rotate := seat.rotation_required;
            IF seat.rotation_required OR e.key_generation <> seat.current_key_generation THEN
                outcome := 'generation'; RETURN NEXT; CONTINUE;
            END IF;

            wanted := '{}';
            IF coalesce(cardinality(attachment_ids), 0) > 0 THEN
                wanted := ARRAY(SELECT DISTINCT a.id FROM unnest(attachment_entries, attachment_ids) AS a(n, id)
                                 WHERE a.n = e.n);
            END IF;
            IF cardinality(wanted) > 0 THEN
                -- Locked now, so the update after the insert finds every one of them.
                IF (SELECT count(*) FROM (SELECT 1 FROM message_attachments a
                                           WHERE a.id = ANY (wanted) AND a.conversation_id = e.conversation_id
                                             AND a.uploader_user_id = e.user_id AND a.status = 'stored'
                                             AND a.message_id IS NULL
                                             FOR UPDATE) AS locked)
                   <> cardinality(wanted) THEN
                    outcome := 'unknown_attachment'; RETURN NEXT; CONTINUE;
                END IF;
            END IF;

            -- The next sequence number, the message, and the sender's own cursors (they have, by
            -- definition, seen their own message) in one statement.
            WITH bumped AS (UPDATE conversations SET last_seq = seat.last_seq + 1 WHERE id = e.conversation_id),
                 seen AS (UPDATE conversation_members
                             SET delivered_seq = GREATEST(delivered_seq, seat.last_seq + 1),
                                 read_seq = GREATEST(read_seq, seat.last_seq + 1)
                           WHERE conversation_id = e.conversation_id AND user_id = e.user_id)
            INSERT INTO messages (organization_id, conversation_id, seq, sender_user_id, sender_device_id,
                                  client_message_id, key_generation, nonce, ciphertext, signature, reply_to_id)
            VALUES (e.organization_id, e.conversation_id, seat.last_seq + 1, e.user_id, e.device_id,
                    e.client_message_id, e.key_generation, e.nonce, e.ciphertext, e.signature,
                    (SELECT r.id FROM messages r WHERE r.id = e.reply_to_id AND r.conversation_id = e.conversation_id))
            RETURNING * INTO stored;
            IF cardinality(wanted) > 0 THEN
                UPDATE message_attachments SET message_id = stored.id, status = 'attached'
                 WHERE id = ANY (wanted);
            END IF;
            -- Outbox rows: one per enabled webhook subscribed to message.created in this
            -- organization (or this conversation's workspace), one push per member with a
            -- subscription other than the sender. Payloads carry ids, never content.
            INSERT INTO outbound_notifications (organization_id, channel, event_type, webhook_endpoint_id,
                                                recipient_user_id, payload)
            SELECT e.organization_id, 'webhook', 'message.created', w.id, NULL,
                   jsonb_build_object('conversation_id', e.conversation_id, 'message_id', stored.id, 'seq', stored.seq)
              FROM webhook_endpoints w JOIN conversations c ON c.id = e.conversation_id
             WHERE w.enabled AND 'message.created' = ANY (w.event_types)
               AND (w.workspace_id IS NULL OR w.workspace_id = c.workspace_id)
            UNION ALL
            SELECT DISTINCT e.organization_id, 'push', 'message.created', NULL::uuid, m.user_id,
                   jsonb_build_object('conversation_id', e.conversation_id, 'message_id', stored.id, 'seq', stored.seq)
              FROM conversation_members m JOIN push_subscriptions p ON p.user_id = m.user_id
             WHERE m.conversation_id = e.conversation_id AND m.user_id <> e.user_id;
            outcome := 'created';
        ELSE
            outcome := 'existing';
        END IF;

        message_id := stored.id; message_seq := stored.seq; message_sender_user_id := stored.sender_user_id;
        message_key_generation := stored.key_generation; message_nonce := stored.nonce;
        message_ciphertext := stored.ciphertext; message_signature := stored.signature;
        message_reply_to_id := stored.reply_to_id; message_created_at := stored.created_at;
        message_edited_at := stored.edited_at; message_deleted_at := stored.deleted_at;
        RETURN NEXT;
    END LOOP;
END
$$;
REVOKE ALL ON FUNCTION conclave_send_messages(uuid[], uuid[], uuid[], uuid[], uuid[], uuid[], integer[], bytea[],
                                              bytea[], bytea[], uuid[], integer[], uuid[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION conclave_send_messages(uuid[], uuid[], uuid[], uuid[], uuid[], uuid[], integer[], bytea[],
                                                 bytea[], bytea[], uuid[], integer[], uuid[]) TO conclave_app;
