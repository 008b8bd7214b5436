"""`DatabaseManager`: one pool per provider, cached health, automatic failover and fail-back.

Routing rules (see docs/FAILOVER.md):

- Work goes to the *active* provider: the primary, or the backup it failed over to.
- A connection-class error (no SQLSTATE, class 08, 57P01-57P03) on one
  connection discards that connection and retries the work once on a fresh
  connection of the same provider; only when that fails too (the provider is
  down) does the work move to the next provider in the failover order.
- Switching is compare-and-set: a request moves traffic only away from the
  provider it started on, and only because it saw that provider fail.
- 40001/40P01 are retried on the same provider; every other server error is
  raised at once as `QueryError`, with no failover.
- A pool exhausted by load raises `PoolExhaustedError`: never a failover.
- After a failover the manager starts its fail-back watcher (`core.failback`,
  built by the layer above: `agent_factory.replication.failback`), which probes
  the primary, merges the backup's writes into it and switches back through
  `paused_traffic` and `switch`. The manager itself never merges.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from typing import Any, Literal, TypeVar

import psycopg

from ..config import Config, load_config
from ..errors import (
    AllProvidersDownError,
    CommitOutcomeUnknownError,
    ManagerClosedError,
    ProviderUnavailableError,
    QueryError,
    UnknownProviderError,
)
from ..state.store import StateStore
from .failback import FailbackFactory, FailbackSync, registered_failback
from .provider import HealthResult, Provider, ProviderFailure, RetrySameProvider, rollback_quietly

__all__ = ["DatabaseManager", "FailbackSync", "close_default_manager", "default_manager"]

logger = logging.getLogger(__name__)
T = TypeVar("T")
FetchMode = Literal["all", "one", "none"]

_READ_ONLY = re.compile(r"^\s*(select|show|explain|values|table)\b", re.IGNORECASE)
_RETRIES_ON_SAME_PROVIDER = 3


class DatabaseManager:
    """Route queries to the healthy provider, failing over and back automatically.

    Opens no connection until first used. Thread-safe: share one per process.
    """

    def __init__(self, config: Config | None = None, *, state: StateStore | None = None,
                 failback: FailbackFactory | None = None, failback_sync: FailbackSync | None = None) -> None:
        """Build the manager from `config` (default: the environment and `.env`).

        `failback` builds the watcher that fails back after a failover (default:
        the registered one, `agent_factory.replication.failback`); `failback_sync`
        replaces the merge of a backup's writes into the primary that it runs
        before switching. Raises `ConfigError`.
        """
        self.config = config if config is not None else load_config()
        self.failover_enabled: bool = self.config.failover_enabled
        self.failover_order: list[str] = list(self.config.failover_order)
        self._providers = {name: Provider(self.config.providers[name], self.config) for name in self.failover_order}
        self._primary = self.config.primary
        self._active = self.config.primary
        self._state = state if state is not None else StateStore(self.config.state_dir)
        # Guards routing (primary, active) and admission; a fail-back pauses requests by waiting on it.
        self._lock = threading.Condition(threading.RLock())
        self._closed = threading.Event()
        self._executor: ThreadPoolExecutor | None = None
        self._recorder = ThreadPoolExecutor(max_workers=1, thread_name_prefix="agent-factory-events")
        self._requests = 0  # requests running now, on any provider
        self._paused = False
        self._failback = (failback if failback is not None else registered_failback())(self, failback_sync)

    def __repr__(self) -> str:
        return (
            f"DatabaseManager(primary={self._primary!r}, active={self._active!r}, "
            f"failover_enabled={self.failover_enabled!r}, failover_order={self.failover_order!r})"
        )

    def __enter__(self) -> DatabaseManager:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def primary_provider(self) -> str:
        """The configured primary (DATABASE_PROVIDER, or the last `set_provider`)."""
        return self._primary

    @property
    def active_provider(self) -> str:
        """The provider serving traffic now: the primary, or a backup after failover."""
        return self._active

    @property
    def state(self) -> StateStore:
        """The state store this manager records failovers in; ops record backups and restores there too."""
        return self._state

    @property
    def providers(self) -> Sequence[str]:
        """The configured provider names, in failover order."""
        return tuple(self.failover_order)

    def set_provider(self, name: str) -> None:
        """Make `name` the primary and send traffic to it.

        Raises `ConfigError` (a `ValueError`) naming the configured providers if `name` is unknown.
        """
        self._ensure_open()
        self._provider(name)  # raises ConfigError for an unknown name
        with self._lock:
            self._primary = name
            previous, self._active = self._active, name
        if previous != name:
            self._announce(previous, name, "set_provider: operator chose this provider")

    @property
    def closed(self) -> bool:
        """Whether `close()` was called; a closed manager raises `ManagerClosedError` when used."""
        return self._closed.is_set()

    def close(self) -> None:
        """Stop the fail-back watcher, write pending failover events and close every pool."""
        self._closed.set()
        self._failback.close(max(self.config.health_ttl, 0.1) + self.config.connect_timeout + 1)
        if self._executor is not None:
            self._executor.shutdown(wait=True)
        self._recorder.shutdown(wait=True)
        for provider in self._providers.values():
            provider.close()

    def _ensure_open(self) -> None:
        if self._closed.is_set():
            raise ManagerClosedError()

    # ---- health ---------------------------------------------------------------

    def health_check(self, name: str | None = None, *, force: bool = False) -> bool:
        """Return whether `name` (default: the active provider) is healthy, cached DATABASE_HEALTH_TTL s."""
        self._ensure_open()
        provider = self._provider(name or self._active)
        if force or not provider.cache_fresh():
            provider.probe()
        return bool(provider.healthy) and not provider.auth_error

    def health_check_all(self, *, force: bool = False) -> dict[str, bool]:
        """Return `{provider: healthy}` for every provider, probing stale ones concurrently.

        With one provider that accepts TCP and never answers, returns in about one connect timeout.
        """
        return {name: result.healthy for name, result in self.health_details(force=force).items()}

    def health_details(self, *, force: bool = False) -> dict[str, HealthResult]:
        """Return the latest `HealthResult` of every provider, probing stale ones concurrently."""
        self._ensure_open()
        stale = [p for p in self._providers.values() if force or not p.cache_fresh()]
        if stale:
            list(self._pool_executor().map(lambda p: p.probe(), stale))
        # Refused credentials (`auth_error`) are reported as unhealthy without marking the provider down.
        return {
            name: HealthResult(name, bool(p.healthy) and not p.auth_error, p.last_latency_ms if p.healthy else None,
                               p.auth_error or (None if p.healthy else p.last_error),
                               p.last_checked)  # type: ignore[arg-type]
            for name, p in self._providers.items()
        }

    def get_provider_stats(self) -> dict[str, dict[str, Any]]:
        """Return pool and health figures per provider (hosts without credentials)."""
        health = self.health_check_all()
        stats = {}
        for name, provider in self._providers.items():
            pool = provider.pool_stats()
            size, available = pool.get("pool_size", 0), pool.get("pool_available", 0)
            stats[name] = {
                "healthy": health[name],
                "active": name == self._active,
                "pool_active": size - available,
                "pool_size": size,
                "pool_available": available,
                "requests_waiting": pool.get("requests_waiting", 0),
                "requests_num": pool.get("requests_num", 0),
                "requests_errors": pool.get("requests_errors", 0),
                "requests_wait_ms": pool.get("requests_wait_ms", 0),
                "connections_errors": pool.get("connections_errors", 0),
                "connections_lost": pool.get("connections_lost", 0),
                "pool_exhausted": pool.get("pool_exhausted", 0),
                "host": provider.host,
                "last_error": provider.last_error,
                "last_checked": provider.last_checked.isoformat() if provider.last_checked else None,
            }
        return stats

    # ---- queries ----------------------------------------------------------------

    def execute_query(
        self,
        sql: str,
        params: Sequence[Any] | dict[str, Any] | None = None,
        fetch_mode: FetchMode = "all",
        *,
        idempotent: bool | None = None,
    ) -> Any:
        """Run one statement in its own transaction on the active provider, failing over as needed.

        `fetch_mode` "all" returns a list of tuples, "one" a tuple or None, "none" None.
        SELECT/SHOW/EXPLAIN/VALUES/TABLE statements run as reads in autocommit (`run_read`)
        unless `idempotent` is given; `idempotent=True` allows replaying a write whose
        COMMIT outcome is unknown on another provider.
        Raises `QueryError` for server-side errors, `AllProvidersDownError` when no provider serves.
        """
        if fetch_mode not in ("all", "one", "none"):
            raise ValueError(f"fetch_mode must be 'all', 'one' or 'none', not {fetch_mode!r}")
        if not isinstance(sql, str) or not sql.strip():
            raise ValueError("sql must be a non-empty string")

        def work(conn: psycopg.Connection) -> Any:
            cur = conn.execute(sql, params)
            if fetch_mode == "all":
                return cur.fetchall() if cur.description else []
            if fetch_mode == "one":
                return cur.fetchone() if cur.description else None
            return None

        if idempotent is None and _READ_ONLY.match(sql):
            return self.run_read(work)
        return self.run_in_transaction(work, idempotent=bool(idempotent))

    def run_in_transaction(self, work: Callable[[psycopg.Connection], T], *, idempotent: bool) -> T:
        """Run `work(conn)` in one transaction and commit it, failing over as needed.

        `work` may run more than once (on retry or failover), each time in a fresh
        transaction: it must not have side effects outside the database.
        Raises `QueryError`, `PoolExhaustedError`, `CommitOutcomeUnknownError`,
        `ProviderUnavailableError` (failover disabled) or `AllProvidersDownError`.
        """
        return self._run(work, idempotent=idempotent, autocommit=False)

    def run_read(self, work: Callable[[psycopg.Connection], T]) -> T:
        """Run a single-statement read `work(conn)` in autocommit, failing over as needed.

        No BEGIN or COMMIT is sent (two round trips fewer than `run_in_transaction`),
        so `work` must not rely on a transaction: one statement, or reads that need
        no common snapshot. It is replayed freely on failover. Raises as `run_in_transaction`.
        """
        return self._run(work, idempotent=True, autocommit=True)

    def run_statement(self, work: Callable[[psycopg.Connection], T], *, idempotent: bool) -> T:
        """Run single-statement `work(conn)` in autocommit: one round trip, atomic by itself.

        For writes that are one statement (an upsert, a CTE that writes several tables):
        PostgreSQL runs a single statement atomically, so no BEGIN/COMMIT is needed.
        `idempotent` says whether the statement may be replayed when its outcome is unknown.
        Raises as `run_in_transaction`.
        """
        return self._run(work, idempotent=idempotent, autocommit=True)

    def _run(self, work: Callable[[psycopg.Connection], T], *, idempotent: bool, autocommit: bool) -> T:
        with self._request() as started_on:
            return self._serve(started_on, lambda p: self._run_with_retries(p, work, autocommit, idempotent),
                               idempotent=idempotent)

    @contextmanager
    def _request(self) -> Iterator[str]:
        """Admit one request and count it while it runs; yield the provider it starts on.

        While a fail-back does its final merge, new requests wait here, so no
        write reaches the backup after that merge.
        """
        self._ensure_open()
        with self._lock:
            while self._paused:
                self._lock.wait()
            self._requests += 1
            started_on = self._active
        try:
            yield started_on
        finally:
            with self._lock:
                self._requests -= 1
                if not self._requests:
                    self._lock.notify_all()

    def _serve(self, started_on: str, attempt: Callable[[Provider], T], *, idempotent: bool) -> T:
        """Call `attempt(provider)` on `started_on`, then on the next providers while providers are down."""
        errors: dict[str, str] = {}
        for provider in self._candidates(started_on):
            try:
                result = attempt(provider)
            except ProviderFailure as failure:
                self._on_failure(provider, failure, errors, idempotent=idempotent)
                continue
            if provider.name != started_on:
                self.switch(started_on, provider.name, f"{started_on} failed: {errors[started_on]}")
            return result
        raise AllProvidersDownError(errors)

    def _on_failure(self, provider: Provider, failure: ProviderFailure, errors: dict[str, str], *,
                    idempotent: bool) -> None:
        """Decide whether work that `provider` failed may move to the next provider."""
        if failure.commit_unknown and not idempotent:
            raise CommitOutcomeUnknownError(
                f"the connection to provider {provider.name} broke while the write was being committed "
                f"({failure.reason}); it may or may not have been applied, so it was not replayed. "
                "Check the data before retrying."
            ) from None
        errors[provider.name] = failure.reason
        logger.warning("provider %s cannot serve: %s", provider.name, failure.reason)
        if not self.failover_enabled:
            raise ProviderUnavailableError(provider.name, failure.reason) from None

    @contextmanager
    def transaction(self) -> Iterator[psycopg.Cursor[Any]]:
        """Yield a cursor in one transaction on the active provider; commit on exit, roll back on error.

        The connection is checked first (one round trip; a broken pooled one is
        replaced by a fresh one). Failover happens only while obtaining the
        connection: a body interrupted by a connection error cannot be replayed,
        so it raises `ProviderUnavailableError`
        (`CommitOutcomeUnknownError` if it broke during COMMIT); the provider is
        probed and marked down only if the probe fails too.
        Use `run_in_transaction` for work that should be replayed on failover.
        """
        with self._request() as started_on, ExitStack() as stack:
            provider, conn = self._serve(started_on, lambda p: (p, stack.enter_context(p.checked_connection())),
                                         idempotent=True)
            phase = "work"
            try:
                with conn.cursor() as cur:
                    yield cur
                phase = "commit"
                conn.commit()
            except BaseException as exc:
                rollback_quietly(conn)
                try:
                    provider.raise_classified(exc, commit_unknown=phase == "commit")
                except ProviderFailure as failure:
                    provider.confirm_down(failure.reason)
                    if failure.commit_unknown:
                        raise CommitOutcomeUnknownError(
                            f"the connection to provider {provider.name} broke during COMMIT ({failure.reason}); "
                            "the transaction may or may not have been applied. Check the data before retrying."
                        ) from None
                    raise ProviderUnavailableError(
                        provider.name, f"{failure.reason}; the transaction was rolled back, retry it"
                    ) from None
                except RetrySameProvider:
                    pass
                if isinstance(exc, psycopg.Error):
                    raise QueryError(f"provider {provider.name}: {exc}".strip()) from exc
                raise

    @contextmanager
    def provider_connection(self, name: str) -> Iterator[psycopg.Connection]:
        """Yield a checked connection to one named provider, with no failover (for ops work).

        Raises `ConfigError` for an unknown name and `ProviderUnavailableError` when it cannot serve.
        The caller manages transactions; the connection is returned to the pool on exit.
        """
        self._ensure_open()
        provider = self._provider(name)
        with ExitStack() as stack:
            try:
                conn = stack.enter_context(provider.checked_connection())
            except ProviderFailure as failure:
                raise ProviderUnavailableError(name, failure.reason) from None
            try:
                yield conn
            except BaseException:
                rollback_quietly(conn)
                raise

    @contextmanager
    def session_connection(self, name: str, purpose: str) -> Iterator[psycopg.Connection]:
        """Yield a new connection with a session of its own to one provider (NAME_DIRECT_URL past a pooler).

        For `purpose` (e.g. "sync lock") needing session-level state: advisory
        locks, session SETs. Closed on exit, no failover. Raises `ConfigError` for
        an unknown name, `DirectUrlRequiredError` behind a transaction pooler with
        no direct URL, and `ProviderUnavailableError` when it cannot connect.
        """
        self._ensure_open()
        provider = self._provider(name)
        with ExitStack() as stack:
            try:
                conn = stack.enter_context(provider.session_connection(purpose))
            except ProviderFailure as failure:
                raise ProviderUnavailableError(name, failure.reason) from None
            yield conn

    # ---- routing ----------------------------------------------------------------

    def _provider(self, name: str) -> Provider:
        try:
            return self._providers[name]
        except KeyError:
            raise UnknownProviderError(name, self.failover_order) from None

    def _candidates(self, first: str) -> Iterator[Provider]:
        """Yield `first` (the active provider), then (only if asked: the hot path stops at the first)
        the others in failover order from the primary, those known down last."""
        active = self._providers[first]
        yield active
        if not self.failover_enabled:
            return
        order = self.failover_order
        start = order.index(self._primary)
        rotation = [self._providers[n] for n in order[start:] + order[:start] if n != active.name]
        up = [p for p in rotation if not (p.healthy is False and p.cache_fresh())]
        yield from up
        yield from (p for p in rotation if p not in up)

    def _run_with_retries(self, provider: Provider, work: Callable[[psycopg.Connection], T], autocommit: bool,
                          idempotent: bool) -> T:
        for attempt in range(_RETRIES_ON_SAME_PROVIDER + 1):
            try:
                return provider.run(work, autocommit=autocommit, idempotent=idempotent)
            except RetrySameProvider:
                if attempt == _RETRIES_ON_SAME_PROVIDER:
                    raise QueryError(
                        f"provider {provider.name}: serialization failure or deadlock persisted after "
                        f"{_RETRIES_ON_SAME_PROVIDER} retries"
                    ) from None
                time.sleep(0.01 * 2**attempt)
            except psycopg.Error as exc:
                raise QueryError(f"provider {provider.name}: {exc}".strip()) from exc
        raise AssertionError("unreachable")

    def switch(self, expected: str, to: str, reason: str) -> bool:
        """Move traffic from `expected` to `to` if `expected` is still the active provider; return whether it moved.

        Compare-and-set: a request (or the fail-back watcher) moves traffic only
        away from the provider it saw serving. Leaving the primary starts the
        fail-back watcher. Raises `ConfigError` for an unknown `to`.
        """
        self._provider(to)
        with self._lock:
            if self._active != expected or expected == to:
                return False  # another request or the watcher moved traffic already
            self._active = to
            away = to != self._primary
        if away:
            self._failback.start()
        self._announce(expected, to, reason)
        return True

    def probe_streak(self, name: str) -> int:
        """Probe `name` on a fresh connection now; return how many probes in a row it has passed (0: it failed).

        Bounded by DATABASE_CONNECT_TIMEOUT; raises `ConfigError` for an unknown name.
        """
        provider = self._provider(name)
        provider.probe()
        return provider.consecutive_ok

    @contextmanager
    def paused_traffic(self, drain_s: float) -> Iterator[bool]:
        """Hold new requests and wait up to `drain_s` s until none runs; admit them again on exit.

        Yields True once no request runs (or the manager is closing), False when
        some still ran after `drain_s` seconds. Requests arriving meanwhile wait
        (at most until exit), they are not refused.
        """
        with self._lock:
            self._paused = True
        try:
            with self._lock:
                drained = self._lock.wait_for(lambda: not self._requests or self._closed.is_set(), drain_s)
            yield bool(drained)
        finally:
            with self._lock:
                self._paused = False
                self._lock.notify_all()

    def failback_postponed(self, backup: str, primary: str, reason: str) -> None:
        """Record that traffic stays on `backup` for now and restart the count of `primary`'s passed probes."""
        logger.warning("fail-back from provider %s to provider %s postponed: %s", backup, primary, reason)
        self._provider(primary).consecutive_ok = 0
        try:
            self._state.record_failback_postponed(backup, primary, reason)
        except Exception:  # recording must never stop traffic
            logger.exception("could not record the postponed fail-back to %s in the state store", primary)

    def _announce(self, previous: str, to: str, reason: str) -> None:
        """Log a switch and record it in the state store without making the caller wait."""
        kind = "fail-back" if to == self._primary else "failover"
        logger.warning("%s from provider %s to provider %s: %s", kind, previous, to, reason)
        try:
            self._recorder.submit(self._record, previous, to, reason)
        except RuntimeError:  # closed: record in this thread
            self._record(previous, to, reason)

    def _record(self, previous: str, to: str, reason: str) -> None:
        try:
            self._state.record_failover(previous, to, reason)
        except Exception:  # recording must never stop traffic
            logger.exception("could not record the switch from %s to %s in the state store", previous, to)

    def _pool_executor(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(
                    max_workers=max(len(self._providers), 1), thread_name_prefix="agent-factory-health"
                )
            return self._executor


_default: DatabaseManager | None = None
_default_lock = threading.Lock()


def default_manager() -> DatabaseManager:
    """Return the process's shared `DatabaseManager`, made from the configuration on first use.

    Storages, `KnowledgeBase`, `Settings` and ops built without a manager all use
    this one, so one process serves everything from one active provider. A
    closed default is replaced by a new one. Raises `ConfigError`.
    """
    global _default
    with _default_lock:
        if _default is None or _default.closed:
            _default = DatabaseManager()
        return _default


def close_default_manager() -> None:
    """Close the process's default manager, if one was made; the next `default_manager()` reads the config anew."""
    global _default
    with _default_lock:
        manager, _default = _default, None
    if manager is not None:
        manager.close()
