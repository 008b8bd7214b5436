"""Last writer wins for streamed rows (migration 0007): writes on both sides while the stream runs."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from agent_factory.core import DatabaseManager
from agent_factory.memory.ids import setting_row_id
from agent_factory.memory.postgres import PostgresMemoryStorage
from agent_factory.memory.session import Session
from agent_factory.ops.stream import stream_states
from tests.conftest import wait_until
from tests.replication.conftest import message, setting, value_of

from .conftest import caught_up

BACKUPS = ("supabase", "railway")


def arrived(db: DatabaseManager, key: str, value: str, providers: tuple[str, ...] = BACKUPS) -> bool:
    return wait_until(lambda: all(value_of(db, p, key) == (value, False) for p in providers), 30)


def test_a_stream_never_overwrites_a_newer_row_written_on_a_backup(streams: DatabaseManager) -> None:
    t0 = datetime.now(timezone.utc)
    setting(streams, "neon", "theme", "v0", at=t0)
    assert arrived(streams, "theme", "v0")
    setting(streams, "supabase", "theme", "backup-newer", at=t0 + timedelta(seconds=20))
    setting(streams, "neon", "theme", "primary-older", at=t0 + timedelta(seconds=10))
    setting(streams, "neon", "marker", "1")
    assert arrived(streams, "marker", "1")  # the stream applied everything before the marker
    assert value_of(streams, "supabase", "theme") == ("backup-newer", False)
    assert value_of(streams, "railway", "theme") == ("primary-older", False)
    setting(streams, "neon", "theme", "primary-newest", at=t0 + timedelta(seconds=30))
    assert arrived(streams, "theme", "primary-newest")


def test_a_streamed_insert_of_a_row_already_on_the_backup_is_merged_not_retried(streams: DatabaseManager) -> None:
    t0 = datetime.now(timezone.utc)
    # Rows the backup has and the primary does not (written there during a failover, or copied by a sync).
    setting(streams, "supabase", "kept", "backup-newer", at=t0 + timedelta(seconds=5))
    setting(streams, "supabase", "replaced", "backup-older", at=t0)
    setting(streams, "neon", "kept", "primary-older", at=t0)
    setting(streams, "neon", "replaced", "primary-newer", at=t0 + timedelta(seconds=5))
    setting(streams, "neon", "marker", "2")
    assert arrived(streams, "marker", "2")
    assert value_of(streams, "supabase", "kept") == ("backup-newer", False)
    assert value_of(streams, "supabase", "replaced") == ("primary-newer", False)
    assert [s.status for s in stream_states(streams)] == ["streaming", "streaming"]


def test_a_streamed_physical_delete_removes_only_a_tombstone_on_the_backup(streams: DatabaseManager) -> None:
    t0 = datetime.now(timezone.utc)
    setting(streams, "neon", "live-here", "v", at=t0)
    setting(streams, "neon", "purged", "v", at=t0, deleted=True)
    assert wait_until(lambda: value_of(streams, "supabase", "purged") == ("v", True), 30)
    assert arrived(streams, "live-here", "v")
    setting(streams, "supabase", "live-here", "written on the backup", at=t0 + timedelta(seconds=5))
    with streams.provider_connection("neon") as conn:
        conn.execute("DELETE FROM settings WHERE id = ANY(%s)",
                     ([setting_row_id("live-here"), setting_row_id("purged")],))
        conn.commit()
    assert wait_until(lambda: all(value_of(streams, p, "purged") is None for p in BACKUPS), 30)
    # The application deletes by tombstone: a physical delete of a live row does not cross a stream.
    assert value_of(streams, "supabase", "live-here") == ("written on the backup", False)
    assert value_of(streams, "railway", "live-here") == ("v", False)


def test_derived_figures_count_the_backups_own_messages(streams: DatabaseManager) -> None:
    primary = PostgresMemoryStorage(streams)
    primary.save_session(Session("u1", session_id="both", messages=[{"role": "user", "content": "m1"}]))
    assert caught_up(streams)
    # A message written on the backup only (during a failover), then the primary appends two more.
    message(streams, "supabase", "both", "on the backup", index=1, user_id="u1")
    primary.append_messages("both", [{"role": "assistant", "content": "m2"}, {"role": "user", "content": "m3"}])
    assert caught_up(streams)

    def counts(provider: str) -> tuple[int, int]:
        with streams.provider_connection(provider) as conn:
            row = conn.execute(
                "SELECT m.message_count, (SELECT count(*) FROM session_memories r WHERE r.session_id = 'both' "
                "AND r.message_index IS NOT NULL AND r.deleted_at IS NULL) FROM session_memories m "
                "WHERE m.session_id = 'both' AND m.memory_type = 'session_metadata'").fetchone()
            conn.rollback()
        assert row is not None
        return row[0], row[1]

    assert counts("supabase") == (4, 4)
    assert counts("railway") == (3, 3)
    assert counts("neon") == (3, 3)


def test_streamed_figures_are_what_recompute_session_derives(streams: DatabaseManager) -> None:
    # The apply worker adds each streamed message to its session's figures instead of counting the
    # session again: after saves and appends a full recompute finds nothing to change, and every
    # provider shows the same figures (a deleted session's too).
    primary = PostgresMemoryStorage(streams)
    ids = [f"figures-{i}" for i in range(3)]
    for sid in ids:
        primary.save_session(Session("u1", session_id=sid, messages=[{"role": "user", "content": f"{sid} first"}]))
    for round_ in range(3):
        for sid in ids:
            primary.append_messages(sid, [{"role": "assistant", "content": f"{sid} reply {round_}"},
                                          {"role": "user", "content": f"{sid} next {round_}"}])
    primary.delete_session(ids[2])
    assert caught_up(streams)
    seen: dict[str, list[tuple[object, ...]]] = {}
    for provider in ("neon", *BACKUPS):
        with streams.provider_connection(provider) as conn:
            figures = conn.execute(
                "SELECT session_id, message_count, deleted_at IS NOT NULL FROM session_memories "
                "WHERE session_id = ANY(%s) AND memory_type = 'session_metadata' ORDER BY session_id",
                (ids,)).fetchall()
            changed = conn.execute("SELECT recompute_session(%s)", (ids[:2],)).fetchone()  # live sessions
            conn.rollback()
        seen[provider] = figures
        assert changed == (0,), provider
    for provider, figures in seen.items():
        assert figures[:2] == [(ids[0], 7, False), (ids[1], 7, False)], provider
        assert figures[2][0] == ids[2] and figures[2][2], provider  # deleted everywhere
