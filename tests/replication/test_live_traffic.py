"""A sync beside live writers: nobody waits on it for longer than one batch, and nothing written is missed."""

from __future__ import annotations

import random
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone

import psycopg

from agent_factory.replication import sync_pair

from .conftest import snapshot

ROWS = 20_000
BATCH = 1_000


def _load(conn: psycopg.Connection, at: datetime) -> None:
    conn.execute(
        """INSERT INTO settings (id, setting_key, setting_value, updated_at, write_id)
           SELECT md5('k' || i)::uuid, 'k' || i, 'v', %s, gen_random_uuid() FROM generate_series(1, %s) AS i""",
        (at, ROWS))
    conn.commit()


def test_writers_wait_at_most_one_batch_and_nothing_is_missed(sdb):
    base = datetime.now(timezone.utc) - timedelta(minutes=10)
    with psycopg.connect(sdb.config.providers["neon"].url) as neon, \
            psycopg.connect(sdb.config.providers["supabase"].url) as supabase:
        _load(supabase, base)  # the target holds older versions of every row: the sync rewrites them all
        _load(neon, base + timedelta(minutes=1))

    stop = threading.Event()
    waits: list[float] = []
    errors: list[BaseException] = []
    inserted: list[str] = []

    def target_writer() -> None:  # edits rows the sync is rewriting, on the target
        rng = random.Random()
        try:
            with psycopg.connect(sdb.config.providers["supabase"].url) as conn:
                while not stop.is_set():
                    key = f"k{rng.randint(1, ROWS)}"
                    began = time.monotonic()
                    conn.execute("UPDATE settings SET setting_value = 'live', updated_at = now(), "
                                 "write_id = gen_random_uuid() WHERE setting_key = %s", (key,))
                    conn.commit()
                    waits.append(time.monotonic() - began)
        except BaseException as exc:  # reported by the test
            errors.append(exc)

    def source_writer() -> None:  # adds rows on the source while the sync reads it
        try:
            with psycopg.connect(sdb.config.providers["neon"].url) as conn:
                while not stop.is_set():
                    key = f"new-{uuid.uuid4().hex}"
                    conn.execute("INSERT INTO settings (id, setting_key, setting_value) VALUES (%s, %s, 'n')",
                                 (uuid.uuid4(), key))
                    conn.commit()
                    inserted.append(key)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=target_writer) for _ in range(3)] + [threading.Thread(target=source_writer)]
    for t in threads:
        t.start()
    try:
        time.sleep(0.2)
        result = sync_pair(sdb, "neon", "supabase", batch_size=BATCH, margin_s=0, tables=["settings"])
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not errors, errors
    assert result.ok, result.error
    table = result.tables[0]
    assert table.batches >= ROWS // BATCH
    # No writer waited on the sync for longer than its longest batch (plus scheduling noise on a busy CI box).
    assert max(waits) <= 2 * table.longest_batch_s + 0.5, (max(waits), table.longest_batch_s)
    assert len(waits) > 50

    # Nothing missed: after the writers stop, one more round trip each way and both sides hold the same rows.
    assert sync_pair(sdb, "neon", "supabase", margin_s=0).ok
    assert sync_pair(sdb, "supabase", "neon", margin_s=0).ok
    assert snapshot(sdb, "neon", ("settings",)) == snapshot(sdb, "supabase", ("settings",))
    with psycopg.connect(sdb.config.providers["supabase"].url) as conn:
        present = {r[0] for r in conn.execute("SELECT setting_key FROM settings WHERE setting_key LIKE 'new-%'")}
    assert set(inserted) <= present
