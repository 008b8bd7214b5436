"""`sync_pair` on real providers: copies, rules, watermarks, locks, dry runs, errors."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta, timezone

import psycopg
import pytest

from agent_factory.errors import ConfigError, SyncBusyError
from agent_factory.replication import TABLES, sync_pair
from agent_factory.replication.watermarks import LOCK_KEY

from .conftest import message, message_count, one_of_each, session, setting, snapshot, value_of, write

NOW = datetime.now(timezone.utc)


def test_copies_every_table_and_a_second_run_changes_nothing(sdb):
    one_of_each(sdb, "neon", "a")
    first = sync_pair(sdb, "neon", "supabase", batch_size=3)
    assert first.ok, first.error
    assert {t.table: t.rows_copied for t in first.tables} == {
        "settings": 1, "knowledge_atoms": 1, "research_staging": 1, "video_scripts": 1, "upload_jobs": 1,
        "agent_messages": 1, "session_memories": 3, "langgraph_store": 0,  # no store vectors: supabase lacks pgvector
        "langgraph_checkpoint_blobs": 1, "langgraph_checkpoint_writes": 1, "langgraph_checkpoints": 1}
    assert first.rows_copied == 12 and first.conflicts_resolved == 0 and first.tombstones_applied == 0
    assert snapshot(sdb, "neon") == snapshot(sdb, "supabase")
    assert message_count(sdb, "supabase", "s-a") == 2  # derived figures rebuilt on the target
    assert first.synced_through is not None and first.lag_s is not None and first.lag_s >= 0

    before = snapshot(sdb, "supabase")
    second = sync_pair(sdb, "neon", "supabase", batch_size=3)
    assert second.ok and second.rows_copied == 0
    assert snapshot(sdb, "supabase") == before
    assert second.synced_through >= first.synced_through


def test_the_newer_version_wins_whichever_way_the_sync_runs(sdb):
    setting(sdb, "neon", "color", "red", at=NOW - timedelta(minutes=2))
    setting(sdb, "supabase", "color", "blue", at=NOW - timedelta(minutes=1))
    one = sync_pair(sdb, "neon", "supabase")  # stale incoming: the target keeps blue
    assert one.ok and one.rows_copied == 0 and one.conflicts_resolved == 1
    assert value_of(sdb, "supabase", "color") == ("blue", False)
    two = sync_pair(sdb, "supabase", "neon")
    assert two.ok and two.rows_copied == 1 and two.conflicts_resolved == 1
    assert value_of(sdb, "neon", "color") == ("blue", False)
    assert snapshot(sdb, "neon", ("settings",)) == snapshot(sdb, "supabase", ("settings",))


def test_a_deletion_newer_than_an_edit_stays_deleted(sdb):
    setting(sdb, "neon", "mode", "on", at=NOW - timedelta(minutes=3))
    sync_pair(sdb, "neon", "supabase")
    setting(sdb, "supabase", "mode", "on", at=NOW - timedelta(minutes=1), deleted=True)  # deleted on the backup
    setting(sdb, "neon", "mode", "off", at=NOW - timedelta(minutes=2))  # an older edit on the primary
    for source, target in [("neon", "supabase"), ("supabase", "neon"), ("neon", "supabase")]:
        result = sync_pair(sdb, source, target)
        assert result.ok, result.error
    assert value_of(sdb, "neon", "mode") == ("on", True)
    assert value_of(sdb, "supabase", "mode") == ("on", True)
    back = sync_pair(sdb, "supabase", "railway")
    assert back.tombstones_applied == 1
    assert value_of(sdb, "railway", "mode") == ("on", True)


def test_rows_merged_with_old_timestamps_still_travel_on(sdb):
    """changed_at, not updated_at, drives the watermark: a row merged into B late still reaches C."""
    setting(sdb, "supabase", "seed", "1")
    assert sync_pair(sdb, "supabase", "railway", margin_s=0).ok  # the pair supabase->railway has a watermark now
    setting(sdb, "neon", "old", "written an hour ago", at=NOW - timedelta(hours=1))
    assert sync_pair(sdb, "neon", "supabase", margin_s=0).rows_copied == 1
    onward = sync_pair(sdb, "supabase", "railway", margin_s=0)
    assert onward.rows_copied == 1
    assert value_of(sdb, "railway", "old") == ("written an hour ago", False)


def test_a_transaction_in_flight_during_a_sync_is_taken_by_the_next(sdb):
    writer = psycopg.connect(sdb.config.providers["neon"].url)
    try:
        writer.execute("INSERT INTO settings (id, setting_key, setting_value) VALUES (gen_random_uuid(), 'late', 'x')")
        time.sleep(0.05)  # its changed_at is now older than the sync's clock
        during = sync_pair(sdb, "neon", "supabase", margin_s=0)
        assert during.ok and during.rows_copied == 0
        assert during.synced_through <= writer.execute("SELECT now()").fetchone()[0]  # held back to its start
        writer.commit()
    finally:
        writer.close()
    after = sync_pair(sdb, "neon", "supabase", margin_s=0)
    assert after.rows_copied == 1
    assert value_of(sdb, "supabase", "late") == ("x", False)


def test_messages_from_both_sides_merge_and_counts_are_recomputed(sdb):
    session(sdb, "neon", "s1", ["one", "two"])
    sync_pair(sdb, "neon", "supabase")
    message(sdb, "neon", "s1", "three (on neon)", index=2)
    message(sdb, "supabase", "s1", "three (on supabase)", index=2)
    for source, target in [("supabase", "neon"), ("neon", "supabase")]:
        assert sync_pair(sdb, source, target).ok
    assert message_count(sdb, "neon", "s1") == 4
    assert message_count(sdb, "supabase", "s1") == 4
    assert snapshot(sdb, "neon", ("session_memories",)) == snapshot(sdb, "supabase", ("session_memories",))


def test_a_child_whose_parent_is_not_there_yet_is_deferred_then_copied(sdb):
    script = write(sdb, "neon", "video_scripts", title="T", script="S")
    write(sdb, "neon", "upload_jobs", video_script_id=script, platform="youtube")
    only_jobs = sync_pair(sdb, "neon", "supabase", tables=["upload_jobs"])
    assert only_jobs.ok and only_jobs.rows_copied == 0
    assert only_jobs.tables[0].deferred == 1
    everything = sync_pair(sdb, "neon", "supabase")
    assert everything.ok
    assert {t.table: t.rows_copied for t in everything.tables if t.rows_copied} == {
        "video_scripts": 1, "upload_jobs": 1}
    assert snapshot(sdb, "neon") == snapshot(sdb, "supabase")


def test_dry_run_counts_and_writes_nothing(sdb):
    one_of_each(sdb, "neon", "d")
    before = snapshot(sdb, "supabase")
    dry = sync_pair(sdb, "neon", "supabase", dry_run=True, batch_size=2)
    assert dry.ok and dry.dry_run
    # The upload job's script is not on the target yet, and a dry run copies no parent: it shows as deferred.
    assert dry.rows_copied == 11
    assert [t.deferred for t in dry.tables if t.table == "upload_jobs"] == [1]
    assert snapshot(sdb, "supabase") == before
    with sdb.provider_connection("supabase") as conn:
        assert conn.execute("SELECT count(*) FROM sync_watermarks").fetchone()[0] == 0
        conn.rollback()
    assert sync_pair(sdb, "neon", "supabase").rows_copied == 12


def test_an_interrupted_sync_resumes_from_its_last_batch(sdb):
    for i in range(30):
        setting(sdb, "neon", f"k{i:02d}", "v")
    calls = []

    def stop_after_first_table(table):
        calls.append(table)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        sync_pair(sdb, "neon", "supabase", batch_size=7, margin_s=0, tables=["settings", "knowledge_atoms"],
                  progress=stop_after_first_table)
    with sdb.provider_connection("supabase") as conn:
        mark = conn.execute("SELECT synced_through, after_id FROM sync_watermarks WHERE table_name = 'settings'"
                            ).fetchone()
        conn.rollback()
    assert mark is not None  # committed batches advanced the watermark
    rest = sync_pair(sdb, "neon", "supabase", batch_size=7, margin_s=0)
    assert rest.ok and rest.rows_copied == 0  # nothing copied twice: every batch had committed
    assert snapshot(sdb, "neon") == snapshot(sdb, "supabase")


def test_a_second_sync_into_the_same_target_reports_busy_or_waits(sdb):
    holder = psycopg.connect(sdb.config.providers["supabase"].url, autocommit=True)
    try:
        holder.execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))
        with pytest.raises(SyncBusyError) as info:
            sync_pair(sdb, "neon", "supabase")
        assert "provider supabase is busy: another sync into it is running (backend pid" in str(info.value)
        assert sync_pair(sdb, "neon", "railway").ok  # another target is not affected
        threading.Timer(0.3, lambda: holder.execute("SELECT pg_advisory_unlock(%s)", (LOCK_KEY,))).start()
        waited = sync_pair(sdb, "neon", "supabase", wait_s=30)
        assert waited.ok
    finally:
        time.sleep(0.35)
        holder.close()


def test_a_natural_key_on_two_ids_is_reported_not_half_written(sdb):
    write(sdb, "neon", "settings", setting_key="dup", setting_value="a")  # random ids: pre-0002 style rows
    write(sdb, "supabase", "settings", setting_key="dup", setting_value="b")
    result = sync_pair(sdb, "neon", "supabase")
    assert not result.ok
    assert "table settings: settings_setting_key_key" in result.error
    assert value_of(sdb, "supabase", "dup") == ("b", False)


def test_bad_arguments_are_config_errors(sdb):
    with pytest.raises(ConfigError, match="into itself"):
        sync_pair(sdb, "neon", "neon")
    with pytest.raises(ConfigError, match="unknown provider 'nope'"):
        sync_pair(sdb, "neon", "nope")
    with pytest.raises(ConfigError, match="unknown table"):
        sync_pair(sdb, "neon", "supabase", tables=["pg_class"])


def test_a_provider_down_gives_a_failed_result(sdb, local, passwords):
    local.kill("railway")
    result = sync_pair(sdb, "neon", "railway")
    assert not result.ok
    assert "railway" in result.error
    assert not any(p in result.error for p in passwords)


def test_tables_are_in_parent_order():
    assert TABLES.index("video_scripts") < TABLES.index("upload_jobs")


def test_a_bulk_load_that_meets_a_row_falls_back_to_the_merge(sdb):
    """A table empty on the target at the start is bulk-inserted; a row written there meanwhile still wins."""
    setting(sdb, "neon", "first", "1")
    for i in range(5):
        write(sdb, "neon", "knowledge_atoms", id=atom_id(f"a{i}"), at=NOW - timedelta(minutes=5), atom_id=f"a{i}",
              atom_type="concept", title="from neon", content="c")

    def meanwhile(table):  # after settings, before knowledge_atoms: a newer a3 lands on the target
        if table.table == "settings":
            write(sdb, "supabase", "knowledge_atoms", id=atom_id("a3"), at=NOW, atom_id="a3", atom_type="concept",
                  title="newer on supabase", content="c")

    result = sync_pair(sdb, "neon", "supabase", tables=["settings", "knowledge_atoms"], progress=meanwhile)
    assert result.ok, result.error
    assert [t.rows_copied for t in result.tables] == [1, 4]
    with sdb.provider_connection("supabase") as conn:
        titles = dict(conn.execute("SELECT atom_id, title FROM knowledge_atoms").fetchall())
        conn.rollback()
    assert titles == {"a0": "from neon", "a1": "from neon", "a2": "from neon", "a3": "newer on supabase",
                      "a4": "from neon"}


def atom_id(name):
    from agent_factory.memory.ids import atom_row_id

    return atom_row_id(name)


@pytest.mark.parametrize("table", ["settings", "knowledge_atoms"])
def test_changed_at_moves_on_a_change_and_not_on_a_rewrite_of_the_same_values(sdb, table):
    values = ({"setting_key": "k", "setting_value": "v"} if table == "settings" else
              {"atom_id": "a", "atom_type": "concept", "title": "t", "content": "c"})
    row_id = write(sdb, "neon", table, **values)
    with sdb.provider_connection("neon") as conn:
        first = conn.execute(f"SELECT changed_at FROM {table} WHERE id = %s", (row_id,)).fetchone()[0]
        conn.execute(f"UPDATE {table} SET updated_at = updated_at WHERE id = %s", (row_id,))
        same = conn.execute(f"SELECT changed_at FROM {table} WHERE id = %s", (row_id,)).fetchone()[0]
        conn.execute(f"UPDATE {table} SET updated_at = updated_at + interval '1 second' WHERE id = %s", (row_id,))
        moved = conn.execute(f"SELECT changed_at FROM {table} WHERE id = %s", (row_id,)).fetchone()[0]
        conn.commit()
    assert same == first
    assert moved > first


def test_reports_the_oldest_write_it_copies_in_every_mode(sdb):
    """The monitor's divergence age: the writer's clock of the oldest row copied (or that a dry run would copy)."""
    setting(sdb, "supabase", "old", "1", at=NOW - timedelta(minutes=30))
    setting(sdb, "supabase", "new", "2", at=NOW - timedelta(minutes=1))
    setting(sdb, "neon", "newer-on-primary", "3", at=NOW - timedelta(hours=2))  # not on the backup: not its age
    dry = sync_pair(sdb, "supabase", "neon", dry_run=True, margin_s=0)
    assert dry.rows_copied == 2 and dry.oldest_written == NOW - timedelta(minutes=30)
    bulk = sync_pair(sdb, "supabase", "railway", margin_s=0)  # railway is empty: the bulk path
    assert bulk.rows_copied == 2 and bulk.oldest_written == NOW - timedelta(minutes=30)
    merged = sync_pair(sdb, "supabase", "neon", margin_s=0)  # neon has rows: the merge path
    assert merged.rows_copied == 2 and merged.oldest_written == NOW - timedelta(minutes=30)
    again = sync_pair(sdb, "supabase", "neon", margin_s=0)
    assert again.rows_copied == 0 and again.oldest_written is None
