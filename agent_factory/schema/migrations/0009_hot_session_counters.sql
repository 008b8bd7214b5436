-- 0009: an append's update of its session's counters is a HOT update and fires no trigger (issue 17;
-- measured in docs/BENCHMARKS.md, "Third pass").
--
-- Every append updates its session's metadata row (message_count, last_active). last_active was a key
-- of the two indexes list_sessions pages by, so that update could never be HOT: each append wrote a new
-- entry into each of the row's 7 indexes, and a session appended to all day piled up dead entries under
-- the same keys. Now:
-- * the paging indexes hold last_active_minute, last_active rounded down to the minute (a stored
--   generated column). An update in the same minute leaves every indexed column as it was, so it is HOT:
--   no index is written, and a session's row changes index entries at most once a minute.
--   list_sessions still pages by index (newest minute first) and sorts only the sessions of one minute
--   at a time by last_active (an Incremental Sort): the same order as before, exactly.
-- * pages of session_memories are filled to 90 %: the room left lets a metadata row's new version stay
--   on its page (a HOT update needs that); messages are insert-only and lose nothing by it.
-- * the changed_at stamp trigger fires only for an UPDATE that sets a data column, and the
--   last-writer-wins guard only for one that sets updated_at or write_id: the counter update sets
--   neither, so no trigger and no WHEN clause is evaluated for it. What each trigger does is unchanged
--   (an update that sets none of those columns cannot change them).
-- Adding the stored column rewrites session_memories in this migration's transaction: writes to it wait
-- (seconds per million rows).

ALTER TABLE session_memories ADD COLUMN last_active_minute timestamptz
    GENERATED ALWAYS AS (date_bin('1 minute', last_active, timestamptz '2000-01-01 00:00:00+00')) STORED;

DROP INDEX IF EXISTS session_memories_recent_idx;
DROP INDEX IF EXISTS session_memories_user_recent_idx;
CREATE INDEX session_memories_recent_idx ON session_memories (last_active_minute)
    WHERE memory_type = 'session_metadata' AND deleted_at IS NULL;
CREATE INDEX session_memories_user_recent_idx ON session_memories (user_id, last_active_minute)
    WHERE memory_type = 'session_metadata' AND deleted_at IS NULL;

ALTER TABLE session_memories SET (fillfactor = 90);

-- The triggers keep their WHEN clauses and enabled state (ALWAYS since 0007, for a stream's apply worker).
DO $$
DECLARE
    t record;
    data_columns text;
BEGIN
    FOR t IN
        SELECT c.relname, g.tgname, g.tgenabled, g.tgfoid = 'af_lww_guard'::regproc AS guard, pg_get_triggerdef(g.oid) AS def
        FROM pg_trigger AS g JOIN pg_class AS c ON c.oid = g.tgrelid
        WHERE c.relnamespace = current_schema()::regnamespace AND NOT g.tgisinternal
          AND ((g.tgfoid = 'af_stamp_changed_at'::regproc AND c.relname = 'session_memories'
                AND g.tgname = 'session_memories_stamp_changed_at')
               OR g.tgfoid = 'af_lww_guard'::regproc)
        ORDER BY c.relname, g.tgname
    LOOP
        IF t.guard THEN
            data_columns := 'updated_at, write_id';
        ELSE
            -- the data columns, as 0008's WHEN names them: not changed_at, not derived, not generated
            SELECT string_agg(quote_ident(attname), ', ' ORDER BY attnum) INTO data_columns
            FROM pg_attribute
            WHERE attrelid = t.relname::regclass AND attnum > 0 AND NOT attisdropped AND attgenerated = ''
              AND attname NOT IN ('changed_at', 'message_count', 'last_active');
        END IF;
        EXECUTE format('DROP TRIGGER %I ON %I', t.tgname, t.relname);
        EXECUTE replace(t.def, ' BEFORE UPDATE ON ', format(' BEFORE UPDATE OF %s ON ', data_columns));
        IF t.tgenabled = 'A' THEN
            EXECUTE format('ALTER TABLE %I ENABLE ALWAYS TRIGGER %I', t.relname, t.tgname);
        END IF;
    END LOOP;
END
$$;
