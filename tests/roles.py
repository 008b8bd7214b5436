"""A throwaway login role on a local provider, for tests that change a password.

The session-wide providers' own role must keep its password for every other
test, so rotation tests rotate a role of their own, made here with the
superuser (`LocalProviders.admin_url`) and dropped afterwards.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from agent_factory.config import Config, load_config
from agent_factory.core import DatabaseManager
from agent_factory.core.sqlstate import is_auth_failure
from agent_factory.local import LocalProviders
from agent_factory.ops.credentials import scram_verifier, with_password

WRITES_TABLE = "maint_test_writes"


@dataclass
class LoginRole:
    """A login role with write access to the schema and to `WRITES_TABLE`."""

    name: str
    password: str
    url: str
    admin_url: str

    def set_password(self, password: str) -> None:
        """Change the password as a provider's console would."""
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL("ALTER ROLE {} PASSWORD {}").format(sql.Identifier(self.name),
                                                                     sql.Literal(scram_verifier(password))))

    def rows(self) -> int:
        """Return the rows in `WRITES_TABLE`."""
        with psycopg.connect(self.admin_url) as conn:
            return int(conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(WRITES_TABLE)))
                       .fetchone()[0])


@contextmanager
def login_role(local: LocalProviders, provider: str = "neon") -> Iterator[LoginRole]:
    """Yield a fresh role on `provider` (dropped on exit, its connections terminated)."""
    admin = local.admin_url(provider)
    dbname = conninfo_to_dict(local.url(provider))["dbname"]
    admin = psycopg.conninfo.make_conninfo(admin, dbname=dbname)
    name, password = f"rot_{secrets.token_hex(4)}", secrets.token_urlsafe(24)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(name),
                                                                        sql.Literal(scram_verifier(password))))
        conn.execute(sql.SQL("CREATE TABLE IF NOT EXISTS {} (id bigserial PRIMARY KEY, writer int NOT NULL)")
                     .format(sql.Identifier(WRITES_TABLE)))
        conn.execute(sql.SQL("TRUNCATE {}").format(sql.Identifier(WRITES_TABLE)))
        for what in ("TABLES", "SEQUENCES"):
            conn.execute(sql.SQL("GRANT ALL ON ALL {} IN SCHEMA public TO {}").format(sql.SQL(what),
                                                                                     sql.Identifier(name)))
    url = with_password(local.url(provider).replace(
        f"//{conninfo_to_dict(local.url(provider))['user']}:", f"//{name}:", 1), password)
    try:
        yield LoginRole(name, password, url, admin)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", [name])
            conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(WRITES_TABLE)))  # no drift left
            conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(name)))
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))


def password_refused(url: str) -> bool:
    """Return whether the server refuses a login with `url` as an authentication failure."""
    try:
        with psycopg.connect(url, connect_timeout=5):
            return False
    except psycopg.OperationalError as exc:
        return is_auth_failure(exc)


def write_env(path: Path, values: dict[str, str]) -> Path:
    """Write a dotenv file (0600) with a comment line, as an operator's would have."""
    path.write_text("# provider URLs (kept by the rotation)\n" + "".join(f"{k}={v}\n" for k, v in values.items()))
    path.chmod(0o600)
    return path


class Writers:
    """`count` threads inserting into `WRITES_TABLE` through `db` until stopped, counting acks and failures."""

    def __init__(self, db: DatabaseManager, count: int = 8) -> None:
        self.db = db
        self.acknowledged = [0] * count
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._write, args=(i,)) for i in range(count)]

    def _write(self, writer: int) -> None:
        while not self._stop.is_set():
            try:
                self.db.execute_query(f"INSERT INTO {WRITES_TABLE} (writer) VALUES (%s)", [writer], fetch_mode="none")
                self.acknowledged[writer] += 1
            except Exception as exc:  # counted: the tests assert there are none
                self.failures.append(f"{type(exc).__name__}: {exc}")
            time.sleep(0.005)

    @property
    def total(self) -> int:
        """Writes acknowledged so far."""
        return sum(self.acknowledged)

    def __enter__(self) -> Writers:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)


def rotation_config(settings: dict[str, str], env_file: Path, writers: int = 8) -> Config:
    """A configuration whose pooled connections are replaced every second, so new logins follow a rotation."""
    return load_config({**settings, "DATABASE_POOL_MAX_SIZE": str(writers), "DATABASE_POOL_MAX_LIFETIME": "1",
                        "DATABASE_POOL_MAX_IDLE": "1"}, env_file)


def new_logins_since(role: LoginRole, at: float) -> int:
    """Return the role's sessions opened after `at` (epoch seconds)."""
    with psycopg.connect(role.admin_url) as admin:
        return int(admin.execute("SELECT count(*) FROM pg_stat_activity WHERE usename = %s "
                                 "AND backend_start > to_timestamp(%s)", [role.name, at]).fetchone()[0])
