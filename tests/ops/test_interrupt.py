"""A backup stopped by SIGTERM, SIGINT or SIGKILL: a real `agent-factory backup` process, a real pg_dump.

pg_dump is held on a table lock taken by the test, so the signal always lands
while it runs. SIGTERM/SIGINT: the tool is stopped, its passfile and partial
file removed, one line printed, exit 1. SIGKILL: the kernel kills pg_dump with
its parent; what is left (passfile directory, partial file) is removed by the
next backup and by `backups prune`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from agent_factory.state.backups import BackupCatalog
from agent_factory.state.store import StateStore

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def run_env(env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    """The CLI's environment: the local providers, and a private TMPDIR where its passfiles go."""
    (tmp_path / "tmp").mkdir()
    return {**os.environ, **env, "TMPDIR": str(tmp_path / "tmp")}


@pytest.fixture
def lock_holder(db: Any, local: Any) -> Iterator[psycopg.Connection[Any]]:
    """A transaction holding ACCESS EXCLUSIVE on knowledge_atoms of neon: pg_dump waits for it."""
    conn = psycopg.connect(local.url("neon"))
    conn.execute("LOCK TABLE knowledge_atoms IN ACCESS EXCLUSIVE MODE")
    yield conn
    conn.rollback()
    conn.close()


def start_backup(run_env: dict[str, str], cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "agent_factory.cli", "backup", "--provider", "neon"],
                            env=run_env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def children(pid: int) -> list[tuple[int, str]]:
    """Return (pid, command name) of the live child processes of `pid`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        name = stat[stat.index("(") + 1:stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2:].split()
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append((int(entry.name), name))
    return found


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def wait_for(predicate: Any, what: str, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def dumps_waiting(local: Any) -> int:
    """Return how many sessions wait for the test's lock in pg_dump's LOCK TABLE."""
    with psycopg.connect(local.url("neon"), autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                           "AND query ILIKE 'LOCK TABLE%'").fetchone()
    return int(row[0]) if row else 0


def dump_sessions(local: Any) -> int:
    with psycopg.connect(local.url("neon"), autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE query ILIKE 'LOCK TABLE%' "
                           "AND pid <> pg_backend_pid()").fetchone()
    return int(row[0]) if row else 0


def start_blocked_backup(run_env: dict[str, str], cwd: Path, local: Any) -> tuple[subprocess.Popen[str], int]:
    """Start `agent-factory backup`, wait until its pg_dump is blocked on the test's lock; return it and pg_dump's pid.

    Sessions of earlier, killed pg_dumps may still wait on the server (a backend
    waiting for a lock does not notice its client is gone), so a new waiter is counted.
    """
    before = dumps_waiting(local)
    proc = start_backup(run_env, cwd)
    wait_for(lambda: dumps_waiting(local) > before, "pg_dump to wait for the table lock")
    [pid] = wait_for(lambda: [p for p, name in children(proc.pid) if name == "pg_dump"], "pg_dump's process")
    return proc, pid


def files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir()) if directory.exists() else []


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_stops_pg_dump_and_removes_passfile_and_partial_file(
        run_env: dict[str, str], tmp_path: Path, local: Any, lock_holder: psycopg.Connection[Any],
        signum: signal.Signals, passwords: list[str]) -> None:
    proc, dump_pid = start_blocked_backup(run_env, tmp_path, local)
    [passdir] = files(tmp_path / "tmp")
    assert passdir.startswith(f"agent-factory-pg-{proc.pid}-")
    [partial] = files(tmp_path / "backups")
    assert partial.startswith(".neon-") and partial.endswith(f".dump.partial-{proc.pid}")

    proc.send_signal(signum)
    out, err = proc.communicate(timeout=60)

    assert proc.returncode == 1
    assert out == ""
    lines = err.strip().splitlines()
    assert lines[-1] == f"interrupted by {signum.name}: the running tool was stopped and its temporary files removed"
    assert sum("interrupted" in line for line in lines) == 1 and "Traceback" not in err
    assert not alive(dump_pid), "pg_dump outlived the backup"
    assert files(tmp_path / "tmp") == []  # no passfile
    assert files(tmp_path / "backups") == []  # no partial file, no manifest
    record = BackupCatalog(StateStore(run_env["AGENT_FACTORY_STATE_DIR"])).last_attempt("neon")
    assert record is not None
    assert record.status == "failed" and f"interrupted ({signum.name})" in (record.error or "")
    assert not any(p in err for p in passwords)

    lock_holder.rollback()  # pg_dump's server session ends once it stops waiting and finds its client gone
    wait_for(lambda: dump_sessions(local) == 0, "pg_dump's server session to end", timeout=30)


def test_leftovers_of_a_sigkilled_backup_are_removed_by_the_next_backup_and_by_prune(
        run_env: dict[str, str], tmp_path: Path, local: Any, lock_holder: psycopg.Connection[Any]) -> None:
    def killed_run() -> tuple[str, str]:
        proc, dump_pid = start_blocked_backup(run_env, tmp_path, local)
        proc.kill()
        proc.communicate(timeout=30)
        wait_for(lambda: not alive(dump_pid), "the kernel to kill pg_dump with its parent", timeout=10)
        [passdir] = [d for d in files(tmp_path / "tmp") if d.startswith(f"agent-factory-pg-{proc.pid}-")]
        assert (tmp_path / "tmp" / passdir / "pgpass").is_file()  # the password is still on disk...
        [partial] = [f for f in files(tmp_path / "backups") if f.endswith(f".partial-{proc.pid}")]
        return passdir, partial

    left = killed_run()
    lock_holder.rollback()  # let the next backup run
    done = subprocess.run([sys.executable, "-m", "agent_factory.cli", "backup", "--provider", "neon"], env=run_env,
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert files(tmp_path / "tmp") == []  # ...until the next backup removed it
    assert not (set(left) & set(files(tmp_path / "backups")))
    assert all(not name.startswith(".") for name in files(tmp_path / "backups"))

    lock_holder.execute("LOCK TABLE knowledge_atoms IN ACCESS EXCLUSIVE MODE")
    passdir, partial = killed_run()
    lock_holder.rollback()
    prune = [sys.executable, "-m", "agent_factory.cli", "backups", "prune", "--keep", "5"]
    planned = subprocess.run([*prune, "--dry-run"], env=run_env, cwd=tmp_path, capture_output=True, text=True,
                             timeout=60)
    assert planned.returncode == 0, planned.stderr
    assert passdir in planned.stdout and partial in planned.stdout
    assert passdir in files(tmp_path / "tmp") and partial in files(tmp_path / "backups")  # a dry run removes nothing
    pruned = subprocess.run(prune, env=run_env, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert pruned.returncode == 0, pruned.stderr
    assert f"removed the partial file {tmp_path / 'backups' / partial}" in pruned.stdout
    assert files(tmp_path / "tmp") == []
    assert partial not in files(tmp_path / "backups")


def test_sigterm_during_pg_restore_rolls_back_and_cleans_up(
        db: Any, run_env: dict[str, str], tmp_path: Path, local: Any) -> None:
    from agent_factory.ops.backup import backup

    db.execute_query("INSERT INTO settings (id, setting_key, setting_value) "
                     "VALUES (gen_random_uuid(), 'kept', 'before')")
    [made] = backup(db, "neon", backup_dir=tmp_path / "backups")
    db.execute_query("UPDATE settings SET setting_value = 'after' WHERE setting_key = 'kept'")
    holder = psycopg.connect(local.url("neon"))
    holder.execute("LOCK TABLE knowledge_atoms IN ACCESS SHARE MODE")  # the pre-restore pg_dump passes, --clean waits
    try:
        def waiting() -> int:
            with psycopg.connect(local.url("neon"), autocommit=True) as conn:
                row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'").fetchone()
            return int(row[0]) if row else 0

        before = waiting()
        proc = subprocess.Popen([sys.executable, "-m", "agent_factory.cli", "restore", "--provider", "neon",
                                 "--backup", str(made.path), "--yes"], env=run_env, cwd=tmp_path,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        wait_for(lambda: waiting() > before, "pg_restore to wait for the table lock")
        [restore_pid] = wait_for(lambda: [p for p, n in children(proc.pid) if n == "pg_restore"], "pg_restore")
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        holder.rollback()
        holder.close()

    assert proc.returncode == 1 and out == ""
    assert err.strip().splitlines()[-1] == ("interrupted by SIGTERM: the running tool was stopped and its temporary "
                                            "files removed")
    assert not alive(restore_pid)
    assert files(tmp_path / "tmp") == []
    assert all(not name.startswith(".") for name in files(tmp_path / "backups"))
    assert db.execute_query("SELECT setting_value FROM settings WHERE setting_key = 'kept'", fetch_mode="one") == (
        "after",)  # pg_restore's single transaction was rolled back: the target is as it was
