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

import logging
import time
from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg import sql

from ..core import DatabaseManager
from ..errors import ConfigError, ProviderUnavailableError, StreamError, StreamPrivilegeError
from ..redact import scrub
from ..replication.tables import SYNCED_TABLES, catalog_columns, table_specs
from .stream_state import (START_TIMEOUT_S, StreamState, StreamStatus, publisher_conninfo, read_state, started,
                           stream_name, subscriber_target, subscription, target, unsupported)

logger = logging.getLogger(__name__)

PUBLISH = "insert, update, delete"

__all__ = ["PUBLISH", "StreamState", "StreamStatus", "drop_streams", "pause_streams", "resume_streams",
           "setup_streams", "stream_name", "stream_states"]

# ---- the API ------------------------------------------------------------------------------


def setup_streams(db: DatabaseManager, *, subscribers: Sequence[str] | None = None) -> list[StreamState]:
    """Make each backup (default: every configured one) follow the primary; idempotent; return their states.

    Creates what is missing (publication, slot, subscription), re-enables a paused
    subscription and refreshes the published tables and columns. A new stream is
    followed by one sync of the primary into the backup (what was there before the slot).
    A provider that cannot be reached gives a "stopped" state naming it, and the other
    backups are still set up. Raises `StreamPoolerUrlError` for a pooler URL, `StreamPrivilegeError` when a role
    lacks a privilege, `StreamError` (or `ProviderUnavailableError`) for anything else,
    `ConfigError` for an unknown provider or the primary named as a subscriber.
    """
    publisher = db.config.primary
    states = []
    for subscriber in _subscribers(db, subscribers):
        if not db.config.provider(subscriber).stream:
            states.append(unsupported(publisher, subscriber))
            continue
        try:
            if _setup_one(db, publisher, subscriber):
                _catch_up(db, publisher, subscriber)
        except ProviderUnavailableError as exc:  # one provider down must not keep the other backups from following
            states.append(StreamState(subscriber=subscriber, publisher=publisher, status="stopped", lag_seconds=None,
                                      lag_bytes=None, detail=f"not set up: {exc}"))
            continue
        states.append(started(db, publisher, subscriber))
    return states


def stream_states(db: DatabaseManager, *, subscribers: Sequence[str] | None = None) -> list[StreamState]:
    """Return each backup's stream state; an unreachable end is reported in the state, not raised.

    Raises `ConfigError` for an unknown provider or a pooler URL without a direct one.
    """
    return [read_state(db, db.config.primary, s) for s in _subscribers(db, subscribers)]


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
    when the primary is back; likewise an unreachable backup keeps its subscription while
    the primary's slot and publication go. Raises `StreamError` when a statement fails.
    """
    publisher = db.config.primary
    states = []
    for subscriber in _subscribers(db, subscribers):
        name = stream_name(publisher, subscriber)
        detail = "no stream"
        try:
            with subscriber_target(db, subscriber).connect(purpose="stream drop") as conn:
                if subscription(conn, name) is not None:
                    ident = sql.Identifier(name)
                    _run(conn, subscriber, sql.SQL("ALTER SUBSCRIPTION {} DISABLE").format(ident))
                    _run(conn, subscriber, sql.SQL("ALTER SUBSCRIPTION {} SET (slot_name = NONE)").format(ident))
                    _run(conn, subscriber, sql.SQL("DROP SUBSCRIPTION {}").format(ident))
                    logger.info("stream %s -> %s: dropped subscription %s", publisher, subscriber, name)
        except ProviderUnavailableError:  # a backup gone for good must not keep the primary's slot holding WAL
            detail = (f"{subscriber} is unreachable, so its subscription {name} is left there (it fails without "
                      "its slot): run `agent-factory stream drop` again when it is back")
        try:
            with target(db, publisher, "stream drop").connect(purpose="stream drop") as conn:
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
    conninfo = publisher_conninfo(db, publisher)
    secret = db.config.provider(publisher).password or ""
    with target(db, publisher, "stream setup").connect(purpose="stream setup") as pconn, \
            subscriber_target(db, subscriber).connect(purpose="stream setup") as sconn:
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
        found = subscription(sconn, name)
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
            conn.execute(sql.SQL("SET " + setting))  # constant text
        except psycopg.errors.InsufficientPrivilege:
            pass


def _drop_slot(conn: psycopg.Connection[Any], provider: str, name: str) -> None:
    """Drop the slot `name` once no walsender uses it (a dropped subscription's ends within seconds).

    Raises `StreamError` when it is still in use after `START_TIMEOUT_S`.
    """
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        row = conn.execute("SELECT active FROM pg_replication_slots WHERE slot_name = %s", (name,)).fetchone()
        if row is None:
            return
        if not row[0] or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    if row[0]:
        raise StreamError(f"provider {provider}: replication slot {name} is in use by a subscriber; drop that "
                          "subscription first (`agent-factory stream drop` on the configuration that made it)")
    _run(conn, provider, sql.SQL("SELECT pg_drop_replication_slot({})").format(sql.Literal(name)))
    logger.info("provider %s: dropped replication slot %s", provider, name)


def _toggle(db: DatabaseManager, subscribers: Sequence[str] | None, *, enable: bool) -> list[StreamState]:
    publisher = db.config.primary
    verb = "ENABLE" if enable else "DISABLE"
    states = []
    for subscriber in _subscribers(db, subscribers):
        name = stream_name(publisher, subscriber)
        with subscriber_target(db, subscriber).connect(purpose="stream " + verb.lower()) as conn:
            if subscription(conn, name) is not None:
                _run(conn, subscriber, sql.SQL("ALTER SUBSCRIPTION {} " + verb).format(sql.Identifier(name)))
                logger.info("stream %s -> %s: %s", publisher, subscriber, "resumed" if enable else "paused")
        states.append(started(db, publisher, subscriber) if enable else read_state(db, publisher, subscriber))
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


def _run(conn: psycopg.Connection[Any], provider: str, statement: sql.SQL | sql.Composed, *secrets: str) -> None:
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
