"""Streams: native logical replication from the primary into each backup (docs/CONTINUITY.md, "Streams").

One stream per backup, all three objects named `af_<primary>_to_<backup>` (`stream_name`):
a publication on the primary, a replication slot on the primary and a subscription on the backup.
A publication per backup, because its column lists are what both ends have in common, as the sync's
`table_specs` decides: a backup without pgvector gets the rows without their embeddings and no
`langgraph_store_vectors`. `changed_at` (local to each database) and the derived `message_count`/
`last_active` (rebuilt on the backup by migration 0007's trigger) are never streamed.
`publish = 'insert, update, delete'`: no TRUNCATE ever crosses.

The subscription is created with `copy_data = false`; once its slot exists (every change from then on
is streamed) the sync engine merges the primary into the backup once, which brings what was there
before, watermarks and derived figures included, and resolves rows already on the backup by last
writer wins (migration 0007 does the same for streamed rows). Both use direct URLs: a transaction
pooler is refused (`StreamPoolerUrlError`). The subscription is created through NAME_ADMIN_URL when it
is set (PostgreSQL 15 lets only a superuser create one), else the backup's direct URL.

Lag: `lag_bytes` is the primary's WAL not yet confirmed applied by the backup (`pg_current_wal_lsn()`
minus the slot's `confirmed_flush_lsn`); `lag_seconds` is 0 when that is 0, else the primary's
`replay_lag` for this stream (the time from a commit being flushed on the primary to the backup
reporting it applied, i.e. until a committed row is visible there), None when unknown.

The subscription's connection string holds the primary's password: it is passed to the server as a
literal and never appears in a message, log line, repr or state returned here.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import psycopg
from psycopg import sql

from ..core import DatabaseManager
from ..errors import (ConfigError, DirectUrlRequiredError, ProviderUnavailableError, StreamError,
                      StreamPoolerUrlError, StreamPrivilegeError)
from ..redact import scrub
from ..replication.tables import SYNCED_TABLES, catalog_columns, table_specs
from .pgtools import PgTarget, target_for, target_for_url

logger = logging.getLogger(__name__)

__all__ = ["PUBLISH", "StreamState", "StreamStatus", "drop_streams", "pause_streams", "resume_streams",
           "setup_streams", "stream_name", "stream_states"]

StreamStatus = Literal["streaming", "catching_up", "paused", "stopped", "absent", "unsupported"]
PUBLISH = "insert, update, delete"
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


# ---- the API ------------------------------------------------------------------------------


def setup_streams(db: DatabaseManager, *, subscribers: Sequence[str] | None = None) -> list[StreamState]:
    """Make each backup (default: every configured one) follow the primary; idempotent; return their states.

    Creates what is missing (publication, slot, subscription), re-enables a paused
    subscription and refreshes the published tables and columns. A new stream is
    followed by one sync of the primary into the backup (what was there before the slot).
    Raises `StreamPoolerUrlError` for a pooler URL, `StreamPrivilegeError` when a role
    lacks a privilege, `StreamError` (or `ProviderUnavailableError`) for anything else,
    `ConfigError` for an unknown provider or the primary named as a subscriber.
    """
    publisher = db.config.primary
    states = []
    for subscriber in _subscribers(db, subscribers):
        if not db.config.provider(subscriber).stream:
            states.append(_unsupported(publisher, subscriber))
            continue
        if _setup_one(db, publisher, subscriber):
            _catch_up(db, publisher, subscriber)
        states.append(_started(db, publisher, subscriber))
    return states


def stream_states(db: DatabaseManager, *, subscribers: Sequence[str] | None = None) -> list[StreamState]:
    """Return each backup's stream state; an unreachable end is reported in the state, not raised.

    Raises `ConfigError` for an unknown provider or a pooler URL without a direct one.
    """
    return [_state(db, db.config.primary, s) for s in _subscribers(db, subscribers)]


def pause_streams(db: DatabaseManager, *, subscribers: Sequence[str] | None = None) -> list[StreamState]:
    """Disable each backup's subscription (its slot keeps the primary's changes for `resume`); return the states.

    Raises `StreamError`/`ProviderUnavailableError` when a backup cannot be changed.
    """
    return _toggle(db, subscribers, enable=False)


def resume_streams(db: DatabaseManager, *, subscribers: Sequence[str] | None = None) -> list[StreamState]:
    """Enable each backup's subscription again; return the states. Raises as `pause_streams`."""
    return _toggle(db, subscribers, enable=True)


def drop_streams(db: DatabaseManager, *, subscribers: Sequence[str] | None = None) -> list[StreamState]:
    """Drop each backup's subscription, then its slot and publication on the primary; return the states.

    Idempotent. When the primary is unreachable the subscription is still dropped and
    the state's detail says the slot is left there (it holds WAL): run `drop` again
    when the primary is back. Raises `StreamError`/`ProviderUnavailableError` when a
    backup cannot be reached.
    """
    publisher = db.config.primary
    states = []
    for subscriber in _subscribers(db, subscribers):
        name = stream_name(publisher, subscriber)
        with _subscriber_target(db, subscriber).connect(purpose="stream drop") as conn:
            if _subscription(conn, name) is not None:
                ident = sql.Identifier(name)
                _run(conn, subscriber, sql.SQL("ALTER SUBSCRIPTION {} DISABLE").format(ident))
                _run(conn, subscriber, sql.SQL("ALTER SUBSCRIPTION {} SET (slot_name = NONE)").format(ident))
                _run(conn, subscriber, sql.SQL("DROP SUBSCRIPTION {}").format(ident))
                logger.info("stream %s -> %s: dropped subscription %s", publisher, subscriber, name)
        detail = "no stream"
        try:
            with _target(db, publisher, "stream drop").connect(purpose="stream drop") as conn:
                _drop_slot(conn, publisher, name)
                _run(conn, publisher, sql.SQL("DROP PUBLICATION IF EXISTS {}").format(sql.Identifier(name)))
        except ProviderUnavailableError:
            detail = (f"subscription dropped; {publisher} is unreachable, so its slot {name} (which holds WAL) "
                      "is left there: run `agent-factory stream drop` again when it is back")
        states.append(StreamState(subscriber=subscriber, publisher=publisher, status="absent", lag_seconds=None,
                                  lag_bytes=None, detail=detail))
    return states


# ---- setup ------------------------------------------------------------------------------


def _setup_one(db: DatabaseManager, publisher: str, subscriber: str) -> bool:
    """Create or refresh one stream; return whether its subscription was created now."""
    name = stream_name(publisher, subscriber)
    conninfo = _publisher_conninfo(db, publisher)
    secret = db.config.provider(publisher).password or ""
    with _target(db, publisher, "stream setup").connect(purpose="stream setup") as pconn, \
            _subscriber_target(db, subscriber).connect(purpose="stream setup") as sconn:
        _check_publisher(pconn, publisher)
        _check_subscriber(sconn, subscriber)
        specs = table_specs(publisher, catalog_columns(pconn, SYNCED_TABLES), subscriber,
                            catalog_columns(sconn, SYNCED_TABLES), SYNCED_TABLES)
        tables = sql.SQL(", ").join(
            sql.SQL("{} ({})").format(sql.Identifier(s.name), sql.SQL(", ").join(map(sql.Identifier, s.columns)))
            for s in specs)
        ident = sql.Identifier(name)
        if pconn.execute("SELECT FROM pg_publication WHERE pubname = %s", (name,)).fetchone() is None:
            _run(pconn, publisher, sql.SQL("CREATE PUBLICATION {} FOR TABLE {} WITH (publish = {})").format(
                ident, tables, sql.Literal(PUBLISH)))
            logger.info("stream %s -> %s: created publication %s", publisher, subscriber, name)
        else:
            _run(pconn, publisher, sql.SQL("ALTER PUBLICATION {} SET TABLE {}").format(ident, tables))
        _run(sconn, subscriber, sql.SQL("SELECT af_stream_prepare()"))
        found = _subscription(sconn, name)
        if found is None:
            _drop_slot(pconn, publisher, name)  # a slot left by an interrupted drop would replay stale changes
            _quiet_statement_logs(sconn)
            _run(sconn, subscriber, sql.SQL(
                "CREATE SUBSCRIPTION {} CONNECTION {} PUBLICATION {} "
                "WITH (copy_data = false, slot_name = {}, create_slot = true, enabled = true)").format(
                ident, sql.Literal(conninfo), ident, sql.Literal(name)), secret)
            logger.info("stream %s -> %s: created subscription %s", publisher, subscriber, name)
            return True
        if not found:
            _run(sconn, subscriber, sql.SQL("ALTER SUBSCRIPTION {} ENABLE").format(ident))
        _run(sconn, subscriber, sql.SQL("ALTER SUBSCRIPTION {} REFRESH PUBLICATION WITH (copy_data = false)")
             .format(ident), secret)
    return False


def _catch_up(db: DatabaseManager, publisher: str, subscriber: str) -> None:
    """Merge the primary into the backup once (what predates the slot); raise `StreamError` when it fails."""
    from ..state.store import StateStore
    from .sync import sync

    report = sync(db, publisher, subscriber, store=StateStore(db.config.state_dir))
    if not report.ok:
        raise StreamError(f"stream {publisher} -> {subscriber} is set up, but the first sync of {publisher} into "
                          f"{subscriber} failed ({report.summary()}); run `agent-factory sync --from {publisher} "
                          f"--to {subscriber}`")


def _check_publisher(conn: psycopg.Connection[Any], provider: str) -> None:
    row = conn.execute("SELECT current_setting('wal_level'), current_user, rolreplication OR rolsuper "
                       "FROM pg_roles WHERE rolname = current_user").fetchone()
    assert row is not None
    wal_level, user, may_replicate = row
    if wal_level != "logical":
        raise StreamError(f"provider {provider} runs with wal_level={wal_level}; a stream's publisher needs "
                          "wal_level=logical (set it and restart; on Neon enable logical replication)")
    if not may_replicate:
        raise StreamPrivilegeError(f"provider {provider}: role {user} lacks the REPLICATION attribute a stream's "
                                   f"publisher needs; as an admin run: ALTER ROLE {user} REPLICATION")


def _check_subscriber(conn: psycopg.Connection[Any], provider: str) -> None:
    row = conn.execute(
        "SELECT to_regproc('af_stream_prepare') IS NOT NULL, current_user, rolsuper, "
        "current_setting('server_version_num')::int >= 160000 "
        "AND coalesce(pg_has_role(current_user, to_regrole('pg_create_subscription'), 'MEMBER'), false) "
        "FROM pg_roles WHERE rolname = current_user").fetchone()
    assert row is not None
    migrated, user, superuser, may_subscribe = row
    if not migrated:
        raise StreamError(f"provider {provider} lacks migration 0007 (streams); run `agent-factory schema deploy "
                          "--all` (subscribers first)")
    if not (superuser or may_subscribe):
        prefix = provider.upper()
        raise StreamPrivilegeError(
            f"provider {provider}: role {user} may not create a subscription (PostgreSQL 15 needs a superuser, 16 a "
            f"member of pg_create_subscription); set {prefix}_ADMIN_URL to a role that may, or {prefix}_STREAM=false "
            "to follow with `agent-factory sync --follow`")


def _quiet_statement_logs(conn: psycopg.Connection[Any]) -> None:
    """Keep CREATE SUBSCRIPTION (it holds a password) out of the server log where the role may say so."""
    for setting in ("log_statement = 'none'", "log_min_error_statement = 'panic'"):
        try:
            conn.execute(sql.SQL("SET " + setting))  # type: ignore[arg-type]  # constant text
        except psycopg.errors.InsufficientPrivilege:
            pass


def _drop_slot(conn: psycopg.Connection[Any], provider: str, name: str) -> None:
    row = conn.execute("SELECT active FROM pg_replication_slots WHERE slot_name = %s", (name,)).fetchone()
    if row is None:
        return
    if row[0]:
        raise StreamError(f"provider {provider}: replication slot {name} is in use by a subscriber; drop that "
                          "subscription first (`agent-factory stream drop` on the configuration that made it)")
    _run(conn, provider, sql.SQL("SELECT pg_drop_replication_slot({})").format(sql.Literal(name)))
    logger.info("provider %s: dropped replication slot %s", provider, name)


# ---- state --------------------------------------------------------------------------------

_SUBSCRIPTION_SQL = """
SELECT s.subenabled, w.pid,
       (SELECT count(*) FROM pg_subscription_rel r WHERE r.srsubid = s.oid AND r.srsubstate <> 'r')
FROM pg_subscription s
LEFT JOIN pg_stat_subscription w ON w.subid = s.oid AND w.relid IS NULL
WHERE s.subname = %s AND s.subdbid = (SELECT oid FROM pg_database WHERE datname = current_database())
"""

_SLOT_SQL = """
SELECT greatest(pg_wal_lsn_diff(pg_current_wal_lsn(), s.confirmed_flush_lsn), 0)::bigint, s.active,
       extract(epoch FROM r.replay_lag)::float8
FROM pg_replication_slots s
LEFT JOIN pg_stat_replication r ON r.pid = s.active_pid
WHERE s.slot_name = %s
"""


def _state(db: DatabaseManager, publisher: str, subscriber: str) -> StreamState:
    if not db.config.provider(subscriber).stream:
        return _unsupported(publisher, subscriber)
    name = stream_name(publisher, subscriber)

    def state(status: StreamStatus, detail: str, lag_s: float | None = None, lag_b: int | None = None) -> StreamState:
        return StreamState(subscriber=subscriber, publisher=publisher, status=status, lag_seconds=lag_s,
                           lag_bytes=lag_b, detail=detail)

    try:
        with _subscriber_target(db, subscriber).connect(purpose="stream status") as conn:
            row = conn.execute(_SUBSCRIPTION_SQL, (name,)).fetchone()
    except ProviderUnavailableError as exc:
        return state("stopped", f"{subscriber} is unreachable: {exc.reason}")
    if row is None:
        return state("absent", f"no stream from {publisher}; run `agent-factory stream setup`")
    enabled, pid, syncing = row
    if not enabled:
        return state("paused", f"paused; run `agent-factory stream resume --provider {subscriber}`")
    try:
        with _target(db, publisher, "stream status").connect(purpose="stream status") as conn:
            slot = conn.execute(_SLOT_SQL, (name,)).fetchone()
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
        return state("catching_up", f"{lag_seconds:.1f} s behind (alert above {db.config.stream_lag_alert_seconds:g} s)",
                     lag_seconds, lag_bytes)
    shown = "unknown" if lag_seconds is None else f"{lag_seconds:.2f} s"
    return state("streaming", f"streaming from {publisher}, lag {shown}, {lag_bytes} bytes", lag_seconds, lag_bytes)


def _started(db: DatabaseManager, publisher: str, subscriber: str) -> StreamState:
    """Return the state once the apply worker has connected (it starts asynchronously), or as it is after
    `START_TIMEOUT_S` (then "stopped", with the reason)."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        state = _state(db, publisher, subscriber)
        if state.status != "stopped" or time.monotonic() > deadline:
            return state
        time.sleep(0.2)


def _unsupported(publisher: str, subscriber: str) -> StreamState:
    return StreamState(subscriber=subscriber, publisher=publisher, status="unsupported", lag_seconds=None,
                       lag_bytes=None, detail=f"{subscriber.upper()}_STREAM=false: follows {publisher} with "
                                              "`agent-factory sync --follow`")


def _toggle(db: DatabaseManager, subscribers: Sequence[str] | None, *, enable: bool) -> list[StreamState]:
    publisher = db.config.primary
    verb = "ENABLE" if enable else "DISABLE"
    states = []
    for subscriber in _subscribers(db, subscribers):
        name = stream_name(publisher, subscriber)
        with _subscriber_target(db, subscriber).connect(purpose="stream " + verb.lower()) as conn:
            if _subscription(conn, name) is not None:
                _run(conn, subscriber, sql.SQL("ALTER SUBSCRIPTION {} " + verb).format(sql.Identifier(name)))
                logger.info("stream %s -> %s: %s", publisher, subscriber, "resumed" if enable else "paused")
        states.append(_started(db, publisher, subscriber) if enable else _state(db, publisher, subscriber))
    return states


# ---- helpers ------------------------------------------------------------------------------


def _subscribers(db: DatabaseManager, names: Sequence[str] | None) -> list[str]:
    """Return the backups named (default: every configured provider but the primary), checked."""
    primary = db.config.primary
    if names is None:
        return [n for n in db.config.failover_order if n != primary]
    for name in names:
        db.config.provider(name)
        if name == primary:
            raise ConfigError(f"{name} is the primary: it publishes the stream and cannot subscribe to itself; "
                              "name a backup")
    return list(dict.fromkeys(names))


def _target(db: DatabaseManager, provider: str, operation: str) -> PgTarget:
    """Return a direct target of `provider`; raise `StreamPoolerUrlError` when only a transaction pooler is known."""
    try:
        return target_for(db, provider, operation)
    except DirectUrlRequiredError:
        raise _pooler_error(db, provider) from None


def _subscriber_target(db: DatabaseManager, provider: str) -> PgTarget:
    admin = db.config.provider(provider).admin_url
    return target_for_url(db, provider, admin) if admin else _target(db, provider, "a stream")


def _publisher_conninfo(db: DatabaseManager, provider: str) -> str:
    """Return the conninfo the backup's server uses to reach the primary (direct; it holds the password)."""
    try:
        return db.config.provider(provider).session_url_for("a stream")
    except DirectUrlRequiredError:
        raise _pooler_error(db, provider) from None


def _pooler_error(db: DatabaseManager, provider: str) -> StreamPoolerUrlError:
    config = db.config.provider(provider)
    prefix = provider.upper()
    return StreamPoolerUrlError(
        f"provider {provider}: {prefix}_DB_URL is a transaction pooler ({config.transaction_pooler}) and logical "
        f"replication needs a direct connection; set {prefix}_DIRECT_URL to the server's direct URL")


def _subscription(conn: psycopg.Connection[Any], name: str) -> bool | None:
    """Return whether the subscription `name` is enabled here, None when there is none."""
    row = conn.execute(_SUBSCRIPTION_SQL, (name,)).fetchone()
    return None if row is None else bool(row[0])


def _run(conn: psycopg.Connection[Any], provider: str, statement: sql.Composable, *secrets: str) -> None:
    """Run one statement; raise `StreamPrivilegeError`/`StreamError` with the server's words, secrets scrubbed."""
    try:
        conn.execute(statement)
    except psycopg.errors.InsufficientPrivilege as exc:
        raise StreamPrivilegeError(f"provider {provider}: {_words(exc, secrets)}; grant the privilege or set "
                                   f"{provider.upper()}_ADMIN_URL to a role that has it") from None
    except psycopg.OperationalError as exc:
        if conn.closed:
            raise ProviderUnavailableError(provider, _words(exc, secrets)) from None
        raise StreamError(f"provider {provider}: {_words(exc, secrets)}") from None
    except psycopg.Error as exc:
        raise StreamError(f"provider {provider}: {_words(exc, secrets)}") from None


def _words(exc: psycopg.Error, secrets: Sequence[str]) -> str:
    message = exc.diag.message_primary or str(exc).strip().splitlines()[0]
    return scrub(message, *secrets)
