"""Point pg_dump, pg_restore and psql at one provider without exposing its password; load archives; count rows.

- The connection string on the command line (`agent_factory.ops.target`,
  re-exported here) is rebuilt from the provider's session URL
  (`NAME_DIRECT_URL` when set, else `NAME_DB_URL`: pg_dump needs a session of
  its own, not a transaction pooler, and behind one without a direct URL
  `target_for` refuses with `DirectUrlRequiredError`) without its password,
  plus the connect timeout and the dead-peer settings (`agent_factory.keepalive`),
  so a tool whose provider goes silent fails within DATABASE_DEAD_PEER_TIMEOUT;
  tool output is scrubbed before it reaches a message.
- The tools run through `agent_factory.ops.tools` (passfile, minimal
  environment; re-exported here): pg_dump at least the server's major,
  pg_restore/psql at least the major of the pg_dump that wrote the archive, and
  built with SSL support when the target's connection uses TLS (`PgTarget.needs_ssl`).
- `apply_archive` loads a custom or plain backup in one transaction. Schemas and
  extensions that already exist on the target, and extensions this role may not
  create (untrusted ones, for a non-superuser), are skipped: on managed
  providers they belong to the platform, and `DROP EXTENSION` would fail there.
  Objects of the target that are not in the backup are left in place.
  A target without pgvector (not installed, not creatable) skips the archive's
  pgvector-only tables (`agent_factory.vector.OPTIONAL_TABLES`: definition, data,
  indexes, triggers) and run-time vector indexes, so a backup of a provider
  with vectors restores there without them instead of failing. Optional
  vector *columns* of other tables (`OPTIONAL_COLUMNS`) are cut out too
  (`vector_columns.cut_vector_columns`): a custom archive is then written out
  as a script by pg_restore and loaded by psql, filtered like a plain dump.

There is no overall time limit: a dump or restore takes as long as the data
needs; connecting is bounded by DATABASE_CONNECT_TIMEOUT and pg_dump waits at
most 60 s for a table lock.
"""

from __future__ import annotations

import itertools
import logging
import re
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from . import plainsql
from ..vector import EXTENSION, OPTIONAL_TABLES, RUNTIME_INDEX_PREFIX, is_optional
from .target import PgTarget, target_for
from .tools import Progress, Tool, major_of, pick_tool, run_tool
from .vector_columns import cut_vector_columns

__all__ = ["FORMATS", "PgTarget", "Progress", "TargetObjects", "Tool", "apply_archive", "filter_plain", "filter_toc",
           "load_args", "major_of", "pick_tool", "run_tool", "server_version", "table_row_counts", "target_for",
           "target_objects"]

logger = logging.getLogger(__name__)

FORMATS = ("custom", "plain")


def server_version(conn: psycopg.Connection[Any]) -> tuple[int, str]:
    """Return `(server_version_num, "16.2")` of a connection."""
    num = conn.info.server_version
    text = conn.execute("SHOW server_version").fetchone()
    return num, (str(text[0]).split()[0] if text else str(num))


# ---- loading an archive into a database -------------------------------------


@dataclass(frozen=True)
class TargetObjects:
    """What already exists on a target database, to decide which archive entries to skip."""

    schemas: frozenset[str]
    extensions: frozenset[str]
    creatable_extensions: frozenset[str]

    def skip(self, kind: str, name: str) -> bool:
        """Whether the SCHEMA or EXTENSION entry `name` must not be replayed on this target."""
        if kind == "SCHEMA":
            return name in self.schemas
        return name in self.extensions or name not in self.creatable_extensions

    @property
    def lacks_pgvector(self) -> bool:
        """Whether the target neither has nor can create the `vector` extension."""
        return EXTENSION not in self.extensions and EXTENSION not in self.creatable_extensions

    def skip_vector_object(self, text: str) -> bool:
        """Whether a TOC line or statement concerns a pgvector-only table or index this target cannot hold."""
        return self.lacks_pgvector and _VECTOR_OBJECT.search(text) is not None


def target_objects(conn: psycopg.Connection[Any]) -> TargetObjects:
    """Read the schemas, installed extensions and extensions this role may create."""
    schemas = {r[0] for r in conn.execute("SELECT nspname FROM pg_namespace")}
    extensions = {r[0] for r in conn.execute("SELECT extname FROM pg_extension")}
    creatable = {r[0] for r in conn.execute(
        "SELECT DISTINCT name FROM pg_available_extension_versions "
        "WHERE trusted OR (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)")}
    return TargetObjects(frozenset(schemas), frozenset(extensions), frozenset(creatable))


_TOC_OBJECT = re.compile(r"^\d+; \d+ \d+ (SCHEMA|EXTENSION) - (\S+)")
_TOC_COMMENT = re.compile(r"^\d+; \d+ \d+ COMMENT - (SCHEMA|EXTENSION) (\S+)")


# A pgvector-only table, or any object named after one (its indexes, constraints, triggers), or a run-time index.
_VECTOR_OBJECT = re.compile(
    r"(?<![\w$])(?:" + "|".join(map(re.escape, (*OPTIONAL_TABLES, RUNTIME_INDEX_PREFIX))) + r")[\w$]*")
_STATEMENT_START = re.compile(rb"^(?:CREATE|ALTER|COPY|COMMENT|SELECT|DROP)\b")


def filter_toc(listing: str, objects: TargetObjects) -> tuple[str, list[str]]:
    """Comment out the archive's schema/extension entries to skip; return the list and what was skipped."""
    lines, skipped = [], []
    for line in listing.splitlines():
        match = _TOC_OBJECT.match(line) or _TOC_COMMENT.match(line)
        if match and objects.skip(match.group(1), match.group(2)):
            skipped.append(f"{match.group(1).lower()} {match.group(2)}")
            line = ";" + line
        elif not line.startswith(";") and objects.skip_vector_object(line):
            skipped.append("pgvector-only tables (no pgvector on the target)")
            line = ";" + line
        lines.append(line)
    return "\n".join(lines) + "\n", sorted(set(skipped))


_IDENT = rb'("(?:[^"]|"")+"|[^\s;]+)'
_PLAIN_OBJECT = re.compile(
    rb"^(?:DROP (SCHEMA|EXTENSION) IF EXISTS " + _IDENT + rb"|CREATE (SCHEMA|EXTENSION) (?:IF NOT EXISTS )?"
    + _IDENT + rb"|COMMENT ON (SCHEMA|EXTENSION) " + _IDENT + rb" IS )"
)


def _unquote(raw: bytes) -> str:
    text = raw.decode("utf-8", "replace")
    return text[1:-1].replace('""', '"') if text.startswith('"') else text


def filter_plain(lines: Iterable[bytes], objects: TargetObjects, skipped: list[str]) -> Iterator[bytes]:
    """Yield a plain dump's lines, dropping statements on schemas/extensions to skip (never COPY data)."""
    in_copy = skip_copy = False
    in_skipped_statement = False
    for line in lines:
        if in_copy:
            if line in (b"\\.\n", b"\\.\r\n", b"\\."):
                in_copy = False
            if not skip_copy:
                yield line
            continue
        if in_skipped_statement:
            in_skipped_statement = not line.rstrip().endswith(b";")
            continue
        if line.startswith(b"COPY ") and line.rstrip().endswith(b"FROM stdin;"):
            in_copy = True
            skip_copy = objects.skip_vector_object(line.decode("utf-8", "replace"))
            if not skip_copy:
                yield line
            continue
        if _STATEMENT_START.match(line) and objects.skip_vector_object(line.decode("utf-8", "replace")):
            if "pgvector-only tables (no pgvector on the target)" not in skipped:
                skipped.append("pgvector-only tables (no pgvector on the target)")
            in_skipped_statement = not line.rstrip().endswith(b";")
            continue
        match = _PLAIN_OBJECT.match(line)
        if match:
            groups = match.groups()
            kind, name = next((groups[i].decode(), _unquote(groups[i + 1])) for i in (0, 2, 4) if groups[i])
            if objects.skip(kind, name):
                if f"{kind.lower()} {name}" not in skipped:
                    skipped.append(f"{kind.lower()} {name}")
                in_skipped_statement = not line.rstrip().endswith(b";")
                yield b"-- skipped by agent-factory: " + line.split(b"\n")[0][:200] + b"\n"
                continue
        yield line


def _read_lines(path: Path) -> Iterator[bytes]:
    with open(path, "rb") as fh:
        yield from fh


def load_args(fmt: str, conninfo: str, *, clean: bool, use_list: str = "") -> list[str]:
    """Return the options of the tool that loads a `fmt` archive into `conninfo` in one transaction.

    pg_restore (custom) reads the filtered entry list `use_list` and drops what
    it recreates when `clean`; psql (plain) reads the filtered script on stdin.
    `apply_archive` runs exactly these; a restore's dry run shows them.
    """
    if fmt == "custom":
        return [*_pg_restore_args(clean, use_list), f"--dbname={conninfo}", "--single-transaction", "--exit-on-error"]
    return ["-X", "-q", "-v", "ON_ERROR_STOP=1", "--single-transaction", f"--dbname={conninfo}", "-f", "-"]


def _pg_restore_args(clean: bool, use_list: str) -> list[str]:
    # Streams' publications and subscriptions belong to the servers, not the data (docs/CONTINUITY.md).
    return ["--no-owner", "--no-privileges", "--no-publications", "--no-subscriptions", f"--use-list={use_list}",
            *(["--clean", "--if-exists"] if clean else [])]


def apply_archive(
    tool: Tool,
    path: Path,
    fmt: str,
    target: PgTarget,
    *,
    clean: bool,
    progress: Progress | None = None,
) -> list[str]:
    """Load a backup into `target` in one transaction; return the entries skipped (schemas, extensions).

    Custom archives go through pg_restore (`--clean --if-exists` when `clean`),
    plain scripts through psql with ON_ERROR_STOP (they carry their own DROP ... IF EXISTS), checked line by
    line for meta-commands as psql reads them (`plainsql`). Any error rolls the whole load back. Raises
    `BackupVerificationError` at a meta-command (psql is killed before its input ends: nothing is committed),
    `BackupError` with the tool's message.
    """
    with target.connect(purpose="restore-check") as conn:
        objects = target_objects(conn)
    label = f"{target.provider}/{target.dbname}"
    skipped: list[str] = []
    if fmt == "custom":
        listing = run_tool(tool, ["--list", str(path)], label=label)
        toc, skipped = filter_toc(listing, objects)
        with tempfile.NamedTemporaryFile("w", prefix="agent-factory-toc-", suffix=".list") as list_file:
            list_file.write(toc)
            list_file.flush()
            if objects.lacks_pgvector:
                # Vector columns cannot be cut out of an archive: write it out as a script, load that.
                with tempfile.TemporaryDirectory(prefix="agent-factory-restore-") as scratch:
                    script = Path(scratch) / "restore.sql"
                    run_tool(tool, [*_pg_restore_args(clean, list_file.name), f"--file={script}", str(path)],
                             label=label)
                    psql = pick_tool("psql", tool.major, ssl=target.needs_ssl)
                    _load_script(psql, script, target, objects, skipped, progress, label)
            else:
                args = load_args(fmt, target.conninfo, clean=clean, use_list=list_file.name)
                run_tool(tool, [*args, str(path)], target, progress=progress, label=label)
    else:
        _load_script(tool, path, target, objects, skipped, progress, label)
    skipped = [s for s in skipped if s != "schema public"]  # always there; pg_dump never recreates it
    if skipped:
        logger.info("provider %s: kept the target's own %s", target.provider, ", ".join(skipped))
    return skipped


def _load_script(psql: Tool, path: Path, target: PgTarget, objects: TargetObjects, skipped: list[str],
                 progress: Progress | None, label: str) -> None:
    """Run a plain script through psql in one transaction, filtered for the target.

    Every script is untrusted, a plain archive and pg_restore's rendering of a
    custom one alike: `plainsql` refuses its meta-commands before psql sees
    them, and psql runs in `\\restrict` mode where it has it.
    """
    args = load_args("plain", target.conninfo, clean=False)
    lines = plainsql.guard_lines(_read_lines(path), path.name)
    if objects.lacks_pgvector:
        lines = cut_vector_columns(lines, skipped)
    prefix = [plainsql.restrict_prefix()] if plainsql.supports_restrict(psql.version) else []
    run_tool(psql, args, target, stdin=itertools.chain(prefix, filter_plain(lines, objects, skipped)),
             progress=progress, label=label)


def vector_tables_left_out(expected: dict[str, int], restored: dict[str, int | None]) -> dict[str, int]:
    """Return `{table: rows}` of the pgvector-only tables a load into a target without pgvector skipped."""
    return {t: n for t, n in expected.items() if is_optional(t.rsplit(".", 1)[-1]) and restored.get(t) is None}


# ---- row counts ---------------------------------------------------------------

_TABLES = """
SELECT n.nspname, c.relname
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'r' AND c.relpersistence <> 't'
  AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_(toast|temp)'
  AND NOT EXISTS (SELECT 1 FROM pg_depend d
                  WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
ORDER BY 1, 2
"""


def table_row_counts(conn: psycopg.Connection[Any], tables: Iterable[str] | None = None) -> dict[str, int | None]:
    """Return exact row counts keyed "schema.table" (every dumpable table, or the ones named).

    A named table that does not exist counts as None.
    """
    if tables is None:
        names = [(r[0], r[1]) for r in conn.execute(_TABLES)]
    else:
        names = [tuple(t.split(".", 1)) for t in tables]  # type: ignore[misc]
    counts: dict[str, int | None] = {}
    for schema, table in names:
        key = f"{schema}.{table}"
        exists = conn.execute("SELECT to_regclass(%s) IS NOT NULL",
                              (sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(table)).as_string(conn),)
                              ).fetchone()
        if not exists or not exists[0]:
            counts[key] = None
            continue
        row = conn.execute(sql.SQL("SELECT count(*) FROM {}.{}").format(sql.Identifier(schema), sql.Identifier(table))
                           ).fetchone()
        counts[key] = int(row[0]) if row else 0
    return counts


def count_mismatches(expected: dict[str, int], counts: dict[str, int | None]) -> dict[str, list[int | None]]:
    """Return {table: [expected, found]} for each table whose row count differs after a load.

    A pgvector-only table that a target without pgvector skipped (`apply_archive`) is absent, not a mismatch.
    """
    left_out = vector_tables_left_out(expected, counts)
    return {t: [n, counts.get(t)] for t, n in expected.items() if counts.get(t) != n and t not in left_out}

