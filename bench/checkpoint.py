"""Benchmark: LangGraph checkpoints, `AgentFactorySaver` against langgraph-checkpoint-postgres's `PostgresSaver`.

Subjects (both on the primary provider, neon):
- ours: `AgentFactorySaver` on a `DatabaseManager` with default settings;
- peer: `PostgresSaver` on a `psycopg_pool.ConnectionPool` opened as its
  documentation does (autocommit, prepare_threshold=0, dict_row), after its
  own `setup()`.

Operations, each at concurrency 1 and 8 (one thread per worker, the subjects
taking turns batch by batch): `put` a checkpoint with one blob channel (10
messages) and one inline value; `put_writes` of two writes; `get_tuple` of the
newest of 20 checkpoints with writes; `list(limit=10)`. Round trips per
operation are counted by a proxy. Resilience: after `pg_terminate_backend` of
every idle connection (what a provider does to idle clients), the errors of
the next 100 operations.
"""

from __future__ import annotations

import contextlib
import importlib.util
import itertools
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg

from agent_factory.core import DatabaseManager
from agent_factory.local.proxy import CountingProxy

from .harness import Context, Entry, skipped
from .memory_ops import Stats, compare_ops, count_round_trips, over_link

OPS = ("put", "put_writes", "get_tuple", "list")
CONCURRENCY = (1, 8)
SEEDED = 20
RESILIENCE_OPS = 100
PEER_NAME = "langgraph-checkpoint-postgres PostgresSaver (pool: autocommit, prepare_threshold=0, dict_row)"

Op = Callable[[], Any]


def _checkpoint(saver: Any, previous: dict | None, step: int) -> tuple[dict, dict]:
    from langgraph.checkpoint.base import empty_checkpoint
    from langgraph.checkpoint.base.id import uuid6

    checkpoint = empty_checkpoint()
    checkpoint["id"] = str(uuid6(clock_seq=-1))
    version = saver.get_next_version(previous["channel_versions"]["messages"] if previous else None, None)
    checkpoint["channel_values"] = {
        "messages": [{"role": "user", "content": f"message {i} of step {step}"} for i in range(10)], "count": step}
    checkpoint["channel_versions"] = {"messages": version, "count": version}
    return checkpoint, {"messages": version, "count": version}


class Subject:
    """One saver and, per worker, a thread of its own."""

    def __init__(self, name: str, saver: Any, close: Callable[[], None]) -> None:
        self.name, self.saver, self._close = name, saver, close
        self.heads: dict[int, dict] = {}
        self.previous: dict[int, dict | None] = {}
        self.counter = itertools.count()

    def thread(self, worker: int) -> str:
        return f"bench-{self.name}-{worker}"

    def seed(self, workers: int, count: int) -> None:
        for worker in range(workers):
            config = {"configurable": {"thread_id": self.thread(worker), "checkpoint_ns": ""}}
            previous = None
            for step in range(count):
                checkpoint, versions = _checkpoint(self.saver, previous, step)
                config = self.saver.put(config, checkpoint, {"source": "loop", "step": step}, versions)
                self.saver.put_writes(config, [("messages", {"role": "ai", "content": "ok"}), ("count", step)],
                                      str(uuid.uuid4()))
                previous = checkpoint
            self.heads[worker], self.previous[worker] = config, previous

    def make(self, op: str, worker: int) -> Op | None:
        saver, thread = self.saver, {"configurable": {"thread_id": self.thread(worker), "checkpoint_ns": ""}}
        if op == "put":
            def put() -> None:
                head, previous = self.heads[worker], self.previous[worker]
                checkpoint, versions = _checkpoint(saver, previous, next(self.counter))
                self.heads[worker] = saver.put(head, checkpoint, {"source": "loop", "step": 1}, versions)
                self.previous[worker] = checkpoint
            return put
        if op == "put_writes":
            return lambda: saver.put_writes(self.heads[worker], [("messages", {"role": "ai", "content": "w"}),
                                                                 ("count", 1)], str(uuid.uuid4()))
        if op == "get_tuple":
            return lambda: saver.get_tuple(thread)
        if op == "list":
            return lambda: list(saver.list(thread, limit=10))
        return None

    def close(self) -> None:
        self._close()


def _peer_missing(ctx: Context) -> str | None:
    if ctx.no_peer:
        return "peer comparison turned off (--no-peer)"
    for module in ("langgraph.checkpoint.postgres", "langgraph.checkpoint.base"):
        if importlib.util.find_spec(module.split(".")[0]) is None or importlib.util.find_spec(module) is None:
            return "peer not installed (pip install -e '.[bench,langgraph]')"
    return None


def _peer(url: str) -> Subject:
    from langgraph.checkpoint.postgres import PostgresSaver
    from psycopg.rows import dict_row
    from psycopg_pool import ConnectionPool

    pool = ConnectionPool(url, min_size=1, max_size=max(CONCURRENCY), open=True,
                          kwargs={"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row})
    saver = PostgresSaver(pool)  # type: ignore[arg-type]
    saver.setup()
    return Subject("peer", saver, pool.close)


@contextlib.contextmanager
def _subjects(ctx: Context, url: str) -> Iterator[tuple[list[Subject], str | None]]:
    from agent_factory.integrations.langgraph import AgentFactorySaver

    peer_missing = _peer_missing(ctx)
    with DatabaseManager(ctx.config(NEON_DB_URL=url)) as db:
        subjects = [Subject("ours", AgentFactorySaver(db), lambda: None)]
        if peer_missing is None:
            subjects.append(_peer(url))
        try:
            for subject in subjects:
                subject.seed(max(CONCURRENCY), 4 if ctx.quick else SEEDED)
            yield subjects, peer_missing
        finally:
            for subject in subjects:
                subject.close()


def run(ctx: Context) -> list[Entry]:
    """Checkpoint operations on loopback, then the resilience figure."""
    rounds = 3 if ctx.quick else 12
    per_worker = {1: 8, 8: 3} if ctx.quick else {1: 25, 8: 6}
    entries = _compare(ctx, ctx.local.url("neon"), "checkpoint", rounds, per_worker)
    return entries + _resilience(ctx)


def run_link(ctx: Context) -> list[Entry]:
    """Round trips per operation (counted by a proxy), then the operations over a 20 ms link."""
    return over_link(ctx, _subjects, _round_trips,
                     lambda url, rounds, per_worker: _compare(ctx, url, "checkpoint_link", rounds, per_worker))


def _compare(ctx: Context, url: str, prefix: str, rounds: int, per_worker: dict[int, int]) -> list[Entry]:
    return compare_ops(ctx, _subjects(ctx, url), prefix, OPS, rounds, per_worker,
                       lambda op, c, stats, peer_missing: [_entry(prefix, op, c, stats, peer_missing)])


def _entry(prefix: str, op: str, c: int, stats: dict[str, Stats], peer_missing: str | None) -> Entry:
    name, unit, target = f"{prefix}.{op}.c{c}.time_per_op_vs_peer", "ms per op (1000 / ops/s)", "ours <= peer"
    if peer_missing is not None or "peer" not in stats:
        return skipped(name, unit, PEER_NAME, target, peer_missing or "the peer could not run this operation")
    o, p = stats["ours"], stats["peer"]
    ours_t, peer_t = 1000 / o.ops_s, 1000 / p.ops_s
    return Entry(name, unit, ours_t, peer_t, PEER_NAME, target, ours_t <= peer_t,
                 details={name_: {"p50_ms": round(s.p50_ms, 3), "p99_ms": round(s.p99_ms, 3),
                                  "ops_s": round(s.ops_s, 1), "machine_cpu_busy_pct": round(s.busy_pct, 1)}
                          for name_, s in stats.items()})


def _round_trips(ctx: Context, proxy: CountingProxy, subjects: list[Subject], peer_missing: str | None) -> list[Entry]:
    entries = []
    for op in OPS:
        counts = count_round_trips(proxy, subjects, op)
        ctx.log(f"checkpoint round trips {op}: " + ", ".join(f"{n} {c}" for n, c in counts.items()))
        name = f"roundtrips.checkpoint.{op}"
        if "peer" not in counts:
            entries.append(skipped(name, "round trips", PEER_NAME, "ours <= peer", peer_missing or "no peer"))
            continue
        entries.append(Entry(name, "round trips", counts["ours"], counts["peer"], PEER_NAME, "ours <= peer",
                             counts["ours"] <= counts["peer"], details=dict(counts)))
    return entries


def _terminate_idle(ctx: Context) -> int:
    """Terminate every idle client connection to neon, as a provider does to idle clients; return how many."""
    with psycopg.connect(ctx.local.admin_url("neon"), autocommit=True) as admin:
        row = admin.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE state = 'idle' AND pid <> pg_backend_pid() AND backend_type = 'client backend'").fetchone()
    return int(row[0]) if row else 0


def _resilience(ctx: Context) -> list[Entry]:
    errors: dict[str, int] = {}
    with _subjects(ctx, ctx.local.url("neon")) as (subjects, peer_missing), \
            ThreadPoolExecutor(max_workers=max(CONCURRENCY)) as executor:
        for subject in subjects:  # every pooled connection used once: all of them sit idle in the pools now
            list(executor.map(lambda w, s=subject: s.make("get_tuple", w)(), range(max(CONCURRENCY))))
        terminated = _terminate_idle(ctx)
        for subject in subjects:
            failed = 0
            for i in range(RESILIENCE_OPS):
                fn = subject.make(OPS[i % len(OPS)], 0)
                try:
                    fn()  # type: ignore[misc]
                except Exception:  # counting the peer's failures (and ours, should there be any) is the point
                    failed += 1
            errors[subject.name] = failed
    ctx.log(f"checkpoint resilience: errors in {RESILIENCE_OPS} ops after terminating {terminated} idle "
            f"connections: {errors}")
    name, unit, target = "checkpoint.resilience.errors_after_idle_kill", "errors in 100 ops", "ours == 0"
    if "peer" not in errors:
        return [skipped(name, unit, PEER_NAME, target, peer_missing or "no peer")]
    return [Entry(name, unit, errors["ours"], errors["peer"], PEER_NAME, target, errors["ours"] == 0,
                  details={"terminated": terminated, "errors": errors})]
