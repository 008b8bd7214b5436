"""Benchmark: LangChain chat history, ours against langchain-postgres's `PostgresChatMessageHistory`.

Subjects (on the primary provider, neon):
- ours: `AgentFactoryChatMessageHistory` on a `DatabaseManager` with default settings;
- peer: langchain-postgres `PostgresChatMessageHistory` on one psycopg connection,
  as its documentation uses it (shared by all threads at concurrency 8).

Operations: `add_messages` of 10 messages (a human and an AI message in turn) to
a session of the worker's own; `messages` of a 200-message session. Each at
concurrency 1 and 8, the subjects taking turns batch by batch (rotating order),
on loopback and over a link adding 20 ms per round trip (`chat_history_link`).
Round trips per operation are counted by a proxy in front of neon (mean of 10 calls).
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg

from agent_factory.core import DatabaseManager

from . import data
from .harness import Context, Entry, skipped
from .memory_ops import CONCURRENCY, LINK_DELAY, Op, Stats, _measure, _peer_missing, _proxy_to_neon

OPS = ("add_messages_10", "messages_200")
PEER_TABLE = "langchain_chat_history_bench"
ROUND_TRIP_CALLS = 10
PEER_NAME = "langchain-postgres PostgresChatMessageHistory (one shared connection)"


def _lc_messages(count: int, seed: int) -> list[Any]:
    from langchain_core.messages import AIMessage, HumanMessage

    return [(HumanMessage if m["role"] == "user" else AIMessage)(content=m["content"])
            for m in data.messages(count, seed=seed)]


class Ours:
    """AgentFactoryChatMessageHistory on a DatabaseManager."""

    name = "ours"

    def __init__(self, db: DatabaseManager) -> None:
        from agent_factory.integrations.langchain import AgentFactoryChatMessageHistory

        self._make = lambda sid: AgentFactoryChatMessageHistory(sid, user_id="bench-chat", db=db)
        self.msgs10 = _lc_messages(10, 10)
        self.loaded = []
        for _ in range(max(CONCURRENCY)):
            history = self._make(f"bench-chat-{uuid.uuid4()}")
            history.add_messages(_lc_messages(200, 200))
            self.loaded.append(history)

    def make(self, op: str, worker: int) -> Op:
        if op == "add_messages_10":
            history = self._make(f"bench-chat-{uuid.uuid4()}")
            return lambda: history.add_messages(self.msgs10)
        return lambda: self.loaded[worker].messages

    def close(self) -> None:
        pass


class Peer:
    """langchain-postgres PostgresChatMessageHistory on one shared psycopg connection."""

    name = "peer"

    def __init__(self, url: str) -> None:
        from langchain_postgres import PostgresChatMessageHistory

        self._cls = PostgresChatMessageHistory
        self.conn = psycopg.connect(url)
        PostgresChatMessageHistory.create_tables(self.conn, PEER_TABLE)
        self.msgs10 = _lc_messages(10, 10)
        self.loaded = []
        for _ in range(max(CONCURRENCY)):
            history = self._new()
            history.add_messages(_lc_messages(200, 200))
            self.loaded.append(history)

    def _new(self) -> Any:
        return self._cls(PEER_TABLE, str(uuid.uuid4()), sync_connection=self.conn)

    def make(self, op: str, worker: int) -> Op:
        if op == "add_messages_10":
            history = self._new()
            return lambda: history.add_messages(self.msgs10)
        return self.loaded[worker].get_messages

    def close(self) -> None:
        self.conn.close()


@contextlib.contextmanager
def _subjects(ctx: Context, url: str) -> Iterator[list[Any]]:
    with DatabaseManager(ctx.config(NEON_DB_URL=url)) as db:
        subjects: list[Any] = [Ours(db)]
        if _peer_missing(ctx) is None:
            subjects.append(Peer(url))
        try:
            yield subjects
        finally:
            for subject in subjects:
                subject.close()


def run(ctx: Context) -> list[Entry]:
    """Round trips per operation, then time per operation at c=1 and c=8 (target: ours <= the peer's)."""
    missing = _peer_missing(ctx)
    entries: list[Entry] = []
    proxy, url = _proxy_to_neon(ctx, delay=0.0)
    with proxy, _subjects(ctx, url) as subjects:
        for op in OPS:
            counts: dict[str, float] = {}
            for subject in subjects:
                fn = subject.make(op, 0)
                fn()  # warm: the pool has its connection
                proxy.reset()
                for _ in range(ROUND_TRIP_CALLS):  # a mean: psycopg prepares a statement on its 6th run (+1)
                    fn()
                counts[subject.name] = proxy.round_trips / ROUND_TRIP_CALLS
            ctx.log(f"chat_history round trips {op}: " + ", ".join(f"{n} {c:.1f}" for n, c in counts.items()))
            name = f"chat_history.roundtrips.{op}"
            if "peer" in counts:
                entries.append(Entry(name, "round trips", counts["ours"], counts["peer"], PEER_NAME,
                                     "ours <= peer", counts["ours"] <= counts["peer"], details=counts))
            else:
                entries.append(skipped(name, "round trips", PEER_NAME, "ours <= peer", missing or "peer missing"))
        entries += _timed(ctx, subjects, "chat_history", 3 if ctx.quick else 12,
                          {1: 5, 8: 2} if ctx.quick else {1: 20, 8: 5}, missing)
    proxy, url = _proxy_to_neon(ctx, delay=LINK_DELAY)
    with proxy, _subjects(ctx, url) as subjects:
        entries += _timed(ctx, subjects, "chat_history_link", 2 if ctx.quick else 4,
                          {1: 3, 8: 2} if ctx.quick else {1: 8, 8: 3}, missing)
    return entries


def _timed(ctx: Context, subjects: list[Any], prefix: str, rounds: int, per_worker: dict[int, int],
           missing: str | None) -> list[Entry]:
    entries = []
    with ThreadPoolExecutor(max_workers=max(CONCURRENCY), thread_name_prefix="bench-chat") as executor:
        for op in OPS:
            for c in CONCURRENCY:
                stats = _measure(executor, subjects, op, c, rounds, per_worker[c])
                ctx.log(f"{prefix} {op} c={c}: " + ", ".join(
                    f"{n} p50 {s.p50_ms:.2f} ms {s.ops_s:.0f} ops/s" for n, s in stats.items()))
                entries.append(_entry(prefix, op, c, stats, missing))
    return entries


def _entry(prefix: str, op: str, c: int, stats: dict[str, Stats], missing: str | None) -> Entry:
    name = f"{prefix}.{op}.c{c}.time_per_op_vs_peer"
    unit, target = "ms per op (1000 / ops/s)", "ours <= peer (ratio <= 1)"
    if "peer" not in stats:
        return skipped(name, unit, PEER_NAME, target, missing or "the peer could not run")
    o, p = stats["ours"], stats["peer"]
    ours_t, peer_t = 1000 / o.ops_s, 1000 / p.ops_s
    figures = {n: {"p50_ms": round(s.p50_ms, 3), "p99_ms": round(s.p99_ms, 3), "ops_s": round(s.ops_s, 1),
                   "ops": s.ops} for n, s in stats.items()}
    return Entry(name, unit, ours_t, peer_t, PEER_NAME, target, ours_t <= peer_t, details=figures)
