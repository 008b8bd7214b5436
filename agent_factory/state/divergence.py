"""Divergence in the state store: rows a backup held that the primary lacked, per backup per monitor run.

The monitor's sync step merges every healthy backup into the primary before it
copies the primary into the backups; what each of those merges found is one
row here (`rows` None when it could not run). The status page and `verify`
read the newest run's rows.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from .store import parse_ts, ts


@dataclass(frozen=True)
class Divergence:
    """What one backup held that the primary lacked (or held older) when a merge or a dry run looked."""

    backup: str
    primary: str
    at: datetime
    rows: int | None  # None: the merge could not run (see `error`)
    oldest_at: datetime | None  # the writer's clock of the oldest such row
    merged: bool  # True when the rows were merged into the primary in the same step
    error: str | None = None
    run_id: int | None = None

    def age(self, now: datetime) -> timedelta | None:
        """How long the oldest such row had been missing from the primary at `now` (None: no such row)."""
        return None if self.oldest_at is None else max(now - self.oldest_at, timedelta(0))

    def summary(self, now: datetime) -> str:
        """Return one sentence, e.g. "backup supabase held 12 rows the primary neon lacked, the oldest 4.0 min old"."""
        if self.rows is None:
            return f"could not compare backup {self.backup} with the primary {self.primary}: {self.error}"
        if not self.rows:
            return f"backup {self.backup} holds no row the primary {self.primary} lacks"
        age = self.age(now)
        text = f"backup {self.backup} held {self.rows} rows the primary {self.primary} lacked"
        if age is not None:
            text += f", the oldest {_minutes(age)} old"
        if self.merged:
            text += f"; merged into {self.primary}"
        elif self.error:
            text += f"; merging failed: {self.error}"
        return text


def _minutes(age: timedelta) -> str:
    seconds = age.total_seconds()
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


_COLUMNS = ("run_id", "at", "backup", "primary_provider", "rows", "oldest_at", "merged", "error")


def add_divergence(conn: sqlite3.Connection, items: list[Divergence]) -> None:
    """Store one run's divergence rows in the caller's transaction."""
    conn.executemany(
        f"INSERT INTO divergence ({', '.join(_COLUMNS)}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [(d.run_id, ts(d.at), d.backup, d.primary, d.rows, ts(d.oldest_at) if d.oldest_at else None,
          int(d.merged), d.error[:1000] if d.error else None) for d in items])


def latest_divergence(conn: sqlite3.Connection) -> list[Divergence]:
    """Return the newest divergence row of each (backup, primary), ordered by backup (read-only connection is fine)."""
    rows = conn.execute(
        f"SELECT {', '.join(_COLUMNS)} FROM divergence WHERE id IN "
        "(SELECT MAX(id) FROM divergence GROUP BY backup, primary_provider) ORDER BY backup").fetchall()
    return [_divergence(r) for r in rows]


def _divergence(row: tuple[Any, ...]) -> Divergence:
    v = dict(zip(_COLUMNS, row, strict=True))
    at, oldest = parse_ts(v["at"]), parse_ts(v["oldest_at"])
    assert at is not None
    return Divergence(v["backup"], v["primary_provider"], at, v["rows"], oldest, bool(v["merged"]), v["error"],
                      v["run_id"])
