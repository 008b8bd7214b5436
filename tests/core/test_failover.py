"""Failover and fail-back against real servers: SIGKILL, restarts, and SQLSTATE routing."""

from __future__ import annotations

import threading
import time
import uuid

import psycopg
import pytest
from psycopg.types.json import Json

from agent_factory.errors import (
    AllProvidersDownError,
    PoolExhaustedError,
    ProviderUnavailableError,
    QueryError,
)
from agent_factory.state import StateStore
from tests.conftest import wait_for_failovers, wait_until


def _insert_message(db, message_id: str) -> int:
    """Write one row idempotently and return the port of the server that acknowledged it."""

    def work(conn: psycopg.Connection) -> int:
        conn.execute(
            "INSERT INTO agent_messages (id, sender, recipient, payload) VALUES (%s, 'bench', 'test', %s) "
            "ON CONFLICT (id) DO NOTHING",
            (message_id, Json({"n": message_id})),
        )
        return int(conn.execute("SELECT current_setting('port')").fetchone()[0])

    return db.run_in_transaction(work, idempotent=True)


def test_sigkill_of_primary_during_concurrent_writes_loses_no_acknowledged_write(db, local):
    ports = {name: p.port for name, p in local.providers().items()}
    by_port = {port: name for name, port in ports.items()}
    acknowledged: list[tuple[str, str, float]] = []
    failures: list[BaseException] = []
    stop = threading.Event()
    lock = threading.Lock()

    def writer() -> None:
        while not stop.is_set():
            message_id = str(uuid.uuid4())
            try:
                port = _insert_message(db, message_id)
            except Exception as exc:  # collected and asserted below
                with lock:
                    failures.append(exc)
                continue
            with lock:
                acknowledged.append((message_id, by_port[port], time.monotonic()))

    threads = [threading.Thread(target=writer) for _ in range(8)]
    for t in threads:
        t.start()
    assert wait_until(lambda: len(acknowledged) >= 40, timeout=30), "the writers did not get going"
    local.kill("neon")
    killed_at = time.monotonic()
    wait_until(lambda: sum(1 for a in acknowledged if a[2] > killed_at) >= 40, timeout=30)
    stop.set()
    for t in threads:
        t.join(timeout=30)

    assert not failures, f"writes failed during failover: {failures[:3]}"
    print("acknowledged per provider:", {n: sum(1 for a in acknowledged if a[1] == n) for n in ports})
    after_kill = [a for a in acknowledged if a[2] > killed_at]
    assert after_kill, "no write succeeded after the kill"
    assert {a[1] for a in after_kill} == {"supabase"}
    assert db.active_provider == "supabase"

    local.start("neon")
    for name in ("neon", "supabase"):
        with psycopg.connect(local.url(name)) as conn:
            counts = dict(conn.execute("SELECT id::text, count(*) FROM agent_messages GROUP BY id").fetchall())
        mine = [a[0] for a in acknowledged if a[1] == name]
        assert mine, f"no acknowledged writes on {name}"
        missing = [m for m in mine if counts.get(m) != 1]
        assert not missing, f"{len(missing)} acknowledged writes missing or duplicated on {name}"

    events = wait_for_failovers(db, 1)
    assert [(e.from_provider, e.to_provider) for e in events][:1] == [("neon", "supabase")]
    # Which failure the first writer sees depends on the race with the dying
    # postmaster: refused, closed, or a backend's 57P01 notice. All three fail over.
    assert any(r in events[0].reason for r in ("connection refused", "server closed the connection", "[57P01]")), \
        events[0].reason


def test_fail_back_after_primary_restarts_and_passes_checks(db, local, monkeypatch):
    probes: list[tuple[str, int]] = []
    real_probe = db.probe_streak

    def counted_probe(name: str) -> int:  # the fail-back watcher probes through the manager
        passes = real_probe(name)
        probes.append((name, passes))
        return passes

    monkeypatch.setattr(db, "probe_streak", counted_probe)
    local.kill("neon")
    assert db.execute_query("SELECT 1", fetch_mode="one") == (1,)
    assert db.active_provider == "supabase"
    # several failed probes of the primary: no fail-back while it is down
    assert wait_until(lambda: probes.count(("neon", 0)) >= 3, timeout=30), probes
    assert db.active_provider == "supabase"

    local.start("neon")
    assert wait_until(lambda: db.active_provider == "neon", timeout=10)
    port = db.execute_query("SELECT current_setting('port')", fetch_mode="one")[0]
    assert int(port) == local.get("neon").port
    events = [(e.from_provider, e.to_provider) for e in wait_for_failovers(db, 2)]
    assert events == [("neon", "supabase"), ("supabase", "neon")]


def test_failover_starts_from_the_configured_primary(make_db, local):
    db = make_db(DATABASE_PROVIDER="supabase")
    local.kill("supabase")
    db.execute_query("SELECT 1")
    assert db.active_provider == "railway"  # next after supabase in neon,supabase,railway


def test_all_providers_down_lists_each_provider(make_db, local, passwords):
    db = make_db()
    for name in ("neon", "supabase", "railway"):
        local.kill(name)
    with pytest.raises(AllProvidersDownError) as info:
        db.execute_query("SELECT 1")
    message = str(info.value)
    assert message.startswith(
        "All database providers failed: neon: connection refused; supabase: connection refused; "
        "railway: connection refused"
    )
    assert not any(p in message for p in passwords)


def test_failover_disabled_surfaces_the_error(make_db, local):
    db = make_db(DATABASE_FAILOVER_ENABLED="false")
    local.kill("neon")
    with pytest.raises(ProviderUnavailableError, match="provider neon is unavailable: connection refused"):
        db.execute_query("SELECT 1")
    assert db.active_provider == "neon"
    assert StateStore(db.config.state_dir).failovers() == []


def test_data_errors_never_fail_over(db):
    with pytest.raises(QueryError, match="session_memories_memory_type_check"):
        db.execute_query(
            "INSERT INTO session_memories (id, session_id, user_id, memory_type, content) "
            "VALUES (gen_random_uuid(), 's', 'u', 'bogus', '{}')",
            fetch_mode="none",
        )
    with pytest.raises(QueryError, match="syntax error"):
        db.execute_query("SELEC 1")
    assert db.active_provider == "neon"
    assert db.health_check("neon") is True
    assert StateStore(db.config.state_dir).failovers() == []


def test_serialization_failure_is_retried_on_the_same_provider(db):
    attempts = []

    def work(conn: psycopg.Connection) -> str:
        attempts.append(1)
        if len(attempts) == 1:
            conn.execute("DO $$ BEGIN RAISE EXCEPTION 'conflict' USING ERRCODE = '40001'; END $$")
        return conn.execute("SELECT current_setting('port')").fetchone()[0]

    db.run_in_transaction(work, idempotent=True)
    assert len(attempts) == 2
    assert db.active_provider == "neon"


def test_terminated_connections_are_replaced_without_failover(db, local):
    db.execute_query("SELECT 1")
    with psycopg.connect(local.admin_url("neon"), autocommit=True) as admin:
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE usename = 'agent' AND pid <> pg_backend_pid()"
        )
    assert db.execute_query("SELECT 1", fetch_mode="one") == (1,)
    assert db.active_provider == "neon"


def test_exhausted_pool_raises_the_runbook_error_and_does_not_fail_over(make_db):
    db = make_db(DATABASE_POOL_MAX_SIZE="1", DATABASE_POOL_TIMEOUT="0.5")
    held = threading.Event()
    release = threading.Event()

    def hold() -> None:
        with db.transaction() as cur:
            cur.execute("SELECT 1")
            held.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    held.wait(10)
    try:
        with pytest.raises(PoolExhaustedError, match=r"couldn't get a connection after 0\.50 sec"):
            db.execute_query("SELECT 1")
    finally:
        release.set()
        holder.join()
    assert db.active_provider == "neon"
    assert StateStore(db.config.state_dir).failovers() == []


def test_transaction_commits_and_rolls_back(db):
    message_id = str(uuid.uuid4())
    with db.transaction() as cur:
        cur.execute("INSERT INTO agent_messages (id, sender, recipient, payload) VALUES (%s, 'a', 'b', '{}')",
                    (message_id,))
    with pytest.raises(RuntimeError):
        with db.transaction() as cur:
            cur.execute("DELETE FROM agent_messages WHERE id = %s", (message_id,))
            raise RuntimeError("abort")
    assert db.execute_query("SELECT count(*) FROM agent_messages WHERE id = %s", (message_id,), "one") == (1,)


def test_reads_run_in_autocommit_and_leave_connections_in_transaction_mode(make_db, local):
    db = make_db(DATABASE_POOL_MAX_SIZE="1")

    def read(conn: psycopg.Connection) -> tuple[bool, str]:
        in_block = conn.execute("SELECT now() = statement_timestamp()").fetchone()[0]
        return conn.autocommit, in_block

    assert db.run_read(read) == (True, True)  # no BEGIN: the statement is its own transaction
    with pytest.raises(QueryError):
        db.run_read(lambda conn: conn.execute("SELECT 1/0").fetchone())
    with db.transaction() as cur:  # the same single pooled connection, back in transaction mode
        assert cur.connection.autocommit is False
    local.kill("neon")
    assert db.run_read(lambda conn: conn.execute("SELECT current_setting('port')").fetchone()) == (
        str(local.get("supabase").port),)
