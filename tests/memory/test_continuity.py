"""The mergeable-rows rules on real servers: last writer wins, tombstones, replays, derived counters, paging.

`merge` below is a deliberately naive full-table merge by the documented rule
(upsert by id where the incoming (updated_at, write_id) is greater, then
`recompute_session`): it checks that the rows carry what a merge needs, not the
sync engine itself.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone

import psycopg
import pytest
from psycopg import sql
from psycopg.types.json import Jsonb

from agent_factory.errors import SessionNotFoundError, SessionNotOnProviderError
from agent_factory.memory import KnowledgeBase, Message, PostgresMemoryStorage, Session, Settings
from agent_factory.memory.base import prepare_messages
from agent_factory.memory.ids import new_stamp, session_row_id
from agent_factory.memory.postgres import LIST_SESSIONS_BEFORE, LIST_SESSIONS_SQL, append_messages_work
from agent_factory.vector import OPTIONAL_COLUMNS

from .conftest import MEMORY_TABLES

FUTURE = datetime(2100, 1, 1, tzinfo=timezone.utc)


def columns(conn: psycopg.Connection, table: str) -> list[str]:
    """The columns a merge copies: not generated ones, nor the pgvector-only ones some providers lack."""
    return [r[0] for r in conn.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_name = %s AND is_generated = 'NEVER' "
        "ORDER BY ordinal_position", (table,)) if r[0] not in OPTIONAL_COLUMNS.get(table, ())]


def merge(db, source: str, target: str) -> None:
    """Copy every row of the memory tables from `source` into `target` by last-writer-wins."""
    with db.provider_connection(source) as src, db.provider_connection(target) as dst:
        for table in MEMORY_TABLES:
            cols = columns(src, table)
            listed = sql.SQL(", ").join(map(sql.Identifier, cols))
            rows = src.execute(sql.SQL("SELECT coalesce(jsonb_agg(to_jsonb(t)), '[]') FROM (SELECT {} FROM {}) t")
                               .format(listed, sql.Identifier(table))).fetchone()[0]
            src.rollback()
            dst.execute(sql.SQL(
                "INSERT INTO {table} AS t ({cols}) SELECT {cols} FROM jsonb_populate_recordset(NULL::{table}, %s) "
                "ON CONFLICT (id) DO UPDATE SET ({cols}) = ROW({excluded}) "
                "WHERE (t.updated_at, t.write_id) < (excluded.updated_at, excluded.write_id)").format(
                    table=sql.Identifier(table), cols=listed,
                    excluded=sql.SQL(", ").join(sql.SQL("excluded.{}").format(sql.Identifier(c)) for c in cols)),
                (Jsonb(rows),))
        dst.execute("SELECT recompute_session(array_agg(DISTINCT session_id)) FROM session_memories")
        dst.commit()


def table_rows(db, provider: str) -> dict[str, list[tuple]]:
    """Every row of the memory tables, all columns but `changed_at` (local to each database, migration 0003)
    and the pgvector-only ones."""
    with db.provider_connection(provider) as conn:
        found = {}
        for table in MEMORY_TABLES:
            cols = [r[0] for r in conn.execute(
                "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 "
                "AND NOT attisdropped AND attname <> 'changed_at' ORDER BY attnum", (table,))
                if r[0] not in OPTIONAL_COLUMNS.get(table, ())]
            found[table] = conn.execute(sql.SQL("SELECT {} FROM {} ORDER BY id").format(
                sql.SQL(", ").join(map(sql.Identifier, cols)), sql.Identifier(table))).fetchall()
        conn.rollback()
    return found


def on(db, provider: str, statement: str, params: tuple = ()) -> list[tuple]:
    with db.provider_connection(provider) as conn:
        cur = conn.execute(statement, params)
        rows = cur.fetchall() if cur.description else []
        conn.commit()
    return rows


# ---- last writer wins -------------------------------------------------------------------


def test_a_write_never_overwrites_a_newer_row(db):
    settings, kb, storage = Settings(db, ttl=0), KnowledgeBase(db), PostgresMemoryStorage(db)
    settings.set("mode", "old")
    kb.upsert({"atom_id": "a1", "atom_type": "concept", "title": "Old", "content": "x"})
    session = Session("alice", messages=[{"role": "user", "content": "hi"}])
    storage.save_session(session)
    for table in ("settings", "knowledge_atoms", "session_memories"):  # another writer, later by its clock
        db.execute_query(f"UPDATE {table} SET updated_at = %s", (FUTURE,), fetch_mode="none")

    settings.set("mode", "new")
    kb.upsert({"atom_id": "a1", "atom_type": "concept", "title": "New", "content": "x"})
    assert settings.delete("mode") is False and kb.delete("a1") is False
    session.metadata = {"edited": True}
    session.add_message("user", "more")
    storage.save_session(session)  # older than the stored session: changes nothing
    assert storage.delete_session(session.session_id) is False

    assert settings.get("mode") == "old" and kb.get("a1").title == "Old"
    loaded = storage.load_session(session.session_id)
    assert loaded.metadata == {} and [m.content for m in loaded.messages] == ["hi"]


def test_the_guard_trigger_skips_an_update_to_an_older_version_from_any_writer(db):
    Settings(db).set("k", "v1")
    past = datetime(2000, 1, 1, tzinfo=timezone.utc)
    db.execute_query("UPDATE settings SET setting_value = 'stale', updated_at = %s", (past,), fetch_mode="none")
    assert db.execute_query("SELECT setting_value FROM settings", fetch_mode="one")[0] == "v1"
    db.execute_query("UPDATE settings SET setting_value = 'later', updated_at = %s", (FUTURE,), fetch_mode="none")
    assert db.execute_query("SELECT setting_value FROM settings", fetch_mode="one")[0] == "later"


def test_edits_on_two_providers_resolve_to_the_later_write_everywhere(db):
    first = Settings(db, ttl=0)
    first.set("color", "red")  # on neon
    merge(db, "neon", "supabase")
    on(db, "supabase", "UPDATE settings SET setting_value = 'blue', updated_at = clock_timestamp(), "
                       "write_id = gen_random_uuid()")  # a later edit on the backup
    first.set("size", "L")
    merge(db, "supabase", "neon")
    merge(db, "neon", "supabase")
    assert table_rows(db, "neon") == table_rows(db, "supabase")
    assert first.get("color") == "blue" and first.get("size") == "L"


def test_a_tie_on_updated_at_is_broken_by_write_id_the_same_way_everywhere(db):
    stamp = datetime(2030, 1, 1, tzinfo=timezone.utc)
    for provider, value, write_id in (("neon", "a", "00000000-0000-4000-8000-000000000001"),
                                      ("supabase", "b", "00000000-0000-4000-8000-000000000002")):
        on(db, provider, "INSERT INTO settings (id, setting_key, setting_value, updated_at, write_id) "
                         "VALUES ('11111111-1111-4111-8111-111111111111', 'tie', %s, %s, %s)", (value, stamp, write_id))
    merge(db, "neon", "supabase")
    merge(db, "supabase", "neon")
    assert on(db, "neon", "SELECT setting_value FROM settings") == [("b",)]
    assert table_rows(db, "neon") == table_rows(db, "supabase")


# ---- tombstones ---------------------------------------------------------------------------


def test_a_delete_on_a_provider_that_never_saw_the_row_stays_deleted_after_merging(db, make_db, local):
    storage, settings, kb = PostgresMemoryStorage(db), Settings(db, ttl=0), KnowledgeBase(db)
    session = Session("alice", messages=[{"role": "user", "content": "hi"}])
    storage.save_session(session)
    atom = storage.save_memory_atom(session.session_id, "alice", "decision", {"x": 1})
    settings.set("k", "v")
    kb.upsert({"atom_id": "a1", "atom_type": "concept", "title": "T", "content": "x"})

    # During a failover the backup serves: it has none of these rows, yet its deletes are kept.
    backup = make_db(NEON_DB_URL="postgresql://nobody@127.0.0.1:1/none")
    assert PostgresMemoryStorage(backup).delete_session(session.session_id) is False
    assert Settings(backup).delete("k") is False and KnowledgeBase(backup).delete("a1") is False
    assert backup.active_provider == "supabase"

    merge(db, "neon", "supabase")  # the primary's older rows do not bring anything back
    merge(db, "supabase", "neon")
    for name in ("neon", "supabase"):
        assert on(db, name, "SELECT count(*) FROM session_memories WHERE deleted_at IS NULL") == [(0,)], name
    assert storage.load_session(session.session_id) is None and atom not in {
        a.id for a in storage.query_memory_atoms()}
    assert settings.get("k") is None and kb.get("a1") is None
    assert table_rows(db, "neon") == table_rows(db, "supabase")


def test_a_later_save_brings_a_deleted_session_back_everywhere(db):
    storage = PostgresMemoryStorage(db)
    session = Session("alice", messages=[{"role": "user", "content": "hi"}])
    storage.save_session(session)
    merge(db, "neon", "supabase")
    storage.delete_session(session.session_id)
    storage.save_session(session)
    merge(db, "neon", "supabase")
    assert table_rows(db, "neon") == table_rows(db, "supabase")
    assert [m.content for m in storage.load_session(session.session_id).messages] == ["hi"]


# ---- replays and appends during a failover ------------------------------------------------


@contextmanager
def sync_watermark(db, target: str, source: str, synced_through: datetime) -> Iterator[None]:
    """Record a sync watermark in `target` as agent_factory.replication keeps it (its table made if missing)."""
    made = on(db, target, "SELECT to_regclass('sync_watermarks') IS NULL")[0][0]
    if made:
        on(db, target, "CREATE TABLE sync_watermarks (source text, target text, table_name text, "
                       "synced_through timestamptz, PRIMARY KEY (source, target, table_name))")
    on(db, target, "INSERT INTO sync_watermarks (source, target, table_name, synced_through) "
                   "VALUES (%s, %s, 'session_memories', %s) ON CONFLICT (source, target, table_name) "
                   "DO UPDATE SET synced_through = excluded.synced_through", (source, target, synced_through))
    try:
        yield
    finally:
        on(db, target, "DROP TABLE sync_watermarks" if made else
           "DELETE FROM sync_watermarks WHERE source = %s AND target = %s", () if made else (source, target))


def test_an_append_replayed_on_another_provider_writes_the_same_rows(db):
    storage = PostgresMemoryStorage(db)
    session = Session("alice", messages=[{"role": "user", "content": "first"}])
    storage.save_session(session)
    merge(db, "neon", "supabase")
    batch = prepare_messages(session.session_id, [{"role": "user", "content": "x"}, {"role": "user", "content": "y"}],
                             "messages")
    work = append_messages_work(session.session_id, batch, new_stamp())
    for name in ("neon", "supabase", "supabase"):
        with db.provider_connection(name) as conn:
            assert work(conn) == [(3,)]
            conn.commit()
    assert table_rows(db, "neon")["session_memories"] == table_rows(db, "supabase")["session_memories"]


def test_append_during_a_failover_to_a_session_the_backup_never_saw_fails_and_writes_nothing(db, make_db):
    storage = PostgresMemoryStorage(db)
    known, unknown = Session("alice"), Session("alice")
    storage.save_session(known)
    merge(db, "neon", "supabase")  # the last sync: `unknown` is created after it
    storage.save_session(unknown)

    failed_over = make_db(NEON_DB_URL="postgresql://nobody@127.0.0.1:1/none")
    backup = PostgresMemoryStorage(failed_over)
    assert backup.append_messages(known.session_id, [{"role": "user", "content": "kept"}]) == 1
    assert failed_over.active_provider == "supabase"
    before = table_rows(db, "supabase")
    with pytest.raises(SessionNotOnProviderError, match=r"not on provider supabase.*primary neon.*after the last sync"
                       ) as caught:
        backup.append_messages(unknown.session_id, [{"role": "user", "content": "lost?"}])
    assert not isinstance(caught.value, SessionNotFoundError)  # "save it first" would fork the session
    assert table_rows(db, "supabase") == before
    with sync_watermark(db, "supabase", "neon", datetime(2026, 11, 24, 20, 31, 5, tzinfo=timezone.utc)):
        with pytest.raises(SessionNotOnProviderError,
                           match=r"after the last sync into supabase \(which covered neon's changes up to "
                                 r"2026-11-24 20:31:05 UTC\)\. Nothing was written on supabase"):
            backup.append_messages(unknown.session_id, [{"role": "user", "content": "lost?"}])
    assert table_rows(db, "supabase") == before

    merge(db, "supabase", "neon")
    assert [m.content for m in storage.load_session(known.session_id).messages] == ["kept"]
    assert storage.load_session(unknown.session_id) == unknown


# ---- derived figures ----------------------------------------------------------------------


def test_recompute_session_rebuilds_counts_and_activity_from_the_rows(db):
    storage = PostgresMemoryStorage(db)
    session = Session("alice", last_active=datetime(2025, 1, 1, tzinfo=timezone.utc))
    storage.save_session(session)
    merge(db, "neon", "supabase")
    storage.append_messages(session.session_id, [{"role": "user", "content": "on neon"}])
    # an append on the backup too (split brain)
    batch = prepare_messages(session.session_id, [{"role": "user", "content": "on supabase"}] * 2, "messages")
    with db.provider_connection("supabase") as conn:
        assert append_messages_work(session.session_id, batch, new_stamp())(conn) == [(2,)]
        conn.commit()
    merge(db, "supabase", "neon")
    merge(db, "neon", "supabase")
    for name in ("neon", "supabase"):
        count, last_active = on(db, name, "SELECT message_count, last_active FROM session_memories WHERE id = %s",
                                (session_row_id(session.session_id),))[0]
        assert count == 3 and last_active > datetime.now(timezone.utc) - timedelta(minutes=1)
    assert table_rows(db, "neon") == table_rows(db, "supabase")
    summary = storage.list_sessions("alice")[0]
    assert summary.message_count == 3
    assert storage.load_session(session.session_id).messages[0].content == "on neon"
    assert on(db, "neon", "SELECT recompute_session(ARRAY[%s])", (session.session_id,)) == [(0,)]  # idempotent


# ---- list_sessions paging -----------------------------------------------------------------


@pytest.mark.parametrize("user_filter", [False, True])
def test_list_sessions_pages_are_served_by_an_index_sorting_one_minute_at_a_time(db, user_filter):
    """The index gives the minutes in order; only the sessions of one minute are sorted (migration 0009)."""
    filters, params = "", []
    if user_filter:
        filters, params = " AND user_id = %s", ["alice"]
    filters += LIST_SESSIONS_BEFORE
    params += [FUTURE, FUTURE, "z", 100]
    with db.provider_connection("neon") as conn:
        conn.execute("SET LOCAL enable_seqscan = off")
        conn.execute("SET LOCAL enable_sort = off")  # a plan that sorts every session could not use the index
        plan = conn.execute("EXPLAIN (FORMAT JSON) " + LIST_SESSIONS_SQL.format(filters=filters), params).fetchone()
        conn.rollback()
    nodes, kinds = [plan[0][0]["Plan"]], []
    while nodes:
        node = nodes.pop()
        nodes.extend(node.get("Plans", []))
        kinds.append(node["Node Type"])
        if node["Node Type"] == "Incremental Sort":
            assert node["Presorted Key"] == ["last_active_minute"], node
        if node["Node Type"] == "Index Scan":
            assert node["Index Name"] == "session_memories_" + ("user_" if user_filter else "") + "recent_idx", node
            assert node["Scan Direction"] == "Backward" and "last_active_minute <=" in node["Index Cond"], node
    assert kinds == ["Limit", "Incremental Sort", "Index Scan"], kinds


def test_an_append_updates_its_session_row_without_writing_an_index(db):
    """The counter update of an append is HOT: no indexed column changes within a minute (migration 0009)."""
    storage = PostgresMemoryStorage(db)
    session = Session("alice")
    storage.save_session(session)
    sid = session.session_id
    with db.provider_connection("neon") as conn:
        conn.autocommit = True
        before = _updates(conn)
        for i in range(5):
            append_messages_work(sid, prepare_messages(sid, [Message("user", f"m{i}")], "messages"), new_stamp())(conn)
        after = _updates(conn)
    updated, hot = after[0] - before[0], after[1] - before[1]
    # not HOT: at most a move off a full page, and a change of minute
    assert updated == 5 and hot >= 3, (updated, hot)
    assert len(storage.load_session(sid).messages) == 5


def _updates(conn: psycopg.Connection) -> tuple[int, int]:
    """Rows of session_memories updated, and of those HOT, as the server's statistics count them."""
    conn.execute("SELECT pg_stat_force_next_flush()")
    conn.execute("SELECT pg_stat_clear_snapshot()")
    row = conn.execute("SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables WHERE relid = "
                       "'session_memories'::regclass").fetchone()
    return row[0], row[1]


# ---- convergence under random interleavings ---------------------------------------------------


@pytest.mark.parametrize("seed", range(1, 6))
def test_random_writes_on_three_providers_and_merges_converge_to_one_state(db, make_db, seed):
    """Split brain: writers pinned to different providers edit the same sessions, settings and atoms.

    After merging every provider into every other (twice, in a random order), all
    three hold identical rows, and nothing deleted by the latest write is back.
    """
    rng = random.Random(seed)
    names = ("neon", "supabase", "railway")
    pinned = {n: make_db(DATABASE_PROVIDER=n, DATABASE_FAILOVER_ENABLED="false") for n in names}
    storages = {n: PostgresMemoryStorage(m) for n, m in pinned.items()}
    settings = {n: Settings(m, ttl=0) for n, m in pinned.items()}
    kbs = {n: KnowledgeBase(m) for n, m in pinned.items()}
    session_ids, keys = ["s1", "s2", "s3"], ["k1", "k2"]
    owner = {"s1": "user-0", "s2": "user-1", "s3": "user-0"}  # a session's owner never changes
    for step in range(60):
        name = rng.choice(names)
        storage, action = storages[name], rng.randrange(9)
        sid = rng.choice(session_ids)
        if action == 0:  # merge one provider into another, as a sync would
            source, target = rng.sample(names, 2)
            merge(db, source, target)
        elif action in (1, 2):  # load (or start) the session here, edit it, save it
            session = storage.load_session(sid) or Session(owner[sid], session_id=sid)
            edit = rng.randrange(3)
            if edit == 0 or not session.messages:
                session.add_message("user", f"step {step} on {name}")
            elif edit == 1:
                session.messages[rng.randrange(len(session.messages))].content = f"edited at {step}"
            else:
                session.messages.pop(rng.randrange(len(session.messages)))
            session.metadata = {"step": step}
            storage.save_session(session)
        elif action == 3:
            try:
                storage.append_messages(sid, [{"role": "assistant", "content": f"append {step}.{i}"}
                                              for i in range(rng.randrange(1, 3))])
            except SessionNotFoundError:
                pass
        elif action == 4:
            storage.delete_session(sid)
        elif action == 5:
            storage.save_memory_atom(sid, owner[sid], "log", {"step": step})
        elif action == 6:
            settings[name].set(rng.choice(keys), f"{step}")
        elif action == 7:
            settings[name].delete(rng.choice(keys))
        else:
            atom_id = rng.choice(["a1", "a2"])
            if rng.random() < 0.3:
                kbs[name].delete(atom_id)
            else:
                kbs[name].upsert({"atom_id": atom_id, "atom_type": "concept", "title": f"t{step}", "content": "c"})

    order = [(a, b) for a in names for b in names if a != b]
    for _ in range(2):
        rng.shuffle(order)
        for source, target in order:
            merge(db, source, target)
    rows = {n: table_rows(db, n) for n in names}
    assert rows["neon"] == rows["supabase"] == rows["railway"]
    summaries = {s.session_id: s for s in storages["neon"].list_sessions(limit=10)}
    for sid in session_ids:
        loaded = [storages[n].load_session(sid) for n in names]
        assert loaded[0] == loaded[1] == loaded[2]
        if loaded[0] is not None:  # the derived figures match the rows
            assert summaries[sid].message_count == len(loaded[0].messages)
    with pinned["neon"].provider_connection("neon") as conn:  # the latest write of each session decides
        for sid, deleted in conn.execute("SELECT session_id, deleted_at IS NOT NULL FROM session_memories "
                                         "WHERE memory_type = 'session_metadata'").fetchall():
            assert (storages["neon"].load_session(sid) is None) == deleted
            if deleted:  # no live row older than the session's tombstone
                assert conn.execute(
                    "SELECT count(*) FROM session_memories r JOIN session_memories m ON m.id = %s "
                    "WHERE r.session_id = %s AND r.deleted_at IS NULL "
                    "AND (r.updated_at, r.write_id) < (m.updated_at, m.write_id)",
                    (session_row_id(sid), sid)).fetchone()[0] == 0
        conn.rollback()
