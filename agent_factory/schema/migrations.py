"""Load the package's SQL migrations and apply the pending ones to one provider.

Migrations are files `migrations/NNNN_name.sql`. Each is applied in its own
transaction under an advisory lock and recorded in `schema_migrations`
(version, name, sha256 checksum, applied_at). An applied migration whose file
changed since is reported as drift, never re-run.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass, field
from importlib import resources

import psycopg

from ..errors import SchemaError

logger = logging.getLogger(__name__)

EXPECTED_TABLES = (
    "session_memories", "knowledge_atoms", "settings", "research_staging",
    "video_scripts", "upload_jobs", "agent_messages",
    "langgraph_checkpoint_blobs", "langgraph_checkpoint_writes", "langgraph_checkpoints",
    "langgraph_store",
)
_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_LOCK_KEY = 0x4146_5343  # "AFSC": serializes concurrent deploys on one database

_CREATE_TRACKING = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)"""


@dataclass(frozen=True)
class Migration:
    """One migration file."""

    version: int
    name: str
    sql: str = field(repr=False)

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


@dataclass
class SchemaResult:
    """What `apply_schema` did (or, in check mode, would do) on one provider."""

    provider: str
    changed: bool
    applied: list[str]
    pending: list[str]
    current_version: int
    target_version: int


def load_migrations() -> list[Migration]:
    """Return the package's migrations in version order."""
    found = []
    for entry in resources.files("agent_factory.schema").joinpath("migrations").iterdir():
        match = _FILE.match(entry.name)
        if match:
            found.append(Migration(int(match.group(1)), match.group(2), entry.read_text()))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise SchemaError(f"two migration files share a version number: {versions}")
    return found


def applied_versions(conn: psycopg.Connection) -> dict[int, str]:
    """Return `{version: checksum}` of the migrations recorded on this connection's database."""
    exists = conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL").fetchone()
    if not exists or not exists[0]:
        return {}
    return {v: c for v, c in conn.execute("SELECT version, checksum FROM schema_migrations")}


def apply_schema(conn: psycopg.Connection, provider: str, *, check: bool = False) -> SchemaResult:
    """Apply the pending migrations to the database behind `conn` (one transaction each).

    With `check=True` nothing is written: the result lists what would be applied.
    Raises `SchemaError` when an applied migration's checksum differs from its file
    (drift) or when a migration fails (that migration is rolled back whole).
    """
    migrations = load_migrations()
    target = migrations[-1].version if migrations else 0
    applied = applied_versions(conn)
    conn.rollback()
    for migration in migrations:
        recorded = applied.get(migration.version)
        if recorded is not None and recorded != migration.checksum:
            raise SchemaError(
                f"provider {provider}: migration {migration.version:04d}_{migration.name} was applied "
                "with different contents than the file shipped now (drift); run `agent-factory schema verify`"
            )
    pending = [m for m in migrations if m.version not in applied]
    names = [f"{m.version:04d}_{m.name}" for m in pending]
    current = max(applied) if applied else 0
    if check or not pending:
        return SchemaResult(provider, False, [], names, current, target)
    done: list[str] = []
    for migration in pending:
        label = f"{migration.version:04d}_{migration.name}"
        try:
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
                conn.execute(_CREATE_TRACKING)
                already = conn.execute(
                    "SELECT 1 FROM schema_migrations WHERE version = %s", (migration.version,)
                ).fetchone()
                if already:
                    continue  # another deploy applied it while we waited for the lock
                conn.execute(migration.sql)
                conn.execute(
                    "INSERT INTO schema_migrations (version, name, checksum) VALUES (%s, %s, %s)",
                    (migration.version, migration.name, migration.checksum),
                )
        except psycopg.Error as exc:
            raise SchemaError(f"provider {provider}: migration {label} failed and was rolled back: {exc}") from exc
        done.append(label)
        logger.info("provider %s: applied migration %s", provider, label)
    return SchemaResult(provider, bool(done), done, [], max(current, target), target)
