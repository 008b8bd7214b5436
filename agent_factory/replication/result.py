"""What a sync did: per table and per pair."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, kw_only=True)
class TableResult:
    """One table of one sync: rows written, conflicts met, tombstones written, rows deferred."""

    table: str
    rows_copied: int = 0  # rows inserted or overwritten in the target (with dry_run: that would be)
    conflicts_resolved: int = 0  # rows both sides changed since the pair's last sync, settled by the rule
    tombstones_applied: int = 0  # of rows_copied, deletions
    rows_read: int = 0  # changed rows read from the source
    deferred: int = 0  # rows held back: their parent row is not on the target yet (taken next run)
    synced_through: datetime | None = None  # None: nothing synced yet
    batches: int = 0
    longest_batch_s: float = 0.0  # the longest batch transaction on the target: what a writer may wait at most
    oldest_written: datetime | None = None  # the oldest updated_at (writer's clock) of the rows written


@dataclass(frozen=True)
class SyncResult:
    """One sync of `source` into `target`.

    `synced_through` is the source time up to which the target now holds every
    change (the earliest table watermark); `lag_s` is how far that is behind the
    source's clock at the end of the run. `ok` is False when the run failed part
    way; the batches committed before the failure stay merged and `error` says why.
    """

    source: str
    target: str
    tables: tuple[TableResult, ...]
    rows_copied: int
    conflicts_resolved: int
    tombstones_applied: int
    synced_through: datetime | None
    lag_s: float | None
    duration_s: float
    dry_run: bool
    ok: bool
    error: str | None = None

    @classmethod
    def build(cls, source: str, target: str, tables: Sequence[TableResult], *, synced_through: datetime | None,
              lag_s: float | None, duration_s: float, dry_run: bool, error: str | None = None) -> SyncResult:
        """Return the result with its totals summed from `tables`."""
        return cls(source, target, tuple(tables), sum(t.rows_copied for t in tables),
                   sum(t.conflicts_resolved for t in tables), sum(t.tombstones_applied for t in tables),
                   synced_through, lag_s, duration_s, dry_run, error is None, error)

    @property
    def oldest_written(self) -> datetime | None:
        """The oldest `updated_at` (the writer's clock) of the rows written (with dry_run: that would be)."""
        found = [t.oldest_written for t in self.tables if t.oldest_written is not None]
        return min(found) if found else None

    @property
    def rows_read(self) -> int:
        """Changed rows read from the source, over all tables."""
        return sum(t.rows_read for t in self.tables)

    def summary(self) -> str:
        """Return one sentence, e.g. "neon -> supabase: 12 rows copied, 1 conflict resolved, ..."."""
        verb = "would copy" if self.dry_run else "copied"
        text = (f"{self.source} -> {self.target}: {self.rows_copied} rows {verb}, "
                f"{self.conflicts_resolved} conflicts resolved, {self.tombstones_applied} tombstones applied")
        if self.lag_s is not None:
            text += f", lag {self.lag_s:.1f} s"
        deferred = sum(t.deferred for t in self.tables)
        if deferred:
            text += f", {deferred} rows deferred to the next run (parent row not there yet)"
        text += f" ({self.duration_s:.2f} s)"
        if self.error:
            text += f"; FAILED: {self.error}"
        return text
