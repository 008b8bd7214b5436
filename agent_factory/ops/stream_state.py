"""What a stream is and how it is doing: names, states, lag, and the direct connections streams use.

See `agent_factory.ops.stream` (the operations) and docs/CONTINUITY.md ("Streams") for the
definitions of each status and of the lag.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import asdict, dataclass
from typing import Any, Literal

import psycopg

from ..core import DatabaseManager
from ..errors import DirectUrlRequiredError, ProviderUnavailableError, StreamPoolerUrlError
from .target import PgTarget, target_for, target_for_url

StreamStatus = Literal["streaming", "catching_up", "paused", "stopped", "absent", "unsupported"]
START_TIMEOUT_S = 30.0  # how long setup/resume wait for a subscription's apply worker to connect
_MAX_IDENTIFIER = 63


@dataclass(frozen=True, kw_only=True)
class StreamState:
    """One backup's stream from the primary: its status, lag and one human line (never a secret)."""

    subscriber: str
    publisher: str
    status: StreamStatus
    lag_seconds: float | None
    lag_bytes: int | None
    detail: str

    def to_dict(self) -> dict[str, object]:
        """Return the state as plain JSON-ready values."""
        return asdict(self)


def stream_name(publisher: str, subscriber: str) -> str:
    """Return the name of the publication, slot and subscription of the stream `publisher` -> `subscriber`."""
    name = f"af_{publisher}_to_{subscriber}"
    if len(name) <= _MAX_IDENTIFIER:
        return name
    return "af_stream_" + hashlib.sha256(name.encode()).hexdigest()[:32]


SUBSCRIPTION_SQL = """
SELECT s.subenabled, w.pid,
       (SELECT count(*) FROM pg_subscription_rel r WHERE r.srsubid = s.oid AND r.srsubstate <> 'r')
FROM pg_subscription s
LEFT JOIN pg_stat_subscription w ON w.subid = s.oid AND w.relid IS NULL
WHERE s.subname = %s AND s.subdbid = (SELECT oid FROM pg_database WHERE datname = current_database())
"""

SLOT_SQL = """
SELECT greatest(pg_wal_lsn_diff(pg_current_wal_lsn(), s.confirmed_flush_lsn), 0)::bigint, s.active,
       extract(epoch FROM r.replay_lag)::float8
FROM pg_replication_slots s
LEFT JOIN pg_stat_replication r ON r.pid = s.active_pid
WHERE s.slot_name = %s
"""


def read_state(db: DatabaseManager, publisher: str, subscriber: str) -> StreamState:
    if not db.config.provider(subscriber).stream:
        return unsupported(publisher, subscriber)
    name = stream_name(publisher, subscriber)

    def state(status: StreamStatus, detail: str, lag_s: float | None = None, lag_b: int | None = None) -> StreamState:
        return StreamState(subscriber=subscriber, publisher=publisher, status=status, lag_seconds=lag_s,
                           lag_bytes=lag_b, detail=detail)

    try:
        with subscriber_target(db, subscriber).connect(purpose="stream status") as conn:
            row = conn.execute(SUBSCRIPTION_SQL, (name,)).fetchone()
    except ProviderUnavailableError as exc:
        return state("stopped", f"{subscriber} is unreachable: {exc.reason}")
    if row is None:
        return state("absent", f"no stream from {publisher}; run `agent-factory stream setup`")
    enabled, pid, syncing = row
    if not enabled:
        return state("paused", f"paused; run `agent-factory stream resume --provider {subscriber}`")
    try:
        with target(db, publisher, "stream status").connect(purpose="stream status") as conn:
            slot = conn.execute(SLOT_SQL, (name,)).fetchone()
    except ProviderUnavailableError as exc:
        return state("stopped", f"{publisher} is unreachable ({exc.reason}); the subscription waits and resumes "
                                "when it is back")
    if slot is None:
        return state("stopped", f"slot {name} is missing on {publisher}; run `agent-factory stream drop` then "
                                "`agent-factory stream setup`")
    lag_bytes, active, replay_lag = slot
    lag_seconds = 0.0 if lag_bytes == 0 else replay_lag
    if pid is None or not active:
        return state("stopped", f"no apply worker connected: {subscriber} cannot reach {publisher} or keeps failing "
                                f"(see {subscriber}'s server log)", None, lag_bytes)
    if syncing:
        return state("catching_up", f"{syncing} table(s) in initial sync", lag_seconds, lag_bytes)
    if lag_seconds is not None and lag_seconds > db.config.stream_lag_alert_seconds:
        limit = db.config.stream_lag_alert_seconds
        return state("catching_up", f"{lag_seconds:.1f} s behind (alert above {limit:g} s)",
                     lag_seconds, lag_bytes)
    shown = "unknown" if lag_seconds is None else f"{lag_seconds:.2f} s"
    return state("streaming", f"streaming from {publisher}, lag {shown}, {lag_bytes} bytes", lag_seconds, lag_bytes)


def started(db: DatabaseManager, publisher: str, subscriber: str) -> StreamState:
    """Return the state once the apply worker has connected (it starts asynchronously), or as it is after
    `START_TIMEOUT_S` (then "stopped", with the reason)."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        state = read_state(db, publisher, subscriber)
        if state.status != "stopped" or time.monotonic() > deadline:
            return state
        time.sleep(0.2)


def unsupported(publisher: str, subscriber: str) -> StreamState:
    return StreamState(subscriber=subscriber, publisher=publisher, status="unsupported", lag_seconds=None,
                       lag_bytes=None, detail=f"{subscriber.upper()}_STREAM=false: follows {publisher} with "
                                              "`agent-factory sync --follow`")


def target(db: DatabaseManager, provider: str, operation: str) -> PgTarget:
    """Return a direct target of `provider`; raise `StreamPoolerUrlError` when only a transaction pooler is known."""
    try:
        return target_for(db, provider, operation)
    except DirectUrlRequiredError:
        raise pooler_error(db, provider) from None


def subscriber_target(db: DatabaseManager, provider: str) -> PgTarget:
    admin = db.config.provider(provider).admin_url
    return target_for_url(db, provider, admin) if admin else target(db, provider, "a stream")


def publisher_conninfo(db: DatabaseManager, provider: str) -> str:
    """Return the conninfo the backup's server uses to reach the primary (direct; it holds the password)."""
    try:
        return db.config.provider(provider).session_url_for("a stream")
    except DirectUrlRequiredError:
        raise pooler_error(db, provider) from None


def pooler_error(db: DatabaseManager, provider: str) -> StreamPoolerUrlError:
    config = db.config.provider(provider)
    prefix = provider.upper()
    return StreamPoolerUrlError(
        f"provider {provider}: {prefix}_DB_URL is a transaction pooler ({config.transaction_pooler}) and logical "
        f"replication needs a direct connection; set {prefix}_DIRECT_URL to the server's direct URL")


def subscription(conn: psycopg.Connection[Any], name: str) -> bool | None:
    """Return whether the subscription `name` is enabled here, None when there is none."""
    row = conn.execute(SUBSCRIPTION_SQL, (name,)).fetchone()
    return None if row is None else bool(row[0])
