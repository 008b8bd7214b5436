"""Schema operations across providers: deploy migrations, detect drift, fix the memory_type constraint.

Each function takes a `DatabaseManager`, works on named providers without
failover (`provider_connection`), and returns a result dataclass with `ok`,
`changed` and a one-sentence `summary`. Check mode (`check=True`) runs the same
planning code and writes nothing.

Decisions:
- Drift is measured against the *expected* schema, built by applying the
  shipped migrations to a scratch schema in a transaction that is rolled back
  (no provider is taken as the truth). If that cannot be built (no CREATE
  privilege), the first reachable provider in failover order is the reference.
- `deploy --all` migrates the backups before the primary (DDL is not replicated by
  the streams of docs/CONTINUITY.md; a subscriber that lacks a column the
  publisher sends stops applying until it has it). An unreachable backup does
  not hold back the primary: its stream waits for it anyway, and it is deployed
  with `--provider` when it is back, before its subscription can apply new rows.
- `deploy` only applies pending migrations; it never alters or drops objects
  that exist (drift of that kind is reported by `schema_verify` for a person to
  resolve). An unreachable provider is reported and the others still deployed;
  a failed migration stops the run so a bad migration reaches one provider only.
- `fix_constraints` defaults to every configured provider (the constraint must
  match wherever failover may send writes). It first plans on every target and
  refuses, changing nothing anywhere, if any row would violate the canonical list.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Literal

import psycopg

from ..core import DatabaseManager
from ..errors import ConfigError, DatabaseError, ProviderUnavailableError, SchemaError, UnknownProviderError
from ..redact import scrub
from ..schema import apply_schema, load_migrations
from ..schema.introspect import SchemaSnapshot, canonical_snapshot, compare, snapshot
from ..vector import missing_message

logger = logging.getLogger(__name__)

MEMORY_TYPE_CONSTRAINT = "session_memories_memory_type_check"
CANONICAL_MEMORY_TYPES = (
    "session_metadata", "message_user", "message_assistant", "message_system",
    "context", "action", "issue", "decision", "log",
)
_LOCK_TIMEOUT = "5s"


# ---- results -------------------------------------------------------------------

DeployStatus = Literal["applied", "up_to_date", "would_apply", "unreachable", "failed", "skipped"]
ConstraintStatus = Literal["canonical", "would_replace", "replaced", "blocked", "unreachable", "failed"]


@dataclass
class ProviderDeploy:
    """What deploy did (or would do) on one provider.

    status: applied | up_to_date | would_apply | unreachable | failed | skipped
    """

    provider: str
    status: DeployStatus
    applied: list[str] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)
    current_version: int | None = None
    target_version: int = 0
    error: str | None = None


@dataclass
class DeployResult:
    """The outcome of `deploy`: one entry per targeted provider."""

    check: bool
    changed: bool
    ok: bool
    providers: list[ProviderDeploy]
    summary: str


@dataclass(kw_only=True)
class DriftReport:
    """The outcome of `schema_verify`: each difference from the expected schema as one readable line."""

    ok: bool
    reference: str
    target_version: int
    versions: dict[str, int]
    differences: list[str]
    unreachable: dict[str, str]
    summary: str
    notes: list[str] = field(default_factory=list)  # not drift: e.g. a provider without pgvector

    @property
    def drifted(self) -> list[str]:
        """Names of the providers with at least one difference."""
        return sorted({line.split(":", 1)[0] for line in self.differences})


@dataclass
class ConstraintPlan:
    """The memory_type constraint on one provider and what fix_constraints does about it.

    status: canonical | would_replace | replaced | blocked | unreachable | failed
    """

    provider: str
    status: ConstraintStatus
    current: dict[str, str] = field(default_factory=dict)
    violations: dict[str, int] = field(default_factory=dict)
    statements: list[str] = field(default_factory=list)
    error: str | None = None


@dataclass
class ConstraintFixResult:
    """The outcome of `fix_constraints`: one plan per targeted provider."""

    check: bool
    changed: bool
    ok: bool
    providers: list[ConstraintPlan]
    summary: str


class ConstraintViolationError(SchemaError):
    """Existing rows would violate the canonical memory_type constraint; nothing was changed."""

    def __init__(self, message: str, violations: dict[str, dict[str, int]]) -> None:
        super().__init__(message)
        self.violations = violations


# ---- deploy --------------------------------------------------------------------


def deploy(db: DatabaseManager, provider: str | None = None, all_providers: bool = False,
           check: bool = False) -> DeployResult:
    """Apply the pending migrations to one provider (default: the primary) or to all of them.

    With every provider, the backups (stream subscribers) go first and the primary last: DDL is
    not replicated, so a subscriber must know a new column before the primary publishes rows
    with it; a failed backup therefore leaves the primary untouched. Each migration runs in its
    own transaction (see `apply_schema`). An unreachable provider is reported and the others
    are still deployed; a failed migration is rolled back and the remaining providers are
    skipped. With `check=True` nothing is written. Raises `ConfigError` for an unknown provider
    or for both a provider and `all_providers`.
    """
    targets = subscribers_first(db, _targets(db, provider, all_providers, default_all=False))
    target_version = max((m.version for m in load_migrations()), default=0)
    entries: list[ProviderDeploy] = []
    stopped_by: str | None = None
    for name in targets:
        if stopped_by is not None:
            entries.append(ProviderDeploy(name, "skipped", target_version=target_version,
                                          error=f"not attempted because the deploy failed on {stopped_by}"))
            continue
        try:
            with db.provider_connection(name) as conn:
                result = apply_schema(conn, name, check=check)
        except ProviderUnavailableError as exc:
            entries.append(ProviderDeploy(name, "unreachable", target_version=target_version,
                                          error=_clean(db, f"{exc}; deploy it with `agent-factory schema deploy "
                                                           f"--provider {name}` once it is back")))
            continue
        except SchemaError as exc:
            advice = (f"; nothing after the failed migration was applied to {name} and the remaining providers "
                      f"were skipped: fix the cause, then run `agent-factory schema deploy --provider {name}`")
            entries.append(ProviderDeploy(name, "failed", target_version=target_version,
                                          error=_clean(db, str(exc) + advice)))
            stopped_by = name
            logger.error("schema deploy failed on provider %s; remaining providers skipped", name)
            continue
        except DatabaseError as exc:
            entries.append(ProviderDeploy(name, "failed", target_version=target_version,
                                          error=_clean(db, f"provider {name}: {exc}; run `agent-factory verify`, "
                                                           f"then `agent-factory schema deploy --provider {name}`")))
            continue
        status: DeployStatus
        if result.applied:
            status = "applied"
        elif result.pending:
            status = "would_apply"
        else:
            status = "up_to_date"
        entries.append(ProviderDeploy(name, status, result.applied, result.pending,
                                      result.current_version, result.target_version))
    changed = any(e.status == "applied" for e in entries)
    ok = all(e.status in ("applied", "up_to_date", "would_apply") for e in entries)
    return DeployResult(check, changed, ok, entries, _deploy_summary(entries, check, target_version))


def _deploy_summary(entries: list[ProviderDeploy], check: bool, target: int) -> str:
    by_status: dict[str, list[str]] = {}
    for entry in entries:
        by_status.setdefault(entry.status, []).append(entry.provider)
    parts = []
    for status, label in (("applied", "migrated"), ("would_apply", "would be migrated"),
                          ("up_to_date", "already at"), ("unreachable", "unreachable"),
                          ("failed", "failed"), ("skipped", "skipped")):
        if status in by_status:
            names = ", ".join(by_status[status])
            parts.append(f"{names} {label} v{target}" if status in ("applied", "up_to_date", "would_apply")
                         else f"{names} {label}")
    prefix = "Dry run: " if check else ""
    return prefix + "; ".join(parts) + "."


# ---- drift -----------------------------------------------------------------------


def schema_verify(db: DatabaseManager) -> DriftReport:
    """Compare every reachable provider with the expected schema and list each difference.

    Looks at tables, columns (type, nullability, default, generated expression),
    constraints, indexes and the recorded migrations. Unreachable providers are
    listed, not compared. Read-only: every transaction it opens is rolled back.
    `ok` is False when any difference is found or no provider could be read.
    A provider without pgvector is not drift: it gets a note (`notes`) instead.
    """
    snapshots: dict[str, SchemaSnapshot] = {}
    unreachable: dict[str, str] = {}
    expected: SchemaSnapshot | None = None
    reference = ""
    for name in _reference_order(db):
        try:
            with db.provider_connection(name) as conn:
                snapshots[name] = snapshot(conn, name)
                if expected is None:
                    try:
                        expected = canonical_snapshot(conn)
                        reference = f"the shipped migrations (applied to a rolled-back scratch schema on {name})"
                    except psycopg.Error as exc:
                        conn.rollback()
                        logger.warning("provider %s: could not build the expected schema: %s", name, exc)
                        reference = (f"provider {name} (the expected schema could not be built there: "
                                     f"{_clean(db, str(exc).splitlines()[0])})")
        except ProviderUnavailableError as exc:
            unreachable[name] = _clean(db, exc.reason)
        except (DatabaseError, psycopg.Error) as exc:
            unreachable[name] = _clean(db, str(exc).splitlines()[0])
    target = max((m.version for m in load_migrations()), default=0)
    if not snapshots:
        return DriftReport(ok=False, reference="", target_version=target, versions={}, differences=[],
                           unreachable=unreachable,
                           summary="No provider could be read, so schema drift could not be checked; "
                           "run `agent-factory verify` to see why.")
    if expected is None:
        expected = next(iter(snapshots.values()))
    differences: list[str] = []
    for name in db.providers:
        if name in snapshots:
            differences.extend(compare(expected, snapshots[name]))
    versions = {name: snap.version for name, snap in snapshots.items()}
    notes = [missing_message(name) for name in db.providers if name in snapshots and not snapshots[name].has_pgvector]
    report = DriftReport(ok=not differences, reference=reference, target_version=target, versions=versions,
                         differences=differences, unreachable=unreachable, summary="", notes=notes)
    report.summary = _drift_summary(report)
    return report


def _reference_order(db: DatabaseManager) -> list[str]:
    names = list(db.providers)
    primary = db.primary_provider
    return [primary, *[n for n in names if n != primary]] if primary in names else names


def _drift_summary(report: DriftReport) -> str:
    compared = len(report.versions)
    missing = (f"; {', '.join(report.unreachable)} unreachable, not compared (rerun once back)"
               if report.unreachable else "")
    if report.ok:
        return f"No schema drift: {compared} provider(s) match schema v{report.target_version}{missing}."
    behind = [n for n, v in report.versions.items() if v < report.target_version]
    advice = []
    if behind:
        advice.append(f"run `agent-factory schema deploy --provider NAME` for {', '.join(behind)}")
    if set(report.drifted) - set(behind):
        advice.append("correct the other differences by hand or restore the provider from a backup "
                      "(deploy never alters existing objects)")
    return (f"Schema drift on {', '.join(report.drifted)}: {len(report.differences)} difference(s){missing}; "
            + "; ".join(advice) + ".")


# ---- memory_type constraint -------------------------------------------------------


_MEMORY_TYPE_CHECKS = """
SELECT c.conname, pg_get_constraintdef(c.oid), c.convalidated
FROM pg_constraint c
JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attname = 'memory_type'
WHERE c.conrelid = 'session_memories'::regclass AND c.contype = 'c' AND c.conkey = ARRAY[a.attnum]
ORDER BY c.conname
"""
_VIOLATIONS = """
SELECT memory_type, count(*) FROM session_memories
WHERE NOT (memory_type = ANY(%s)) GROUP BY memory_type ORDER BY memory_type
"""
_VALUE = re.compile(r"'((?:[^']|'')*)'::text")


def fix_constraints(db: DatabaseManager, provider: str | None = None, check: bool = False) -> ConstraintFixResult:
    """Replace `session_memories_memory_type_check` with the canonical list on one provider or all of them.

    Targets `provider`, or every configured provider when None. Plans first on
    every target: if any existing row has a memory_type outside the canonical list,
    raises `ConstraintViolationError` (counts per provider and memory_type) and
    changes nothing anywhere; no row is ever deleted. A provider already canonical
    is left alone. Each change runs in one transaction under a lock timeout of 5 s.
    With `check=True` it returns the plan (blocked plans included) without writing.
    An unreachable provider is reported (`ok` False) and the others still fixed.
    """
    targets = _targets(db, provider, False, default_all=True)
    plans = [_plan_constraint(db, name) for name in targets]
    blocked = {p.provider: p.violations for p in plans if p.violations}
    if check:
        return _constraint_result(db, plans, check=True)
    if blocked:
        raise ConstraintViolationError(_violation_message(blocked, changed_on=[]), blocked)
    fixed: list[str] = []
    for plan in plans:
        if plan.status != "would_replace":
            continue
        try:
            with db.provider_connection(plan.provider) as conn:
                changed = _apply_constraint(conn, plan)
        except ConstraintViolationError as exc:
            raise ConstraintViolationError(_violation_message(exc.violations, changed_on=fixed),
                                           exc.violations) from None
        except ProviderUnavailableError as exc:
            plan.status, plan.error = "unreachable", _clean(db, _retry_hint(str(exc), plan.provider))
            continue
        except (psycopg.Error, DatabaseError) as exc:
            done = f" (already fixed: {', '.join(fixed)})" if fixed else ""
            raise SchemaError(_clean(
                db, f"provider {plan.provider}: replacing {MEMORY_TYPE_CONSTRAINT} failed and was rolled back: "
                    f"{str(exc).splitlines()[0]}{done}; retry when the table is not busy")) from exc
        if not changed:
            plan.status = "canonical"  # fixed by someone else meanwhile
            continue
        plan.status = "replaced"
        fixed.append(plan.provider)
        logger.info("provider %s: replaced the memory_type constraint with the canonical list", plan.provider)
    return _constraint_result(db, plans, check=False)


def _plan_constraint(db: DatabaseManager, name: str) -> ConstraintPlan:
    try:
        with db.provider_connection(name) as conn, _rolled_back(conn):
            return _read_plan(conn, name)
    except ProviderUnavailableError as exc:
        return ConstraintPlan(name, "unreachable", error=_clean(db, _retry_hint(str(exc), name)))
    except SchemaError as exc:
        return ConstraintPlan(name, "failed", error=_clean(db, str(exc)))
    except (psycopg.Error, DatabaseError) as exc:
        return ConstraintPlan(name, "failed", error=_clean(
            db, f"provider {name}: could not read the memory_type constraint: {str(exc).splitlines()[0]}; "
                f"check the role's privileges on session_memories, then rerun with --provider {name}"))


@contextmanager
def _rolled_back(conn: psycopg.Connection) -> Iterator[None]:
    conn.rollback()
    with conn.transaction(force_rollback=True):
        yield


def _read_plan(conn: psycopg.Connection, name: str) -> ConstraintPlan:
    exists = conn.execute("SELECT to_regclass('session_memories') IS NOT NULL").fetchone()
    if not exists or not exists[0]:
        raise SchemaError(f"provider {name}: table session_memories does not exist; "
                          f"run `agent-factory schema deploy --provider {name}` first")
    rows = conn.execute(_MEMORY_TYPE_CHECKS).fetchall()
    current = {cname: definition for cname, definition, _ in rows}
    violations = {t: n for t, n in conn.execute(_VIOLATIONS, (list(CANONICAL_MEMORY_TYPES),))}
    plan = ConstraintPlan(name, "canonical", current, violations)
    if _is_canonical(rows):
        return plan
    plan.status = "blocked" if violations else "would_replace"
    plan.statements = _statements(list(current))
    return plan


def _is_canonical(rows: list[tuple[str, str, bool]]) -> bool:
    if len(rows) != 1:
        return False
    name, definition, validated = rows[0]
    return (name == MEMORY_TYPE_CONSTRAINT and validated
            and definition.startswith("CHECK ((memory_type = ANY (ARRAY[")
            and tuple(v.replace("''", "'") for v in _VALUE.findall(definition)) == CANONICAL_MEMORY_TYPES)


def _statements(existing: list[str]) -> list[str]:
    drops = [f"ALTER TABLE session_memories DROP CONSTRAINT {_ident(n)}" for n in existing]
    values = ", ".join(f"'{v}'" for v in CANONICAL_MEMORY_TYPES)
    add = (f"ALTER TABLE session_memories ADD CONSTRAINT {MEMORY_TYPE_CONSTRAINT} "
           f"CHECK (memory_type IN ({values}))")
    return [*drops, add]


def _ident(name: str) -> str:
    return name if re.fullmatch(r"[a-z_][a-z0-9_]*", name) else '"' + name.replace('"', '""') + '"'


def _apply_constraint(conn: psycopg.Connection, plan: ConstraintPlan) -> bool:
    """Re-plan under an exclusive lock and run the statements, all in one transaction; return whether it changed."""
    conn.rollback()
    with conn.transaction():
        conn.execute(f"SET LOCAL lock_timeout = '{_LOCK_TIMEOUT}'")
        conn.execute("LOCK TABLE session_memories IN ACCESS EXCLUSIVE MODE")
        fresh = _read_plan(conn, plan.provider)
        if fresh.violations:
            raise ConstraintViolationError("", {plan.provider: fresh.violations})
        plan.current, plan.statements = fresh.current, fresh.statements
        for statement in fresh.statements:
            conn.execute(statement.encode())
    return bool(fresh.statements)


def _constraint_result(db: DatabaseManager, plans: list[ConstraintPlan], *, check: bool) -> ConstraintFixResult:
    changed = any(p.status == "replaced" for p in plans)
    ok = all(p.status in ("canonical", "replaced", "would_replace") for p in plans)
    groups: dict[str, list[str]] = {}
    for plan in plans:
        groups.setdefault(plan.status, []).append(plan.provider)
    words = {
        "canonical": "already canonical", "would_replace": "would be replaced", "replaced": "replaced",
        "blocked": "blocked by rows outside the canonical list", "unreachable": "unreachable, not checked",
        "failed": "failed",
    }
    parts = [f"{', '.join(names)}: {words[status]}" for status, names in groups.items()]
    prefix = "Dry run, nothing changed. " if check else ""
    summary = prefix + "memory_type constraint: " + "; ".join(parts) + "."
    if any(p.status == "blocked" for p in plans):
        blocked = {p.provider: p.violations for p in plans if p.status == "blocked"}
        summary += " " + _violation_message(blocked, changed_on=[], planned=True)
    return ConstraintFixResult(check, changed, ok, plans, _clean(db, summary))


def _violation_message(blocked: dict[str, dict[str, int]], changed_on: list[str], planned: bool = False) -> str:
    per = "; ".join(
        f"provider {name}: " + ", ".join(f"{count} row(s) with memory_type {mtype!r}" for mtype, count in v.items())
        for name, v in blocked.items()
    )
    verb = "would refuse" if planned else "refused"
    changed = (f"the constraint was already replaced on {', '.join(changed_on)}, nothing else changed"
               if changed_on else "nothing was changed")
    return (f"{verb} to replace {MEMORY_TYPE_CONSTRAINT}: {per} would violate the canonical list "
            f"({', '.join(CANONICAL_MEMORY_TYPES)}); {changed}. Update or remove those rows yourself "
            "(no row is ever deleted by this command), then run it again.")


def _retry_hint(message: str, name: str) -> str:
    return f"{message}; run `agent-factory schema fix-constraints --provider {name}` once it is back"


# ---- helpers ----------------------------------------------------------------------


def _targets(db: DatabaseManager, provider: str | None, all_providers: bool, *, default_all: bool) -> list[str]:
    if provider is not None and all_providers:
        raise ConfigError("give either a provider name or all providers, not both")
    if provider is not None:
        if provider not in db.providers:
            raise UnknownProviderError(provider, db.providers)
        return [provider]
    if all_providers or default_all:
        return list(db.providers)
    return [db.primary_provider]


def subscribers_first(db: DatabaseManager, names: list[str]) -> list[str]:
    """Return `names` with the primary moved last (subscribers are migrated before their publisher)."""
    return [n for n in names if n != db.primary_provider] + [n for n in names if n == db.primary_provider]


def _clean(db: DatabaseManager, text: str) -> str:
    """Scrub every configured password (and URL/key=value password forms) from a message."""
    secrets = [p.password or "" for p in db.config.providers.values()]
    return scrub(text, *secrets)
