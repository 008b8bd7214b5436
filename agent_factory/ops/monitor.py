"""The health monitor: one run probes every provider, stores samples, advances alerts and delivers them.

`run_monitor_once` is what cron calls every 5 minutes (`agent-factory monitor
--once`); `run_monitor_loop` repeats it for a daemon. One run:

1. writes a heartbeat row (`monitor_runs`);
2. probes every provider (forced, concurrently), and on each healthy one runs
   `SELECT 1` and counts the key tables through `provider_connection`;
3. merges each healthy backup into the primary (writes acknowledged on a
   backup by a process that failed over reach the primary, whatever became
   of that process), then syncs the primary into each healthy backup (warm
   backups, see `ops.sync`; MONITOR_SYNC_BACKUPS=false turns both off);
   records each run (`sync_runs`) and what each backup held that the primary
   lacked, with the oldest such row's age (`divergence`);
4. stores the samples (`health_samples`) and prunes those past the retention;
5. records each healthy provider's size and connection figures
   (`ops.maintenance`), then evaluates the rules: CRITICAL all providers
   down, WARNING primary down (failover active), WARNING backup provider
   down, WARNING last backup failed or newest verified backup taken more
   than 24 h ago, WARNING a backup more than SYNC_MAX_LAG_MINUTES (10)
   behind the primary, WARNING a backup that held rows the primary lacked
   (or could not be merged) in consecutive runs (`divergence`: some process
   keeps serving from it), `capacity` WARNING at 80 % and CRITICAL at 95 %
   of NAME_STORAGE_QUOTA_MB, WARNING `credentials` when a provider refuses
   the configured password (instead of "down": it is no outage); recovery sends an
   INFO resolve;
6. advances the persisted alert state, records fires and resolves in
   `alert_events` and queues notifications (see `alerts.rules`), then
   delivers everything queued, including what earlier runs could not
   deliver (see `alerts.outbox`);
7. completes the heartbeat with the primary and the serving provider.

The backup rule measures a backup's age from when it was taken (`started_at`
of `state.backups.newest_good_backup`), as the status page's RPO does.

Nothing a channel does can crash a run. Unexpected errors in a run are
recorded on its heartbeat and raised; the loop logs them and goes on.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import psycopg
from psycopg import sql

from ..core import DatabaseManager, default_manager
from ..core.sqlstate import describe
from ..errors import AUTH_REFUSED, AgentFactoryError
from ..redact import scrub
from ..replication import SyncResult
from ..state import monitoring
from ..state.divergence import Divergence, add_divergence
from ..state.monitoring import HealthSample
from ..state.store import StateStore, utcnow
from .alerts import (
    AlertAction,
    Channel,
    Check,
    DeliveryReport,
    MonitorSettings,
    Severity,
    apply_checks,
    channels_from_env,
    deliver_pending,
    settings_from_env,
)
from .alerts.rules import ALL_DOWN, BACKUP_OVERDUE, CREDENTIALS, PRIMARY_DOWN, PROVIDER_DOWN
from .monitor_sync import sync_step

if TYPE_CHECKING:
    from ..state.backups import BackupState

logger = logging.getLogger(__name__)

KEY_TABLES = ("session_memories", "knowledge_atoms")
_STATEMENT_TIMEOUT_MS = 10_000


@dataclass(frozen=True)
class BackupStatus:
    """What the backup catalog says about one provider's backups."""

    provider: str
    newest_backup_at: datetime | None  # started_at of `newest_good_backup` (signed, verified, live, not pre-restore)
    last_attempt_status: BackupState | None  # None: never backed up
    last_attempt_at: datetime | None
    last_error: str | None = None


BackupSource = Callable[[StateStore, Sequence[str]], "list[BackupStatus] | None"]


@dataclass(kw_only=True)
class MonitorResult:
    """One monitor run: samples, alert transitions, deliveries and the status line."""

    at: datetime
    primary: str
    providers: list[HealthSample]
    can_serve: bool
    alerts: list[AlertAction]
    firing: list[str]
    deliveries: DeliveryReport
    summary: str
    run_id: int
    backups: list[BackupStatus] | None = field(default=None)
    syncs: list[SyncResult] | None = field(default=None)  # this run's syncs of the primary into each backup
    divergence: list[Divergence] | None = field(default=None)  # what each backup held that the primary lacked

    @property
    def fired(self) -> list[AlertAction]:
        """The alerts that fired in this run."""
        return [a for a in self.alerts if a.action == "fired"]


def backup_status(store: StateStore, providers: Sequence[str]) -> list[BackupStatus] | None:
    """Return the backup state of the primary (first of `providers`) and of every provider backed up before.

    Returns None when there is no backup catalog (module or table missing), so
    the backup rule is skipped rather than firing on a system without backups.
    """
    try:
        from ..state.backups import BackupCatalog, newest_good_backup
    except ImportError:
        return None
    catalog = BackupCatalog(store)
    try:
        known = {r.provider for r in catalog.entries(statuses=("ok", "failed", "pruned"))
                 if r.purpose != "pre-restore"}  # a restore's safety copy does not make a backup schedule
        names = list(dict.fromkeys([*providers[:1], *sorted(known & set(providers))]))
        result = []
        for name in names:
            last, good = catalog.last_attempt(name), newest_good_backup(catalog.entries(name))
            result.append(BackupStatus(
                name, good.started_at if good else None, last.status if last else None,
                (last.finished_at or last.started_at) if last else None, last.error if last else None))
    except sqlite3.OperationalError as exc:  # table not there yet (older state store)
        logger.info("backup catalog unreadable, skipping the backup rule: %s", exc)
        return None
    return result


def collect_samples(db: DatabaseManager, now: datetime) -> list[HealthSample]:
    """Probe every provider (forced), then `SELECT 1` and count the key tables on the healthy ones."""
    health = db.health_details(force=True)
    samples = []
    for name in db.providers:
        result = health[name]
        healthy, error, select_ms = result.healthy, result.error, None
        counts: dict[str, int | None] = {}
        if healthy:
            try:
                select_ms, counts = _query_provider(db, name)
            except AgentFactoryError as exc:
                healthy, error = False, getattr(exc, "reason", str(exc))
            except psycopg.Error as exc:
                healthy, error = False, describe(exc, db.config.providers[name].password)
            if not healthy:
                logger.warning("provider %s passed its probe but failed SELECT 1: %s", name, error)
        samples.append(HealthSample(name, now, name == db.primary_provider, healthy, result.latency_ms,
                                    select_ms, error, counts))
    return samples


def _query_provider(db: DatabaseManager, name: str) -> tuple[float, dict[str, int | None]]:
    counts: dict[str, int | None] = {}
    with db.provider_connection(name) as conn:
        conn.execute(f"SET LOCAL statement_timeout = {_STATEMENT_TIMEOUT_MS}")
        start = time.perf_counter()
        conn.execute("SELECT 1").fetchone()
        select_ms = (time.perf_counter() - start) * 1000.0
        for table in KEY_TABLES:
            conn.execute("SAVEPOINT count_rows")
            try:
                row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))).fetchone()
                counts[table] = int(row[0]) if row else None
                conn.execute("RELEASE SAVEPOINT count_rows")
            except psycopg.errors.UndefinedTable:
                conn.execute("ROLLBACK TO SAVEPOINT count_rows")
                counts[table] = None
                logger.warning("provider %s has no table %s (schema not deployed?)", name, table)
        conn.rollback()
    return select_ms, counts


def build_checks(samples: Sequence[HealthSample], backups: Sequence[BackupStatus] | None, now: datetime,
                 settings: MonitorSettings) -> list[Check]:
    """Turn one run's observations into one `Check` per alert key."""
    up = [s for s in samples if s.healthy]
    checks = [Check(ALL_DOWN, Severity.CRITICAL, not up,
                    "no provider answers: " + "; ".join(f"{s.provider}: {s.error}" for s in samples)
                    if not up else f"{len(up)} of {len(samples)} providers serve")]
    serving = serving_provider(samples)
    for s in samples:
        if not s.healthy and AUTH_REFUSED in (s.error or ""):  # a password problem, not an outage: no failover
            checks.append(Check(CREDENTIALS, Severity.WARNING, True,
                                f"{s.error} (provider {s.provider} answers; traffic stays where it is)", s.provider))
        elif s.is_primary:
            detail = (f"primary provider {s.provider} is down ({s.error}); traffic fails over to {serving}"
                      if not s.healthy else f"primary provider {s.provider} answers ({_ms(s.latency_ms)})")
            checks.append(Check(PRIMARY_DOWN, Severity.WARNING, not s.healthy, detail, s.provider, suppressible=True))
        else:
            detail = (f"backup provider {s.provider} is down ({s.error}); failover has one target fewer"
                      if not s.healthy else f"backup provider {s.provider} answers ({_ms(s.latency_ms)})")
            checks.append(Check(PROVIDER_DOWN, Severity.WARNING, not s.healthy, detail, s.provider, suppressible=True))
    if backups is not None and settings.backup_max_age is not None:
        checks += [_backup_check(b, now, settings.backup_max_age) for b in backups]
    return checks


def _backup_check(b: BackupStatus, now: datetime, max_age: timedelta) -> Check:
    limit = f"{max_age.total_seconds() / 3600:g} h"
    if b.last_attempt_status == "failed":
        when = b.last_attempt_at.strftime("%Y-%m-%d %H:%M UTC") if b.last_attempt_at else "recently"
        return Check(BACKUP_OVERDUE, Severity.WARNING, True,
                     f"the last backup of {b.provider} failed ({when}): {b.last_error or 'no reason recorded'}",
                     b.provider)
    if b.newest_backup_at is None:
        return Check(BACKUP_OVERDUE, Severity.WARNING, True,
                     f"no verified backup of {b.provider} on record; run `agent-factory backup --provider "
                     f"{b.provider}` and `agent-factory backups verify`", b.provider)
    age = now - b.newest_backup_at
    hours = f"{age.total_seconds() / 3600:.1f} h"
    if age > max_age:
        return Check(BACKUP_OVERDUE, Severity.WARNING, True,
                     f"the newest verified backup of {b.provider} is {hours} old (limit {limit})", b.provider)
    return Check(BACKUP_OVERDUE, Severity.WARNING, False,
                 f"the newest verified backup of {b.provider} is {hours} old", b.provider)


def serving_provider(samples: Sequence[HealthSample], failover_enabled: bool = True) -> str | None:
    """Return the provider traffic goes to: the primary if it answers, else the first healthy one after it.

    `samples` are in failover order; None when nothing that may serve answers.
    """
    ordered = list(samples)
    primary = next((i for i, s in enumerate(ordered) if s.is_primary), 0)
    rotation = ordered[primary:] + ordered[:primary] if failover_enabled else ordered[primary:primary + 1]
    return next((s.provider for s in rotation if s.healthy), None)


def _ms(value: float | None) -> str:
    return f"{value:.1f} ms" if value is not None else "? ms"


def status_line(samples: Sequence[HealthSample]) -> str:
    """Return "neon OK 2.1 ms, supabase OK 1.9 ms, railway DOWN (connection refused)"."""
    return ", ".join(f"{s.provider} OK {_ms(s.latency_ms)}" if s.healthy else f"{s.provider} DOWN ({s.error})"
                     for s in samples)


def _alerts_text(actions: Sequence[AlertAction], firing: Sequence[str], report: DeliveryReport) -> str:
    shown = [a for a in actions if a.action != "pending"]
    pending = [a for a in actions if a.action == "pending"]
    if shown:
        text = ", ".join(str(a) for a in shown)
    elif firing:
        text = "firing " + ", ".join(k.removeprefix("agent-factory/") for k in firing)
    else:
        text = "none firing"
    if pending:
        text += "; pending " + ", ".join(f"{a.short_key} ({a.detail.split()[0]})" for a in pending)
    if report.failed:
        text += f"; {report.failed} deliveries failed ({'; '.join(report.errors)}), retried next run"
    elif report.pending:
        text += f"; {report.pending} deliveries queued"
    return text


def run_monitor_once(db: DatabaseManager, store: StateStore, channels: Sequence[Channel] | None = None,
                     now: datetime | None = None, *, settings: MonitorSettings | None = None,
                     backups: BackupSource | None = backup_status) -> MonitorResult:
    """Run one monitor pass and return its result.

    `channels` default to those configured in the environment and `.env`;
    `settings` likewise. `backups` reads the backup catalog (None skips the
    backup rule). Never raises for an unreachable provider or a failing
    channel; raises `ConfigError` for a malformed alert configuration and
    re-raises unexpected errors after recording them on the run's heartbeat.
    """
    now = now or utcnow()
    started = time.monotonic()
    settings = settings if settings is not None else settings_from_env()
    channels = list(channels) if channels is not None else channels_from_env(timeout=settings.delivery_timeout)
    with store.connect() as conn:
        run_id = monitoring.start_run(conn, now, db.primary_provider)
    try:
        return _run(db, store, channels, now, settings, backups, run_id, started)
    except BaseException as exc:
        with store.connect() as conn:
            monitoring.finish_run(conn, run_id, _elapsed(now, started), can_serve=False, providers_up=0,
                                  providers_total=len(db.providers), firing=[], summary="run failed",
                                  error=scrub(f"{type(exc).__name__}: {exc}", *_passwords(db))[:300])
        raise


def _run(db: DatabaseManager, store: StateStore, channels: Sequence[Channel], now: datetime,
         settings: MonitorSettings, backups: BackupSource | None, run_id: int, started: float) -> MonitorResult:
    samples = collect_samples(db, now)
    backup_states = None
    if backups is not None and settings.backup_max_age is not None:
        try:
            backup_states = backups(store, [db.primary_provider, *db.providers])
        except Exception:  # a catalog problem must not stop health monitoring
            logger.exception("could not read the backup catalog; skipping the backup rule this run")
    checks = build_checks(samples, backup_states, now, settings)
    checks += _maintenance_checks(db, store, samples, now)
    syncs = diverged = None
    if settings.sync_backups:
        step = sync_step(db, store, samples, now, settings, run_id)
        syncs, diverged = step.syncs, step.divergence
        checks += step.checks
    providers_text = status_line(samples)
    with store.connect() as conn:
        monitoring.add_samples(conn, run_id, samples)
        if diverged:
            add_divergence(conn, diverged)
        actions = apply_checks(conn, checks, now, settings, channels, context=providers_text)
        pruned = monitoring.prune(conn, now - settings.retention)
        firing = sorted(k for k, a in monitoring.load_alerts(conn).items() if a.firing)
    if any(pruned.values()):
        logger.info("pruned monitor history older than %s: %s", settings.retention, pruned)
    report = deliver_pending(store, channels, now, settings)
    summary = f"{providers_text}; alerts: {_alerts_text(actions, firing, report)}"
    up = sum(s.healthy for s in samples)
    with store.connect() as conn:
        monitoring.finish_run(conn, run_id, _elapsed(now, started), can_serve=up > 0, providers_up=up,
                              providers_total=len(samples), firing=firing, summary=summary,
                              serving_provider=serving_provider(samples, db.failover_enabled))
    for action in actions:
        if action.action in ("fired", "resolved"):
            logger.warning("alert %s: %s", action, action.detail)
    return MonitorResult(at=now, primary=db.primary_provider, providers=samples, can_serve=up > 0, alerts=actions,
                         firing=firing, deliveries=report, summary=summary, run_id=run_id, backups=backup_states,
                         syncs=syncs, divergence=diverged)



def _maintenance_checks(db: DatabaseManager, store: StateStore, samples: Sequence[HealthSample],
                        now: datetime) -> list[Check]:
    """Record sizes and pool figures (see `ops.maintenance`); return the `capacity` checks."""
    from .maintenance import record_monitor_run

    try:
        return record_monitor_run(db, store, samples, now)
    except Exception:  # a maintenance record must not stop health monitoring
        logger.exception("recording sizes and pool figures failed; the capacity rule is skipped this run")
        return []


def _passwords(db: DatabaseManager) -> list[str]:
    return [p.password for p in db.config.providers.values() if p.password]


def _elapsed(now: datetime, started: float) -> datetime:
    return now + timedelta(seconds=time.monotonic() - started)


def run_monitor_loop(seconds: float, db: DatabaseManager | None = None, store: StateStore | None = None,
                     channels: Sequence[Channel] | None = None, *, settings: MonitorSettings | None = None,
                     count: int | None = None, on_result: Callable[[MonitorResult], None] | None = None,
                     stop: threading.Event | None = None) -> MonitorResult | None:
    """Run the monitor every `seconds` until `stop` is set or `count` runs are done; return the last result.

    `db`, `store`, `channels` and `settings` default to the configuration in
    the environment (built once). This is a boundary: an unexpected error in a
    run is logged with its traceback and the loop goes on.
    """
    if seconds <= 0:
        raise ValueError("seconds must be positive")
    db = db if db is not None else default_manager()
    store = store if store is not None else db.state
    settings = settings if settings is not None else settings_from_env()
    channels = list(channels) if channels is not None else channels_from_env(timeout=settings.delivery_timeout)
    stop = stop or threading.Event()
    last: MonitorResult | None = None
    runs = 0
    while count is None or runs < count:
        started = time.monotonic()
        try:
            last = run_monitor_once(db, store, channels, settings=settings)
        except Exception:
            logger.exception("monitor run failed; trying again in %s s", seconds)
        else:
            if on_result is not None:
                on_result(last)
        runs += 1
        if (count is not None and runs >= count) or stop.wait(max(0.0, seconds - (time.monotonic() - started))):
            break
    return last
