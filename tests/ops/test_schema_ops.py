"""Schema deploy, drift detection and the memory_type constraint fix, on the real local providers.

Every test that changes a provider's schema puts the canonical state back in a
`finally`, because the servers are shared with every other test.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from agent_factory.cli import main
from agent_factory.core import DatabaseManager
from agent_factory.ops.schema_ops import (
    CANONICAL_MEMORY_TYPES,
    MEMORY_TYPE_CONSTRAINT,
    ConstraintViolationError,
    deploy,
    fix_constraints,
    schema_verify,
)
from agent_factory.schema import load_migrations

REPO = Path(__file__).resolve().parents[2]
TARGET = load_migrations()[-1].version
ALL_MIGRATIONS = [f"{m.version:04d}_{m.name}" for m in load_migrations()]
OLD_FIVE = "CHECK (memory_type IN ('session_metadata','message_user','message_assistant','context','action'))"
WITH_EXTRA = ("CHECK (memory_type IN (" + ", ".join(f"'{t}'" for t in (*CANONICAL_MEMORY_TYPES, "legacy_note")) + "))")


def constraint_defs(db: DatabaseManager, provider: str) -> dict[str, str]:
    with db.provider_connection(provider) as conn:
        rows = conn.execute(
            "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
            "WHERE conrelid = 'session_memories'::regclass AND contype = 'c' AND cardinality(conkey) = 1 "
            "AND pg_get_constraintdef(oid) LIKE '%memory_type%'"
        ).fetchall()
        conn.rollback()
    return dict(rows)


def set_memory_type_check(db: DatabaseManager, provider: str, definition: str) -> None:
    """Replace the memory_type constraint on one provider with `definition` (as the table's owner)."""
    with db.provider_connection(provider) as conn:
        for name in constraint_defs(db, provider):
            conn.execute(sql.SQL("ALTER TABLE session_memories DROP CONSTRAINT {}").format(sql.Identifier(name)))
        conn.execute(f"ALTER TABLE session_memories ADD CONSTRAINT {MEMORY_TYPE_CONSTRAINT} {definition}".encode())
        conn.commit()


@pytest.fixture
def canonical_after(make_db: Callable[..., DatabaseManager]) -> Iterator[DatabaseManager]:
    """A manager whose providers get the canonical memory_type constraint back after the test."""
    db = make_db()
    yield db
    canonical = "CHECK (memory_type IN (" + ", ".join(f"'{t}'" for t in CANONICAL_MEMORY_TYPES) + "))"
    for name in db.providers:
        with db.provider_connection(name) as conn:
            conn.execute("DELETE FROM session_memories WHERE session_id LIKE 'fixtest-%'")
            conn.commit()
        set_memory_type_check(db, name, canonical)
    assert schema_verify(db).ok


@contextmanager
def scratch_database(local, provider: str) -> Iterator[str]:
    """Create an empty database as the application role (it has CREATEDB); drop it afterwards."""
    name = f"af_scratch_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(local.url(provider), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield make_conninfo(local.url(provider), dbname=name)
    finally:
        with psycopg.connect(local.url(provider), autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


# ---- drift --------------------------------------------------------------------------


def test_providers_on_pg15_and_pg16_match_the_expected_schema(make_db, local):
    # The local providers spread over the installed majors (16 and 15 here): normalisation makes them equal.
    report = schema_verify(make_db())
    assert report.ok, report.differences
    assert report.versions == dict.fromkeys(("neon", "supabase", "railway"), report.target_version)
    assert "shipped migrations" in report.reference
    # supabase runs Debian's PostgreSQL 15 (no pgvector): a note, not drift.
    assert report.notes == ["pgvector missing on supabase: semantic search falls back to text there"]


def test_added_column_on_one_provider_is_drift(make_db, cli_env, capsys):
    db = make_db()
    with db.provider_connection("supabase") as conn:
        conn.execute("ALTER TABLE session_memories ADD COLUMN extra int")
        conn.commit()
    try:
        report = schema_verify(db)
        assert not report.ok
        assert report.differences == ["supabase: column session_memories.extra exists only here"]
        assert report.drifted == ["supabase"]
        assert "by hand" in report.summary

        assert main(["schema", "verify"]) == 1
        out = capsys.readouterr().out
        assert "[FAIL] supabase: column session_memories.extra exists only here" in out
        assert f"[OK] neon: matches schema v{TARGET}" in out
    finally:
        with db.provider_connection("supabase") as conn:
            conn.execute("ALTER TABLE session_memories DROP COLUMN IF EXISTS extra")
            conn.commit()
    assert schema_verify(db).ok


def test_a_missing_lww_trigger_or_a_changed_function_is_drift(make_db, local):
    db = make_db()
    with psycopg.connect(make_conninfo(local.admin_url("supabase"), dbname="agent_factory"), autocommit=True) as admin:
        trigger = admin.execute("SELECT pg_get_triggerdef(oid), tgenabled FROM pg_trigger "
                                "WHERE tgrelid = 'settings'::regclass AND tgname = 'settings_lww'").fetchone()
        admin.execute("DROP TRIGGER settings_lww ON settings")
        body = admin.execute("SELECT pg_get_functiondef('recompute_session(text[])'::regprocedure)").fetchone()[0]
        admin.execute("CREATE OR REPLACE FUNCTION recompute_session(session_ids text[]) RETURNS integer "
                      "LANGUAGE sql AS 'SELECT 0'")
        try:
            lines = schema_verify(db).differences
        finally:
            admin.execute(body)
            admin.execute(trigger[0])  # as the migrations made it (its WHEN, and ALWAYS since 0007)
            if trigger[1] == "A":
                admin.execute("ALTER TABLE settings ENABLE ALWAYS TRIGGER settings_lww")
    assert "supabase: trigger settings_lww on settings is missing" in lines
    assert ("supabase: function recompute_session(session_ids text[]) has a different body than the shipped "
            "migrations create") in lines
    assert schema_verify(db).ok


def test_changed_index_and_type_are_listed(make_db, local):
    db = make_db()
    with psycopg.connect(make_conninfo(local.admin_url("railway"), dbname="agent_factory"), autocommit=True) as admin:
        index = admin.execute("SELECT pg_get_indexdef('session_memories_type_idx'::regclass)").fetchone()[0]
        admin.execute("DROP INDEX session_memories_type_idx")
        admin.execute("ALTER TABLE settings ALTER COLUMN category TYPE varchar(40)")
        try:
            lines = schema_verify(db).differences
        finally:
            admin.execute("ALTER TABLE settings ALTER COLUMN category TYPE text")
            admin.execute(index)
    assert "railway: index session_memories_type_idx on session_memories is missing" in lines
    assert "railway: column settings.category has type character varying(40), expected text" in lines
    assert all(line.startswith("railway: ") for line in lines), lines
    assert schema_verify(db).ok


# ---- deploy ---------------------------------------------------------------------------


def test_dry_run_writes_nothing_and_deploy_fixes_a_blank_provider(make_db, local):
    with scratch_database(local, "railway") as url:
        db = make_db(RAILWAY_DB_URL=url)
        before = schema_verify(db)
        assert not before.ok
        assert f"railway: schema version is 0, expected {TARGET}" in before.differences
        assert "railway: table session_memories is missing" in before.differences

        plan = deploy(db, provider="railway", check=True)
        assert plan.ok and not plan.changed
        assert [(p.provider, p.status, p.pending) for p in plan.providers] == [
            ("railway", "would_apply", ALL_MIGRATIONS)]
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT to_regclass('schema_migrations'), to_regclass('session_memories')"
                                ).fetchone() == (None, None)

        done = deploy(db, provider="railway")
        assert done.changed and done.providers[0].applied == ALL_MIGRATIONS
        assert schema_verify(db).ok
        again = deploy(db, all_providers=True)
        assert not again.changed and {p.status for p in again.providers} == {"up_to_date"}
        db.close()


def test_deploy_reports_an_unreachable_provider_and_deploys_the_others(make_db, local):
    db = make_db()
    local.kill("railway")
    result = deploy(db, all_providers=True)
    assert not result.ok and not result.changed
    status = {p.provider: p.status for p in result.providers}
    assert status == {"neon": "up_to_date", "supabase": "up_to_date", "railway": "unreachable"}
    error = next(p.error for p in result.providers if p.provider == "railway")
    assert "railway" in error and "--provider railway" in error
    drift = schema_verify(db)
    assert drift.ok and "railway" in drift.unreachable


def test_deploy_all_migrates_the_backups_before_the_primary(make_db, local):
    # DDL is not replicated: a stream's subscriber must have a column before its publisher sends rows with it.
    with scratch_database(local, "neon") as neon, scratch_database(local, "supabase") as supabase:
        with psycopg.connect(supabase, autocommit=True) as conn:  # the first migration fails here
            conn.execute("CREATE VIEW session_memories AS SELECT 1 AS x")
        db = make_db(NEON_DB_URL=neon, SUPABASE_DB_URL=supabase)
        result = deploy(db, all_providers=True)
        assert [(p.provider, p.status) for p in result.providers] == [
            ("supabase", "failed"), ("railway", "skipped"), ("neon", "skipped")]
        assert not result.ok and "--provider supabase" in result.providers[0].error
        with psycopg.connect(neon) as conn:  # the primary was never touched
            assert conn.execute("SELECT to_regclass('schema_migrations')").fetchone() == (None,)
        db.close()


def test_deploy_rejects_bad_targets(make_db, cli_env, capsys):
    db = make_db()
    with pytest.raises(ValueError, match="unknown provider 'nope'"):
        deploy(db, provider="nope")
    with pytest.raises(ValueError, match="not both"):
        deploy(db, provider="neon", all_providers=True)
    assert main(["schema", "deploy", "--provider", "nope"]) == 2
    assert "configured providers: neon, supabase, railway" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["schema", "deploy"])  # --provider or --all is required


# ---- fix-constraints -----------------------------------------------------------------


def test_fix_replaces_the_old_five_value_constraint(canonical_after, cli_env, capsys):
    db = canonical_after
    set_memory_type_check(db, "supabase", OLD_FIVE)
    old = constraint_defs(db, "supabase")
    assert "message_system" not in old[MEMORY_TYPE_CONSTRAINT]
    assert any("constraint session_memories_memory_type_check" in d for d in schema_verify(db).differences)

    plan = fix_constraints(db, check=True)
    assert plan.ok and not plan.changed
    by_name = {p.provider: p for p in plan.providers}
    assert by_name["neon"].status == "canonical" and by_name["railway"].status == "canonical"
    assert by_name["supabase"].status == "would_replace"
    assert by_name["supabase"].statements[0] == f"ALTER TABLE session_memories DROP CONSTRAINT {MEMORY_TYPE_CONSTRAINT}"
    assert constraint_defs(db, "supabase") == old  # the dry run changed nothing

    assert main(["schema", "fix-constraints", "--provider", "supabase", "--dry-run"]) == 0
    assert "[PLAN] supabase: current" in capsys.readouterr().out
    assert constraint_defs(db, "supabase") == old

    result = fix_constraints(db, provider="supabase")
    assert result.changed and result.providers[0].status == "replaced"
    assert list(constraint_defs(db, "supabase")) == [MEMORY_TYPE_CONSTRAINT]
    assert schema_verify(db).ok

    again = fix_constraints(db)
    assert not again.changed and {p.status for p in again.providers} == {"canonical"}


def test_fix_refuses_when_rows_would_violate_and_changes_nothing(canonical_after, cli_env, capsys):
    db = canonical_after
    set_memory_type_check(db, "neon", WITH_EXTRA)
    set_memory_type_check(db, "supabase", OLD_FIVE)
    with db.provider_connection("neon") as conn:
        conn.execute(
            "INSERT INTO session_memories (id, session_id, user_id, memory_type, content) "
            "VALUES (%s, 'fixtest-1', 'u', 'legacy_note', '{}'), (%s, 'fixtest-2', 'u', 'legacy_note', '{}')",
            (uuid.uuid4(), uuid.uuid4()),
        )
        conn.commit()
    before = {name: constraint_defs(db, name) for name in db.providers}

    plan = fix_constraints(db, check=True)
    assert not plan.ok and not plan.changed
    neon = next(p for p in plan.providers if p.provider == "neon")
    assert neon.status == "blocked" and neon.violations == {"legacy_note": 2}
    assert "would refuse" in plan.summary

    with pytest.raises(ConstraintViolationError) as caught:
        fix_constraints(db)
    assert caught.value.violations == {"neon": {"legacy_note": 2}}
    message = str(caught.value)
    assert "provider neon: 2 row(s) with memory_type 'legacy_note'" in message
    assert "nothing was changed" in message and "Update or remove those rows" in message

    assert main(["schema", "fix-constraints"]) == 1
    assert "refused to replace session_memories_memory_type_check" in capsys.readouterr().err

    assert {name: constraint_defs(db, name) for name in db.providers} == before  # supabase untouched too
    with db.provider_connection("neon") as conn:
        assert conn.execute("SELECT count(*) FROM session_memories WHERE memory_type = 'legacy_note'"
                            ).fetchone() == (2,)
        conn.rollback()


def test_fix_reports_an_unreachable_provider(canonical_after, local):
    db = canonical_after
    set_memory_type_check(db, "neon", OLD_FIVE)
    local.kill("railway")
    result = fix_constraints(db)
    status = {p.provider: p.status for p in result.providers}
    assert status == {"neon": "replaced", "supabase": "canonical", "railway": "unreachable"}
    assert not result.ok and result.changed
    assert "fix-constraints --provider railway" in result.providers[2].error
    local.start("railway")  # before the fixture puts the canonical constraint back everywhere


# ---- runbook scripts ---------------------------------------------------------------------


def test_runbook_scripts_run_as_written(env, tmp_path, passwords):
    child_env = {"PATH": os.environ.get("PATH", ""), **env}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, *args], cwd=tmp_path, env=child_env, capture_output=True,
                              text=True, timeout=60)

    dry = run(str(REPO / "scripts/deploy_multi_provider_schema.py"), "--provider", "neon", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert f"[OK] neon: up to date (v{TARGET})" in dry.stdout and dry.stdout.startswith("[OK] neon")
    verify = run(str(REPO / "scripts/deploy_multi_provider_schema.py"), "--verify")
    assert verify.returncode == 0, verify.stderr
    assert f"No schema drift: 3 provider(s) match schema v{TARGET}." in verify.stdout
    fix = run(str(REPO / "scripts/ops/fix_schema_constraints.py"), "--dry-run", "--provider", "neon")
    assert fix.returncode == 0, fix.stderr
    assert "[OK] neon: already canonical" in fix.stdout
    usage = run(str(REPO / "scripts/deploy_multi_provider_schema.py"))
    assert usage.returncode == 2 and "one of the arguments" in usage.stderr
    for result in (dry, verify, fix, usage):
        for password in passwords:
            assert password not in result.stdout + result.stderr
