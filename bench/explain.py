"""Look inside the memory operations' statements: `python bench/explain.py [-n N] [--plans]`.

Starts its own neon provider (PostgreSQL 16 with pg_stat_statements preloaded,
like run.py), seeds the memory benchmark's data, then for append_10, save_50
and load_200 reports, per statement the library sends:
- `EXPLAIN (ANALYZE, BUFFERS, WAL)` of one call (in a transaction rolled back,
  so every run sees the same rows): execution and planning time, buffers,
  WAL bytes, the time in each trigger and how often it fired;
- `pg_stat_statements` over N calls made through the library (planning
  tracked): mean plan and execution time, rows, buffers and WAL per call;
- the bytes each call sends and receives, counted by `CountingProxy`, and the
  round trips of 40 calls on a pool grown to 8 connections, beside the bare
  pool and the peer (langchain-postgres) when it is installed.
The numbers feed the "Inside the statements" section of docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
import tempfile
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402
from psycopg.conninfo import conninfo_to_dict, make_conninfo  # noqa: E402

from agent_factory.core import DatabaseManager  # noqa: E402
from agent_factory.memory import PostgresMemoryStorage, Session  # noqa: E402
from agent_factory.memory import postgres as pg_module  # noqa: E402
from agent_factory.memory.base import prepare_messages, prepare_session  # noqa: E402
from agent_factory.memory.ids import new_stamp  # noqa: E402
from bench import memory_ops  # noqa: E402
from bench.harness import Context, local_providers  # noqa: E402

OPS = ("append_10", "save_50", "load_200")


class _Recorder:
    """A stand-in connection that records the statements a library `work` function sends."""

    prepare_threshold = None  # so that `memory._execute.execute` calls `execute` plainly
    autocommit = True  # as `run_statement` and `run_read` run the work

    def __init__(self, answer: Any) -> None:
        self.sent: list[tuple[str, Any]] = []
        self._answer = answer

    def execute(self, sql: str, params: Any = None) -> _Recorder:
        self.sent.append((sql, params))
        return self

    def fetchone(self) -> Any:
        return self._answer[0]

    def fetchall(self) -> Any:
        return self._answer


def statements(op: str, prepared: memory_ops.Prepared, append_to: str) -> list[tuple[str, Any]]:
    """Return the (sql, params) one call of `op` sends, built by the library's own helpers."""
    if op == "append_10":
        rec = _Recorder([(10,)])
        pg_module.append_messages_work(append_to, prepare_messages(append_to, prepared.msgs10, "messages"),
                                       new_stamp())(rec)  # type: ignore[arg-type]
        return rec.sent
    if op == "save_50":
        rec = _Recorder([(None, None, True, None)])
        pg_module.save_session_work(prepare_session(Session("explain-user", messages=prepared.msgs50)))(
            rec)  # type: ignore[arg-type]
        return rec.sent
    sid = prepared.loaded_sessions[0]
    rec = _Recorder([])
    pg_module.load_session_work(sid)(rec)  # type: ignore[arg-type]
    return rec.sent


def explain(conn: psycopg.Connection, sql: str, params: Any, repeat: int = 8) -> str:
    """Return EXPLAIN (ANALYZE, BUFFERS, WAL) of the statement's last of `repeat` runs, each rolled back."""
    text = ""
    for _ in range(repeat):
        with conn.transaction(force_rollback=True):
            rows = conn.execute("EXPLAIN (ANALYZE, BUFFERS, WAL, VERBOSE) " + sql, params).fetchall()
        text = "\n".join(r[0] for r in rows)
    return text


def summarize(plan: str) -> str:
    """Return the plan's totals and triggers on a few lines."""
    keep = [line.strip() for line in plan.splitlines()
            if re.match(r"\s*(Planning Time|Execution Time|Trigger |Planning:|Buffers:|WAL:)", line)]
    top = plan.splitlines()[0].strip() if plan else ""
    return "\n".join([top, *keep[:2], *keep[-8:]]) if len(keep) > 10 else "\n".join([top, *keep])


def stat_statements(admin_url: str, run: Callable[[], Any], calls: int) -> tuple[float, list[dict[str, Any]]]:
    """Reset pg_stat_statements, call `run` `calls` times; return the server's ms per call (planning and
    execution of every statement it sent, BEGIN and COMMIT included) and the top statements' means per call."""
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute("SELECT pg_stat_statements_reset()")
        for _ in range(calls):
            run()
        total = admin.execute(
            "SELECT sum(total_plan_time + total_exec_time) / %s FROM pg_stat_statements "
            "WHERE query NOT ILIKE '%%pg_stat_statements%%'", [calls]).fetchone()[0]  # type: ignore[index]
        rows = admin.execute(
            "SELECT calls, total_plan_time / calls, total_exec_time / calls, rows::float / calls, "
            "(shared_blks_hit + shared_blks_read)::float / calls, shared_blks_dirtied::float / calls, "
            "wal_bytes::float / calls, plans, left(regexp_replace(query, '\\s+', ' ', 'g'), 60) "
            "FROM pg_stat_statements WHERE calls >= %s / 2 AND query NOT ILIKE '%%pg_stat_statements%%' "
            "ORDER BY total_exec_time DESC LIMIT 3", [calls]).fetchall()
    keys = ("calls", "plan_ms", "exec_ms", "rows", "blocks", "dirtied", "wal_bytes", "plans", "query")
    return float(total or 0.0), [dict(zip(keys, row, strict=True)) for row in rows]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=300, help="calls per operation for pg_stat_statements")
    parser.add_argument("--plans", action="store_true", help="print the whole plans, not only their totals")
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="agent-factory-explain-"))
    try:
        with local_providers(workdir, durable=False) as local:
            ctx = Context(local=local, workdir=workdir, quick=True, log=print, env=local.env())
            for provider in ("neon", "supabase"):
                inspect(ctx, provider, args.n, args.plans)
            byte_counts(ctx)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


def inspect(ctx: Context, provider: str, calls: int, whole_plans: bool) -> None:
    """Seed `provider` as the benchmark does, print its plans and, where it is preloaded, pg_stat_statements."""
    local = ctx.local
    app_db = conninfo_to_dict(local.url(provider))["dbname"]
    admin_url = make_conninfo(local.admin_url(provider), dbname=app_db)  # the extension lives in the app database
    with psycopg.connect(admin_url, autocommit=True) as admin:
        version = admin.execute("SHOW server_version").fetchone()[0]  # type: ignore[index]
        preloaded = admin.execute("SHOW shared_preload_libraries").fetchone()[0]  # type: ignore[index]
        stats = "pg_stat_statements" in preloaded
        if stats:
            admin.execute("ALTER SYSTEM SET pg_stat_statements.track_planning = on")
            admin.execute("SELECT pg_reload_conf()")
    print(f"==== {provider} (PostgreSQL {version}; pg_stat_statements {'on' if stats else 'not shipped'})")
    with DatabaseManager(ctx.config(NEON_DB_URL=local.url(provider))) as db:
        prepared = memory_ops._seed(db, quick=True)
        storage = PostgresMemoryStorage(db)
        target = Session("explain-append")
        storage.save_session(target)
        with psycopg.connect(local.url(provider)) as conn:
            for op in OPS:
                for sql, params in statements(op, prepared, target.session_id):  # type: ignore[arg-type]
                    plan = explain(conn, sql, params)
                    print(f"== {op}: EXPLAIN (ANALYZE, BUFFERS, WAL)")
                    print(plan if whole_plans else summarize(plan))
        if not stats:
            return
        runs: dict[str, Callable[[], Any]] = {
            "append_10": lambda: storage.append_messages(target.session_id, prepared.msgs10),  # type: ignore[arg-type]
            "save_50": lambda: storage.save_session(Session(f"u-{uuid.uuid4()}", messages=prepared.msgs50)),
            "load_200": lambda: storage.load_session(prepared.loaded_sessions[0]),
        }
        peer = _peer(local.url(provider), prepared)
        if peer is not None:
            runs.update({f"{op} peer": fn for op in OPS if (fn := peer.make(op, 0)) is not None})
        for op, run in runs.items():
            total, rows = stat_statements(admin_url, run, calls)
            print(f"== {op}: pg_stat_statements over {calls} calls: server {total:.3f} ms per call; per statement:")
            for row in rows:
                print("   " + ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}"
                                       for k, v in row.items()))
        if peer is not None:
            peer.close()


def _peer(url: str, prepared: memory_ops.Prepared) -> memory_ops.Peer | None:
    """The peer on `url`, or None without the `bench` extra."""
    try:
        return memory_ops.Peer(url, prepared)
    except ImportError:
        return None


def byte_counts(ctx: Context, calls: int = 40) -> None:
    """Print, per subject and operation, the bytes of one call and the round trips of `calls` calls.

    The pools are first grown to 8 connections (as concurrency 8 does in the
    benchmark), so the calls run on connections that have not all prepared the
    statement yet: a call that costs more than one round trip shows there.
    """
    proxy, url = memory_ops._proxy_to_neon(ctx, delay=0.0)
    with proxy, memory_ops._subjects(ctx, url) as (subjects, _), ThreadPoolExecutor(8) as pool:
        for subject in subjects:
            grow = [subject.make("append_10", w) for w in range(8)]
            list(pool.map(lambda fn: [fn() for _ in range(3)], grow))
        for op in OPS:
            for subject in subjects:
                fn = subject.make(op, 0)
                if fn is None:
                    continue
                fn()
                proxy.reset()
                fn()
                sent, received = proxy.bytes_to_server, proxy.bytes_to_client
                trips = []
                for _ in range(calls):
                    proxy.reset()
                    fn()
                    trips.append(proxy.round_trips)
                print(f"== {op} {subject.name}: {sent} bytes sent, {received} bytes received; round trips of "
                      f"{calls} calls on a pool of 8: {sum(trips)} (calls with more than one: "
                      f"{sum(t > 1 for t in trips)})")


if __name__ == "__main__":
    sys.exit(main())
