"""The playbooks run for real with ansible-playbook on inventory/local against the local providers."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from agent_factory.core import DatabaseManager
from agent_factory.state.backups import BackupCatalog
from agent_factory.state.store import StateStore

from ..replication.conftest import empty, one_of_each, setting, snapshot, value_of
from .conftest import BIN, PLAYBOOKS, REPO, Project, clean_environ

ALL_PLAYBOOKS = sorted(p.stem for p in PLAYBOOKS.glob("*.yml"))
RUNBOOK_PLAYBOOKS = {"health_check", "verify_deployment", "morning_checklist", "end_of_day", "switch_primary",
                     "deploy_schema", "fix_constraints", "backup", "restore", "emergency_all_down",
                     "data_corruption", "dr_test", "install", "install_schedules", "sync"}


def _seed(db: DatabaseManager, provider: str = "neon", n: int = 40) -> None:
    with db.provider_connection(provider) as conn:
        conn.execute(
            "INSERT INTO knowledge_atoms (id, atom_id, atom_type, title, summary, content) "
            "SELECT gen_random_uuid(), 'atom-' || g, 'concept', 'T' || g, 'S' || g, 'C' || g "
            "FROM generate_series(1, %s) g", (n,))
        conn.execute("INSERT INTO session_memories (id, session_id, user_id, memory_type, content) "
                     "SELECT gen_random_uuid(), 's' || g, 'u', 'context', '{}'::jsonb FROM generate_series(1, 7) g")
        conn.commit()


def _counts(db: DatabaseManager, provider: str = "neon") -> tuple[int, int]:
    with db.provider_connection(provider) as conn:
        atoms = conn.execute("SELECT count(*) FROM knowledge_atoms").fetchone()[0]
        sessions = conn.execute("SELECT count(*) FROM session_memories").fetchone()[0]
        conn.rollback()
    return int(atoms), int(sessions)


def _ok(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    return proc.stdout


def _no_secret(proc: subprocess.CompletedProcess[str], passwords: list[str]) -> None:
    text = proc.stdout + proc.stderr
    leaked = [p for p in passwords if p in text]
    assert not leaked, "a provider password appears in ansible-playbook output"


def _recap(out: str) -> dict[str, int]:
    line = re.search(r"localhost\s+: (.*)", out)
    assert line, out
    return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", line.group(1))}


def test_every_runbook_procedure_has_a_playbook():
    assert RUNBOOK_PLAYBOOKS <= set(ALL_PLAYBOOKS)


def test_syntax_check_of_every_playbook(tmp_path: Path) -> None:
    paths = [str(PLAYBOOKS / f"{name}.yml") for name in ALL_PLAYBOOKS]
    proc = subprocess.run([str(BIN / "ansible-playbook"), "--syntax-check", *paths], cwd=REPO,
                          env=clean_environ(tmp_path), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "[WARNING]" not in proc.stderr, proc.stderr
    assert proc.stdout.count("playbook: ") == len(paths)


def test_backup_all_with_vvv_shows_no_password(playbook, project: Project, db: DatabaseManager,
                                               passwords: list[str]):
    _seed(db)
    proc = playbook("backup", "-vvv", provider="all")
    out = _ok(proc)
    assert "Step 1: Back up all" in out
    assert sorted(p.name.split("-")[0] for p in project.backups.glob("*.dump")) == ["neon", "railway", "supabase"]
    assert _recap(out)["changed"] == 1
    _no_secret(proc, passwords)


def test_backup_with_a_provider_killed_fails_naming_it(playbook, project: Project, local, passwords: list[str]):
    local.kill("railway")
    proc = playbook("backup", "-vvv", provider="all")
    assert proc.returncode != 0
    assert "failed railway:" in proc.stdout
    assert {p.name.split("-")[0] for p in project.backups.glob("*.dump")} == {"neon", "supabase"}
    _no_secret(proc, passwords)


def test_restore_after_deleting_rows_brings_counts_back(playbook, project: Project, db: DatabaseManager,
                                                        passwords: list[str]):
    _seed(db)
    _ok(playbook("backup", provider="neon"))
    backup = next(project.backups.glob("neon-*.dump"))
    with db.provider_connection("neon") as conn:
        conn.execute("DELETE FROM knowledge_atoms WHERE atom_id NOT IN ('atom-1', 'atom-2')")
        conn.execute("DELETE FROM session_memories")
        conn.commit()
    assert _counts(db) == (2, 0)
    refused = playbook("restore", backup=str(backup), provider="neon")
    assert refused.returncode != 0 and "-e confirm=yes" in refused.stdout and _counts(db) == (2, 0)
    proc = playbook("restore", "-vvv", backup=str(backup), provider="neon", confirm="yes")
    out = _ok(proc)
    assert _counts(db) == (40, 7)
    for step in ("Step 1: STOP ALL APPLICATIONS", "Step 2: Check the backup file", "Step 3: Create pre-restore",
                 "Step 4: Verify restore worked", "Step 5: Check data integrity", "Step 6: RESTART APPLICATIONS"):
        assert step in out
    assert "The memory system can serve" in out and "RTO:" in out
    assert len(list(project.backups.glob("neon-*.dump"))) == 2  # the pre-restore backup
    _no_secret(proc, passwords)


def test_restore_check_mode_changes_nothing(playbook, project: Project, db: DatabaseManager, passwords: list[str]):
    _seed(db)
    _ok(playbook("backup", provider="neon"))
    backup = next(project.backups.glob("neon-*.dump"))
    with db.provider_connection("neon") as conn:
        conn.execute("DELETE FROM knowledge_atoms")
        conn.commit()
    files = {p.name: p.stat().st_mtime_ns for p in project.backups.iterdir()}
    catalog = BackupCatalog(StateStore(project.state))
    entries, restores = catalog.entries(), catalog.restores() if hasattr(catalog, "restores") else None
    proc = playbook("restore", "--check", "-vvv", backup=str(backup), provider="neon")
    out = _ok(proc)
    assert "plan:" in out
    assert _counts(db) == (0, 7)
    assert {p.name: p.stat().st_mtime_ns for p in project.backups.iterdir()} == files
    assert catalog.entries() == entries
    if restores is not None:
        assert catalog.restores() == restores
    _no_secret(proc, passwords)


def test_restore_with_target_killed_fails_without_password(playbook, project: Project, local, db, passwords):
    _ok(playbook("backup", provider="neon"))
    backup = next(project.backups.glob("neon-*.dump"))
    local.kill("neon")
    proc = playbook("restore", "-vvv", backup=str(backup), provider="neon", confirm="yes")
    assert proc.returncode != 0 and "Step 3" in proc.stdout and "neon is unavailable" in proc.stdout
    _no_secret(proc, passwords)


def test_deploy_schema_stops_at_the_step_that_finds_drift(playbook, project: Project, db: DatabaseManager):
    proc = playbook("deploy_schema", "--check")
    _ok(proc)
    assert not list(project.backups.glob("*.dump"))  # check mode: the backups were only planned
    with db.provider_connection("supabase") as conn:
        conn.execute("ALTER TABLE knowledge_atoms ADD COLUMN drift_col integer")
        conn.commit()
    try:
        proc = playbook("deploy_schema")
        assert proc.returncode != 0
        assert "deploy_schema stopped at 'Step 4: Verify schema deployed correctly on supabase'" in proc.stdout
        assert "drift_col" in proc.stdout
        assert "Step 5-6" not in proc.stdout  # railway and the primary were not touched
        assert len(list(project.backups.glob("*.dump"))) == 3  # step 1 backed up all providers
    finally:
        with db.provider_connection("supabase") as conn:
            conn.execute("ALTER TABLE knowledge_atoms DROP COLUMN drift_col")
            conn.commit()
    out = _ok(playbook("deploy_schema"))
    assert "Step 7: Final verification" in out
    # Subscribers first: the primary is applied last, after every backup.
    rollout = out[out.index("Step 5-6"):]
    assert out.index("Step 3: Apply to supabase") < out.index("Step 5-6")
    assert rollout.index("(item=railway)") < rollout.index("(item=neon)")
    proc = playbook("deploy_schema", rollout_providers=["neon", "railway"])
    assert proc.returncode != 0 and "must come last in rollout_providers" in proc.stdout


def test_switch_primary(playbook, project: Project, local, passwords: list[str]):
    out = _ok(playbook("switch_primary", "--check", "--diff", provider="supabase"))
    assert "+DATABASE_PROVIDER=supabase" in out and "DATABASE_PROVIDER" not in project.env_file.read_text()
    out = _ok(playbook("switch_primary", provider="supabase"))
    assert "Current primary: supabase (was neon)" in out
    assert "DATABASE_PROVIDER=supabase" in project.env_file.read_text()
    local.kill("railway")
    before = project.env_file.read_text()
    proc = playbook("switch_primary", "-vvv", provider="railway")
    assert proc.returncode != 0 and "railway is not healthy" in proc.stdout
    assert project.env_file.read_text() == before
    _no_secret(proc, passwords)
    missing = playbook("switch_primary")
    assert missing.returncode != 0 and "-e provider=NAME" in missing.stdout


def test_health_check_with_one_provider_killed(playbook, project: Project, local, passwords: list[str]):
    local.kill("supabase")
    proc = playbook("health_check")
    out = _ok(proc)
    assert "[DOWN] supabase:" in out and "[OK] neon: healthy" in out
    strict = playbook("health_check", require="all")
    assert strict.returncode != 0 and "health requirement 'all' not met" in strict.stdout
    _no_secret(proc, passwords)


def test_emergency_all_down(playbook, project: Project, local, passwords: list[str]):
    for name in local.providers():
        local.kill(name)
    proc = playbook("emergency_all_down", "-vvv")
    assert proc.returncode != 0
    for name in ("neon", "supabase", "railway"):
        assert f"[DOWN] {name}:" in proc.stdout
    assert "Step 5: Verify provider is healthy" in proc.stdout and "all providers down" in proc.stdout
    assert "InMemoryStorage" in proc.stdout
    _no_secret(proc, passwords)
    local.start("neon")
    out = _ok(playbook("emergency_all_down"))
    assert "The memory system can serve" in out


def test_dr_test_reports_rto_and_touches_no_provider_data(playbook, project: Project, db: DatabaseManager):
    _seed(db)
    out = _ok(playbook("dr_test"))
    assert re.search(r"RTO \d+(\.\d+)? s \(backup", out)
    assert _counts(db) == (40, 7)


def test_morning_checklist_requires_last_nights_backup(playbook, project: Project, db: DatabaseManager):
    proc = playbook("morning_checklist")
    assert proc.returncode != 0 and "no verified backup of neon" in proc.stdout
    _ok(playbook("backup", provider="neon"))
    out = _ok(playbook("morning_checklist"))
    assert "Knowledge atoms on neon: 0" in out


def test_check_mode_of_every_runbook_playbook_changes_nothing(playbook, project: Project, db: DatabaseManager):
    _seed(db)
    _ok(playbook("backup", provider="neon"))
    backup = str(next(project.backups.glob("neon-*.dump")))
    env_before = project.env_file.read_text()
    files = sorted(p.name for p in project.backups.iterdir())
    for name, extra in (("backup", {"provider": "all"}), ("fix_constraints", {}), ("deploy_schema", {}),
                        ("switch_primary", {"provider": "railway"}), ("data_corruption", {"backup": backup}),
                        ("end_of_day", {}), ("dr_test", {})):
        _ok(playbook(name, "--check", **extra))
    assert sorted(p.name for p in project.backups.iterdir()) == files
    assert project.env_file.read_text() == env_before
    assert _counts(db) == (40, 7)


PROVIDERS = ("neon", "supabase", "railway")


def _differ(db: DatabaseManager) -> None:
    """Make the providers hold different rows: writes on each, an edit on both sides, a deletion."""
    empty(db)
    for name in PROVIDERS:
        one_of_each(db, name, name)
    setting(db, "neon", "shared", "old")
    setting(db, "railway", "shared", "newest")  # written later: wins everywhere
    setting(db, "supabase", "gone", "x", deleted=True)


def test_sync_all_makes_every_provider_hold_the_same_rows(playbook, project: Project, db: DatabaseManager,
                                                          passwords: list[str]):
    _differ(db)
    assert snapshot(db, "neon") != snapshot(db, "supabase") != snapshot(db, "railway")
    proc = playbook("sync", "-vvv")
    out = " ".join(_ok(proc).split())  # -vvv prints messages as YAML, wrapped
    assert "Step 1: Merge every provider" in out and "Step 2: Report the lag of each pair" in out
    for pair in ("supabase -> neon", "railway -> neon", "neon -> supabase", "neon -> railway"):
        assert re.search(rf"{pair}: \d+ rows copied, \d+ conflicts resolved, \d+ tombstones applied, lag "
                         r"\d+\.\d s", out), pair
    assert "4 syncs: " in out and _recap(out)["changed"] == 1
    rows = snapshot(db, "neon")
    assert rows == snapshot(db, "supabase") == snapshot(db, "railway")  # the rows, not just the counts
    assert all(value_of(db, n, "shared") == ("newest", False) for n in PROVIDERS)
    assert all(value_of(db, n, "gone") == ("x", True) for n in PROVIDERS)  # the tombstone travelled
    assert sum(len(v) for v in rows.values()) == 3 * 12 + 2
    assert {(r.source, r.target) for r in StateStore(project.state).latest_syncs()} == {
        ("supabase", "neon"), ("railway", "neon"), ("neon", "supabase"), ("neon", "railway")}
    _no_secret(proc, passwords)
    again = _ok(playbook("sync"))
    assert _recap(again)["changed"] == 0 and "4 syncs: 0 rows copied" in again


def test_sync_check_mode_changes_nothing_then_one_pair(playbook, project: Project, db: DatabaseManager,
                                                       passwords: list[str]):
    _differ(db)
    before = {n: snapshot(db, n) for n in PROVIDERS}
    proc = playbook("sync", "--check", "-vvv")
    out = " ".join(_ok(proc).split())
    assert "rows would copy" in out and _recap(out)["changed"] == 1
    assert {n: snapshot(db, n) for n in PROVIDERS} == before
    assert StateStore(project.state).latest_syncs() == []
    _no_secret(proc, passwords)
    out = " ".join(_ok(playbook("sync", source="supabase", target="neon")).split())
    assert "Step 1: Merge supabase into neon" in out
    assert "supabase -> neon: 13 rows copied, 0 conflicts resolved, 1 tombstones applied, lag" in out
    assert value_of(db, "neon", "key-supabase") == ("value-supabase", False)
    assert value_of(db, "neon", "gone") == ("x", True)
    assert value_of(db, "neon", "key-railway") is None  # only the pair ran
    assert snapshot(db, "supabase") == before["supabase"] and snapshot(db, "railway") == before["railway"]


@pytest.mark.parametrize("extra, message", [
    ({"source": "neon", "target": "neon"}, "two different providers"),
    ({"source": "neon"}, "two different providers"),
    ({"mode": "all", "source": "neon", "target": "supabase"}, "use -e mode=all"),
    ({"mode": "everything"}, "use -e mode=all"),
    ({"source": "nope", "target": "neon"}, "unknown provider 'nope'; configured providers: neon, supabase, railway"),
])
def test_sync_bad_input_gives_one_clear_message(playbook, project: Project, db: DatabaseManager, extra: dict,
                                                message: str, passwords: list[str]):
    empty(db)
    setting(db, "neon", "a", "1")
    before = {n: snapshot(db, n) for n in PROVIDERS}
    proc = playbook("sync", "-vvv", **extra)
    assert proc.returncode != 0 and message in proc.stdout, proc.stdout[-3000:]
    assert proc.stdout.count("FAILED!") == 1
    assert {n: snapshot(db, n) for n in PROVIDERS} == before
    _no_secret(proc, passwords)


def test_interpreter_without_the_package_is_named(playbook, project: Project, tmp_path: Path):
    """A host Python without agent-factory (interpreter discovery's pick): the task says which Python lacks it."""
    bare = tmp_path / "bare"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(bare)], check=True, timeout=120)
    python = bare / "bin" / "python"
    proc = playbook("health_check", ansible_python_interpreter=str(python))
    assert proc.returncode != 0
    assert "Failed to import the required Python library (agent-factory)" in proc.stdout
    assert f"Python {python}." in proc.stdout


def test_install_playbooks_check_mode_write_nothing(playbook, project: Project, tmp_path: Path):
    install_dir = tmp_path / "opt-agent-factory"
    cron = [Path("/etc/cron.d/agent-factory-backup"), Path("/etc/cron.d/agent-factory-health-monitor")]
    existed = [p.exists() for p in cron]
    # install.yml finds the host's Python itself (auto_silent); here it is told which, as on a host whose
    # discovery picks a broken shim.
    out = _ok(playbook("install", "--check", ansible_python_interpreter=sys._base_executable,
                       agent_factory_install_dir=str(install_dir), agent_factory_install_client_tools=False))
    assert "Install the agent-factory package" in out and not install_dir.exists()
    out = _ok(playbook("install_schedules", "--check", memory_backup_project_dir=str(install_dir),
                       health_monitor_project_dir=str(install_dir), status_page_project_dir=str(install_dir)))
    assert "Schedule the daily backup of every provider" in out
    assert [p.exists() for p in cron] == existed and not install_dir.exists()
