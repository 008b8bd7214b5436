-- 0008: fewer index entries per message (issue 17; measured in docs/BENCHMARKS.md, "Fewer index entries").
--
-- An appended message used to enter 7 indexes of session_memories; it now enters 3: the primary
-- key, session_memories_messages_idx (a session's live messages in order) and changed_idx (the
-- sync's). Every query keeps an index path (tests/memory/test_index_paths.py checks each plan):
-- * (updated_at, id) on every table: unused since 0003 (the sync reads by changed_at); dropped.
-- * session_idx covers every row of a session except its live messages, which messages_idx
--   covers: the two together reach all of a session's rows (tombstones, atoms, metadata).
--   A query over all of a session's rows says so with an OR of the two predicates.
-- * user_idx and type_idx cover the rows that are not messages (atoms, metadata rows):
--   query_memory_atoms reaches a user's live messages through the user's sessions, and those
--   of one type across every session by a scan (an operator's query, not an agent's).
-- The indexes are rebuilt in this migration's transaction: writes to session_memories wait
-- for it (seconds per million rows).

DROP INDEX IF EXISTS session_memories_updated_idx;
DROP INDEX IF EXISTS knowledge_atoms_updated_idx;
DROP INDEX IF EXISTS settings_updated_idx;
DROP INDEX IF EXISTS research_staging_updated_idx;
DROP INDEX IF EXISTS video_scripts_updated_idx;
DROP INDEX IF EXISTS upload_jobs_updated_idx;
DROP INDEX IF EXISTS agent_messages_updated_idx;

DROP INDEX IF EXISTS session_memories_session_idx;
CREATE INDEX session_memories_session_idx ON session_memories (session_id, memory_type)
    WHERE message_index IS NULL OR deleted_at IS NOT NULL;
DROP INDEX IF EXISTS session_memories_user_idx;
CREATE INDEX session_memories_user_idx ON session_memories (user_id, created_at DESC)
    WHERE message_index IS NULL;
DROP INDEX IF EXISTS session_memories_type_idx;
CREATE INDEX session_memories_type_idx ON session_memories (memory_type, created_at DESC)
    WHERE message_index IS NULL;

-- As in 0002, with the live rows of a deleted session found through the two indexes above.
CREATE OR REPLACE FUNCTION recompute_session(session_ids text[]) RETURNS integer
LANGUAGE sql VOLATILE AS $$
    UPDATE session_memories AS r
    SET deleted_at = m.deleted_at, updated_at = m.updated_at, write_id = m.write_id
    FROM session_memories AS m
    WHERE m.session_id = ANY(session_ids) AND m.memory_type = 'session_metadata' AND m.deleted_at IS NOT NULL
      AND r.session_id = m.session_id AND r.id <> m.id AND r.deleted_at IS NULL
      AND (r.message_index IS NOT NULL OR r.message_index IS NULL)  -- messages_idx | session_idx
      AND (r.updated_at, r.write_id) < (m.updated_at, m.write_id);

    WITH derived AS (
        SELECT m.id, count(r.id)::int AS message_count,
               greatest(coalesce((m.content->>'last_active')::timestamptz, m.created_at),
                        max(r.updated_at) FILTER (WHERE r.updated_at > m.updated_at)) AS last_active
        FROM session_memories AS m
        LEFT JOIN session_memories AS r
               ON r.session_id = m.session_id AND r.message_index IS NOT NULL AND r.deleted_at IS NULL
        WHERE m.session_id = ANY(session_ids) AND m.memory_type = 'session_metadata'
        GROUP BY m.id
    ), changed AS (
        UPDATE session_memories AS m
        SET message_count = d.message_count, last_active = d.last_active
        FROM derived AS d
        WHERE m.id = d.id
          AND (m.message_count, m.last_active) IS DISTINCT FROM (d.message_count, d.last_active)
        RETURNING 1
    )
    SELECT count(*)::int FROM changed;
$$;
