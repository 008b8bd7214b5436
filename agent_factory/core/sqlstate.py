"""Decide what an error means for routing, by SQLSTATE rather than exception class."""

from __future__ import annotations

import enum
import re

import psycopg

from ..redact import scrub


class Action(enum.Enum):
    """What the manager does with an error."""

    FAILOVER = "failover"  # the provider cannot serve: try the next one
    RETRY = "retry"  # serialization failure or deadlock: retry on the same provider
    RAISE = "raise"  # data, constraint, syntax, permission or authentication error: the caller's problem


AUTH_SQLSTATES = frozenset({"28P01", "28000"})  # invalid_password, invalid_authorization_specification
_AUTH_MESSAGE = re.compile(
    r"password authentication failed|authentication failed for user|no pg_hba\.conf entry"
    r"|role \"[^\"]*\" does not exist|SASL authentication failed|password is required",
    re.IGNORECASE,
)


def is_auth_failure(exc: BaseException) -> bool:
    """Return whether `exc` is the server refusing the credentials (28P01/28000), not an outage."""
    if not isinstance(exc, psycopg.Error):
        return False
    if exc.sqlstate in AUTH_SQLSTATES:
        return True
    return exc.sqlstate is None and isinstance(exc, psycopg.OperationalError) and bool(_AUTH_MESSAGE.search(str(exc)))


_SHUTDOWN = {"57P01", "57P02", "57P03"}  # admin_shutdown, crash_shutdown, cannot_connect_now
_RETRY = {"40001", "40P01"}  # serialization_failure, deadlock_detected


def classify(exc: BaseException) -> Action:
    """Return the routing action for an exception raised while talking to a provider."""
    if not isinstance(exc, psycopg.Error) or is_auth_failure(exc):
        return Action.RAISE  # a refused login is never an outage (see core.credentials)
    state = exc.sqlstate
    if state is None:
        # No SQLSTATE: the network or the client connection failed, unless it is
        # a client-side programming error (wrong parameters and the like).
        if isinstance(exc, (psycopg.OperationalError, psycopg.InterfaceError)):
            return Action.FAILOVER
        return Action.RAISE
    if state.startswith("08") or state in _SHUTDOWN:
        return Action.FAILOVER
    if state in _RETRY:
        return Action.RETRY
    return Action.RAISE


def describe(exc: BaseException, password: str | None = None) -> str:
    """Return a short, credential-free reason for a provider failure."""
    text = str(exc).strip()
    lowered = text.lower()
    if "connection refused" in lowered:
        return "connection refused"
    if "timeout expired" in lowered or "timed out" in lowered:
        return "connection timed out"
    if "server closed the connection" in lowered or "consuming input failed" in lowered:
        return "server closed the connection"
    if "not yet accepting connections" in lowered or "is starting up" in lowered:
        return "server is starting up"
    if "shutting down" in lowered:
        return "server is shutting down"
    if "password authentication failed" in lowered:
        return "password authentication failed"
    if "could not translate host name" in lowered or "name or service not known" in lowered:
        return "host name not found (DNS)"
    first = text.splitlines()[0] if text else type(exc).__name__
    state = getattr(exc, "sqlstate", None)
    prefix = f"[{state}] " if state else ""
    return scrub(prefix + first, password or "")[:200]
