"""Stream samples in the state store: each backup's logical-replication stream as one monitor run saw it.

The monitor records one row per backup per run (state migration 7) from
`ops.stream.stream_states`; the status page and the lag alert read the newest
row of each backup, so the page never has to reach a provider to show a lag.
Rows are plain values (the state layer does not import `ops`).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .store import parse_ts, ts

# Statuses in which the backup is kept warm by its stream (otherwise by sync: paused, absent, unsupported).
STREAMING_STATUSES = frozenset({"streaming", "catching_up", "stopped"})


@dataclass(frozen=True, kw_only=True)
class StreamSample:
    """One backup's stream at one monitor run: its status (see `ops.stream.StreamStatus`) and lag."""

    at: datetime
    subscriber: str
    publisher: str
    status: str
    lag_seconds: float | None
    lag_bytes: int | None
    detail: str
    run_id: int | None = None

    @property
    def streams(self) -> bool:
        """True when the stream is what keeps the backup warm (set up and not paused)."""
        return self.status in STREAMING_STATUSES


_COLUMNS = ("run_id", "at", "subscriber", "publisher", "status", "lag_seconds", "lag_bytes", "detail")


def add_stream_samples(conn: sqlite3.Connection, items: list[StreamSample]) -> None:
    """Store one run's stream samples in the caller's transaction."""
    conn.executemany(
        f"INSERT INTO stream_samples ({', '.join(_COLUMNS)}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [(s.run_id, ts(s.at), s.subscriber, s.publisher, s.status, s.lag_seconds, s.lag_bytes, s.detail[:1000])
         for s in items])


def latest_stream_samples(conn: sqlite3.Connection) -> list[StreamSample]:
    """Return the newest sample of each subscriber, ordered by subscriber (a read-only connection is fine)."""
    rows = conn.execute(
        f"SELECT {', '.join(_COLUMNS)} FROM stream_samples WHERE id IN "
        "(SELECT MAX(id) FROM stream_samples GROUP BY subscriber) ORDER BY subscriber").fetchall()
    return [_sample(r) for r in rows]


def prune_stream_samples(conn: sqlite3.Connection, before: datetime) -> int:
    """Delete samples older than `before` but the newest of each subscriber; return how many went."""
    return conn.execute(
        "DELETE FROM stream_samples WHERE at < ? AND id NOT IN "
        "(SELECT MAX(id) FROM stream_samples GROUP BY subscriber)", (ts(before),)).rowcount


def _sample(row: tuple[Any, ...]) -> StreamSample:
    v = dict(zip(_COLUMNS, row, strict=True))
    at = parse_ts(v["at"])
    assert at is not None
    return StreamSample(at=at, subscriber=v["subscriber"], publisher=v["publisher"], status=v["status"],
                        lag_seconds=v["lag_seconds"], lag_bytes=v["lag_bytes"], detail=v["detail"],
                        run_id=v["run_id"])
