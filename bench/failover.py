"""Benchmark 2: SIGKILL of the primary during a write workload.

Each trial: four writer threads, each paced at one idempotent INSERT every
20 ms, write to the primary (neon); the primary's postmaster and backends are
SIGKILLed at a random moment; the trial measures the time from just before the
kill to the end of the first write acknowledged by the backup (supabase), and
counts the writes that failed from the kill until 0.5 s after that first write.
The clock starts before `LocalProviders.kill` scans /proc for the backends, so
the figures are slightly pessimistic.

Ours: a `DatabaseManager` with the default settings (DATABASE_HEALTH_TTL=60,
DATABASE_CONNECT_TIMEOUT=5) and `run_in_transaction(..., idempotent=True)`.
Baseline: `CachedHealthRouter` (bench/reference_router.py), the same pools and
writes, routing by a 60 s cached health check only. Its recovery depends on when
in its 60 s cycle the kill lands, so each baseline trial places the kill at a
stratified point of that cycle (ages its cache): the baseline trials are few
because each one waits for its cache to expire for real.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.types.json import Json

from agent_factory.core import DatabaseManager

from .harness import Context, Entry, median, percentile
from .reference_router import CachedHealthRouter

WRITERS = 4
PACE_S = 0.020
SETTLE_S = 0.5
TTL_S = 60.0


@dataclass
class Write:
    end: float
    ok: bool
    port: int | None


@dataclass
class Trial:
    recovery_s: float | None
    failed_writes: int
    writes: int


def _work(conn: psycopg.Connection) -> int:
    conn.execute(
        "INSERT INTO agent_messages (id, sender, recipient, payload) VALUES (%s, 'bench', 'failover', %s) "
        "ON CONFLICT (id) DO NOTHING",
        (uuid.uuid4(), Json({"bench": "failover"})),
    )
    return int(conn.execute("SELECT current_setting('port')").fetchone()[0])  # type: ignore[index]


def _trial(ctx: Context, write: Callable[[], int], *, before_kill: Callable[[], None] | None,
           deadline_s: float) -> Trial:
    """Run the writers, kill neon, wait for the first write on supabase (or the deadline), stop."""
    backup_port = ctx.local.get("supabase").port
    primary_port = ctx.local.get("neon").port
    records: list[Write] = []
    lock = threading.Lock()
    stop = threading.Event()

    def writer() -> None:
        next_at = time.perf_counter()
        while not stop.is_set():
            try:
                port: int | None = write()
                ok = True
            except Exception:  # every failure is counted, whatever its class
                port, ok = None, False
            with lock:
                records.append(Write(time.perf_counter(), ok, port))
            next_at += PACE_S
            delay = next_at - time.perf_counter()
            if delay > 0:
                stop.wait(delay)
            else:
                next_at = time.perf_counter()

    threads = [threading.Thread(target=writer, name=f"bench-writer-{i}", daemon=True) for i in range(WRITERS)]
    for thread in threads:
        thread.start()
    warm_deadline = time.perf_counter() + 10
    while time.perf_counter() < warm_deadline:
        with lock:
            on_primary = sum(1 for r in records if r.ok and r.port == primary_port)
        if on_primary >= 4 * WRITERS:
            break
        time.sleep(0.01)
    else:
        stop.set()
        raise RuntimeError("the writers never reached the primary before the kill")
    time.sleep(random.uniform(0.0, PACE_S))  # land the kill anywhere in the write cycle
    if before_kill is not None:
        before_kill()
    killed_at = time.perf_counter()
    ctx.local.kill("neon")
    recovered_at: float | None = None
    end_by = killed_at + deadline_s
    while time.perf_counter() < end_by:
        with lock:
            firsts = [r.end for r in records if r.ok and r.port == backup_port and r.end > killed_at]
        if firsts:
            recovered_at = min(firsts)
            break
        time.sleep(0.005)
    if recovered_at is not None:
        time.sleep(max(0.0, recovered_at + SETTLE_S - time.perf_counter()))
    stop.set()
    for thread in threads:
        thread.join(timeout=30)
    window_end = (recovered_at if recovered_at is not None else end_by) + SETTLE_S
    with lock:
        failed = sum(1 for r in records if not r.ok and killed_at < r.end <= window_end)
        total = sum(1 for r in records if killed_at < r.end <= window_end)
    return Trial(None if recovered_at is None else recovered_at - killed_at, failed, total)


def _ours(ctx: Context) -> Trial:
    ctx.ensure_running()
    with DatabaseManager(ctx.config()) as db:
        return _trial(ctx, lambda: db.run_in_transaction(_work, idempotent=True), before_kill=None,
                      deadline_s=10.0)


def _reference(ctx: Context, remaining_s: float) -> Trial:
    ctx.ensure_running()
    router = CachedHealthRouter(ctx.config(), ttl=TTL_S)
    try:
        # The cache expires `remaining_s` after the kill.
        return _trial(ctx, lambda: router.run_in_transaction(_work),
                      before_kill=lambda: router.age_cache("neon", TTL_S - remaining_s),
                      deadline_s=remaining_s + 20.0)
    finally:
        router.close()


def run(ctx: Context) -> list[Entry]:
    trials = 3 if ctx.quick else 20
    # Stratified points of the 60 s cycle; --quick uses one short one (so its baseline is optimistic).
    remaining = [1.0] if ctx.quick else [TTL_S * (i + 0.5) / 4 for i in range(4)]
    ours: list[Trial] = []
    for index in range(trials):
        trial = _ours(ctx)
        ours.append(trial)
        ctx.log(f"failover ours {index + 1}/{trials}: recovery {_s(trial.recovery_s)}, "
                f"{trial.failed_writes} failed of {trial.writes}")
    reference: list[Trial] = []
    for index, left in enumerate(remaining):
        trial = _reference(ctx, left)
        reference.append(trial)
        ctx.log(f"failover baseline {index + 1}/{len(remaining)} (cache expires {left:.1f} s after the kill): "
                f"recovery {_s(trial.recovery_s)}, {trial.failed_writes} failed of {trial.writes}")
    ctx.ensure_running()

    def recoveries(ts: list[Trial]) -> list[float]:
        if any(t.recovery_s is None for t in ts):
            raise RuntimeError("a failover trial saw no write succeed on the backup before its deadline")
        return [t.recovery_s for t in ts]  # type: ignore[misc]

    ours_r, ref_r = recoveries(ours), recoveries(reference)
    baseline_name = (f"cached health only (TTL {TTL_S:.0f} s, no passive marking; "
                     f"{len(reference)} trial(s), kill placed {', '.join(f'{x:.1f}' for x in remaining)} s "
                     "before cache expiry)")
    details: dict[str, Any] = {"trials": trials, "baseline_trials": len(reference), "writers": WRITERS,
                               "pace_ms": PACE_S * 1000, "ours_recovery_s": [round(x, 4) for x in ours_r],
                               "baseline_recovery_s": [round(x, 3) for x in ref_r]}
    ours_failed = [t.failed_writes for t in ours]
    ref_failed = [t.failed_writes for t in reference]
    return [
        Entry("failover.recovery_p50", "s", median(ours_r), median(ref_r), baseline_name,
              "informational (p99 is the target)", None, details=details),
        Entry("failover.recovery_p99", "s", percentile(ours_r, 99), percentile(ref_r, 99), baseline_name,
              "ours p99 < 1 s", percentile(ours_r, 99) < 1.0),
        Entry("failover.failed_writes_per_trial", "writes (mean)", sum(ours_failed) / len(ours_failed),
              sum(ref_failed) / len(ref_failed), baseline_name, "informational (fewer is better)", None,
              details={"ours": ours_failed, "baseline": ref_failed,
                       "window": "from the kill to 0.5 s after the first write on the backup"}),
    ]


def _s(value: float | None) -> str:
    return "none" if value is None else f"{value:.3f} s"
