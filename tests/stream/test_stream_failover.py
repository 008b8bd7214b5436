"""Streams through failures: a subscriber killed, the primary down (a failover), a migration while streaming."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from agent_factory.core import DatabaseManager
from agent_factory.local import LocalProviders
from agent_factory.ops.stream import setup_streams, stream_states
from agent_factory.ops.sync import sync
from tests.conftest import wait_until
from tests.replication.conftest import setting, snapshot, value_of

from .conftest import caught_up


def status(db: DatabaseManager, backup: str) -> str:
    return next(s.status for s in stream_states(db) if s.subscriber == backup)


def test_a_stream_broken_by_killing_the_subscriber_resumes(streams: DatabaseManager, local: LocalProviders) -> None:
    setting(streams, "neon", "before", "1")
    assert wait_until(lambda: value_of(streams, "supabase", "before") == ("1", False), 30)
    local.kill("supabase")
    assert status(streams, "supabase") == "stopped"
    setting(streams, "neon", "while-down", "2")
    local.start("supabase")
    assert wait_until(lambda: value_of(streams, "supabase", "while-down") == ("2", False), 60)
    assert wait_until(lambda: status(streams, "supabase") == "streaming", 30)


def test_a_backup_written_during_a_failover_keeps_its_newer_rows_and_then_follows(
        streams: DatabaseManager, local: LocalProviders) -> None:
    t0 = datetime.now(timezone.utc)
    setting(streams, "neon", "shared", "from the primary", at=t0)
    assert caught_up(streams)
    local.stop("neon")
    try:
        # While the primary is down the subscriptions wait; the backup serves and is written.
        assert wait_until(lambda: status(streams, "supabase") == "stopped", 30)
        setting(streams, "supabase", "shared", "written during the failover", at=t0 + timedelta(seconds=10))
        setting(streams, "supabase", "failover-only", "new on the backup", at=t0 + timedelta(seconds=10))
    finally:
        local.start("neon")
    # The primary comes back with an older write of its own (a client that did not fail over), then new rows.
    setting(streams, "neon", "shared", "older, on the primary", at=t0 + timedelta(seconds=5))
    setting(streams, "neon", "after", "streamed after the failover")
    assert wait_until(lambda: value_of(streams, "supabase", "after") == ("streamed after the failover", False), 60)
    assert value_of(streams, "supabase", "shared") == ("written during the failover", False)
    assert value_of(streams, "supabase", "failover-only") == ("new on the backup", False)
    # The monitor's merge brings the backup's writes home; the stream carries them on to the other backup.
    assert sync(streams, "supabase", "neon").ok
    assert caught_up(streams)
    for provider in ("neon", "supabase", "railway"):
        assert value_of(streams, provider, "shared") == ("written during the failover", False), provider
        assert value_of(streams, provider, "failover-only") == ("new on the backup", False), provider
    assert snapshot(streams, "neon") == snapshot(streams, "supabase") == snapshot(streams, "railway")


def test_a_migration_deployed_subscribers_first_does_not_break_the_stream(streams: DatabaseManager) -> None:
    order = ("supabase", "railway", "neon")  # subscribers first, then the publisher
    try:
        for provider in order:
            with streams.provider_connection(provider) as conn:
                conn.execute("ALTER TABLE settings ADD COLUMN stream_test_note text")
                conn.commit()
        setting(streams, "neon", "during-deploy", "still streamed")
        assert wait_until(lambda: value_of(streams, "railway", "during-deploy") == ("still streamed", False), 30)
        # Setup again publishes the new column too.
        assert [s.status for s in setup_streams(streams)] == ["streaming", "streaming"]
        with streams.provider_connection("neon") as conn:
            conn.execute("UPDATE settings SET stream_test_note = 'new column', updated_at = now() "
                         "WHERE setting_key = 'during-deploy'")
            conn.commit()

        def note(provider: str) -> object:
            with streams.provider_connection(provider) as conn:
                row = conn.execute(
                    "SELECT stream_test_note FROM settings WHERE setting_key = 'during-deploy'").fetchone()
                conn.rollback()
            return row[0] if row else None

        assert wait_until(lambda: note("supabase") == note("railway") == "new column", 30)
        assert all(s.status == "streaming" for s in stream_states(streams))
    finally:
        from agent_factory.ops.stream import drop_streams

        drop_streams(streams)
        for provider in reversed(order):
            with streams.provider_connection(provider) as conn:
                conn.execute("ALTER TABLE settings DROP COLUMN IF EXISTS stream_test_note")
                conn.commit()


def test_drop_with_a_backup_down_still_frees_the_primarys_slot(streams: DatabaseManager,
                                                               local: LocalProviders) -> None:
    from agent_factory.ops.stream import drop_streams, stream_name

    local.kill("railway")
    states = drop_streams(streams, subscribers=["railway"])
    assert states[0].status == "absent" and "railway is unreachable" in states[0].detail
    with streams.provider_connection("neon") as conn:
        slots = {r[0] for r in conn.execute("SELECT slot_name FROM pg_replication_slots")}
        conn.rollback()
    assert stream_name("neon", "railway") not in slots and stream_name("neon", "supabase") in slots
    local.start("railway")
    assert drop_streams(streams, subscribers=["railway"])[0].detail == "no stream"
