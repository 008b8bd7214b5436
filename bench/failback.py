"""Benchmark: the time the merge adds to a fail-back, with 10,000 writes made during the failover.

Each trial: neon is SIGKILLed, 10,000 messages are appended through the public
API (so they land on supabase), neon is restarted, and the clock runs from the
restart until traffic is back on neon. Ours: the default fail-back, which
merges supabase's writes into neon before switching (and pauses traffic for
the small final merge). Baseline: the same manager and steps with a fail-back
that merges nothing (the switch the library made before continuity existed).
Both probe neon every 0.2 s and fail back after 2 passing checks, so the
difference is the merge.
"""

from __future__ import annotations

import time
from typing import Any

from agent_factory.core import DatabaseManager
from agent_factory.memory import PostgresMemoryStorage, Session
from agent_factory.replication import sync_pair

from .harness import Context, Entry, median

WRITES = 10_000
BATCH = 50  # messages per append_messages call


def _trial(ctx: Context, merge: bool, writes: int) -> tuple[float, int]:
    """Return (seconds from restart to serving on neon, rows the fail-back merged)."""
    kwargs: dict[str, Any] = {} if merge else {"failback_sync": lambda manager, backup, primary: 0}
    config = ctx.config(DATABASE_HEALTH_TTL="0.2", DATABASE_FAILBACK_CHECKS="2")
    with DatabaseManager(config, **kwargs) as db:
        storage = PostgresMemoryStorage(db)
        sync_pair(db, "supabase", "neon")  # only what the failover writes is new to neon
        ctx.local.kill("neon")
        session = Session(user_id="bench-failback")
        storage.save_session(session)  # on supabase: the session is new there
        message = [{"role": "user", "content": "written during the failover"}] * BATCH
        for _ in range(writes // BATCH):
            storage.append_messages(session.session_id, message)
        assert db.active_provider == "supabase"
        started = time.perf_counter()
        ctx.local.start("neon")
        deadline = time.monotonic() + 120
        while db.active_provider != "neon" and time.monotonic() < deadline:
            time.sleep(0.005)
        elapsed = time.perf_counter() - started
        if db.active_provider != "neon":
            raise RuntimeError("no fail-back within 120 s")
        loaded = storage.load_session(session.session_id)
        merged = len(loaded.messages) if loaded else 0
        if merge and merged != writes:
            raise RuntimeError(f"after the fail-back neon holds {merged} of {writes} messages")
    return elapsed, merged


def run(ctx: Context) -> list[Entry]:
    trials = 1 if ctx.quick else 3
    writes = 1_000 if ctx.quick else WRITES
    ours, base = [], []
    for _ in range(trials):  # alternate, so machine noise falls on both alike
        ours.append(_trial(ctx, True, writes)[0])
        ctx.ensure_running()
        base.append(_trial(ctx, False, writes)[0])
        ctx.ensure_running()
    ctx.log(f"fail-back with {writes} writes: merge {median(ours):.2f} s, no merge {median(base):.2f} s")
    return [
        Entry("failback.restart_to_primary_s", "s (median)", median(ours), median(base),
              f"the same fail-back merging nothing ({writes} messages written during the failover)",
              "informational: the difference is the merge", None,
              details={"ours_s": [round(x, 3) for x in ours], "baseline_s": [round(x, 3) for x in base],
                       "extra_s": round(median(ours) - median(base), 3)}),
    ]
