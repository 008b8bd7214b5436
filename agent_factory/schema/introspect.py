"""Take a catalog snapshot of one schema and compare two snapshots.

A `SchemaSnapshot` holds what drift detection looks at: tables, columns (type,
nullability, default, generated expression), constraints (as rendered by
`pg_get_constraintdef`), indexes (`pg_get_indexdef`), triggers
(`pg_get_triggerdef`), the schema's functions (their source text) and the
migrations recorded in `schema_migrations`. Text is normalised (whitespace, schema
qualifiers, PostgreSQL 18's catalogued NOT NULL constraints) so that servers of
different major versions carrying the same schema compare equal.

`canonical_snapshot` builds the expected schema by applying the shipped
migrations to a throw-away schema inside a transaction that is always rolled
back: nothing is written to the provider.

pgvector (agent_factory/vector.py): a table or column that exists only where the
`vector` extension is installed is not a difference when one side lacks it, and
indexes made at run time (`RUNTIME_INDEX_PREFIX`) are not compared; the caller
reports a provider without pgvector in its own words (`vector.missing_message`).
The extension's schema is on the search path while reading, so its types render
the same whether the snapshot comes from `public` or from the scratch schema.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field

import psycopg
from psycopg import sql

from ..vector import EXTENSION, RUNTIME_INDEX_PREFIX, is_optional
from .migrations import _CREATE_TRACKING, load_migrations

_SPACES = re.compile(r"\s+")


@dataclass(frozen=True)
class ColumnInfo:
    """One column as drift detection sees it."""

    type: str
    nullable: bool
    default: str | None
    generated: str | None


@dataclass
class TableInfo:
    """One table: columns, constraints, indexes and triggers (each name -> definition)."""

    columns: dict[str, ColumnInfo] = field(default_factory=dict)
    constraints: dict[str, str] = field(default_factory=dict)
    indexes: dict[str, str] = field(default_factory=dict)
    triggers: dict[str, str] = field(default_factory=dict)


@dataclass
class SchemaSnapshot:
    """The catalog of one schema on one database, normalised for comparison."""

    source: str
    tables: dict[str, TableInfo]
    migrations: dict[int, str]  # version -> checksum
    functions: dict[str, str] = field(default_factory=dict)  # name(arguments) -> source text
    extensions: frozenset[str] = frozenset()

    @property
    def has_pgvector(self) -> bool:
        """Whether the database has the `vector` extension installed."""
        return EXTENSION in self.extensions

    @property
    def version(self) -> int:
        """The highest migration version recorded (0 when none)."""
        return max(self.migrations, default=0)


_TABLES = """
SELECT c.oid, c.relname
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = %(schema)s AND c.relkind IN ('r', 'p')
  AND NOT EXISTS (SELECT 1 FROM pg_depend d
                  WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
"""

_COLUMNS = """
SELECT a.attrelid, a.attname, format_type(a.atttypid, a.atttypmod), NOT a.attnotnull,
       pg_get_expr(d.adbin, d.adrelid), a.attgenerated::text, a.attidentity::text
FROM pg_attribute a
LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
WHERE a.attrelid = ANY(%(oids)s) AND a.attnum > 0 AND NOT a.attisdropped
"""

_CONSTRAINTS = """
SELECT conrelid, conname, pg_get_constraintdef(oid)
FROM pg_constraint
WHERE conrelid = ANY(%(oids)s) AND contype <> 'n'
"""

_TRIGGERS = """
SELECT tgrelid, tgname, pg_get_triggerdef(oid)
FROM pg_trigger
WHERE tgrelid = ANY(%(oids)s) AND NOT tgisinternal
"""

_FUNCTIONS = """
SELECT p.proname || '(' || pg_get_function_identity_arguments(p.oid) || ')', p.prosrc
FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
WHERE n.nspname = %(schema)s
  AND NOT EXISTS (SELECT 1 FROM pg_depend d
                  WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e')
"""

_INDEXES = """
SELECT i.indrelid, c.relname, pg_get_indexdef(i.indexrelid)
FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
WHERE i.indrelid = ANY(%(oids)s)
"""


def snapshot(conn: psycopg.Connection, source: str, schema: str = "public") -> SchemaSnapshot:
    """Return the normalised catalog of `schema` on the database behind `conn`.

    Reads only, inside a transaction that is rolled back; the connection is left idle.
    Raises `psycopg.Error` when the server cannot be read.
    """
    conn.rollback()
    with conn.transaction(force_rollback=True):
        return _read(conn, source, schema)


_EXTENSIONS = """
SELECT e.extname, n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
"""


def _read(conn: psycopg.Connection, source: str, schema: str) -> SchemaSnapshot:
    extensions: dict[str, str] = dict(conn.execute(_EXTENSIONS).fetchall())
    # Resolve names relative to the schema itself so that definitions render unqualified
    # (and the vector extension's types too, wherever it lives).
    path = [schema, "pg_catalog"]
    if extensions.get(EXTENSION) not in (None, schema):
        path.append(extensions[EXTENSION])
    conn.execute(sql.SQL("SET LOCAL search_path TO {}").format(sql.SQL(", ").join(map(sql.Identifier, path))))
    rows = conn.execute(_TABLES, {"schema": schema}).fetchall()
    names = {oid: name for oid, name in rows}
    tables = {name: TableInfo() for name in names.values()}
    oids = list(names)

    def norm(text: str | None) -> str | None:
        return None if text is None else normalise(text, schema)

    for relid, column, type_, nullable, default, generated, identity in conn.execute(_COLUMNS, {"oids": oids}):
        is_generated = generated == "s"
        if identity:
            default = f"GENERATED {'ALWAYS' if identity == 'a' else 'BY DEFAULT'} AS IDENTITY"
        tables[names[relid]].columns[column] = ColumnInfo(
            type=type_, nullable=nullable,
            default=None if is_generated else norm(default),
            generated=norm(default) if is_generated else None,
        )
    for relid, name, definition in conn.execute(_CONSTRAINTS, {"oids": oids}):
        tables[names[relid]].constraints[name] = normalise(definition, schema)
    for relid, name, definition in conn.execute(_INDEXES, {"oids": oids}):
        tables[names[relid]].indexes[name] = normalise(definition, schema)
    for relid, name, definition in conn.execute(_TRIGGERS, {"oids": oids}):
        tables[names[relid]].triggers[name] = normalise(definition, schema)
    functions = {name: normalise(source, schema) for name, source in conn.execute(_FUNCTIONS, {"schema": schema})}

    migrations: dict[int, str] = {}
    if "schema_migrations" in tables:
        migrations = {v: c for v, c in conn.execute("SELECT version, checksum FROM schema_migrations")}
    return SchemaSnapshot(source, tables, migrations, functions, frozenset(extensions))


def normalise(text: str, schema: str) -> str:
    """Collapse whitespace and drop qualifiers naming `schema` (so any schema compares with public)."""
    text = _SPACES.sub(" ", text.strip())
    qualifier = re.compile(r'(?<![\w."])(?:' + re.escape(schema) + r'|"' + re.escape(schema) + r'")\.(?=[\w"])')
    return qualifier.sub("", text)


def canonical_snapshot(conn: psycopg.Connection) -> SchemaSnapshot:
    """Return the schema the shipped migrations produce, built in a scratch schema and rolled back.

    Needs the CREATE privilege on the database (the application role owns it on
    every supported provider). Writes nothing: the scratch schema disappears with
    the rollback. Raises `psycopg.Error` when the server refuses.
    """
    scratch = f"af_canonical_{secrets.token_hex(6)}"
    migrations = load_migrations()
    conn.rollback()
    with conn.transaction(force_rollback=True):
        conn.execute("SET LOCAL lock_timeout = '5s'")
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(scratch)))
        path = [scratch, "pg_catalog", *[r[0] for r in conn.execute(
            "SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace "
            "WHERE e.extname = %s", (EXTENSION,))]]
        conn.execute(sql.SQL("SET LOCAL search_path TO {}").format(sql.SQL(", ").join(map(sql.Identifier, path))))
        conn.execute(_CREATE_TRACKING)
        for migration in migrations:
            conn.execute(migration.sql)
            conn.execute(
                "INSERT INTO schema_migrations (version, name, checksum) VALUES (%s, %s, %s)",
                (migration.version, migration.name, migration.checksum),
            )
        result = _read(conn, "expected schema", scratch)
    return result


def compare(expected: SchemaSnapshot, actual: SchemaSnapshot) -> list[str]:
    """Return one readable line per difference of `actual` from `expected`, prefixed with `actual.source`."""
    who = actual.source
    lines: list[str] = []
    for table in sorted(expected.tables.keys() - actual.tables.keys()):
        if not (is_optional(table) and not actual.has_pgvector):
            lines.append(f"{who}: table {table} is missing")
    for table in sorted(actual.tables.keys() - expected.tables.keys()):
        if not (is_optional(table) and not expected.has_pgvector):
            lines.append(f"{who}: table {table} exists only here")
    for table in sorted(expected.tables.keys() & actual.tables.keys()):
        want, have = expected.tables[table], actual.tables[table]
        if expected.has_pgvector != actual.has_pgvector:  # one side cannot have the vector columns
            keep = set(want.columns) & set(have.columns)
            want = _without(want, table, keep)
            have = _without(have, table, keep)
        lines.extend(_compare_table(who, table, want, have))
    for name in sorted(expected.functions.keys() - actual.functions.keys()):
        lines.append(f"{who}: function {name} is missing")
    for name in sorted(expected.functions.keys() & actual.functions.keys()):
        if expected.functions[name] != actual.functions[name]:
            lines.append(f"{who}: function {name} has a different body than the shipped migrations create")
    lines.extend(_compare_migrations(who, expected.migrations, actual.migrations))
    return lines


def _without(info: TableInfo, table: str, keep: set[str]) -> TableInfo:
    """Return `info` without the optional (pgvector) columns that are not in `keep`, nor the indexes on them."""
    columns = {c: v for c, v in info.columns.items() if c in keep or not is_optional(table, c)}
    dropped = [re.compile(rf"\b{re.escape(c)}\b") for c in info.columns.keys() - columns.keys()]
    indexes = {n: d for n, d in info.indexes.items() if not any(p.search(d) for p in dropped)}
    return TableInfo(columns, info.constraints, indexes, info.triggers)


def _declared(indexes: dict[str, str]) -> dict[str, str]:
    """Return the indexes a migration declares (not the ones the application makes at run time)."""
    return {n: d for n, d in indexes.items() if not n.startswith(RUNTIME_INDEX_PREFIX)}


def _compare_table(who: str, table: str, want: TableInfo, have: TableInfo) -> list[str]:
    lines = []
    for column in sorted(want.columns.keys() - have.columns.keys()):
        lines.append(f"{who}: column {table}.{column} is missing")
    for column in sorted(have.columns.keys() - want.columns.keys()):
        lines.append(f"{who}: column {table}.{column} exists only here")
    for column in sorted(want.columns.keys() & have.columns.keys()):
        w, h = want.columns[column], have.columns[column]
        if w.type != h.type:
            lines.append(f"{who}: column {table}.{column} has type {h.type}, expected {w.type}")
        if w.nullable != h.nullable:
            state = "allows NULL" if h.nullable else "is NOT NULL"
            wanted = "NULL allowed" if w.nullable else "NOT NULL"
            lines.append(f"{who}: column {table}.{column} {state}, expected {wanted}")
        if w.default != h.default:
            lines.append(f"{who}: column {table}.{column} has default {h.default or 'none'}, "
                         f"expected {w.default or 'none'}")
        if w.generated != h.generated:
            lines.append(f"{who}: column {table}.{column} is generated as {h.generated or 'nothing'}, "
                         f"expected {w.generated or 'a plain column'}")
    for kind, w_map, h_map in (("constraint", want.constraints, have.constraints),
                               ("index", _declared(want.indexes), _declared(have.indexes)),
                               ("trigger", want.triggers, have.triggers)):
        for name in sorted(w_map.keys() - h_map.keys()):
            lines.append(f"{who}: {kind} {name} on {table} is missing")
        for name in sorted(h_map.keys() - w_map.keys()):
            lines.append(f"{who}: {kind} {name} on {table} exists only here: {h_map[name]}")
        for name in sorted(w_map.keys() & h_map.keys()):
            if w_map[name] != h_map[name]:
                lines.append(f"{who}: {kind} {name} on {table} is {h_map[name]}, expected {w_map[name]}")
    return lines


def _compare_migrations(who: str, want: dict[int, str], have: dict[int, str]) -> list[str]:
    lines = []
    want_v, have_v = max(want, default=0), max(have, default=0)
    if want_v != have_v:
        lines.append(f"{who}: schema version is {have_v}, expected {want_v}")
    for version in sorted(want.keys() - have.keys()):
        if version <= have_v:
            lines.append(f"{who}: migration {version:04d} was never recorded")
    for version in sorted(have.keys() - want.keys()):
        lines.append(f"{who}: migration {version:04d} is recorded but not shipped with this version of agent_factory")
    for version in sorted(want.keys() & have.keys()):
        if want[version] != have[version]:
            lines.append(f"{who}: migration {version:04d} was applied with different contents than the shipped file")
    return lines
