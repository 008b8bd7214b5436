"""The modules run directly against the real local providers: results, check mode, and bad input.

Bad input gets one clear `msg`, changes nothing, and no output carries a password.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from agent_factory.core import DatabaseManager
from agent_factory.ops import pgtools
from agent_factory.ops.locks import operation_lock
from agent_factory.state.backups import BackupCatalog
from agent_factory.state.store import StateStore

from ..replication.conftest import empty, setting, snapshot, value_of
from .conftest import LIBRARY, MODULES, Project, module_command


def _seed(db: DatabaseManager, provider: str = "neon", n: int = 25) -> None:
    with db.provider_connection(provider) as conn:
        conn.execute(
            "INSERT INTO knowledge_atoms (id, atom_id, atom_type, title, summary, content) "
            "SELECT gen_random_uuid(), 'atom-' || g, 'concept', 'T' || g, 'S' || g, 'C' || g "
            "FROM generate_series(1, %s) g", (n,))
        conn.commit()


def _count(db: DatabaseManager, provider: str, table: str = "knowledge_atoms") -> int:
    with db.provider_connection(provider) as conn:
        row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
        conn.rollback()
    return int(row[0])


def _files(project: Project) -> list[str]:
    return sorted(p.name for p in project.backups.glob("*")) if project.backups.exists() else []


def _no_secret(run, passwords: list[str]) -> None:
    text = run.stdout + run.stderr
    assert not any(p in text for p in passwords), "a password leaked into module output"


def test_backup_check_mode_then_real(module, project: Project, db: DatabaseManager, passwords: list[str]):
    _seed(db)
    plan = module("memory_backup", check_mode=True, provider="neon")
    assert plan.rc == 0 and plan.result["changed"] is True, plan.stdout
    assert plan.result["backups"][0]["status"] == "planned" and _files(project) == []
    done = module("memory_backup", provider="all")
    assert done.rc == 0 and done.result["changed"] is True
    paths = [b["path"] for b in done.result["backups"]]
    assert [b["provider"] for b in done.result["backups"]] == ["neon", "supabase", "railway"]
    assert all(Path(p).is_absolute() and Path(p).is_file() for p in paths)
    assert done.result["backups"][0]["ok"] is True
    assert done.result["backups"][0]["row_counts"]["public.knowledge_atoms"] == 25
    _no_secret(done, passwords)


def test_backup_all_with_one_provider_killed_fails_naming_it_but_keeps_the_others(
        module, project: Project, local, passwords: list[str]):
    local.kill("supabase")
    run = module("memory_backup", provider="all")
    assert run.rc == 1 and run.result["failed"] is True and run.result["changed"] is True
    assert "failed supabase:" in run.result["msg"]
    assert [b["status"] for b in run.result["backups"]] == ["ok", "failed", "ok"]
    _no_secret(run, passwords)


def test_info_verify_prune(module, project: Project, db: DatabaseManager):
    for _ in range(3):
        assert module("memory_backup", provider="neon").rc == 0
    info = module("memory_backup_info", provider="all")
    assert info.rc == 0 and info.result["changed"] is False
    assert len(info.result["backups"]) == 3 and info.result["primary"] == "neon"
    newest = info.result["newest"]["neon"]
    assert newest["state"] == "verified" and newest["path"] == info.result["backups"][0]["path"]
    assert info.result["newest"]["supabase"] is None

    quick = module("memory_backup_verify", check_mode=True, path=newest["path"], deep=True)
    assert quick.rc == 0 and quick.result["verification"]["deep"] is False  # check mode: file checks only
    deep = module("memory_backup_verify", path=newest["path"], deep=True)
    assert deep.rc == 0 and deep.result["changed"] is False
    assert deep.result["verification"]["scratch_database"].startswith("af_verify_")

    plan = module("memory_backup_prune", check_mode=True, keep=1, provider="all")
    assert plan.result["changed"] is True and len(plan.result["deleted"]) == 2 and len(_files(project)) == 6
    pruned = module("memory_backup_prune", keep=1)
    assert pruned.result["changed"] is True and len(_files(project)) == 2
    again = module("memory_backup_prune", keep=1)
    assert again.result["changed"] is False


def test_restore_module_restores_rows(module, project: Project, db: DatabaseManager):
    _seed(db, n=30)
    path = module("memory_backup", provider="neon").result["backups"][0]["path"]
    with db.provider_connection("neon") as conn:
        conn.execute("DELETE FROM knowledge_atoms WHERE atom_id <> 'atom-1'")
        conn.commit()
    plan = module("memory_restore", check_mode=True, backup=path)
    assert plan.rc == 0 and plan.result["restore"]["status"] == "planned" and _count(db, "neon") == 1
    run = module("memory_restore", backup=path, provider="neon")
    assert run.rc == 0 and run.result["changed"] is True, run.stdout
    assert run.result["restore"]["ok"] is True and _count(db, "neon") == 30
    assert Path(run.result["restore"]["pre_restore_backup"]).is_file()


def test_schema_and_schema_info(module, project: Project, db: DatabaseManager):
    info = module("memory_schema_info")
    assert info.rc == 0 and info.result["ok"] is True and info.result["drifted"] == []
    deployed = module("memory_schema", provider="all")
    assert deployed.rc == 0 and deployed.result["changed"] is False and deployed.result["ok"] is True
    fixed = module("memory_schema", check_mode=True, state="constraints_fixed")
    assert fixed.rc == 0 and fixed.result["changed"] is False
    assert {p["status"] for p in fixed.result["providers"]} == {"canonical"}


def test_primary_module_diff_and_check(module, project: Project):
    before = project.env_file.read_text()
    plan = module("memory_primary", check_mode=True, provider="supabase", _ansible_diff=True)
    assert plan.rc == 0 and plan.result["changed"] is True and project.env_file.read_text() == before
    assert plan.result["diff"]["after"] == "DATABASE_PROVIDER=supabase\n"
    done = module("memory_primary", provider="supabase")
    assert done.result["previous"] == "neon" and done.result["current"] == "supabase"
    assert "DATABASE_PROVIDER=supabase" in project.env_file.read_text()


def test_health_and_verify(module, project: Project, local, passwords: list[str]):
    ok = module("memory_health", require="all")
    assert ok.rc == 0 and ok.result["healthy"] == ["neon", "supabase", "railway"]
    local.kill("neon")
    any_ = module("memory_health")
    assert any_.rc == 0 and any_.result["down"] == ["neon"]
    primary = module("memory_health", require="primary")
    assert primary.rc == 1 and "health requirement 'primary' not met" in primary.result["msg"]
    verify = module("memory_verify")
    assert verify.rc == 0 and verify.result["ok"] is True and "neon down" in verify.result["summary"]
    for run in (any_, primary, verify):
        _no_secret(run, passwords)


def test_sync_pair_check_mode_then_real(module, project: Project, db: DatabaseManager, passwords: list[str]):
    empty(db)
    setting(db, "supabase", "written-during-failover", "kept")
    plan = module("memory_sync", check_mode=True, source="supabase", target="neon")
    assert plan.rc == 0 and plan.result["changed"] is True and plan.result["dry_run"] is True, plan.stdout
    assert plan.result["rows_copied"] == 1 and value_of(db, "neon", "written-during-failover") is None
    assert StateStore(project.state).latest_syncs() == []  # a dry run records nothing
    done = module("memory_sync", source="supabase", target="neon")
    assert done.rc == 0 and done.result["changed"] is True and done.result["ok"] is True, done.stdout
    [pair] = done.result["pairs"]
    assert (pair["source"], pair["target"], pair["rows_copied"]) == ("supabase", "neon", 1)
    assert pair["lag_s"] is not None and done.result["max_lag_s"] == pair["lag_s"]
    assert {t["table"] for t in pair["tables"]} >= {"settings", "session_memories"}
    assert value_of(db, "neon", "written-during-failover") == ("kept", False)
    assert [(r.source, r.target, r.rows_copied) for r in StateStore(project.state).latest_syncs()] == [
        ("supabase", "neon", 1)]
    again = module("memory_sync", source="supabase", target="neon")
    assert again.rc == 0 and again.result["changed"] is False and again.result["rows_copied"] == 0
    _no_secret(done, passwords)


def test_sync_all_converges_and_fails_naming_an_unreachable_provider(module, project: Project, local,
                                                                     db: DatabaseManager, passwords: list[str]):
    empty(db)
    setting(db, "neon", "a", "1")
    setting(db, "supabase", "b", "2")
    setting(db, "railway", "c", "3", deleted=True)
    run = module("memory_sync", mode="all")
    assert run.rc == 0 and run.result["changed"] is True and run.result["hub"] == "neon", run.stdout
    assert [(p["source"], p["target"]) for p in run.result["pairs"]] == [
        ("supabase", "neon"), ("railway", "neon"), ("neon", "supabase"), ("neon", "railway")]
    assert snapshot(db, "neon") == snapshot(db, "supabase") == snapshot(db, "railway")
    local.kill("railway")
    setting(db, "supabase", "d", "4")
    down = module("memory_sync", mode="all")
    assert down.rc == 1 and down.result["changed"] is True and down.result["skipped"] == {"railway": "unreachable"}
    assert "skipped railway (unreachable)" in down.result["msg"]
    assert value_of(db, "neon", "d") == ("4", False)  # the reachable providers were merged all the same
    _no_secret(down, passwords)


@pytest.mark.parametrize("args, message", [
    ({"source": "nope", "target": "neon"}, "unknown provider 'nope'; configured providers: neon, supabase, railway"),
    ({"source": "neon", "target": "neon"}, "cannot sync provider neon into itself; name two different providers"),
    ({"source": "neon"}, "mode is pair but all of the following are missing: target"),
    ({"mode": "all", "target": "neon"}, "mode=all converges every provider: leave out source and target"),
    ({"mode": "all", "wait": -1}, "wait must be 0 or more seconds"),
])
def test_sync_bad_input(module, project: Project, db: DatabaseManager, args: dict, message: str,
                        passwords: list[str]):
    empty(db)
    setting(db, "neon", "a", "1")
    before = [snapshot(db, n) for n in ("neon", "supabase", "railway")]
    run = module("memory_sync", **args)
    assert run.rc == 1 and message in run.result["msg"] and not run.result.get("changed"), run.stdout
    assert [snapshot(db, n) for n in ("neon", "supabase", "railway")] == before
    assert StateStore(project.state).latest_syncs() == []
    _no_secret(run, passwords)


# ---- bad input --------------------------------------------------------------------------------------------


REQUIRED = {"memory_backup_prune": {"keep": 1}, "memory_backup_verify": {"path": "x"},
            "memory_restore": {"backup": "x"}, "memory_primary": {"provider": "neon"},
            "memory_sync": {"mode": "all"}, "memory_maintenance": {"action": "pools"}}


@pytest.mark.parametrize("name", MODULES)
def test_unknown_option_is_refused(module, name: str):
    run = module(name, not_an_option=1, **REQUIRED.get(name, {}))
    assert run.rc == 1 and "Unsupported parameters" in run.result["msg"] and "not_an_option" in run.result["msg"]


@pytest.mark.parametrize("name, args", [
    ("memory_backup", {"provider": "nope"}),
    ("memory_restore", {"provider": "nope", "backup": "x.dump"}),
    ("memory_schema", {"provider": "nope"}),
    ("memory_primary", {"provider": "nope"}),
    ("memory_backup_prune", {"provider": "nope", "keep": 1}),
    ("memory_backup_info", {"provider": "nope"}),
])
def test_unknown_provider(module, project: Project, name: str, args: dict, passwords: list[str]):
    (project.path / "x.dump").write_bytes(b"PGDMP")
    before = project.env_file.read_text()
    run = module(name, **args)
    assert run.rc == 1, run.stdout
    msg = run.result["msg"]
    assert "nope" in msg and ("unknown provider" in msg or "no manifest" in msg)
    assert run.result["changed"] is False and project.env_file.read_text() == before and _files(project) == []
    _no_secret(run, passwords)


def test_missing_and_corrupt_backups(module, project: Project, db: DatabaseManager):
    missing = module("memory_restore", backup="backups/none.dump", provider="neon")
    assert missing.rc == 1 and "does not exist" in missing.result["msg"] and missing.result["changed"] is False
    good = Path(module("memory_backup", provider="neon").result["backups"][0]["path"])
    corrupt = good.with_name("corrupt.dump")
    shutil.copy(good, corrupt)
    shutil.copy(good.with_name(good.name + ".manifest.json"), corrupt.with_name("corrupt.dump.manifest.json"))
    with open(corrupt, "r+b") as fh:
        fh.seek(200)
        fh.write(b"garbage!")
    for name, args in (("memory_restore", {"backup": str(corrupt)}), ("memory_backup_verify", {"path": str(corrupt)})):
        run = module(name, **args)
        assert run.rc == 1 and "HMAC" in run.result["msg"], run.stdout
    assert not list(project.backups.glob("*pre*"))


def test_cross_provider_restore_needs_allow_cross_provider(module, project: Project, db: DatabaseManager):
    _seed(db, "neon", 5)
    path = module("memory_backup", provider="neon").result["backups"][0]["path"]
    before = _count(db, "railway")
    run = module("memory_restore", backup=path, provider="railway")
    assert run.rc == 1 and "allow_cross_provider: true" in run.result["msg"] and run.result["changed"] is False
    assert _count(db, "railway") == before
    allowed = module("memory_restore", backup=path, provider="railway", allow_cross_provider=True)
    assert allowed.rc == 0 and _count(db, "railway") == 5


def test_prune_without_retention(module, project: Project):
    run = module("memory_backup_prune")
    assert run.rc == 1 and "one of the following is required: keep, max_age_days" in run.result["msg"]


def test_broken_env_file(module, project: Project, passwords: list[str]):
    project.env_file.write_text(project.env_file.read_text() + "DATABASE_CONNECT_TIMEOUT=soon\n")
    run = module("memory_backup", provider="neon")
    assert run.rc == 1 and run.result["msg"] == "DATABASE_CONNECT_TIMEOUT='soon' is not a whole number; " \
                                                 "e.g. DATABASE_CONNECT_TIMEOUT=5"
    assert _files(project) == []
    missing = module("memory_health", env_file="nothing.env")
    assert missing.rc == 1 and "nothing.env does not exist" in missing.result["msg"]
    _no_secret(run, passwords)


def test_held_lock(module, project: Project, make_db, passwords: list[str]):
    db = make_db(AGENT_FACTORY_STATE_DIR=str(project.state))
    with operation_lock(pgtools.target_for(db, "neon"), project.state, "backup"):
        run = module("memory_backup", provider="neon")
    assert run.rc == 1 and "already running" in run.result["msg"] and _files(project) == []
    _no_secret(run, passwords)


def test_provider_urls_are_masked(module, project: Project, local, passwords: list[str]):
    project.env_file.write_text(f"AGENT_FACTORY_STATE_DIR={project.state}\n")
    urls = {n: local.url(n) for n in local.providers()}
    run = module("memory_health", provider_urls=urls, _ansible_verbosity=3)
    assert run.rc == 0 and run.result["healthy"] == ["neon", "supabase", "railway"]
    local.kill("railway")
    down = module("memory_health", provider_urls=urls, require="all")
    assert down.rc == 1
    _no_secret(run, passwords)
    _no_secret(down, passwords)
    assert BackupCatalog(StateStore(project.state)).entries() == []


def test_package_missing_names_the_interpreter(project: Project, tmp_path: Path):
    """A Python without agent_factory: the module says which interpreter lacks it."""
    bare = tmp_path / "bare"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(bare)], check=True, timeout=120)
    site = next(Path(sys.prefix).glob("lib/python3*/site-packages"))
    pth = next((bare / "lib").glob("python3*/site-packages"))
    (pth / "ansible_only.pth").write_text("")  # nothing of ours on its path
    env_args = {"ANSIBLE_MODULE_ARGS": {"project_dir": str(project.path), "provider": "neon"}}
    args = tmp_path / "args.json"
    args.write_text(json.dumps(env_args))
    # Ansible's module_utils come from the payload in real runs; here from a copy of just the ansible package.
    shutil.copytree(site / "ansible", pth / "ansible", ignore=shutil.ignore_patterns("__pycache__"))
    proc = subprocess.run(module_command(LIBRARY / "memory_backup.py", args, python=str(bare / "bin" / "python")),
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    result = json.loads(proc.stdout)
    assert proc.returncode == 1 and "Failed to import the required Python library (agent-factory)" in result["msg"]
    assert str(bare / "bin" / "python") in result["msg"]
