"""Benchmark: warm backups by stream (`agent_factory.ops.stream`) against the monitor's 5-minute sync.

- Lag: 8 writers save sessions on the primary for 60 s (10 s in --quick),
  each at most one every 20 ms (an agent fleet's pace, not a saturation
  test: the providers share this machine's cores); each commit's time is noted, and one poller per backup looks for the
  committed rows every POLL_S on that backup: lag = first seen − commit
  (so it includes up to POLL_S of polling delay). Reported p50 and p99 over
  every session and backup; a session still missing DRAIN_S (60 s) after the
  writers stopped counts at the lag it reached (a lower bound), and the count
  per backup is in the details (`unreached_after_drain`). Baseline: the monitor's warm-backup sync every 300 s
  (cron). A row committed at a uniformly random time waits for the next run,
  U(0, 300 s), then for that run's sync: p50 = 150 s + d, p99 = 297 s + d,
  where d is the measured duration of `sync_pair(primary, backup)` copying
  the rows one such interval of these writers produces (measured here, with
  the streams dropped, on the same rows). Target: p99 <= 5 s.
- Throughput: sessions saved per second on the primary by 8 unpaced
  writers for 20 s (5 s in --quick) with the streams running and with them
  dropped, in the order with, without, without, with (best of each).
  Reported as ops/s with the stream (ours) against without (baseline).
  Target: a cost <= 10 % (ratio >= 0.9).
"""

from __future__ import annotations

import threading
import time
from typing import Any

from agent_factory.core import DatabaseManager
from agent_factory.memory import PostgresMemoryStorage, Session
from agent_factory.ops.stream import drop_streams, setup_streams, stream_states
from agent_factory.replication import TABLES, sync_pair

from .harness import Context, Entry, percentile

WRITERS = 8
LAG_S, QUICK_LAG_S = 60.0, 10.0
THROUGHPUT_S, QUICK_THROUGHPUT_S = 20.0, 5.0
POLL_S = 0.05
DRAIN_S = 60.0  # how long the pollers wait for the last sessions once the writers stopped
PACE_S = 0.02  # lag phase: each writer saves at most one session every 20 ms (8 writers: <= 400 sessions/s)
MONITOR_INTERVAL_S = 300.0
MESSAGES = 4  # per saved session: a metadata row and 4 messages



def run(ctx: Context) -> list[Entry]:
    with DatabaseManager(ctx.config()) as db:
        primary = db.primary_provider
        backups = [n for n in db.providers if n != primary]
        _empty(db)
        _set_up(ctx, db)
        lag_s = QUICK_LAG_S if ctx.quick else LAG_S
        lags, saved, unreached = _lag(db, primary, backups, lag_s)
        ctx.log(f"stream: {saved} sessions in {lag_s:.0f} s, {len(lags)} arrivals measured")
        window = QUICK_THROUGHPUT_S if ctx.quick else THROUGHPUT_S
        with_stream: list[float] = []
        without: list[float] = []
        for streamed in (True, False, False, True):
            if streamed:
                _set_up(ctx, db)
            else:
                drop_streams(db)
            rate = _throughput(db, primary, window)
            (with_stream if streamed else without).append(rate)
            ctx.log(f"stream: {'with' if streamed else 'without'} the stream: {rate:.0f} sessions/s")
        drop_streams(db)
        sync_s, copied = _baseline_sync(db, primary, backups[0], saved * MONITOR_INTERVAL_S / lag_s)
        ctx.log(f"stream: baseline sync of {copied} rows into {backups[0]} in {sync_s:.2f} s")
        _empty(db)
    p50, p99 = percentile(lags, 50), percentile(lags, 99)
    base50, base99 = MONITOR_INTERVAL_S * 0.5 + sync_s, MONITOR_INTERVAL_S * 0.99 + sync_s
    details: dict[str, Any] = {"writers": WRITERS, "seconds": lag_s, "sessions": saved, "arrivals": len(lags),
                               "poll_s": POLL_S, "pace_s": PACE_S, "max_s": round(max(lags), 3) if lags else None,
                               "backups": backups, "unreached_after_drain": unreached,
                               "baseline_sync_s": round(sync_s, 3),
                               "baseline_rows": copied, "monitor_interval_s": MONITOR_INTERVAL_S}
    best_with, best_without = max(with_stream), max(without)
    baseline_name = (f"monitor sync every {MONITOR_INTERVAL_S:.0f} s: U(0, {MONITOR_INTERVAL_S:.0f} s) wait "
                     f"+ measured sync of one interval's rows")
    return [
        Entry("stream.lag.p50", "s", p50, base50, baseline_name, "<= 5 s (p99 is the target)", p50 <= 5.0,
              details=details),
        Entry("stream.lag.p99", "s", p99, base99, baseline_name, "p99 <= 5 s", p99 <= 5.0, details=details),
        Entry("stream.primary_throughput", "sessions/s", best_with, best_without,
              "8 unpaced writers with the streams dropped", "cost <= 10 % (ratio >= 0.9)",
              best_with >= 0.9 * best_without,
              details={"with_stream": [round(r, 1) for r in with_stream],
                       "without_stream": [round(r, 1) for r in without], "seconds": window, "writers": WRITERS}),
    ]


def _empty(db: DatabaseManager) -> None:
    for name in db.providers:
        with db.provider_connection(name) as conn:
            conn.execute("TRUNCATE sync_watermarks, " + ", ".join(TABLES) + " CASCADE")
            conn.commit()


def _set_up(ctx: Context, db: DatabaseManager, timeout: float = 120.0) -> None:
    """Set up every stream and wait until each is streaming; raise RuntimeError when one does not."""
    setup_streams(db)
    deadline = time.monotonic() + timeout
    while True:
        states = stream_states(db)
        if all(s.status == "streaming" for s in states):
            return
        if time.monotonic() > deadline:
            raise RuntimeError("streams not streaming: " + "; ".join(f"{s.subscriber} {s.status}: {s.detail}"
                                                                     for s in states))
        time.sleep(0.2)


def _save(storage: PostgresMemoryStorage) -> str:
    """Save one new session of MESSAGES messages (one transaction) through the library; return its id."""
    session = Session(user_id="bench", metadata={"bench": "stream"})
    for i in range(MESSAGES):
        session.add_message("user" if i % 2 == 0 else "assistant", f"message {i} of a streamed session")
    storage.save_session(session)
    assert session.session_id is not None
    return session.session_id


def _writers(db: DatabaseManager, primary: str, seconds: float, on_commit: Any = None, pace_s: float = 0.0) -> int:
    """Run WRITERS threads saving sessions on the primary for `seconds` (each at most one per `pace_s`)."""
    stop = time.monotonic() + seconds
    counts = [0] * WRITERS
    errors: list[BaseException] = []

    storage = PostgresMemoryStorage(db)

    def write(i: int) -> None:
        try:
            while time.monotonic() < stop:
                began = time.monotonic()
                sid = _save(storage)
                if on_commit is not None:
                    on_commit(sid, time.monotonic())
                counts[i] += 1
                time.sleep(max(0.0, pace_s - (time.monotonic() - began)))
        except BaseException as exc:  # reported by the caller
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(WRITERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise RuntimeError(f"a writer failed: {errors[0]!r}")
    return sum(counts)


def _lag(db: DatabaseManager, primary: str, backups: list[str],
         seconds: float) -> tuple[list[float], int, dict[str, int]]:
    """Write for `seconds` and poll each backup; return every (session, backup) lag in seconds, the sessions
    saved, and per backup the sessions still missing DRAIN_S after the writers stopped (their lag is a lower
    bound: the time waited)."""
    pending = {b: {} for b in backups}  # backup -> session id -> commit time
    lock = threading.Lock()
    lags: list[float] = []
    unreached: dict[str, int] = {}
    writing = threading.Event()
    writing.set()

    def committed(sid: str, at: float) -> None:
        with lock:
            for b in backups:
                pending[b][sid] = at

    def poll(backup: str) -> None:
        with db.provider_connection(backup) as conn:
            conn.autocommit = True
            deadline = None
            while True:
                with lock:
                    wanted = list(pending[backup])
                if not wanted:
                    if not writing.is_set():
                        return
                    time.sleep(POLL_S)
                    continue
                if not writing.is_set():
                    deadline = deadline or time.monotonic() + DRAIN_S
                    if time.monotonic() > deadline:  # counted at the lag they reached, a lower bound
                        now = time.monotonic()
                        with lock:
                            lags.extend(now - pending[backup].pop(sid) for sid in wanted)
                            unreached[backup] = len(wanted)
                        return
                rows = conn.execute("SELECT DISTINCT session_id FROM session_memories WHERE session_id = ANY(%s) "
                                    "AND memory_type = 'session_metadata'", (wanted,)).fetchall()
                seen = time.monotonic()
                with lock:
                    for (sid,) in rows:
                        lags.append(seen - pending[backup].pop(sid))
                time.sleep(POLL_S)

    pollers = [threading.Thread(target=poll, args=(b,)) for b in backups]
    for t in pollers:
        t.start()
    try:
        saved = _writers(db, primary, seconds, committed, PACE_S)
    finally:
        writing.clear()
        for t in pollers:
            t.join()
    return lags, saved, unreached


def _throughput(db: DatabaseManager, primary: str, seconds: float) -> float:
    start = time.monotonic()
    saved = _writers(db, primary, seconds)
    return saved / (time.monotonic() - start)


def _baseline_sync(db: DatabaseManager, primary: str, backup: str, sessions: float) -> tuple[float, int]:
    """Time `sync_pair(primary, backup)` copying one monitor interval's sessions (written fresh); return (s, rows)."""
    with db.provider_connection(backup) as conn:
        conn.execute("TRUNCATE sync_watermarks, session_memories CASCADE")
        conn.commit()
    with db.provider_connection(primary) as conn:
        conn.execute("TRUNCATE sync_watermarks, session_memories CASCADE")
        conn.execute("""INSERT INTO session_memories (id, session_id, user_id, memory_type, message_index, content)
                        SELECT gen_random_uuid(), 'base-' || (g / %s), 'bench', 'message_user', g %% %s,
                               jsonb_build_object('role', 'user', 'content', md5(g::text))
                        FROM generate_series(0, %s) g""",
                     (MESSAGES + 1, MESSAGES + 1, int(sessions * (MESSAGES + 1)) - 1))
        conn.commit()
    start = time.perf_counter()
    result = sync_pair(db, primary, backup, tables=["session_memories"])
    seconds = time.perf_counter() - start
    if not result.ok:
        raise RuntimeError(f"baseline sync failed: {result.error}")
    return seconds, result.rows_copied
