"""Run one statement in one round trip, including the call in which psycopg prepares it.

psycopg prepares a statement on a connection at its `prepare_threshold + 1`-th
run there (the 6th), and outside a pipeline it waits for the Parse to
complete before it sends the execution: that call costs two round trips. A
pool hands each statement to each of its connections in turn, so over a link
every connection pays one extra round trip per statement (20 ms on a 20 ms
link), measured in `bench/explain.py`'s round-trip count and in
docs/BENCHMARKS.md. A pipeline sends both at once, but costs about 20 us per
call on loopback and sends its Sync apart (a proxy may then count the server's
early answer as a second turn, though the client never waits for it); so
`execute` uses a pipeline for that one call only, counted here per connection
and statement, and a plain execution for every other.
"""

from __future__ import annotations

import threading
import weakref
from typing import Any

import psycopg

_runs: weakref.WeakKeyDictionary[psycopg.Connection[Any], dict[str, int]] = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def execute(conn: psycopg.Connection[Any], sql: str, params: Any) -> psycopg.Cursor[Any]:
    """Run one statement on `conn` and return its cursor (results ready); raises what psycopg raises.

    In autocommit (as `run_read` and `run_statement` run) the statement is
    atomic by itself, in a pipeline or not.
    """
    threshold = conn.prepare_threshold
    if threshold is None:  # never prepared here (behind a transaction pooler): nothing to save
        return conn.execute(sql, params)
    with _lock:
        counts = _runs.setdefault(conn, {})
        runs = counts[sql] = counts.get(sql, 0) + 1
    if runs != threshold + 1:  # not the run in which psycopg prepares the statement
        return conn.execute(sql, params)
    with conn.pipeline():
        cursor = conn.execute(sql, params)
    return cursor
