"""Benchmark 1: memory operations, ours against the same SQL on a bare pool and against a peer library.

Subjects (all on the primary provider, neon):
- ours: `PostgresMemoryStorage` and `KnowledgeBase` on a `DatabaseManager` with default settings;
- bare: the library's own SQL constants, with parameters built by the
  library's own helpers, on a bare `psycopg_pool.ConnectionPool` (same
  connection settings, no check callback, no routing; rows returned as
  fetched, not turned into objects). A traced run checks that both send the
  same statements before anything is timed;
- peer: langchain-postgres `PostgresChatMessageHistory` on one psycopg
  connection, as its documentation uses it (shared by all threads at
  concurrency 8), for the operations it has: append, load, save (clear + add).

Operations: append 10 messages to an existing session; load a 200-message
session; save a new 50-message session; query 100 memory atoms of one user and
type; full-text search (top 10) over 1,965 knowledge atoms. Each runs at
concurrency 1 and 8; the subjects take turns batch by batch (rotating order) so
that machine noise falls on all of them alike.
"""

from __future__ import annotations

import contextlib
import importlib.util
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg_pool import ConnectionPool

from agent_factory.core import DatabaseManager
from agent_factory.local.proxy import CountingProxy
from agent_factory.memory import KnowledgeBase, PostgresMemoryStorage, Session
from agent_factory.memory import knowledge as kb_module
from agent_factory.memory import postgres as pg_module
from agent_factory.memory.base import prepare_messages, prepare_session
from agent_factory.memory.ids import new_stamp

from . import data
from .harness import Context, Entry, percentile, skipped

OPS = ("append_10", "load_200", "save_50", "query_atoms", "search_kb")
PEER_OPS = ("append_10", "load_200", "save_50")
CONCURRENCY = (1, 8)
LINK_DELAY = 0.020  # seconds added per round trip: a managed provider in another region
KB_ATOMS = 1965
WARM_UP_BATCHES = 30  # at most, until a subject's pool holds one connection per worker
QUERY_USER = "bench-query-user"
PEER_TABLE = "langchain_chat_history"
CONN_KWARGS: dict[str, Any] = {
    "connect_timeout": 5, "keepalives": 1, "keepalives_idle": 30, "keepalives_interval": 10,
    "keepalives_count": 3, "application_name": "agent-factory-bench", "prepare_threshold": 5,
}

Op = Callable[[], Any]


@dataclass
class Stats:
    latencies: list[float] = field(default_factory=list)
    ops: int = 0
    wall: float = 0.0
    client_cpu: float = 0.0  # this process's CPU seconds (all threads)
    machine_busy: float = 0.0  # busy share of all cores over the batches, summed as jiffies
    machine_total: float = 0.0

    @property
    def busy_pct(self) -> float:
        return 100.0 * self.machine_busy / self.machine_total if self.machine_total else float("nan")

    @property
    def client_cpu_ms_per_op(self) -> float:
        return 1000.0 * self.client_cpu / self.ops if self.ops else float("nan")

    @property
    def p50_ms(self) -> float:
        return percentile(self.latencies, 50) * 1000

    @property
    def p99_ms(self) -> float:
        return percentile(self.latencies, 99) * 1000

    @property
    def ops_s(self) -> float:
        return self.ops / self.wall if self.wall else float("nan")


class Ours:
    """The library: PostgresMemoryStorage and KnowledgeBase on a DatabaseManager."""

    name = "ours"

    def __init__(self, db: DatabaseManager, prepared: Prepared) -> None:
        self.db = db
        self.storage = PostgresMemoryStorage(db)
        self.kb = KnowledgeBase(db)
        self.p = prepared

    def connections(self) -> int | None:
        """Connections open in the primary's pool."""
        return int(self.db.get_provider_stats()[self.db.config.primary]["pool_size"])

    def make(self, op: str, worker: int) -> Op | None:
        p = self.p
        if op == "append_10":
            session = Session(f"bench-user-{worker}")
            self.storage.save_session(session)
            sid = session.session_id
            return lambda: self.storage.append_messages(sid, p.msgs10)
        if op == "load_200":
            sid = p.loaded_sessions[worker]
            return lambda: self.storage.load_session(sid)
        if op == "save_50":
            return lambda: self.storage.save_session(Session(f"bench-user-{worker}", messages=p.msgs50))
        if op == "query_atoms":
            return lambda: self.storage.query_memory_atoms(user_id=QUERY_USER, memory_type="context", limit=100)
        if op == "search_kb":
            queries = _cycle(data.SEARCH_QUERIES, worker)
            return lambda: self.kb.search(next(queries), limit=10)
        raise ValueError(op)

    def close(self) -> None:
        pass


class Bare:
    """The same SQL, with parameters built by the library's own helpers, on a bare psycopg_pool.ConnectionPool.

    What ours adds on top of this is the `DatabaseManager` (routing, failover
    bookkeeping, the pool's connection check) and the objects the public API
    returns (`Session`, `MemoryAtom`, `KnowledgeAtom`); rows here stay as fetched.
    """

    name = "bare"

    def __init__(self, url: str, prepared: Prepared) -> None:
        self.pool = ConnectionPool(url, kwargs=CONN_KWARGS, min_size=1, max_size=10, timeout=5.0,
                                   name="bench.bare", open=True)
        self.pool.wait(timeout=10)
        self.p = prepared

    def _read(self, work: Callable[[psycopg.Connection], Any]) -> Any:
        """A single statement in autocommit, as the library's `run_read` and `run_statement` do."""
        with self.pool.connection() as conn:
            conn.autocommit = True
            try:
                return work(conn)
            finally:
                conn.autocommit = False

    def make(self, op: str, worker: int) -> Op | None:
        p = self.p
        if op == "append_10":
            session = Session(f"bench-user-{worker}")
            self._read(pg_module.save_session_work(prepare_session(session)))
            sid = session.session_id

            def append() -> Any:
                return self._read(pg_module.append_messages_work(
                    sid, prepare_messages(sid, p.msgs10, "messages"), new_stamp()))

            return append
        if op == "load_200":
            return lambda: self._read(pg_module.load_session_work(p.loaded_sessions[worker]))
        if op == "save_50":
            def save() -> Any:
                session = Session(f"bench-user-{worker}", messages=p.msgs50)
                return self._read(pg_module.save_session_work(prepare_session(session)))

            return save
        if op == "query_atoms":
            sql, params = pg_module.query_memory_atoms_statement(None, QUERY_USER, "context", 100)
            return lambda: self._read(lambda conn: conn.execute(sql, params).fetchall())
        if op == "search_kb":
            queries = _cycle(data.SEARCH_QUERIES, worker)
            sql = kb_module.SEARCH_SQL.format(type_filter="")

            def search() -> Any:
                params = {"query": next(queries), "limit": 10}
                return self._read(lambda conn: conn.execute(sql, params).fetchall())

            return search
        raise ValueError(op)

    def connections(self) -> int | None:
        """Connections open in the pool."""
        return int(self.pool.get_stats().get("pool_size", 0))

    def close(self) -> None:
        self.pool.close()


class Peer:
    """langchain-postgres PostgresChatMessageHistory on one shared psycopg connection."""

    name = "peer"

    def __init__(self, url: str, prepared: Prepared) -> None:
        from langchain_core.messages import AIMessage, HumanMessage
        from langchain_postgres import PostgresChatMessageHistory

        self._history = PostgresChatMessageHistory
        self.conn = psycopg.connect(url)
        PostgresChatMessageHistory.create_tables(self.conn, PEER_TABLE)

        def convert(msgs: list[dict[str, Any]]) -> list[Any]:
            return [(HumanMessage if m["role"] == "user" else AIMessage)(content=m["content"]) for m in msgs]

        self.msgs10, self.msgs50 = convert(prepared.msgs10), convert(prepared.msgs50)
        self.loaded: list[Any] = []
        msgs200 = convert(prepared.msgs200)
        for _ in range(max(CONCURRENCY)):
            history = self._new()
            history.add_messages(msgs200)
            self.loaded.append(history)

    def _new(self) -> Any:
        return self._history(PEER_TABLE, str(uuid.uuid4()), sync_connection=self.conn)

    def make(self, op: str, worker: int) -> Op | None:
        if op == "append_10":
            history = self._new()
            return lambda: history.add_messages(self.msgs10)
        if op == "load_200":
            history = self.loaded[worker]
            return history.get_messages
        if op == "save_50":
            def save() -> None:
                history = self._new()
                history.messages = self.msgs50  # clear + add: the peer's whole-session write

            return save
        return None

    def connections(self) -> int | None:
        """None: one connection, shared by every worker."""
        return None

    def close(self) -> None:
        self.conn.close()


@dataclass
class Prepared:
    """Inputs shared by every subject, made before anything is timed."""

    msgs10: list[dict[str, Any]]
    msgs50: list[dict[str, Any]]
    msgs200: list[dict[str, Any]]
    loaded_sessions: list[str]


def _cycle(values: tuple[str, ...], start: int) -> Iterator[str]:
    index = start
    while True:
        yield values[index % len(values)]
        index += 1


def _seed(db: DatabaseManager, quick: bool) -> Prepared:
    storage, kb = PostgresMemoryStorage(db), KnowledgeBase(db)
    prepared = Prepared(data.messages(10, seed=10), data.messages(50, seed=50), data.messages(200, seed=200), [])
    for worker in range(max(CONCURRENCY)):
        session = Session(f"bench-load-{worker}", messages=prepared.msgs200)
        storage.save_session(session)
        prepared.loaded_sessions.append(session.session_id)  # type: ignore[arg-type]
    # Atoms of several users and types; the query reads 100 of the 300 'context' rows of one user (full run).
    for index in range(200 if quick else 1200):
        user = QUERY_USER if index % 2 == 0 else f"bench-other-{index % 7}"
        memory_type = "context" if index % 4 < 2 else "decision"
        storage.save_memory_atom(f"bench-atoms-{index % 20}", user, memory_type, {"note": f"fact {index}"})
    kb.upsert_many(data.atoms(KB_ATOMS))
    if kb.count() < KB_ATOMS:
        raise RuntimeError("the knowledge base was not seeded")
    return prepared


# ---- running ----------------------------------------------------------------------


def _batch(executor: ThreadPoolExecutor, fns: list[Op], per_worker: int, stats: Stats) -> None:
    def work(fn: Op) -> list[float]:
        out = []
        for _ in range(per_worker):
            start = time.perf_counter()
            fn()
            out.append(time.perf_counter() - start)
        return out

    busy0, total0 = _machine_cpu()
    cpu0 = time.process_time()
    start = time.perf_counter()
    futures = [executor.submit(work, fn) for fn in fns]
    results = [f.result() for f in futures]
    stats.wall += time.perf_counter() - start
    stats.client_cpu += time.process_time() - cpu0
    busy1, total1 = _machine_cpu()
    stats.machine_busy += busy1 - busy0
    stats.machine_total += total1 - total0
    for latencies in results:
        stats.latencies.extend(latencies)
        stats.ops += len(latencies)


def _machine_cpu() -> tuple[float, float]:
    """Return (busy, total) jiffies of all cores from /proc/stat, or zeros where there is none."""
    try:
        with open("/proc/stat") as fh:
            fields = [float(x) for x in fh.readline().split()[1:]]
    except OSError:
        return 0.0, 0.0
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0.0)
    total = sum(fields[:8])
    return total - idle, total


def _measure(executor: ThreadPoolExecutor, subjects: list[Any], op: str, concurrency: int, rounds: int,
             per_worker: int) -> dict[str, Stats]:
    fns: dict[str, list[Op]] = {}
    for subject in subjects:
        made = [subject.make(op, w) for w in range(concurrency)]
        if all(m is not None for m in made):
            fns[subject.name] = made  # type: ignore[assignment]
    names = list(fns)
    by_name = {subject.name: subject for subject in subjects}
    for name in names:
        # Warm-up: caches filled, pools grown to the concurrency. A pool grows one connection at a time
        # while requests wait, and a new connection costs several round trips: over a 20 ms link a pool
        # still growing would be timed, not the operation.
        connections = getattr(by_name[name], "connections", None)  # subjects of other benchmarks may not say
        for _ in range(WARM_UP_BATCHES):
            _batch(executor, fns[name], max(2, per_worker // 2), Stats())
            size = connections() if connections is not None else None
            if size is None or size >= concurrency:
                break
    stats = {name: Stats() for name in names}
    for r in range(rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        for name in order:
            _batch(executor, fns[name], per_worker, stats[name])
    return stats


# ---- the SQL check ----------------------------------------------------------------


@contextlib.contextmanager
def _trace() -> Iterator[list[str]]:
    """Record the text of every non-empty statement run through psycopg cursors in this thread."""
    seen: list[str] = []
    original = psycopg.Cursor.execute
    me = threading.get_ident()

    def execute(self: Any, query: Any, *args: Any, **kwargs: Any) -> Any:
        if threading.get_ident() == me:
            text = query if isinstance(query, str) else query.as_string(self)
            text = " ".join(text.split())
            if text:
                seen.append(text)
        return original(self, query, *args, **kwargs)

    psycopg.Cursor.execute = execute  # type: ignore[method-assign]
    try:
        yield seen
    finally:
        psycopg.Cursor.execute = original  # type: ignore[method-assign]


def _check_same_sql(ours: Ours, bare: Bare) -> None:
    """Raise unless each operation sends the same statements through ours and through the bare pool."""
    for op in OPS:
        fns = {}
        for subject in (ours, bare):
            fn = subject.make(op, 0)
            fn()  # warm: pool open, first-use probes out of the way
            fns[subject.name] = fn
        sent = {}
        for name, fn in fns.items():
            with _trace() as seen:
                fn()
            sent[name] = seen
        if sent["ours"] != sent["bare"]:
            raise RuntimeError(f"{op}: the bare baseline no longer sends the library's SQL: "
                               f"ours {sent['ours']!r} vs bare {sent['bare']!r}")


# ---- entries ------------------------------------------------------------------------


def _peer_missing(ctx: Context) -> str | None:
    if ctx.no_peer:
        return "peer comparison turned off (--no-peer)"
    if importlib.util.find_spec("langchain_postgres") is None:
        return "peer not installed (pip install -e '.[bench]')"
    return None


@contextlib.contextmanager
def _subjects(ctx: Context, neon_url: str) -> Iterator[tuple[list[Any], str | None]]:
    """Seed neon, then yield ours, bare and (if installed) the peer, all connecting through `neon_url`."""
    peer_missing = _peer_missing(ctx)
    with DatabaseManager(ctx.config()) as direct:
        prepared = _seed(direct, ctx.quick)
    with DatabaseManager(ctx.config(NEON_DB_URL=neon_url)) as db:
        ours, bare = Ours(db, prepared), Bare(neon_url, prepared)
        peer = Peer(neon_url, prepared) if peer_missing is None else None
        subjects = [s for s in (ours, bare, peer) if s is not None]
        try:
            _check_same_sql(ours, bare)
            yield subjects, peer_missing
        finally:
            for subject in subjects:
                subject.close()


def _proxy_to_neon(ctx: Context, delay: float) -> tuple[CountingProxy, str]:
    """Start a proxy to neon adding `delay` s per round trip; return it and the URL through it."""
    target = conninfo_to_dict(ctx.local.url("neon"))
    proxy = CountingProxy(str(target["host"]), int(target["port"]), delay=delay)
    return proxy, make_conninfo(ctx.local.url("neon"), host="127.0.0.1", port=proxy.port)


def run(ctx: Context) -> list[Entry]:
    """Memory operations on loopback: ours against the bare pool (p50 <= 1.05 x) and the peer."""
    rounds = 3 if ctx.quick else 20
    per_worker = {1: 8, 8: 2} if ctx.quick else {1: 25, 8: 6}
    return _compare(ctx, ctx.local.url("neon"), "memory", rounds, per_worker, bare_factor=1.05,
                    peer_factor=lambda op, c: 1 if c == 1 else 3)


def run_link(ctx: Context) -> list[Entry]:
    """Round trips per operation (counted by a proxy), then the operations over a link adding 20 ms per round trip."""
    return over_link(ctx, _subjects, _round_trip_entries, lambda url, rounds, per_worker: _compare(
        ctx, url, "memory_link", rounds, per_worker, bare_factor=1.1,
        peer_factor=lambda op, c: 1 if op == "load_200" else 3))


def over_link(ctx: Context, subjects: Callable[[Context, str], Any], round_trips: Callable[..., list[Entry]],
              compare: Callable[[str, int, dict[int, int]], list[Entry]]) -> list[Entry]:
    """Count round trips through a proxy with no delay, then `compare(url, rounds, per_worker)` over a 20 ms link.

    `subjects(ctx, url)` is a context manager yielding (subjects, why the peer is missing);
    `round_trips(ctx, proxy, subjects, peer_missing)` returns the round-trip entries.
    """
    proxy, url = _proxy_to_neon(ctx, delay=0.0)
    with proxy, subjects(ctx, url) as (made, peer_missing):
        entries = round_trips(ctx, proxy, made, peer_missing)
    proxy, url = _proxy_to_neon(ctx, delay=LINK_DELAY)
    rounds = 2 if ctx.quick else 4
    per_worker = {1: 3, 8: 2} if ctx.quick else {1: 10, 8: 4}
    with proxy:
        entries += compare(url, rounds, per_worker)
    return entries


def count_round_trips(proxy: CountingProxy, subjects: list[Any], op: str) -> dict[str, int]:
    """Return, per subject that has `op`, the round trips of one call (after a warm-up call)."""
    counts: dict[str, int] = {}
    for subject in subjects:
        fn = subject.make(op, 0)
        if fn is None:
            continue
        fn()  # warm: the pool has its connection, statements are known
        proxy.reset()
        fn()
        counts[subject.name] = proxy.round_trips
    return counts


def _round_trip_entries(ctx: Context, proxy: CountingProxy, subjects: list[Any],
                        peer_missing: str | None) -> list[Entry]:
    entries = []
    for op in OPS:
        counts = count_round_trips(proxy, subjects, op)
        ctx.log(f"round trips {op}: " + ", ".join(f"{n} {c}" for n, c in counts.items()))
        details: dict[str, Any] = dict(counts)
        if op in PEER_OPS and "peer" not in counts:
            details["peer"] = peer_missing
        entries.append(Entry(f"roundtrips.{op}", "round trips", counts["ours"], counts["bare"],
                             "same SQL on a bare psycopg_pool.ConnectionPool", "ours == 1",
                             counts["ours"] == 1, details=details))
    return entries


def _compare(ctx: Context, url: str, prefix: str, rounds: int, per_worker: dict[int, int], *,
             bare_factor: float, peer_factor: Callable[[str, int], int]) -> list[Entry]:
    return compare_ops(ctx, _subjects(ctx, url), prefix, OPS, rounds, per_worker,
                       lambda op, c, stats, peer_missing: _entries(prefix, op, c, stats, peer_missing, bare_factor,
                                                                   peer_factor(op, c)))


def compare_ops(ctx: Context, subjects: Any, prefix: str, ops: tuple[str, ...], rounds: int,
                per_worker: dict[int, int],
                entries_of: Callable[[str, int, dict[str, Stats], str | None], list[Entry]]) -> list[Entry]:
    """Measure every op at each concurrency on the subjects (a context manager yielding (subjects, peer_missing)).

    `entries_of(op, concurrency, stats by subject, peer_missing)` turns each measurement into entries.
    """
    entries: list[Entry] = []
    with subjects as (made, peer_missing), \
            ThreadPoolExecutor(max_workers=max(CONCURRENCY), thread_name_prefix=f"bench-{prefix}") as executor:
        for op in ops:
            for c in CONCURRENCY:
                stats = _measure(executor, made, op, c, rounds, per_worker[c])
                ctx.log(f"{prefix} {op} c={c}: " + ", ".join(
                    f"{n} p50 {s.p50_ms:.2f} ms p99 {s.p99_ms:.2f} ms {s.ops_s:.0f} ops/s "
                    f"(cpu {s.busy_pct:.0f}%)" for n, s in stats.items()))
                entries.extend(entries_of(op, c, stats, peer_missing))
    return entries


def _entries(prefix: str, op: str, c: int, stats: dict[str, Stats], peer_missing: str | None,
             bare_factor: float, factor: int) -> list[Entry]:
    o, b = stats["ours"], stats["bare"]
    figures = {name: {"p50_ms": round(s.p50_ms, 3), "p99_ms": round(s.p99_ms, 3), "ops_s": round(s.ops_s, 1),
                      "ops": s.ops, "machine_cpu_busy_pct": round(s.busy_pct, 1),
                      "client_cpu_ms_per_op": round(s.client_cpu_ms_per_op, 3)}
               for name, s in stats.items()}
    bare_name = "same SQL on a bare psycopg_pool.ConnectionPool"
    out = [
        Entry(f"{prefix}.{op}.c{c}.p50", "ms", o.p50_ms, b.p50_ms, bare_name,
              f"ours <= {bare_factor} x bare pool p50", o.p50_ms <= bare_factor * b.p50_ms, details=figures),
        Entry(f"{prefix}.{op}.c{c}.p99", "ms", o.p99_ms, b.p99_ms, bare_name, "informational", None),
    ]
    if op in PEER_OPS:
        target = ("ours ops/s >= peer ops/s (ratio <= 1)" if factor == 1
                  else "ours ops/s >= 3 x peer ops/s (ratio <= 0.333)")
        name = f"{prefix}.{op}.c{c}.time_per_op_vs_peer"
        peer_name = "langchain-postgres PostgresChatMessageHistory (one shared connection)"
        if peer_missing is not None or "peer" not in stats:
            out.append(skipped(name, "ms per op (1000 / ops/s)", peer_name, target,
                               peer_missing or "the peer could not run this operation"))
        else:
            p = stats["peer"]
            ours_t, peer_t = 1000 / o.ops_s, 1000 / p.ops_s
            out.append(Entry(name, "ms per op (1000 / ops/s)", ours_t, peer_t, peer_name, target,
                             ours_t <= peer_t / factor,
                             details={"ours_ops_s": round(o.ops_s, 1), "peer_ops_s": round(p.ops_s, 1),
                                      "ours_machine_cpu_busy_pct": round(o.busy_pct, 1),
                                      "peer_machine_cpu_busy_pct": round(p.busy_pct, 1)}))
    return out

