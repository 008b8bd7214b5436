"""`LifoConnectionPool`: psycopg_pool's `ConnectionPool`, handing out the most recently returned connection first.

psycopg_pool keeps idle connections in a queue: a request takes the one idle
longest, so a pool of N connections at low concurrency sends each request to
the next server process in turn. Each of those processes is cold (its caches,
its CPU's), and each prepares every statement for itself. PgBouncer reuses
server connections last-in first-out by default for the same reason
(`server_round_robin = 0`: "few connections get the most load; this gives best
performance if you have a single server"). Measured here: an append of 10
messages on loopback took 433-439 us p50 on a pool using one connection and
472-520 us on one rotating over two (docs/BENCHMARKS.md, "One hot connection").

Taking the newest idle connection also lets psycopg_pool's `max_idle` shrink
the pool after a burst: the connections beyond what the load needs really stay
idle, and `_shrink_pool` closes the one idle longest. Everything else
(checks, sizes, timeouts, waiting clients) is psycopg_pool's own.
"""

from __future__ import annotations

from typing import Any

from psycopg_pool import ConnectionPool


class LifoConnectionPool(ConnectionPool[Any]):
    """A `ConnectionPool` whose `getconn` returns the idle connection returned last."""

    def _get_ready_connection(self, timeout: float | None) -> Any:
        # Called under the pool's lock. Idle connections are returned to the right of the
        # deque and taken from its left: turning the newest to the left makes the take LIFO
        # and keeps the order of the others (the left end stays the one idle longest).
        if len(self._pool) > 1:
            self._pool.rotate(1)
        return super()._get_ready_connection(timeout)
