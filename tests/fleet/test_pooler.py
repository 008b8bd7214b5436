"""The library behind a real PgBouncer in transaction mode (neon's URL through it, NEON_DIRECT_URL past it)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from agent_factory.cli import main
from agent_factory.core import DatabaseManager
from agent_factory.memory import Message, PostgresMemoryStorage, Session
from tests.conftest import make_config, wait_until

from ..replication.conftest import empty, setting, snapshot


@pytest.fixture
def cli(pooled_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Point the in-process CLI at the pooled providers, from a directory without .env."""
    for key, value in pooled_env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(tmp_path)
    return pooled_env


@pytest.fixture
def pdb(pooled_env: dict[str, str], db: DatabaseManager) -> DatabaseManager:
    """A manager whose neon goes through the pooler; every provider emptied first (through `db`)."""
    empty(db)
    manager = DatabaseManager(make_config(pooled_env))
    yield manager
    manager.close()


def test_the_pool_goes_through_pgbouncer_and_sessions_go_past_it(pdb, pooler, local):
    with pdb.provider_connection("neon") as conn:
        assert conn.info.port == pooler.port
        assert conn.prepare_threshold is None  # NEON_PREPARED_STATEMENTS=false
    with pdb.session_connection("neon", "sync") as conn:
        assert conn.info.port == local.get("neon").port


@pytest.mark.timeout(180)
def test_memory_api_at_concurrency_through_the_pooler(pdb):
    storage = PostgresMemoryStorage(pdb)
    errors: list[BaseException] = []
    saved: dict[str, list[str]] = {}

    def writer(n: int) -> None:
        try:
            for i in range(15):
                session = Session(user_id=f"u{n}", messages=[Message("user", f"{n}-{i}-a")])
                storage.save_session(session)
                storage.append_messages(session.session_id, [{"role": "assistant", "content": f"{n}-{i}-b"}])
                saved[session.session_id] = [f"{n}-{i}-a", f"{n}-{i}-b"]
                storage.save_memory_atom(session.session_id, f"u{n}", "decision", {"i": i})
                assert storage.load_session(session.session_id) is not None
        except BaseException as exc:  # asserted below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=150)
    assert not errors, errors[:3]
    assert pdb.active_provider == "neon"
    assert len(saved) == 12 * 15
    for session_id, contents in saved.items():
        loaded = storage.load_session(session_id)
        assert loaded is not None and [m.content for m in loaded.messages] == contents
    assert len(storage.query_memory_atoms(memory_type="decision", limit=1000)) == 12 * 15


@pytest.mark.timeout(300)
def test_sync_all_succeeds_ten_times_in_a_row_through_the_pooler(cli, pdb, capsys):
    # Traffic through the pooler meanwhile, as in a fleet: it shuffles PgBouncer's
    # server connections, so a lock left on one of them would be hit by the next run.
    storage = PostgresMemoryStorage(pdb)
    stop = threading.Event()

    def traffic() -> None:
        while not stop.is_set():
            storage.save_session(Session(user_id="traffic", messages=[Message("user", "x")]))

    threads = [threading.Thread(target=traffic, daemon=True) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        for run in range(10):
            setting(pdb, ("neon", "supabase", "railway")[run % 3], f"k{run}", str(run))
            code = main(["sync", "--all"])
            out = capsys.readouterr()
            assert code == 0 and "busy" not in out.out + out.err, f"run {run}: {out.out} {out.err}"
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=30)
    assert main(["sync", "--all"]) == 0
    states = [snapshot(pdb, n) for n in ("neon", "supabase", "railway")]
    assert states[0] == states[1] == states[2]
    assert len(states[0]["settings"]) == 10


@pytest.mark.timeout(300)
def test_backup_verify_restore_and_monitor_through_the_pooler(cli, pdb, capsys, passwords):
    setting(pdb, "neon", "before", "1")
    assert main(["backup", "--provider", "neon"]) == 0
    [dump] = sorted(Path("backups").glob("neon-*.dump"))
    assert main(["backups", "verify", str(dump), "--deep"]) == 0
    assert main(["verify"]) in (0, 1)  # backups' lag may warn; it must not fail on the pooler
    setting(pdb, "neon", "after", "2")
    assert main(["restore", "--provider", "neon", "--backup", str(dump), "--yes"]) == 0
    assert main(["monitor", "--once"]) == 0
    out = capsys.readouterr()
    assert "Traceback" not in out.err and "DIRECT_URL" not in out.out + out.err
    assert not any(p in out.out + out.err for p in passwords)


@pytest.mark.parametrize("argv", [["sync", "--all"], ["backup", "--provider", "neon"],
                                  ["sync", "--from", "supabase", "--to", "neon"]])
def test_a_pooler_url_without_a_direct_url_refuses_with_one_line_naming_it(cli, monkeypatch, capsys, argv):
    monkeypatch.delenv("NEON_DIRECT_URL")
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "NEON_DIRECT_URL" in err and "transaction pooler" in err, err


@pytest.mark.timeout(240)
def test_failover_with_neon_killed_behind_the_live_pooler_and_fail_back_lose_nothing(pooled_env, pdb, local):
    manager = DatabaseManager(make_config(pooled_env, DATABASE_HEALTH_TTL="0.3", DATABASE_FAILBACK_CHECKS="2"))
    storage = PostgresMemoryStorage(manager)
    stop = threading.Event()
    acked: dict[str, list[str]] = {}
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        i = 0
        while not stop.is_set():
            i += 1
            try:
                session = Session(user_id=f"u{n}", messages=[Message("user", f"{n}-{i}")])
                storage.save_session(session)
                acked[session.session_id] = [f"{n}-{i}"]
            except BaseException as exc:  # asserted below
                errors.append(exc)
                time.sleep(0.05)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    try:
        time.sleep(0.5)
        local.kill("neon")
        assert wait_until(lambda: manager.active_provider != "neon", 30), "no failover behind the pooler"
        time.sleep(0.5)
        local.start("neon")
        assert wait_until(lambda: manager.active_provider == "neon", 90), "no fail-back through the pooler"
        time.sleep(0.3)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=30)
        manager.close()
    assert not errors, errors[:3]
    with DatabaseManager(make_config(pooled_env)) as fresh:
        reader = PostgresMemoryStorage(fresh)
        missing = [sid for sid, msgs in acked.items()
                   if (s := reader.load_session(sid)) is None or [m.content for m in s.messages] != msgs]
        assert fresh.active_provider == "neon"
    assert len(acked) > 20 and missing == []

