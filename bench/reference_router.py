"""The failover baseline: a router that trusts a cached health check only.

This mimics the reference behaviour the library replaced: each transaction goes
to the first provider in the failover order (starting from the primary) whose
cached health is good; the cache lives DATABASE_HEALTH_TTL seconds (60 by
default); an error on real traffic is raised to the caller and does not mark
the provider down ("no passive marking"). Pools are the same psycopg_pool
`ConnectionPool`s with the same settings as the library's, opened lazily.

It lives in bench/ so the library needs no switch to behave worse than it does.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TypeVar

import psycopg
from psycopg_pool import ConnectionPool

from agent_factory.config import Config
from agent_factory.core.provider import connection_kwargs

T = TypeVar("T")


class CachedHealthRouter:
    """Route by a health check cached `ttl` seconds; errors on traffic change nothing."""

    def __init__(self, config: Config, ttl: float = 60.0) -> None:
        self._config = config
        self._ttl = ttl
        start = config.failover_order.index(config.primary)
        self.order = list(config.failover_order[start:] + config.failover_order[:start])
        self._kwargs = connection_kwargs(config, "agent-factory-bench-reference")
        self._pools: dict[str, ConnectionPool] = {}
        self._health: dict[str, tuple[bool, float]] = {}
        self._lock = threading.Lock()

    def healthy(self, name: str) -> bool:
        """Return the cached health of `name`, probing it when the cache is older than the TTL."""
        with self._lock:
            cached = self._health.get(name)
            if cached is not None and time.monotonic() - cached[1] < self._ttl:
                return cached[0]
            ok = self._probe(name)
            self._health[name] = (ok, time.monotonic())
            return ok

    def _probe(self, name: str) -> bool:
        try:
            with psycopg.connect(self._config.providers[name].url, autocommit=True, **self._kwargs) as conn:
                conn.execute("SELECT 1").fetchone()
            return True
        except psycopg.Error:
            return False

    def age_cache(self, name: str, age: float) -> None:
        """Pretend the cached health of `name` was taken `age` seconds ago (to place a kill in the TTL cycle)."""
        with self._lock:
            healthy = self._health.get(name, (True, 0.0))[0]
            self._health[name] = (healthy, time.monotonic() - age)

    def active(self) -> str:
        for name in self.order:
            if self.healthy(name):
                return name
        raise RuntimeError("no provider is healthy according to the cached health checks")

    def _pool(self, name: str) -> ConnectionPool:
        with self._lock:
            pool = self._pools.get(name)
            if pool is None:
                pool = ConnectionPool(
                    self._config.providers[name].url,
                    kwargs=self._kwargs,
                    min_size=self._config.pool_min_size,
                    max_size=self._config.pool_max_size,
                    timeout=self._config.pool_timeout,
                    max_idle=240.0,
                    check=ConnectionPool.check_connection,
                    name=f"reference.{name}",
                    open=False,
                )
                pool.open(wait=False)
                self._pools[name] = pool
            return pool

    def run_in_transaction(self, work: Callable[[psycopg.Connection], T]) -> T:
        """Run `work(conn)` in one transaction on the provider the cache calls healthy; errors propagate."""
        with self._pool(self.active()).connection() as conn:
            return work(conn)

    def close(self) -> None:
        with self._lock:
            pools, self._pools = list(self._pools.values()), {}
        for pool in pools:
            pool.close(timeout=1.0)
