"""Benchmark (informational): memory operations through a real PgBouncer (transaction mode) vs straight to neon.

The same library, the same neon: one manager reaches it through
`agent_factory.local.pooler` (prepared statements off, as behind any
transaction pooler), the other directly. Each round times save_session,
append_messages and load_session, one worker and eight, alternating the two.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from agent_factory.core import DatabaseManager
from agent_factory.local import LocalPooler
from agent_factory.local.pooler import find_pgbouncer
from agent_factory.memory import Message, PostgresMemoryStorage, Session

from .harness import Context, Entry, median, skipped


def _ops(storage: PostgresMemoryStorage, count: int) -> list[float]:
    """Return per-operation seconds of `count` save/append/load cycles."""
    times = []
    for i in range(count):
        session = Session(user_id="bench-pooler", messages=[Message("user", f"m{i}")])
        for op in (lambda s=session: storage.save_session(s),
                   lambda s=session: storage.append_messages(s.session_id, [{"role": "assistant", "content": "a"}]),
                   lambda s=session: storage.load_session(s.session_id)):
            started = time.perf_counter()
            op()
            times.append(time.perf_counter() - started)
    return times


def _round(storage: PostgresMemoryStorage, workers: int, count: int) -> list[float]:
    results: list[list[float]] = [[] for _ in range(workers)]
    threads = [threading.Thread(target=lambda i=i: results[i].extend(_ops(storage, count)))
               for i in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return [x for r in results for x in r]


def run(ctx: Context) -> list[Entry]:
    try:
        find_pgbouncer()
    except Exception as exc:
        return [skipped(f"pooler.memory_op_p50_c{c}", "ms", "direct to neon", "informational", str(exc))
                for c in (1, 8)]
    pooler = LocalPooler(ctx.local, ctx.workdir / "pgbouncer")
    pooler.create("neon")
    pooler.start()
    rounds, count = (2, 10) if ctx.quick else (6, 40)
    entries = []
    try:
        with DatabaseManager(ctx.config(**pooler.env())) as pooled, DatabaseManager(ctx.config()) as direct:
            subjects = {"pooled": PostgresMemoryStorage(pooled), "direct": PostgresMemoryStorage(direct)}
            for workers in (1, 8):
                times: dict[str, list[float]] = {"pooled": [], "direct": []}
                for _ in range(rounds):
                    for key, storage in subjects.items():
                        times[key] += _round(storage, workers, count)
                ours, base = median(times["pooled"]) * 1000, median(times["direct"]) * 1000
                ctx.log(f"pooler c{workers}: through PgBouncer {ours:.2f} ms, direct {base:.2f} ms per op (p50)")
                details: dict[str, Any] = {"ops": len(times["pooled"]), "workers": workers,
                                           "ops_timed": "save_session, append_messages, load_session"}
                entries.append(Entry(f"pooler.memory_op_p50_c{workers}", "ms", ours, base,
                                     "the same operations straight to neon", "informational", None,
                                     details=details))
    finally:
        pooler.stop()
    return entries
