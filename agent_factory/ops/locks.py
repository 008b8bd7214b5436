"""One backup or restore per provider at a time, on this host and across hosts.

`operation_lock` takes two locks, in this order, and fails at once (never waits)
with `OperationLockedError` naming the holder when either is taken:

1. an exclusive `flock` on `<state_dir>/locks/<provider>.lock`, which records the
   holder (operation, pid, host, start time) for the error message; the kernel
   drops it when the holding process dies;
2. a session-level `pg_try_advisory_lock(ADVISORY_KEY)` on the provider's
   database, held by a dedicated connection whose application_name names the
   holder, so operators on other hosts are refused too; the server drops it
   when that connection ends.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg

from ..errors import OperationLockedError
from ..state.store import utcnow
from .target import PgTarget

logger = logging.getLogger(__name__)

ADVISORY_KEY = 0x4146_4250  # "AFBP": backup/restore of one database (schema deploys use 0x41465343)


@contextmanager
def operation_lock(target: PgTarget, state_dir: str | Path, operation: str) -> Iterator[None]:
    """Hold the provider's backup/restore lock for the body; raise `OperationLockedError` if taken.

    Raises `ProviderUnavailableError` when the provider cannot be reached for the advisory lock.
    """
    lock_dir = Path(state_dir) / "locks"
    lock_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = lock_dir / f"{target.provider}.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise OperationLockedError(
                f"provider {target.provider}: {_holder(path)} is already running; "
                "wait for it to finish (one backup or restore per provider at a time)"
            ) from None
        holder = {"operation": operation, "pid": os.getpid(), "host": socket.gethostname(),
                  "since": utcnow().isoformat(timespec="seconds")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(holder).encode(), 0)
        try:
            with _advisory_lock(target, operation):
                logger.info("provider %s: %s lock taken", target.provider, operation)
                yield
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


@contextmanager
def _advisory_lock(target: PgTarget, operation: str) -> Iterator[None]:
    name = f"agent-factory {operation} lock pid {os.getpid()}@{socket.gethostname()}"
    conn = target.connect(purpose=name[len("agent-factory "):])
    try:
        try:
            conn.execute("SET idle_session_timeout = 0")  # PostgreSQL 14+; the lock must outlive idle spells
        except psycopg.Error:
            pass
        row = conn.execute("SELECT pg_try_advisory_lock(%s)", (ADVISORY_KEY,)).fetchone()
        if not row or not row[0]:
            other = conn.execute(
                "SELECT a.application_name, a.backend_start FROM pg_locks l JOIN pg_stat_activity a USING (pid) "
                "WHERE l.locktype = 'advisory' AND l.classid = 0 AND l.objid = %s AND l.objsubid = 1 "
                "AND l.granted LIMIT 1",
                (ADVISORY_KEY,),
            ).fetchone()
            who = f"'{other[0]}' since {other[1]:%Y-%m-%d %H:%M:%S %Z}" if other else "another session"
            raise OperationLockedError(
                f"provider {target.provider}: another backup or restore holds the database lock ({who}); "
                "wait for it to finish"
            )
        try:
            yield
        finally:
            try:
                conn.execute("SELECT pg_advisory_unlock(%s)", (ADVISORY_KEY,))
            except psycopg.Error:
                pass  # the connection is gone, and the lock with it
    finally:
        conn.close()


def _holder(path: Path) -> str:
    try:
        info = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        info = {}
    if not info:
        return "another backup or restore"
    return f"a {info.get('operation', 'backup or restore')} (pid {info.get('pid')} on {info.get('host')}, " \
           f"since {info.get('since')})"
