"""Benchmark 5: the sync between providers (`agent_factory.replication.sync_pair`).

- full sync: N changed `session_memories` rows (1,000,000; 20,000 in --quick;
  sessions of 200 messages plus their metadata rows, ~450 bytes of content per
  message) seeded on neon, merged into an empty supabase, against the same
  table moved by `pg_dump --data-only --format=custom --compress=0 -t
  session_memories | pg_restore --data-only` into the same empty table (same
  indexes and triggers). Reported in seconds (ratio ours / dump, lower is
  better) and rows/s in the details. Target: faster than the dump.
- incremental sync with nothing changed, per provider pair (all 6): every
  table holds a few thousand rows on every provider, every pair was synced
  and the margin (SYNC_MARGIN_SECONDS) has passed; then `sync_pair` is timed
  20 times per pair, 5 in --quick (median and p99). Baseline: the floor of any sync, one
  `SELECT 1` on a pooled connection to each side. Target: <= 50 ms per pair.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import time
from typing import Any

from agent_factory.core import DatabaseManager
from agent_factory.ops import pgtools
from agent_factory.replication import DEFAULT_MARGIN_S, TABLES, sync_pair

from .harness import Context, Entry, median, percentile

SOURCE, TARGET = "neon", "supabase"
FULL_ROWS, QUICK_ROWS = 1_000_000, 20_000
INCREMENTAL_REPS, QUICK_INCREMENTAL_REPS = 20, 5
SMALL_ROWS = 2_000  # per table and provider for the incremental benchmark

_SEED_SQL = """
INSERT INTO session_memories (id, session_id, user_id, memory_type, message_index, content, metadata, created_at,
                              updated_at)
SELECT CASE WHEN g %% 201 = 0
            THEN substr(encode(sha256(convert_to('agent_factory/session/sync-' || (g / 201), 'UTF8')), 'hex'),
                        1, 32)::uuid
            ELSE md5('sync-bench/' || g)::uuid END,
       'sync-' || (g / 201), 'user-' || (g %% 997),
       CASE WHEN g %% 201 = 0 THEN 'session_metadata' WHEN g %% 2 = 0 THEN 'message_user'
            ELSE 'message_assistant' END,
       CASE WHEN g %% 201 = 0 THEN NULL ELSE g %% 201 - 1 END,
       CASE WHEN g %% 201 = 0 THEN '{}'::jsonb ELSE jsonb_build_object(
           'role', CASE WHEN g %% 2 = 0 THEN 'user' ELSE 'assistant' END,
           'content', md5(g::text) || ' ' || md5((g + 1)::text) || ' ' || md5((g * 7)::text) || ' '
                      || md5((g * 13)::text) || ' ' || md5((g * 31)::text) || ' ' || md5((g * 37)::text) || ' '
                      || md5((g * 41)::text) || ' ' || md5((g * 43)::text) || ' ' || md5((g * 47)::text) || ' '
                      || md5((g * 53)::text) || ' ' || md5((g * 59)::text) || ' ' || md5((g * 61)::text)) END,
       jsonb_build_object('turn', g %% 201, 'tokens', g %% 513),
       now() - make_interval(secs => g), now() - make_interval(secs => g)
FROM generate_series(%s::bigint, %s::bigint) AS g
"""


def run(ctx: Context) -> list[Entry]:
    rows = QUICK_ROWS if ctx.quick else FULL_ROWS
    with DatabaseManager(ctx.config()) as db:
        _empty(db, db.providers)
        _seed(ctx, db, rows)
        full = _full(ctx, db, rows)
        _empty(db, db.providers)
        incremental = _incremental(ctx, db, QUICK_INCREMENTAL_REPS if ctx.quick else INCREMENTAL_REPS)
        _empty(db, db.providers)
    return [full, *incremental]


# ---- setup ------------------------------------------------------------------------------


def _empty(db: DatabaseManager, providers: Any) -> None:
    for name in providers:
        with db.provider_connection(name) as conn:
            conn.execute("TRUNCATE sync_watermarks, " + ", ".join(TABLES) + " CASCADE")
            conn.commit()


def _seed(ctx: Context, db: DatabaseManager, rows: int) -> None:
    start = time.perf_counter()
    with db.provider_connection(SOURCE) as conn:
        for low in range(0, rows, 100_000):
            conn.execute(_SEED_SQL, (low, min(low + 100_000, rows) - 1))
            conn.commit()
        conn.autocommit = True
        conn.execute("VACUUM ANALYZE session_memories")
        conn.autocommit = False
    ctx.log(f"sync: seeded {rows:,} rows on {SOURCE} in {time.perf_counter() - start:.1f} s")


def _count(db: DatabaseManager, name: str) -> int:
    with db.provider_connection(name) as conn:
        value = int(conn.execute("SELECT count(*) FROM session_memories").fetchone()[0])  # type: ignore[index]
        conn.rollback()
    return value


def _settle(db: DatabaseManager) -> None:
    """Empty the target and vacuum it, so both contenders start from the same state."""
    _empty(db, [TARGET])
    with db.provider_connection(TARGET) as conn:
        conn.autocommit = True
        conn.execute("VACUUM session_memories")
        conn.autocommit = False


# ---- full sync against pg_dump | pg_restore ---------------------------------------------


def _full(ctx: Context, db: DatabaseManager, rows: int) -> Entry:
    source, target = pgtools.target_for(db, SOURCE), pgtools.target_for(db, TARGET)
    with source.connect(purpose="bench") as conn:
        num, _ = pgtools.server_version(conn)
    pg_dump = pgtools.pick_tool("pg_dump", num // 10000)
    pg_restore = pgtools.pick_tool("pg_restore", num // 10000)
    ours: list[float] = []
    dump: list[float] = []
    reps = 2  # ABBA: ours, dump, dump, ours; the best of each (noise on a shared machine only adds time)
    details: dict[str, Any] = {"rows": rows}
    for rep in range(reps):  # alternate who goes first
        for who in (("ours", "dump") if rep % 2 == 0 else ("dump", "ours")):
            _settle(db)
            if who == "ours":
                start = time.perf_counter()
                result = sync_pair(db, SOURCE, TARGET, tables=["session_memories"])
                seconds = time.perf_counter() - start
                if not result.ok or result.rows_copied != rows:
                    raise RuntimeError(f"sync copied {result.rows_copied} of {rows} rows: {result.error}")
                details["batches"] = result.tables[0].batches
                details["longest_batch_s"] = round(result.tables[0].longest_batch_s, 3)
                ours.append(seconds)
            else:
                dump.append(_dump_restore(pg_dump, pg_restore, source, target))
            copied = _count(db, TARGET)
            if copied != rows:
                raise RuntimeError(f"{who}: {copied} rows on {TARGET}, expected {rows}")
            ctx.log(f"sync: full {who} {rows:,} rows in {(ours if who == 'ours' else dump)[-1]:.1f} s")
    best_ours, best_dump = min(ours), min(dump)
    details.update(ours_s=[round(s, 2) for s in ours], dump_s=[round(s, 2) for s in dump],
                   ours_rows_s=round(rows / best_ours), dump_rows_s=round(rows / best_dump))
    name = f"sync.full.{rows // 1000}k_rows"
    return Entry(name, "s", best_ours, best_dump, "pg_dump -Fc -Z0 | pg_restore --data-only (same table)",
                 "faster than the dump (ratio < 1)", best_ours < best_dump, details=details)


def _dump_restore(pg_dump: pgtools.Tool, pg_restore: pgtools.Tool, source: pgtools.PgTarget,
                  target: pgtools.PgTarget) -> float:
    dump_argv = [str(pg_dump.path), "--data-only", "--format=custom", "--compress=0", "--no-owner",
                 "--no-privileges", "-t", "session_memories", "-d", source.conninfo]
    restore_argv = [str(pg_restore.path), "--data-only", "--no-owner", "--no-privileges", "--exit-on-error",
                    "-d", target.conninfo]
    start = time.perf_counter()
    dumper = subprocess.Popen(dump_argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              env={**os.environ, "PGPASSWORD": source.password or ""})
    restorer = subprocess.run(restore_argv, stdin=dumper.stdout, capture_output=True,
                              env={**os.environ, "PGPASSWORD": target.password or ""})
    assert dumper.stdout is not None
    dumper.stdout.close()
    dump_err = dumper.stderr.read() if dumper.stderr else b""
    dumper.wait()
    seconds = time.perf_counter() - start
    if dumper.returncode != 0 or restorer.returncode != 0:
        raise RuntimeError(f"pg_dump | pg_restore failed: {dump_err.decode()[-400:]} "
                           f"{restorer.stderr.decode()[-400:]}")
    return seconds


# ---- incremental with nothing changed ---------------------------------------------------


def _incremental(ctx: Context, db: DatabaseManager, reps: int) -> list[Entry]:
    for name in db.providers:
        with db.provider_connection(name) as conn:
            conn.execute("""INSERT INTO settings (id, setting_key, setting_value)
                            SELECT gen_random_uuid(), %s || '/' || g, 'v' FROM generate_series(1, %s) g""",
                         (name, SMALL_ROWS))
            conn.execute("""INSERT INTO session_memories (id, session_id, user_id, memory_type, message_index,
                                                          content)
                            SELECT gen_random_uuid(), %s || '/' || (g / 50), 'u', 'message_user', g %% 50,
                                   jsonb_build_object('role', 'user', 'content', md5(g::text))
                            FROM generate_series(1, %s) g""", (name, SMALL_ROWS * 5))
            conn.commit()
    pairs = list(itertools.permutations(db.providers, 2))
    for round_ in range(2):  # converge; after the margin, once more: then nothing is left to re-read
        if round_:
            time.sleep(DEFAULT_MARGIN_S + 0.5)
        for source, target in pairs:
            if not sync_pair(db, source, target).ok:
                raise RuntimeError(f"sync {source} -> {target} failed")
    entries = []
    for source, target in pairs:
        times, floor = [], []
        for _ in range(reps):
            start = time.perf_counter()
            result = sync_pair(db, source, target)
            times.append(time.perf_counter() - start)
            if result.rows_read:
                raise RuntimeError(f"{source} -> {target} re-read {result.rows_read} rows; nothing changed")
            start = time.perf_counter()
            with db.provider_connection(source) as a, db.provider_connection(target) as b:
                a.execute("SELECT 1").fetchone()
                b.execute("SELECT 1").fetchone()
                a.rollback()
                b.rollback()
            floor.append(time.perf_counter() - start)
        ours_ms, base_ms = median(times) * 1000, median(floor) * 1000
        ctx.log(f"sync: incremental {source} -> {target}: {ours_ms:.1f} ms (floor {base_ms:.2f} ms)")
        entries.append(Entry(
            f"sync.incremental.{source}_to_{target}", "ms", ours_ms, base_ms,
            "SELECT 1 on a pooled connection to each side", "<= 50 ms on loopback", ours_ms <= 50,
            details={"p99_ms": round(percentile([t * 1000 for t in times], 99), 2), "reps": reps,
                     "rows_per_table": {"settings": SMALL_ROWS, "session_memories": SMALL_ROWS * 5}}))
    return entries
