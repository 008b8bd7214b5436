-- 0010: the column checks of session_memories become domains; the metadata row's id check is written
-- over bytes (issue 17; measured in docs/BENCHMARKS.md, "Fifth pass").
--
-- PostgreSQL reads a table's CHECK constraints from their stored text and plans them again for every
-- statement, once for each table the statement writes: an append writes session_memories twice (the
-- messages and its session's counters), so each CHECK was read and planned twice per append, which cost
-- more than checking the rows. A domain's checks are read once per connection and kept. The same rules,
-- enforced for every writer as before:
-- * session_id and user_id are af_name: 1 to 255 characters (was session_memories_session_id_check and
--   _user_id_check);
-- * message_index and message_count are af_count: not negative, or NULL (was _message_index_check and
--   _message_count_check).
-- session_memories_memory_type_check stays a CHECK of that name and form: runbook procedure 4 and
-- `agent-factory schema fix-constraints` read and replace it. session_memories_metadata_id_check compares
-- the id's 16 bytes with the first 16 bytes of the hash, which is what comparing the id with the hash's
-- first 32 hex digits did, in fewer steps.
-- The columns change to the domains while these have no check yet (a column changed to a domain with
-- checks is rewritten, with every index of its table), then the domains get their checks, which reads
-- the rows once. The table is not rewritten; the five indexes whose keys or conditions name a changed
-- column are rebuilt (pkey, changed_idx and recent_idx are kept). Writes to session_memories wait
-- meanwhile: 1.5 s per million message rows, measured. The changed_at stamp trigger names those
-- columns, so it is dropped and created again as it was (its WHEN clause, column list and enabled
-- state).

CREATE DOMAIN af_name AS text;
CREATE DOMAIN af_count AS integer;

DO $$
DECLARE
    def text;
    enabled "char";
BEGIN
    SELECT pg_get_triggerdef(g.oid), g.tgenabled INTO def, enabled
    FROM pg_trigger AS g
    WHERE g.tgrelid = 'session_memories'::regclass AND g.tgname = 'session_memories_stamp_changed_at';
    DROP TRIGGER session_memories_stamp_changed_at ON session_memories;
    ALTER TABLE session_memories
        DROP CONSTRAINT session_memories_session_id_check,
        DROP CONSTRAINT session_memories_user_id_check,
        DROP CONSTRAINT session_memories_message_index_check,
        DROP CONSTRAINT session_memories_message_count_check,
        ALTER COLUMN session_id TYPE af_name,
        ALTER COLUMN user_id TYPE af_name,
        ALTER COLUMN message_index TYPE af_count,
        ALTER COLUMN message_count TYPE af_count,
        DROP CONSTRAINT session_memories_metadata_id_check,
        ADD CONSTRAINT session_memories_metadata_id_check CHECK (
            memory_type <> 'session_metadata'
            OR uuid_send(id) = substr(sha256(convert_to('agent_factory/session/' || session_id, 'UTF8')), 1, 16));
    EXECUTE def;
    IF enabled = 'A' THEN
        ALTER TABLE session_memories ENABLE ALWAYS TRIGGER session_memories_stamp_changed_at;
    END IF;
END
$$;

ALTER DOMAIN af_name ADD CONSTRAINT af_name_length CHECK (length(VALUE) BETWEEN 1 AND 255);
ALTER DOMAIN af_count ADD CONSTRAINT af_count_not_negative CHECK (VALUE >= 0);
