"""One provider: its connection pool, its health and the last error seen on it.

The pool is opened lazily, after a direct probe shows the provider reachable,
and closed when the provider is marked down, so that a dead provider costs no
background reconnect attempts and waiting clients are released at once.

A checkout costs no round trip: the pool does not test connections. A stale
connection (terminated backend, pooler recycling, TCP reset) is found by its
first failing statement; `run` then retries the work once on a fresh direct
connection, and only if that fails too is the provider marked down.

Every new connection (probe, pool, fresh) goes through `Credentials`: a refused
login re-reads the configuration once and raises `AuthenticationFailedError`
if that does not help; it never marks the provider down (see `credentials`).

Every connection carries the dead-peer settings of `agent_factory.keepalive`
(DATABASE_DEAD_PEER_TIMEOUT): one whose provider's packets vanish breaks
within that timeout instead of hanging, and takes the path above.
Work that needs a session of its own (a session-level advisory lock) uses
`session_connection`: NAME_DIRECT_URL past any pooler.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

import psycopg
from psycopg_pool import ConnectionPool, PoolClosed, PoolTimeout, TooManyRequests

from .. import vector
from ..config import Config, ProviderConfig
from ..errors import AuthenticationFailedError, PoolExhaustedError
from ..keepalive import dead_peer_params
from ..redact import url_password
from ..state.store import utcnow
from .credentials import Credentials, connection_class
from .pool import LifoConnectionPool
from .sqlstate import Action, classify, describe

logger = logging.getLogger(__name__)
T = TypeVar("T")


def connection_kwargs(config: Config, application_name: str = "agent-factory",
                      prepared_statements: bool = False) -> dict[str, Any]:
    """Return the connection settings every provider connection uses (pooled, probe or session).

    Connecting is bounded by DATABASE_CONNECT_TIMEOUT, a silent peer by
    DATABASE_DEAD_PEER_TIMEOUT (`agent_factory.keepalive`). `prepared_statements`
    lets psycopg prepare statements run often (off behind a transaction pooler, which rejects them).
    """
    return {
        "connect_timeout": config.connect_timeout,
        **dead_peer_params(config.dead_peer_timeout),
        "application_name": application_name,
        "prepare_threshold": 5 if prepared_statements else None,
    }


class ProviderFailure(Exception):
    """The provider could not serve this request (internal to the core package).

    `confirmed` is true once a direct connection failed too (the provider is
    down, not just one connection); `commit_unknown` when the work may have
    been applied before the connection broke.
    """

    def __init__(self, reason: str, commit_unknown: bool = False, confirmed: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.commit_unknown = commit_unknown
        self.confirmed = confirmed


class RetrySameProvider(Exception):
    """A serialization failure or deadlock: the work may be retried on the same provider."""


@dataclass(frozen=True)
class HealthResult:
    """The outcome of one health probe."""

    provider: str
    healthy: bool
    latency_ms: float | None
    error: str | None
    checked_at: datetime


class Provider:
    """A provider's pool and health state; thread-safe."""

    def __init__(self, provider: ProviderConfig, config: Config) -> None:
        self.name = provider.name
        self.host = provider.host
        self.credentials = Credentials(provider, config)
        self._settings = provider
        self._config = config
        self._kwargs = connection_kwargs(config, prepared_statements=provider.prepared_statements)
        self._lock = threading.Lock()
        self._pool: ConnectionPool | None = None
        self._checking = threading.Lock()
        self.healthy: bool | None = None
        self.last_error: str | None = None
        self.last_checked: datetime | None = None
        self.last_latency_ms: float | None = None
        self.consecutive_ok = 0
        self.auth_error: str | None = None  # set while the server refuses the credentials (not "down")
        self.pool_exhausted = 0  # PoolExhaustedError raised (for "review connection pool sizes")
        self._checked_monotonic = 0.0

    def __repr__(self) -> str:
        return f"Provider(name={self.name!r}, host={self.host!r}, healthy={self.healthy!r})"

    # ---- health -----------------------------------------------------------

    def cache_fresh(self) -> bool:
        """Whether the cached health is younger than DATABASE_HEALTH_TTL."""
        return self.healthy is not None and time.monotonic() - self._checked_monotonic < self._config.health_ttl

    @property
    def _password(self) -> str | None:
        return self.credentials.password

    def probe(self) -> HealthResult:
        """Connect directly (not through the pool), run `SELECT 1`, and record the result.

        Bounded by DATABASE_CONNECT_TIMEOUT for a provider that accepts TCP and never answers.
        Refused credentials give an unhealthy result that is not recorded as down.
        """
        try:
            return self._probe()
        except AuthenticationFailedError as exc:
            return HealthResult(self.name, False, None, str(exc), utcnow())

    def _probe(self) -> HealthResult:
        """Probe as `probe`, but raise `AuthenticationFailedError` when the credentials are refused."""
        start = time.perf_counter()
        try:
            with self._connect(autocommit=True) as conn:
                conn.execute("SELECT 1").fetchone()
        except psycopg.Error as exc:
            result = HealthResult(self.name, False, None, describe(exc, self._password), utcnow())
        else:
            latency = (time.perf_counter() - start) * 1000.0
            result = HealthResult(self.name, True, latency, None, utcnow())
        self._record(result)
        return result

    def _connect(self, **kwargs: Any) -> psycopg.Connection:
        """Open a new connection with the current credentials (re-read once if refused).

        Raises `AuthenticationFailedError` (recorded in `auth_error`, never
        marking the provider down) or the `psycopg.Error` of any other failure.
        """
        try:
            conn = self.credentials.connect(lambda url: psycopg.connect(url, **self._kwargs, **kwargs))
        except AuthenticationFailedError as exc:
            if self.auth_error is None:
                logger.error("provider %s: %s", self.name, exc)
            self.auth_error = str(exc)
            raise
        self.auth_error = None
        return conn

    def _record(self, result: HealthResult) -> None:
        with self._lock:
            self.healthy = result.healthy
            self.last_checked = result.checked_at
            self._checked_monotonic = time.monotonic()
            if result.healthy:
                self.consecutive_ok += 1
                self.last_latency_ms = result.latency_ms
            else:
                self.consecutive_ok = 0
                self.last_error = result.error
        if not result.healthy:
            logger.warning("provider %s failed its health check: %s", self.name, result.error)
            self._close_pool_async()

    def mark_down(self, reason: str) -> None:
        """Record a failure seen on real traffic: unhealthy now, pool closed."""
        self._record(HealthResult(self.name, False, None, reason, utcnow()))

    # ---- pool ---------------------------------------------------------------

    def _ensure_pool(self) -> ConnectionPool:
        pool = self._pool
        if pool is not None:
            return pool
        # Probe before opening: a pool on a dead server would make its first
        # client wait the whole DATABASE_POOL_TIMEOUT before failing over.
        result = self._probe()
        if not result.healthy:
            raise ProviderFailure(result.error or "unreachable", confirmed=True)
        with self._lock:
            if self._pool is None:
                credentials = self.credentials
                self._pool = LifoConnectionPool(
                    lambda: credentials.url,
                    connection_class=connection_class(credentials),
                    kwargs=self._kwargs,
                    min_size=self._config.pool_min_size,
                    max_size=self._config.pool_max_size,
                    timeout=self._config.pool_timeout,
                    max_waiting=self._config.pool_max_waiting,
                    max_lifetime=self._config.pool_max_lifetime,
                    max_idle=self._config.pool_max_idle,
                    name=f"agent_factory.{self.name}",
                    configure=vector.configure,  # pgvector's adapter and columns, once per connection
                    open=False,
                )
                self._pool.open(wait=False)
                logger.info("opened pool for provider %s (%s)", self.name, self.host)
            return self._pool

    def _check_pool_async(self) -> None:
        """Test the idle pooled connections in the background, replacing dead ones (one check at a time)."""
        pool = self._pool
        if pool is None or not self._checking.acquire(blocking=False):
            return

        def check() -> None:
            try:
                pool.check()
            except Exception as exc:  # a closed pool, a provider going down: the next request finds out
                logger.debug("checking the pool of provider %s failed: %s", self.name, exc)
            finally:
                self._checking.release()

        threading.Thread(target=check, name=f"check-pool-{self.name}", daemon=True).start()

    def _close_pool_async(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            threading.Thread(target=pool.close, name=f"close-pool-{self.name}", daemon=True).start()

    def close(self) -> None:
        """Close the pool, waiting for its workers."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()

    def pool_stats(self) -> dict[str, int]:
        """Return psycopg_pool's stats, or zeros when the pool is not open."""
        pool = self._pool
        if pool is None:
            return {"pool_size": 0, "pool_available": 0, "requests_waiting": 0, "pool_exhausted": self.pool_exhausted}
        return {**pool.get_stats(), "pool_exhausted": self.pool_exhausted}

    # ---- work -----------------------------------------------------------------

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection]:
        """Yield a pooled connection and give it back; failures to obtain one are classified.

        The connection is not tested first: it may turn out broken on first use.
        Raises `ProviderFailure` when the provider cannot give a connection and
        `PoolExhaustedError` when every connection stays busy past DATABASE_POOL_TIMEOUT
        or DATABASE_POOL_MAX_WAITING requests already wait.
        """
        pool, conn = self._acquire()
        try:
            yield conn
        finally:
            pool.putconn(conn)

    @contextmanager
    def checked_connection(self) -> Iterator[psycopg.Connection]:
        """Yield a connection known to work: a pooled one that answered a check, else a fresh one.

        For work that cannot be replayed (a `with transaction()` body, ops
        sessions): the check costs one round trip. A fresh connection is closed
        on exit. Raises `ProviderFailure(confirmed=True)` when no connection can
        be made, and `PoolExhaustedError` as `connection()`.
        """
        with self.connection() as conn:
            try:
                ConnectionPool.check_connection(conn)
            except psycopg.Error as exc:
                reason = describe(exc, self._password)
                logger.info("a pooled connection to provider %s is broken (%s); using a fresh one",
                            self.name, reason)
            else:
                yield conn
                return
        self._check_pool_async()
        with self._fresh_connection() as fresh:
            yield fresh

    def _fresh_connection(self) -> psycopg.Connection:
        """Open a direct connection outside the pool; mark the provider down if that fails."""
        try:
            return self._connect()
        except psycopg.Error as exc:
            reason = describe(exc, self._password)
            self.mark_down(reason)
            raise ProviderFailure(reason, confirmed=True) from None

    @contextmanager
    def session_connection(self, purpose: str) -> Iterator[psycopg.Connection]:
        """Yield a new connection with a session of its own (NAME_DIRECT_URL when set), closed on exit.

        For session-level advisory locks and session settings, which a transaction
        pooler would leave on a pooled server connection. Raises
        `DirectUrlRequiredError` when the URL is a transaction pooler and no direct
        URL is set, and `ProviderFailure(confirmed=True)` when the connection fails
        (bounded by DATABASE_CONNECT_TIMEOUT); the provider is not marked down for
        it, since the direct URL may reach another host than traffic does.
        """
        url = self._settings.session_url_for(purpose)
        password = url_password(url) or self._password
        kwargs = {**self._kwargs, "application_name": f"agent-factory {purpose}"[:63], "prepare_threshold": 5}
        try:
            conn = psycopg.connect(url, **kwargs)
        except psycopg.Error as exc:
            raise ProviderFailure(describe(exc, password), confirmed=True) from None
        with conn:
            yield conn

    def run(self, work: Callable[[psycopg.Connection], T], *, autocommit: bool, idempotent: bool) -> T:
        """Run `work(conn)` on a pooled connection (one transaction, or autocommit) and return its result.

        A connection-class error on the pooled connection discards it; unless
        the outcome is unknown for a non-idempotent write, the work runs once
        more on a fresh direct connection. Only when that connection fails too
        is the provider marked down and `ProviderFailure(confirmed=True)` raised.
        Raises `RetrySameProvider` on serialization failures, `PoolExhaustedError`
        when every connection stays busy, and the original error for the rest.
        """
        try:
            with self.connection() as conn:
                return self._execute(conn, work, autocommit=autocommit, idempotent=idempotent)
        except ProviderFailure as failure:
            if failure.confirmed or (failure.commit_unknown and not idempotent):
                raise
            logger.info("a connection to provider %s broke (%s); retrying on a fresh connection",
                        self.name, failure.reason)
        self._check_pool_async()
        with self._fresh_connection() as fresh:
            try:
                return self._execute(fresh, work, autocommit=autocommit, idempotent=idempotent)
            except ProviderFailure as failure:
                self.mark_down(failure.reason)
                raise ProviderFailure(failure.reason, failure.commit_unknown, confirmed=True) from None

    def _execute(self, conn: psycopg.Connection, work: Callable[[psycopg.Connection], T], *,
                 autocommit: bool, idempotent: bool) -> T:
        if autocommit:
            conn.autocommit = True
        # In autocommit a statement may have been applied before its connection broke.
        phase = "commit" if autocommit and not idempotent else "work"
        try:
            result = work(conn)
            if not autocommit:
                phase = "commit"
                conn.commit()
            return result
        except BaseException as exc:
            rollback_quietly(conn)
            self.raise_classified(exc, commit_unknown=phase == "commit")
            raise
        finally:
            if autocommit:
                _restore_transactions(conn)

    def raise_classified(self, exc: BaseException, commit_unknown: bool = False) -> None:
        """Turn a connection-class error into `ProviderFailure` and a retryable one into `RetrySameProvider`."""
        action = classify(exc)
        if action is Action.FAILOVER:
            raise ProviderFailure(describe(exc, self._password), commit_unknown=commit_unknown) from exc
        if action is Action.RETRY:
            raise RetrySameProvider(str(exc)) from exc

    def confirm_down(self, reason: str) -> bool:
        """Probe the provider after `reason` was seen on one connection; mark it down if the probe fails.

        Returns whether the provider is down. Bounded by DATABASE_CONNECT_TIMEOUT.
        """
        if self.probe().healthy:
            self._check_pool_async()
            return False
        logger.warning("provider %s confirmed down after %s", self.name, reason)
        return True

    def _acquire(self) -> tuple[ConnectionPool, psycopg.Connection]:
        """Take a pooled connection, waiting at most DATABASE_POOL_TIMEOUT for one.

        The wait goes in steps of DATABASE_CONNECT_TIMEOUT. A step that ends with
        no connection while the pool still had room to grow means a new
        connection took longer than a connect may: the provider is probed, and a
        failed probe fails the request over now instead of after the whole pool
        timeout (a request that came while the packets stopped would otherwise
        wait DATABASE_POOL_TIMEOUT + DATABASE_CONNECT_TIMEOUT).
        """
        pool = self._ensure_pool()
        deadline = time.monotonic() + self._config.pool_timeout
        while True:
            remaining = deadline - time.monotonic()
            try:
                return pool, pool.getconn(timeout=max(0.0, min(remaining, self._config.connect_timeout)))
            except PoolClosed:
                raise ProviderFailure(self.last_error or "pool closed: provider marked down", confirmed=True) from None
            except TooManyRequests:
                self.pool_exhausted += 1
                raise PoolExhaustedError(
                    f"provider {self.name}: {self._config.pool_max_waiting} requests are already waiting for a "
                    "connection; raise DATABASE_POOL_MAX_WAITING or DATABASE_POOL_MAX_SIZE, or reduce concurrency"
                ) from None
            except PoolTimeout:
                stats = pool.get_stats()
                busy = stats.get("pool_size", 0) - stats.get("pool_available", 0)
                if busy < self._config.pool_max_size:
                    result = self._probe()  # refused credentials raise AuthenticationFailedError: never a failover
                    if not result.healthy:
                        raise ProviderFailure(result.error or "unreachable", confirmed=True) from None
                if time.monotonic() >= deadline:
                    self.pool_exhausted += 1
                    raise PoolExhaustedError(
                        f"couldn't get a connection after {self._config.pool_timeout:.2f} sec from provider "
                        f"{self.name}: all {busy} connections are busy; raise DATABASE_POOL_MAX_SIZE or "
                        "DATABASE_POOL_TIMEOUT, or reduce concurrency"
                    ) from None


def _restore_transactions(conn: psycopg.Connection) -> None:
    """Put a connection back in transaction mode before the pool hands it out again."""
    if conn.closed:
        return
    try:
        conn.autocommit = False
    except psycopg.Error:
        conn.close()  # the pool discards closed connections


def rollback_quietly(conn: psycopg.Connection) -> None:
    if conn.closed:
        return
    try:
        conn.rollback()
    except psycopg.Error:
        pass
