"""`sync_pair`: merge the rows one provider changed into another, incrementally, in short batches.

One run, for a (source, target) pair:

1. take the target's sync lock (a session-level advisory lock, on a connection
   of its own: NAME_DIRECT_URL when the target is behind a transaction pooler,
   and `DirectUrlRequiredError` when it has none; a second sync into the same
   target waits up to `wait_s`, then raises `SyncBusyError`);
2. read the source's horizon (see `watermarks`) and the pair's watermarks
   from the target;
3. per table, in parent-before-child order: COPY (binary) the next batch of
   rows changed since the watermark, in (changed_at, id) order, from the
   source into a temporary table on the target; merge it with one
   `INSERT ... ON CONFLICT (id) DO UPDATE ... WHERE <incoming version wins>`;
   recompute the derived counters of the sessions in the batch; advance the
   watermark; commit. Each batch is one short transaction on each side, so
   no writer waits on the sync for longer than one batch.

A table that is empty on the target when the run starts (a new backup's
first sync) is loaded in bulk: batches ten times larger, sized by one query on
the source and COPY'd straight into the table (no staging, no conflict
handling: its rows are new there, so nobody can be waiting on them). A row
that turns out to be there after all aborts that batch's COPY, and the table
goes on through the merge.

Rows of a child table whose parent row is not on the target yet are deferred:
the watermark stops before them and the next run takes them. The merge is
idempotent and commutative (see `tables` for the rule), so runs may repeat,
overlap on different targets, or stop anywhere.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NamedTuple
from uuid import UUID

import psycopg
from psycopg import sql

from ..config import env_float, env_int, read_env
from ..core.database_manager import DatabaseManager
from ..core.sqlstate import describe
from ..errors import ConfigError, DatabaseError, SchemaError, SyncBusyError, SyncConflictError, UnknownProviderError
from ..redact import scrub
from . import sessions
from .result import SyncResult, TableResult
from .tables import (
    FOLLOWERS,
    SYNCED_TABLES,
    TableSpec,
    batch_summary_sql,
    catalog_columns,
    copy_in_sql,
    copy_into_table_sql,
    copy_out_sql,
    copy_window_sql,
    create_stage_sql,
    PLAN_SETTINGS,
    merge_sql,
    table_specs,
)
from .watermarks import Horizon, Watermark, acquire_lock, read_horizon, read_watermarks, release_lock, save_watermarks

logger = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = 5000
DEFAULT_MARGIN_S = 5.0
# A table still empty on the target (a new backup's first sync) is loaded in batches this many times larger:
# its rows are all new there, so no writer can be waiting on a row the batch locks (see the module docstring).
BULK_FACTOR = 10

Progress = Callable[[TableResult], None]


class _Batch(NamedTuple):
    """What one batch did on the target (the report row of `tables.merge_sql`)."""

    written: int
    tombstones: int
    conflicts: int
    read: int
    last_ts: datetime | None  # the batch's last (changed_at, id) on the source: the cursor moves there
    last_id: UUID | None
    deferred: int  # rows held back: their parent is not on the target yet
    deferred_from: datetime | None
    sessions: list[str]  # session ids whose derived figures are rebuilt on the target
    oldest_written: datetime | None  # the oldest updated_at (writer's clock) of the rows written


_NO_BATCH = _Batch(0, 0, 0, 0, None, None, 0, None, [], None)


@dataclass(frozen=True)
class SyncSettings:
    """SYNC_BATCH_SIZE (rows per batch, 5000) and SYNC_MARGIN_SECONDS (5): read from the environment and `.env`."""

    batch_size: int = DEFAULT_BATCH_SIZE
    margin_s: float = DEFAULT_MARGIN_S

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> SyncSettings:
        """Return the settings; raises `ConfigError` naming a malformed variable."""
        values = read_env(env)
        return cls(env_int(values, "SYNC_BATCH_SIZE", DEFAULT_BATCH_SIZE, minimum=1),
                   env_float(values, "SYNC_MARGIN_SECONDS", DEFAULT_MARGIN_S, minimum=0))


def sync_pair(db: DatabaseManager, source: str, target: str, *, dry_run: bool = False,
              batch_size: int | None = None, tables: Sequence[str] | None = None,
              margin_s: float | None = None, wait_s: float = 0.0, full: bool = False,
              progress: Progress | None = None) -> SyncResult:
    """Merge into `target` every row `source` changed since their last sync; return what was done.

    Uses `db.provider_connection` for the source and `db.session_connection` for
    the target (no failover). `batch_size` and
    `margin_s` default to SYNC_BATCH_SIZE and SYNC_MARGIN_SECONDS. `tables`
    limits the run to some of `TABLES`; `full` ignores the watermarks (after a
    restore). With `dry_run` nothing is written and no lock is taken: the
    result counts what a real run would write now (a child row whose parent
    the run would copy first counts as deferred). `progress` is called with
    each table's result as it finishes.

    Raises `ConfigError` for unknown providers or tables (`DirectUrlRequiredError`
    when the target is a transaction pooler without a direct URL), `SchemaError` when
    either side lacks the sync schema (migration 0003) or their tables differ,
    and `SyncBusyError` when another sync into `target` holds its lock past
    `wait_s` seconds. A failure part way (a provider going down, a statement
    rejected) returns a result with `ok=False` and the error; the batches
    committed before it stay merged, and the next run carries on from there.
    """
    names = _check_args(db, source, target, tables, batch_size)
    settings = SyncSettings.from_env() if batch_size is None or margin_s is None else SyncSettings()
    batch = batch_size if batch_size is not None else settings.batch_size
    margin = margin_s if margin_s is not None else settings.margin_s
    run = _Run(source, target, batch, dry_run, progress)
    started = time.monotonic()
    error: str | None = None
    try:
        # The lock is session-level and held across batches: the target side is a
        # session of its own (NAME_DIRECT_URL past a transaction pooler, which
        # would leave the lock on a pooled server connection).
        with db.provider_connection(source) as src, (
                db.provider_connection(target) if dry_run else db.session_connection(target, "sync")) as dst:
            if not dry_run:
                acquire_lock(dst, target, wait_s)
            try:
                run.execute(src, dst, names, margin, full)
            finally:
                if not dry_run:
                    release_lock(dst)
    except (ConfigError, SchemaError, SyncBusyError):
        raise
    except DatabaseError as exc:  # a provider gone, or a SyncConflictError: the result says so
        error = str(exc)
    except psycopg.Error as exc:
        error = describe(exc, _password(db, source) or _password(db, target))
    if error is not None:
        error = scrub(error, *(p for p in (_password(db, source), _password(db, target)) if p))
        logger.warning("sync %s -> %s failed: %s", source, target, error)
    duration = time.monotonic() - started
    result = SyncResult.build(source, target, run.results, synced_through=run.synced_through(),
                              lag_s=run.lag_s(duration), duration_s=duration, dry_run=dry_run, error=error)
    logger.info("sync %s", result.summary())
    return result


def _check_args(db: DatabaseManager, source: str, target: str, tables: Sequence[str] | None,
                batch_size: int | None) -> list[str]:
    for name in (source, target):
        if name not in db.providers:
            raise UnknownProviderError(name, db.providers)
    if source == target:
        raise ConfigError(f"cannot sync provider {source} into itself; name two different providers")
    if batch_size is not None and batch_size < 1:
        raise ConfigError(f"batch_size must be at least 1, not {batch_size}")
    if tables is None:
        return list(SYNCED_TABLES)
    unknown = [t for t in tables if t not in SYNCED_TABLES]
    if unknown:
        raise ConfigError(f"unknown table(s) {', '.join(map(repr, unknown))}; tables: {', '.join(SYNCED_TABLES)}")
    return [t for t in SYNCED_TABLES if t in set(tables)]  # keep parents before children


_RELAY_CHUNK = 1 << 20


def _relay(out: psycopg.Copy, into: psycopg.Copy) -> None:
    """Pass COPY data from the source to the target in chunks of about 1 MB (the source sends one row a message)."""
    buffer = bytearray()
    for data in out:
        buffer += data
        if len(buffer) >= _RELAY_CHUNK:
            into.write(buffer)
            buffer = bytearray()
    if buffer:
        into.write(buffer)


def _password(db: DatabaseManager, name: str) -> str | None:
    return db.config.providers[name].password


def _key(mark: Watermark | None) -> tuple[datetime, int, str]:
    """Order watermarks: -infinity first; (ts, no id) means '< ts' and sorts before (ts, id)."""
    if mark is None:
        return (datetime.min, 0, "")  # noqa: DTZ901 - naive UTC, compared with base below
    ts = mark.synced_through
    base = datetime.min if ts is None else ts.replace(tzinfo=None) - (ts.utcoffset() or timedelta(0))  # noqa: DTZ901
    return (base, 0 if mark.after_id is None else 1, str(mark.after_id or ""))


def _earlier(a: datetime | None, b: datetime | None) -> datetime | None:
    """Return the earlier of two timestamps where None is -infinity."""
    if a is None or b is None:
        return None
    return min(a, b)


@dataclass
class _TableRun:
    spec: TableSpec
    mark: Watermark | None
    cursor: tuple[datetime | None, UUID | None]
    rows_copied: int = 0
    conflicts: int = 0
    tombstones: int = 0
    rows_read: int = 0
    deferred: int = 0
    deferred_from: datetime | None = None
    oldest_written: datetime | None = None
    batches: int = 0
    longest_batch_s: float = 0.0

    def watermark(self, safe: datetime, *, done: bool) -> Watermark:
        """Return the watermark the batches so far justify (never behind the one we started from)."""
        limit: datetime | None = safe if not self.deferred else _earlier(safe, self.deferred_from)
        ts, after = self.cursor
        if not done and after is not None and _key(Watermark(ts, after)) < _key(Watermark(limit)):
            mark = Watermark(ts, after)
        else:
            mark = Watermark(limit)
        return mark if self.mark is None or _key(mark) >= _key(self.mark) else self.mark

    def result(self, synced_through: datetime | None) -> TableResult:
        return TableResult(table=self.spec.name, rows_copied=self.rows_copied, conflicts_resolved=self.conflicts,
                           tombstones_applied=self.tombstones, rows_read=self.rows_read, deferred=self.deferred,
                           synced_through=synced_through, batches=self.batches,
                           longest_batch_s=self.longest_batch_s, oldest_written=self.oldest_written)


class _Run:
    """The state of one sync_pair run."""

    def __init__(self, source: str, target: str, batch_size: int, dry_run: bool, progress: Progress | None) -> None:
        self.source, self.target, self.batch_size, self.dry_run = source, target, batch_size, dry_run
        self.progress = progress
        self.results: list[TableResult] = []
        self.horizon: Horizon | None = None
        self.started = time.monotonic()
        self.expected = 0

    def synced_through(self) -> datetime | None:
        if not self.results or len(self.results) < self.expected:
            return None
        marks = [r.synced_through for r in self.results if r.synced_through is not None]
        return min(marks) if len(marks) == len(self.results) else None

    def lag_s(self, duration: float) -> float | None:
        through = self.synced_through()
        if self.horizon is None or through is None:
            return None
        source_now = self.horizon.now + timedelta(seconds=time.monotonic() - self.started)
        return max((source_now - through).total_seconds(), 0.0)

    def execute(self, src: psycopg.Connection, dst: psycopg.Connection, names: list[str], margin: float,
                full: bool) -> None:
        self.expected = len(names)
        self.horizon = horizon = read_horizon(src, margin)
        self.started = time.monotonic()
        src_cols, dst_cols = catalog_columns(src, names), catalog_columns(dst, names)
        src.rollback()
        dst.rollback()
        specs = table_specs(self.source, src_cols, self.target, dst_cols, names)
        self.expected = len(specs)  # pgvector-only tables one side lacks are left out
        marks = {} if full else read_watermarks(dst, self.source, self.target)
        changed = self._changed_tables(src, specs, marks, horizon)
        empty = self._empty_tables(dst, [spec for spec in specs if spec.name in changed])
        idle: list[_TableRun] = []
        for spec in specs:
            mark = marks.get(spec.name)
            run = _TableRun(spec, mark, (mark.synced_through, mark.after_id) if mark else (None, None))
            if spec.name in changed:
                self._sync_table(src, dst, run, horizon, bulk=spec.name in empty)
                final = run.watermark(horizon.safe, done=True)
                self._finish(run, final)
            else:
                idle.append(run)
        if idle and not self.dry_run:
            save_watermarks(dst, self.source, self.target,
                            [(r.spec.name, r.watermark(horizon.safe, done=True)) for r in idle])
            dst.commit()
        for run in idle:
            self._finish(run, run.watermark(horizon.safe, done=True))
        order = {name: i for i, name in enumerate(names)}
        self.results.sort(key=lambda r: order[r.table])

    def _finish(self, run: _TableRun, mark: Watermark) -> None:
        shown = run.mark if self.dry_run else mark  # a dry run moves nothing: report where the target is
        result = run.result(shown.synced_through if shown is not None else None)
        self.results.append(result)
        if self.progress is not None:
            self.progress(result)

    def _changed_tables(self, src: psycopg.Connection, specs: list[TableSpec], marks: dict[str, Watermark],
                        horizon: Horizon) -> set[str]:
        """Return the tables with rows changed since their watermark (one round trip)."""
        parts, params = [], []
        for spec in specs:
            mark = marks.get(spec.name)
            since = mark.synced_through if mark else None
            if mark is not None and mark.after_id is not None:
                cond = sql.SQL("(changed_at, id) > (coalesce(%s::timestamptz, '-infinity'), %s::uuid)")
                params += [since, mark.after_id]
            else:
                cond = sql.SQL("changed_at >= coalesce(%s::timestamptz, '-infinity')")
                params.append(since)
            parts.append(sql.SQL("EXISTS (SELECT FROM {t} WHERE {cond} AND changed_at < %s::timestamptz)").format(
                t=sql.Identifier(spec.name), cond=cond))
            params.append(horizon.until(spec.name, FOLLOWERS))
        row = src.execute(sql.SQL("SELECT ARRAY[{}]").format(sql.SQL(", ").join(parts)), params).fetchone()
        src.rollback()
        flags = row[0] if row else []
        return {spec.name for spec, flag in zip(specs, flags, strict=False) if flag}

    def _empty_tables(self, dst: psycopg.Connection, specs: list[TableSpec]) -> set[str]:
        """Return the tables that are empty on the target (one round trip): they are loaded in bulk batches."""
        if not specs:
            return set()
        parts = [sql.SQL("NOT EXISTS (SELECT FROM {})").format(sql.Identifier(s.name)) for s in specs]
        row = dst.execute(sql.SQL("SELECT ARRAY[{}]").format(sql.SQL(", ").join(parts))).fetchone()
        dst.rollback()
        return {spec.name for spec, flag in zip(specs, row[0] if row else [], strict=False) if flag}

    def _sync_table(self, src: psycopg.Connection, dst: psycopg.Connection, run: _TableRun,
                    horizon: Horizon, *, bulk: bool) -> None:
        spec = run.spec
        prev = run.mark.synced_through if run.mark else None
        merge = merge_sql(spec, dry_run=self.dry_run)
        bulk = bulk and not self.dry_run
        while True:
            batch_size = self.batch_size * BULK_FACTOR if bulk else self.batch_size
            since, after = run.cursor
            copy_out = copy_out_sql(spec, resume=after is not None, batch_size=batch_size)
            params = {"since": since, "after_id": after, "until": horizon.until(spec.name, FOLLOWERS)}
            began = time.monotonic()
            try:
                direct = self._copy_batch(src, dst, spec, params, batch_size) if bulk and not spec.parents else None
                if direct is None and not spec.parents:
                    bulk = False  # the table is no longer empty on the target (or this is no bulk load)
                if direct is not None:
                    batch = direct
                else:
                    batch, bulk_used = self._staged_batch(src, dst, spec, copy_out, params, merge, prev, bulk)
                    bulk = bulk and bulk_used
                if batch.read == 0:
                    dst.rollback()
                    return
                if batch.sessions and not self.dry_run:
                    sessions.recompute(dst, batch.sessions)
                run.cursor = (batch.last_ts, batch.last_id)
                if batch.deferred:
                    run.deferred_from = (batch.deferred_from if not run.deferred
                                         else _earlier(run.deferred_from, batch.deferred_from))
                run.deferred += batch.deferred
                if self.dry_run:
                    dst.rollback()
                else:
                    save_watermarks(dst, self.source, self.target,
                                    [(spec.name, run.watermark(horizon.safe, done=False))])
                    dst.commit()
            except BaseException:
                src.rollback()
                dst.rollback()
                raise
            run.batches += 1
            run.longest_batch_s = max(run.longest_batch_s, time.monotonic() - began)
            run.rows_copied += batch.written
            run.tombstones += batch.tombstones
            run.conflicts += batch.conflicts
            run.rows_read += batch.read
            if batch.oldest_written is not None:
                run.oldest_written = min(filter(None, (run.oldest_written, batch.oldest_written)))
            logger.debug("sync %s -> %s: %s batch of %d rows, %d written", self.source, self.target, spec.name,
                         batch.read, batch.written)
            if batch.read < batch_size:
                return

    def _staged_batch(self, src: psycopg.Connection, dst: psycopg.Connection, spec: TableSpec,
                      copy_out: sql.Composed, params: dict[str, Any], merge: sql.Composed, prev: datetime | None,
                      bulk: bool) -> tuple[_Batch, bool]:
        """Stage the next batch on the target and merge it (bulk: plain insert); return its report.

        The flag is True when the bulk insert was used, False when it fell back to the merge.
        """
        dst.execute(create_stage_sql(spec))
        with src.cursor() as out_cur, dst.cursor() as in_cur:
            with out_cur.copy(copy_out, params) as out, in_cur.copy(copy_in_sql(spec)) as into:
                _relay(out, into)
        src.rollback()
        batch = self._bulk_insert(dst, spec, prev) if bulk else None
        if batch is not None:
            return batch, True
        return self._merge(dst, merge, prev, spec), False

    def _copy_batch(self, src: psycopg.Connection, dst: psycopg.Connection, spec: TableSpec, params: dict[str, Any],
                    batch_size: int) -> _Batch | None:
        """COPY the next batch from the source straight into the table on the target (bulk, no parents).

        Leaves the target transaction open on success; returns None (target transaction rolled back,
        nothing written) when a row is there after all, and the caller stages the batch instead.
        """
        resume = params["after_id"] is not None
        summary = src.execute(batch_summary_sql(spec, resume=resume, batch_size=batch_size), params).fetchone()
        assert summary is not None
        read, tombs, touched, last_ts, last_id, oldest = summary
        if read == 0:
            src.rollback()
            return _NO_BATCH
        window = {**params, "last_ts": last_ts, "last_id": last_id}
        dst.execute(PLAN_SETTINGS)  # the batch transaction starts here: a failed COPY rolls back nothing else
        try:
            with src.cursor() as out_cur, dst.cursor() as in_cur:
                with out_cur.copy(copy_window_sql(spec, resume=resume), window) as out, \
                        in_cur.copy(copy_into_table_sql(spec)) as into:
                    _relay(out, into)
                written = in_cur.rowcount
        except psycopg.errors.UniqueViolation:
            dst.rollback()
            logger.info("sync %s -> %s: %s is no longer empty on the target; merging row by row from here",
                        self.source, self.target, spec.name)
            return None
        finally:
            src.rollback()
        return _Batch(written, tombs, 0, read, last_ts, last_id, 0, None, list(touched), oldest)

    def _bulk_insert(self, dst: psycopg.Connection, spec: TableSpec, prev: datetime | None) -> _Batch | None:
        """Insert the batch with no conflict handling; return None (batch untouched) if a row was there after all."""
        dst.execute("SAVEPOINT agent_factory_bulk")
        try:
            row = dst.execute(merge_sql(spec, dry_run=False, bulk=True), {"prev": prev}).fetchone()
        except psycopg.errors.UniqueViolation:
            dst.execute("ROLLBACK TO SAVEPOINT agent_factory_bulk")
            logger.info("sync %s -> %s: %s is no longer empty on the target; merging row by row from here",
                        self.source, self.target, spec.name)
            return None
        dst.execute("RELEASE SAVEPOINT agent_factory_bulk")
        assert row is not None
        return _Batch(*row)

    def _merge(self, dst: psycopg.Connection, merge: sql.Composed, prev: datetime | None,
               spec: TableSpec) -> _Batch:
        try:
            row = dst.execute(merge, {"prev": prev}).fetchone()
        except psycopg.errors.UniqueViolation as exc:
            constraint = exc.diag.constraint_name or "a unique key"
            raise SyncConflictError(
                f"table {spec.name}: {constraint}: a row with the same natural key has a different id on "
                f"{self.source} and {self.target} (written before ids were deterministic?); "
                "keep one of the two rows and delete the other, then sync again") from None
        assert row is not None
        return _Batch(*row)
