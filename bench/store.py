"""Benchmark `store`: AgentFactoryStore against langgraph-checkpoint-postgres's PostgresStore, same index.

Both stores talk to neon through one `CountingProxy` (no added delay), with the
same `HashingEmbeddings(64)` index on field "text", over the same 300 seeded
items (each store its own tables). Operations: `put` (one item, embedded),
`search_filter` (namespace + `$eq` filter, limit 10) and `search_semantic`
(query + namespace, limit 10), at c=1 and c=8 threads; per-operation p50 time.
Round trips of one warm operation are counted by the proxy. The peer runs as its
docs use it: a psycopg_pool `ConnectionPool` (autocommit, prepare_threshold 0,
dict_row) of the same size as ours, `setup()` once. Runs are interleaved.
Targets: ours <= peer per operation (time and round trips).
"""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from psycopg.conninfo import conninfo_to_dict, make_conninfo

from agent_factory.core import DatabaseManager
from agent_factory.local.proxy import CountingProxy
from tests.integrations.embedder import HashingEmbeddings

from .harness import Context, Entry, median, skipped

OPS = ("put", "search_filter", "search_semantic")
CONCURRENCY = (1, 8)
SEED = 300
POOL = 8
PEER = "langgraph-checkpoint-postgres PostgresStore (psycopg_pool, as its docs use it)"


def _index() -> dict[str, Any]:
    return {"dims": 64, "embed": HashingEmbeddings(64), "fields": ["text"]}


def _text(n: int) -> str:
    words = ("python", "tutorial", "soup", "tomato", "graph", "agent", "memory", "vector", "search", "guide")
    return " ".join(words[(n * k) % len(words)] for k in (1, 3, 7))


def _ops(store: Any, tag: str) -> dict[str, Callable[[int], Any]]:
    def put(n: int) -> Any:
        return store.put(("bench", tag), f"p{n}", {"text": _text(n), "kind": f"k{n % 10}", "n": n})

    return {
        "put": put,
        "search_filter": lambda n: store.search(("bench",), filter={"kind": f"k{n % 10}"}, limit=10),
        "search_semantic": lambda n: store.search(("bench",), query=_text(n + 1), limit=10),
    }


def run(ctx: Context) -> list[Entry]:
    if ctx.no_peer or importlib.util.find_spec("langgraph.store.postgres") is None:
        reason = ("peer comparison turned off (--no-peer)" if ctx.no_peer
                  else "peer not installed (pip install -e '.[bench,langgraph,vector]')")
        return [skipped(f"store.{op}_c{c}", "ms/op (p50)", PEER, "ours <= peer", reason)
                for op in OPS for c in CONCURRENCY]
    from langgraph.store.postgres import PostgresStore
    from psycopg.rows import dict_row
    from psycopg_pool import ConnectionPool

    from agent_factory.integrations.langgraph import AgentFactoryStore

    target = conninfo_to_dict(ctx.local.url("neon"))
    proxy = CountingProxy(str(target["host"]), int(target["port"]))
    url = make_conninfo(ctx.local.url("neon"), host="127.0.0.1", port=proxy.port)
    rounds = 2 if ctx.quick else 5
    per_worker = {1: 10, 8: 3} if ctx.quick else {1: 40, 8: 10}
    entries: list[Entry] = []
    with proxy, DatabaseManager(ctx.config(NEON_DB_URL=url, DATABASE_POOL_MAX_SIZE=str(POOL))) as db, \
            ConnectionPool(url, min_size=1, max_size=POOL, open=True,
                           kwargs={"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row}) as pool:
        ours = AgentFactoryStore(db, index=_index())
        peer = PostgresStore(pool, index=_index())  # type: ignore[arg-type]
        peer.setup()
        for store in (ours, peer):
            for n in range(0, SEED, 50):
                for m in range(n, n + 50):
                    store.put(("bench", "seed"), f"s{m}", {"text": _text(m), "kind": f"k{m % 10}", "n": m})
        subjects = {"ours": _ops(ours, "ours"), "peer": _ops(peer, "peer")}
        trips: dict[str, dict[str, int]] = {}
        for op in OPS:
            trips[op] = {}
            for name, ops in subjects.items():
                ops[op](10_000)  # warm
                proxy.reset()
                ops[op](10_001)
                trips[op][name] = proxy.round_trips
            ctx.log(f"store round trips {op}: ours {trips[op]['ours']}, peer {trips[op]['peer']}")
            entries.append(Entry(f"store.roundtrips.{op}", "round trips", trips[op]["ours"], trips[op]["peer"], PEER,
                                 "ours <= peer", trips[op]["ours"] <= trips[op]["peer"]))
        with ThreadPoolExecutor(max_workers=max(CONCURRENCY), thread_name_prefix="bench-store") as executor:
            for op in OPS:
                for c in CONCURRENCY:
                    times: dict[str, list[float]] = {"ours": [], "peer": []}
                    for rep in range(rounds):
                        order = ("ours", "peer") if rep % 2 == 0 else ("peer", "ours")
                        for name in order:
                            times[name] += _measure(executor, subjects[name][op], c, per_worker[c],
                                                    base=rep * 100_000 + 20_000)
                    o, p = median(times["ours"]) * 1000, median(times["peer"]) * 1000
                    ctx.log(f"store {op} c={c}: ours p50 {o:.2f} ms, peer p50 {p:.2f} ms")
                    entries.append(Entry(f"store.{op}_c{c}", "ms/op (p50)", o, p, PEER, "ours <= peer", o <= p,
                                         details={"ops_per_subject": len(times["ours"]),
                                                  "round_trips_ours": trips[op]["ours"],
                                                  "round_trips_peer": trips[op]["peer"]}))
    return entries


def _measure(executor: ThreadPoolExecutor, fn: Callable[[int], Any], c: int, per_worker: int, base: int
             ) -> list[float]:
    def worker(w: int) -> list[float]:
        out = []
        for i in range(per_worker):
            t0 = time.perf_counter()
            fn(base + w * 1000 + i)
            out.append(time.perf_counter() - t0)
        return out

    return [t for chunk in executor.map(worker, range(c)) for t in chunk]
