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

-- The id of a session's metadata row (agent_factory/memory/ids.py session_row_id; 0002 wrote it out).
CREATE OR REPLACE FUNCTION af_session_row_id(session_id text) RETURNS uuid
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT substr(encode(sha256(convert_to('agent_factory/session/' || session_id, 'UTF8')), 'hex'), 1, 32)::uuid
$$;

-- As in 0002, with the sessions' metadata rows found by primary key (a function's statements are planned
-- without the array: by session id the planner may scan every metadata row) and a deleted session's
-- live rows through the indexes above.
CREATE OR REPLACE FUNCTION recompute_session(session_ids text[]) RETURNS integer
LANGUAGE sql VOLATILE AS $$
    -- A deleted session's live messages (messages_idx), then its other live rows (session_idx).
    UPDATE session_memories AS r
    SET deleted_at = m.deleted_at, updated_at = m.updated_at, write_id = m.write_id
    FROM session_memories AS m
    WHERE m.id = ANY(ARRAY(SELECT af_session_row_id(s) FROM unnest(session_ids) AS s))
      AND m.memory_type = 'session_metadata' AND m.deleted_at IS NOT NULL
      AND r.session_id = m.session_id AND r.message_index IS NOT NULL AND r.deleted_at IS NULL
      AND (r.updated_at, r.write_id) < (m.updated_at, m.write_id);

    UPDATE session_memories AS r
    SET deleted_at = m.deleted_at, updated_at = m.updated_at, write_id = m.write_id
    FROM session_memories AS m
    WHERE m.id = ANY(ARRAY(SELECT af_session_row_id(s) FROM unnest(session_ids) AS s))
      AND m.memory_type = 'session_metadata' AND m.deleted_at IS NOT NULL
      AND r.session_id = m.session_id AND r.message_index IS NULL AND r.id <> m.id AND r.deleted_at IS NULL
      AND (r.updated_at, r.write_id) < (m.updated_at, m.write_id);

    WITH derived AS (
        SELECT m.id, count(r.id)::int AS message_count,
               greatest(coalesce((m.content->>'last_active')::timestamptz, m.created_at),
                        max(r.updated_at) FILTER (WHERE r.updated_at > m.updated_at)) AS last_active
        FROM session_memories AS m
        LEFT JOIN session_memories AS r
               ON r.session_id = m.session_id AND r.message_index IS NOT NULL AND r.deleted_at IS NULL
        WHERE m.id = ANY(ARRAY(SELECT af_session_row_id(s) FROM unnest(session_ids) AS s))
          AND m.memory_type = 'session_metadata'
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

-- session_memories' changed_at is stamped without a PL/pgSQL call where nothing needs stamping (0003's
-- trigger ran one on every row, and compared whole rows as jsonb on every update). Its trigger becomes
-- two, which keep its enabled state (ALWAYS since 0007, for a stream's apply worker):
-- * <table>_stamp_changed_at, BEFORE UPDATE, fires only when a data column changed: an update
--   that rewrites the same values keeps changed_at (as before), and so does one that changes
--   only the derived figures (message_count, last_active), which no sync or stream carries:
--   the metadata row's counters, updated by every append, no longer make the row "changed";
-- * <table>_stamp_changed_at_insert, BEFORE INSERT, fires only when the writer gave changed_at a
--   value the column's default (clock_timestamp()) could not have: the library never gives one.
-- The other tables keep 0003's trigger: none has derived columns, and none takes an agent's every
-- message. A WHEN that names columns has a cost: a later migration that changes the type of one of
-- session_memories' data columns must drop and recreate session_memories_stamp_changed_at around it
-- (PostgreSQL refuses to alter a column a trigger's WHEN uses).
CREATE OR REPLACE FUNCTION af_stamp_changed_at() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.changed_at := clock_timestamp();
    RETURN NEW;
END $$;

DO $$
DECLARE
    t record;
    changed text;
BEGIN
    FOR t IN
        SELECT c.relname, g.tgname, g.tgenabled FROM pg_trigger AS g JOIN pg_class AS c ON c.oid = g.tgrelid
        WHERE c.relnamespace = current_schema()::regnamespace AND NOT g.tgisinternal
          AND g.tgfoid = 'agent_factory_stamp_changed_at'::regproc
          AND c.relname = 'session_memories'
        ORDER BY c.relname
    LOOP
        -- The data columns: not changed_at, not derived, not generated (a BEFORE trigger cannot read those).
        -- A flat OR of one test per column: PostgreSQL renders it back the same after a dump and restore
        -- (a row comparison is expanded into nested ORs that a restore flattens: drift for `schema verify`).
        SELECT string_agg(format('OLD.%1$I IS DISTINCT FROM NEW.%1$I', attname), ' OR ' ORDER BY attnum)
        INTO changed
        FROM pg_attribute
        WHERE attrelid = t.relname::regclass AND attnum > 0 AND NOT attisdropped AND attgenerated = ''
          AND attname NOT IN ('changed_at', 'message_count', 'last_active');
        EXECUTE format('DROP TRIGGER %I ON %I', t.tgname, t.relname);
        EXECUTE format('CREATE TRIGGER %I BEFORE UPDATE ON %I FOR EACH ROW '
                       'WHEN (%s) EXECUTE FUNCTION af_stamp_changed_at()', t.tgname, t.relname, changed);
        EXECUTE format('CREATE TRIGGER %I BEFORE INSERT ON %I FOR EACH ROW '
                       'WHEN (NEW.changed_at < now() OR NEW.changed_at > clock_timestamp()) '
                       'EXECUTE FUNCTION af_stamp_changed_at()', t.tgname || '_insert', t.relname);
        IF t.tgenabled = 'A' THEN
            EXECUTE format('ALTER TABLE %I ENABLE ALWAYS TRIGGER %I', t.relname, t.tgname);
            EXECUTE format('ALTER TABLE %I ENABLE ALWAYS TRIGGER %I', t.relname, t.tgname || '_insert');
        END IF;
    END LOOP;
END
$$;

-- The last-writer-wins guard (0002) is called only when the update is older than the row, the one
-- case in which it acts (it then skips the update): most updates, and every derived-figures update,
-- no longer call PL/pgSQL for it. Each trigger keeps its enabled state (ALWAYS since 0007).
DO $$
DECLARE
    t record;
BEGIN
    FOR t IN
        SELECT c.relname, g.tgname, g.tgenabled FROM pg_trigger AS g JOIN pg_class AS c ON c.oid = g.tgrelid
        WHERE c.relnamespace = current_schema()::regnamespace AND NOT g.tgisinternal
          AND g.tgfoid = 'af_lww_guard'::regproc
        ORDER BY c.relname
    LOOP
        EXECUTE format('DROP TRIGGER %I ON %I', t.tgname, t.relname);
        EXECUTE format('CREATE TRIGGER %I BEFORE UPDATE ON %I FOR EACH ROW '
                       'WHEN ((NEW.updated_at, NEW.write_id) < (OLD.updated_at, OLD.write_id)) '
                       'EXECUTE FUNCTION af_lww_guard()', t.tgname, t.relname);
        IF t.tgenabled = 'A' THEN
            EXECUTE format('ALTER TABLE %I ENABLE ALWAYS TRIGGER %I', t.relname, t.tgname);
        END IF;
    END LOOP;
END
$$;
