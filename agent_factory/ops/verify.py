"""Verify a deployment the way the runbook's `verify_memory_deployment.py` does.

Eight tests, each a titled group of `[STATUS] detail` lines:

1. imports; 2. DatabaseManager and its primary/failover settings; 3. health of
each provider with latency, and whether at least one is healthy; 4. a storage
round trip on a scratch session that is deleted afterwards; 5. the knowledge
atom count; 6. schema version and drift across providers; 7. each backup's
stream from the primary (its state and lag, read from the providers now: FAIL
when stopped or past STREAM_LAG_ALERT_SECONDS); a backup without a running
stream (paused, absent, unsupported) gets its lag as the last warm-backup sync
recorded it (FAIL past SYNC_MAX_LAG_MINUTES); 8. what each backup holds that the primary lacks, with the
oldest such row's age (a dry run of the monitor's merge: FAIL while any).

The system *can serve* (`VerifyReport.ok`) when at least one provider is
healthy and the storage round trip passed. Schema drift, lagging backups and providers that are
down, and divergence are reported as FAIL/DOWN lines but do not by themselves make `ok` False:
failover keeps the system serving, and `agent-factory schema verify` is the
stricter check.
"""

from __future__ import annotations

import importlib
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from ..core import DatabaseManager, default_manager
from ..errors import AgentFactoryError, ConfigError
from ..redact import scrub
from .schema_ops import schema_verify

logger = logging.getLogger(__name__)

CheckStatus = Literal["OK", "DOWN", "FAIL", "INFO"]
OK: Final = "OK"
DOWN: Final = "DOWN"
FAIL: Final = "FAIL"
INFO: Final = "INFO"
IMPORTS = (
    "agent_factory.config", "agent_factory.core", "agent_factory.memory",
    "agent_factory.schema", "agent_factory.ops.schema_ops",
)


@dataclass
class Check:
    """One line of the report: `[status] detail`."""

    status: CheckStatus
    detail: str

    def __str__(self) -> str:
        return f"[{self.status}] {self.detail}"


@dataclass
class VerifyTest:
    """One numbered test and its lines."""

    number: int
    title: str
    checks: list[Check] = field(default_factory=list)

    def add(self, status: CheckStatus, detail: str) -> None:
        self.checks.append(Check(status, detail))

    @property
    def failed(self) -> bool:
        return any(c.status == FAIL for c in self.checks)


@dataclass
class VerifyReport:
    """The outcome of `verify`: the tests, whether the system can serve, and one sentence."""

    ok: bool
    tests: list[VerifyTest]
    summary: str
    config_error: str | None = None

    @property
    def checks(self) -> list[Check]:
        """Every line of every test, in order."""
        return [check for test in self.tests for check in test.checks]

    def text(self) -> str:
        """Return the report in the runbook's format, ending with the summary."""
        blocks = [f"[TEST {t.number}] {t.title}...\n" + "\n".join(str(c) for c in t.checks) for t in self.tests]
        return "\n\n".join([*blocks, self.summary])


def verify(db: DatabaseManager | None = None) -> VerifyReport:
    """Run the eight deployment checks and return the report; never raises for an expected failure.

    With `db=None` a `DatabaseManager` is built from the environment and `.env`
    (a configuration error becomes a FAIL line and `config_error`) and closed at
    the end. Each provider costs at most DATABASE_CONNECT_TIMEOUT when it hangs.
    The storage round trip writes one scratch session and deletes it, even on failure.
    """
    run = _Run()
    run.imports()
    if db is None:
        db = run.build_manager()
    if db is not None:
        run.manager(db)
        run.health(db)
        run.round_trip(db)
        run.knowledge(db)
        run.schema(db)
        run.sync_lag(db)
        run.divergence(db)
    return run.report()


class _Run:
    """The state of one verify run: the tests so far and what later tests need."""

    def __init__(self) -> None:
        self.tests: list[VerifyTest] = []
        self.secrets: list[str] = []
        self.healthy: list[str] = []
        self.down: list[str] = []
        self.round_trip_on: str | None = None
        self.round_trip_error: str | None = None
        self.drifted: list[str] = []
        self.config_error: str | None = None
        self.import_failures: list[str] = []

    def test(self, title: str) -> VerifyTest:
        test = VerifyTest(len(self.tests) + 1, title)
        self.tests.append(test)
        return test

    def clean(self, text: str) -> str:
        return scrub(text, *self.secrets)

    # ---- TEST 1 ---------------------------------------------------------------

    def imports(self) -> None:
        test = self.test("Verifying imports")
        for module in IMPORTS:
            try:
                importlib.import_module(module)
            except Exception as exc:  # an import can fail in any way; report it as a line
                self.import_failures.append(module)
                test.add(FAIL, f"Could not import {module}: {type(exc).__name__}: {exc}; "
                               "reinstall the package (pip install -e .)")
        if not self.import_failures:
            test.add(OK, "All imports successful")

    # ---- TEST 2 ---------------------------------------------------------------

    def build_manager(self) -> DatabaseManager | None:
        try:
            return default_manager()
        except ConfigError as exc:
            self.config_error = str(exc)
            test = self.test("Testing DatabaseManager")
            test.add(FAIL, f"DatabaseManager could not be configured: {exc}")
            return None

    def manager(self, db: DatabaseManager) -> None:
        self.secrets = [p.password or "" for p in db.config.providers.values()]
        test = self.test("Testing DatabaseManager")
        test.add(INFO, f"Primary provider: {db.primary_provider}")
        test.add(INFO, f"Failover enabled: {str(db.failover_enabled).lower()}")
        test.add(OK, "DatabaseManager initialized")

    # ---- TEST 3 ---------------------------------------------------------------

    def health(self, db: DatabaseManager) -> None:
        test = self.test("Testing provider health checks")
        for name, result in db.health_details(force=True).items():
            if result.healthy:
                self.healthy.append(name)
                latency = f" ({result.latency_ms:.1f} ms)" if result.latency_ms is not None else ""
                test.add(OK, f"{name}: healthy{latency}")
            else:
                self.down.append(name)
                test.add(DOWN, self.clean(f"{name}: unhealthy ({result.error or 'unknown error'})"))
        if self.healthy:
            test.add(OK, "Atleast one provider is healthy")
        else:
            test.add(FAIL, "No provider is healthy: check each provider's status page and network, "
                           "and the *_DB_URL settings")

    # ---- TEST 4 ---------------------------------------------------------------

    def round_trip(self, db: DatabaseManager) -> None:
        test = self.test("Testing storage round trip")
        if not self.healthy:
            self.round_trip_error = "no provider is healthy"
            test.add(FAIL, "Storage round trip skipped: no provider is healthy")
            return
        if "agent_factory.memory" in self.import_failures:
            self.round_trip_error = "agent_factory.memory could not be imported"
            test.add(FAIL, "Storage round trip skipped: agent_factory.memory could not be imported")
            return
        try:
            self.round_trip_on = _round_trip(db)
        except Exception as exc:  # boundary of one check: any failure is a FAIL line
            self.round_trip_error = self.clean(f"{type(exc).__name__}: {exc}")
            logger.info("verify: storage round trip failed: %s", self.round_trip_error)
            test.add(FAIL, f"Storage round trip failed: {self.round_trip_error}; "
                           "run `agent-factory schema verify` and check the provider named above")
            return
        test.add(OK, f"Storage round trip on {self.round_trip_on}: scratch session saved, loaded and deleted")

    # ---- TEST 5 ---------------------------------------------------------------

    def knowledge(self, db: DatabaseManager) -> None:
        test = self.test("Testing knowledge base")
        if not self.healthy or "agent_factory.memory" in self.import_failures:
            why = "no provider is healthy" if not self.healthy else "agent_factory.memory could not be imported"
            test.add(FAIL, f"Knowledge atom count skipped: {why}")
            return
        try:
            from ..memory import KnowledgeBase

            count = KnowledgeBase(db).count()
        except Exception as exc:  # boundary of one check
            test.add(FAIL, self.clean(f"Knowledge atom count failed: {type(exc).__name__}: {exc}"))
            return
        test.add(OK, f"Knowledge atoms: {count} (on {db.active_provider})")

    # ---- TEST 6 ---------------------------------------------------------------

    def schema(self, db: DatabaseManager) -> None:
        test = self.test("Testing schema version and drift")
        if not self.healthy:
            test.add(FAIL, "Schema check skipped: no provider is healthy")
            return
        try:
            drift = schema_verify(db)
        except AgentFactoryError as exc:
            test.add(FAIL, self.clean(f"Schema check failed: {exc}"))
            return
        for name in db.providers:
            if name in drift.versions:
                test.add(INFO, f"{name}: schema version {drift.versions[name]} (expected {drift.target_version})")
            elif name in drift.unreachable:
                test.add(DOWN, f"{name}: not compared ({drift.unreachable[name]})")
        for line in drift.differences:
            test.add(FAIL, line)
        for note in drift.notes:
            test.add(INFO, note)
        self.drifted = drift.drifted
        if drift.versions and not drift.differences:
            test.add(OK, f"No schema drift across {len(drift.versions)} provider(s)")
        elif drift.differences:
            test.add(FAIL, drift.summary)

    # ---- TEST 7 ---------------------------------------------------------------

    def sync_lag(self, db: DatabaseManager) -> None:
        test = self.test("Checking warm backups (stream and sync lag)")
        try:
            from ..state.store import utcnow
            from .alerts.config import settings_from_env
            from .sync import backup_lags

            settings = settings_from_env()
            lags = backup_lags(db, db.state)
        except Exception as exc:  # boundary of one check
            test.add(FAIL, self.clean(f"Sync lag unreadable: {type(exc).__name__}: {exc}"))
            return
        streams = self.streams(db, test)
        now = utcnow()
        for lag in lags:
            stream = streams.get(lag.backup)
            if stream is not None and stream.status in ("streaming", "catching_up", "stopped"):
                self.stream_line(test, stream, settings.stream_max_lag)
                continue
            how = f" (stream {stream.status}: kept warm by sync)" if stream is not None else ""
            seconds = lag.lag_s(now)
            if seconds is None:
                test.add(INFO, self.clean(
                    f"{lag.backup}: no successful sync from {lag.source} on record{how}"
                    + (f" (last error: {lag.error})" if lag.error else "")
                    + f"; run `agent-factory sync --from {lag.source} --to {lag.backup}`"))
                continue
            limit = settings.sync_max_lag
            line = f"{lag.backup}: {seconds / 60:.1f} min behind {lag.source}{how}"
            if lag.last_ok is False and lag.error:
                line += f"; last sync failed: {lag.error}"
            over = limit is not None and seconds > limit.total_seconds()
            if limit is not None and over:
                line += f" (limit {limit.total_seconds() / 60:g} min)"
            test.add(FAIL if over else OK, self.clean(line))
        if not lags:
            test.add(INFO, "No backup provider configured")

    def streams(self, db: DatabaseManager, test: VerifyTest) -> dict[str, Any]:
        """Return each backup's stream state by name; an unreadable stream state is one FAIL line."""
        try:
            from .stream import stream_states

            return {s.subscriber: s for s in stream_states(db)}
        except Exception as exc:  # boundary of one check
            test.add(FAIL, self.clean(f"Streams unreadable: {type(exc).__name__}: {exc}"))
            return {}

    def stream_line(self, test: VerifyTest, stream: Any, limit: Any) -> None:
        """Add one line for a backup kept warm by its stream: FAIL when stopped or behind by more than `limit`."""
        state = stream.status.replace("_", " ")
        if stream.status == "stopped":
            test.add(FAIL, self.clean(f"{stream.subscriber}: stream from {stream.publisher} stopped: {stream.detail}; "
                                      f"see docs/RUNBOOK.md, Streams"))
            return
        if stream.lag_seconds is None:
            test.add(OK, self.clean(f"{stream.subscriber}: stream from {stream.publisher} {state}, lag unknown "
                                    f"({stream.detail})"))
            return
        line = f"{stream.subscriber}: stream from {stream.publisher} {state}, {stream.lag_seconds:.1f} s behind"
        if stream.lag_bytes is not None:
            line += f" ({stream.lag_bytes} bytes)"
        over = limit is not None and stream.lag_seconds > limit.total_seconds()
        if over:
            line += f" (limit {limit.total_seconds():g} s)"
        test.add(FAIL if over else OK, self.clean(line))

    # ---- TEST 8 ---------------------------------------------------------------

    def divergence(self, db: DatabaseManager) -> None:
        test = self.test("Checking writes stranded on backups (divergence)")
        primary = db.primary_provider
        if primary not in self.healthy:
            test.add(INFO, f"Primary {primary} does not answer: nothing to compare the backups with")
            return
        try:
            from ..state.store import utcnow
            from .sync import divergence

            found = divergence(db, self.healthy)
        except Exception as exc:  # boundary of one check
            test.add(FAIL, self.clean(f"Divergence unreadable: {type(exc).__name__}: {exc}"))
            return
        now = utcnow()
        for d in found:
            age = d.age(now)
            if d.rows is None:
                test.add(FAIL, self.clean(f"{d.backup}: could not compare with {primary}: {d.error}"))
            elif d.rows:
                oldest = f", the oldest {age.total_seconds() / 60:.1f} min old" if age is not None else ""
                test.add(FAIL, self.clean(
                    f"{d.backup}: holds {d.rows} rows {primary} lacks{oldest}; the next `agent-factory monitor "
                    f"--once` merges them (or `agent-factory sync --from {d.backup} --to {primary}`)"))
            else:
                test.add(OK, f"{d.backup}: holds no row {primary} lacks")
        if not found:
            test.add(INFO, "No healthy backup provider to compare")

    # ---- result ---------------------------------------------------------------

    def report(self) -> VerifyReport:
        ok = bool(self.healthy) and self.round_trip_on is not None
        total = len(self.healthy) + len(self.down)
        if self.config_error is not None:
            summary = "The memory system cannot serve: the configuration is invalid (see TEST 2)."
        elif ok:
            down = f" ({', '.join(self.down)} down)" if self.down else ""
            summary = (f"The memory system can serve: {len(self.healthy)} of {total} providers healthy{down}, "
                       f"storage round trip passed on {self.round_trip_on}.")
        elif not self.healthy:
            summary = ("The memory system cannot serve: no provider is healthy; "
                       "see the runbook's 'All Providers Down' procedure.")
        else:
            summary = f"The memory system cannot serve: the storage round trip failed ({self.round_trip_error})."
        if self.drifted:
            summary += f" Schema drift on {', '.join(self.drifted)}: run `agent-factory schema verify`."
        return VerifyReport(ok, self.tests, self.clean(summary), self.config_error)


def _round_trip(db: DatabaseManager) -> str:
    """Save, load and delete one scratch session; return the provider that served it."""
    from ..memory import Message, PostgresMemoryStorage, Session
    from ..memory.postgres import PURGE_SESSION_SQL

    storage = PostgresMemoryStorage(db)
    session_id = f"verify-{uuid.uuid4().hex}"
    messages = [{"role": "user", "content": "verify: ping"}, {"role": "assistant", "content": "verify: pong"}]
    session = Session("agent-factory-verify", session_id=session_id,
                      messages=[Message(m["role"], m["content"]) for m in messages],
                      metadata={"purpose": "agent-factory verify"})
    try:
        storage.save_session(session)
        loaded = storage.load_session(session_id)
        if loaded is None:
            raise AgentFactoryError(f"session {session_id} was saved but could not be loaded back")
        got = [(_field(m, "role"), _field(m, "content")) for m in _field(loaded, "messages")]
        want = [(m["role"], m["content"]) for m in messages]
        if got != want:
            raise AgentFactoryError(f"session {session_id} came back with different messages: {got!r}")
        return db.active_provider
    finally:
        _quietly(lambda: storage.delete_session(session_id))
        # delete_session may leave a tombstone for cross-provider merges; a scratch session leaves nothing.
        _quietly(lambda: db.execute_query(PURGE_SESSION_SQL, (session_id,), fetch_mode="none", idempotent=True))


def _field(obj: Any, name: str) -> Any:
    return obj[name] if isinstance(obj, dict) else getattr(obj, name)


def _quietly(action: Callable[[], object]) -> None:
    try:
        action()
    except Exception:  # cleanup after a failed check must not hide the failure
        logger.warning("verify: could not delete the scratch session", exc_info=True)
