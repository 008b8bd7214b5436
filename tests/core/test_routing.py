"""Routing rules on real servers: retry before failover, compare-and-set switching, events off the hot path."""

from __future__ import annotations

import sqlite3
import threading
import time
import uuid

import psycopg
import pytest
from psycopg.types.json import Json

from agent_factory.errors import CommitOutcomeUnknownError
from agent_factory.state import StateStore
from tests.conftest import wait_for_failovers, wait_until


def _events(db, count: int = 0, timeout: float = 5.0) -> list[tuple[str, str, str]]:
    return [(e.from_provider, e.to_provider, e.reason) for e in wait_for_failovers(db, count, timeout)]


def _terminate(local, name: str, where: str = "true") -> int:
    """Terminate the application's backends on `name` matching `where`; return how many."""
    with psycopg.connect(local.admin_url(name), autocommit=True) as admin:
        rows = admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            f"WHERE usename = 'agent' AND pid <> pg_backend_pid() AND {where}"
        ).fetchall()
    return len(rows)


def _port(db) -> int:
    return int(db.execute_query("SELECT current_setting('port')", fetch_mode="one")[0])


def test_terminating_the_backend_serving_a_read_retries_it_on_the_same_provider(db, local):
    result: dict[str, object] = {}

    def slow_read() -> None:
        try:
            result["row"] = db.execute_query("SELECT pg_sleep(1.5), current_setting('port')", fetch_mode="one")
        except Exception as exc:  # asserted below
            result["error"] = exc

    reader = threading.Thread(target=slow_read)
    reader.start()
    terminated = wait_until(
        lambda: _terminate(local, "neon", "query LIKE 'SELECT pg_sleep(1.5)%' AND state = 'active'") == 1, timeout=5)
    reader.join(timeout=10)

    assert terminated
    assert "error" not in result, result.get("error")
    assert int(result["row"][1]) == local.get("neon").port  # retried on neon, not on a backup
    assert db.active_provider == "neon"
    assert _events(db, timeout=0.3) == []


def test_terminating_every_pooled_connection_moves_nothing(make_db, local):
    db = make_db(DATABASE_POOL_MIN_SIZE="4")
    barrier = threading.Barrier(4)

    def hold() -> None:  # make the pool open four connections
        db.execute_query("SELECT pg_sleep(0.2)")
        barrier.wait(timeout=5)

    threads = [threading.Thread(target=hold) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert _terminate(local, "neon") >= 4

    for _ in range(6):  # reads, a non-idempotent write and a transaction, each on a possibly dead connection
        assert _port(db) == local.get("neon").port
    db.execute_query("INSERT INTO agent_messages (id, sender, recipient, payload) VALUES (%s, 'a', 'b', %s)",
                     (uuid.uuid4(), Json({})), fetch_mode="none")
    _terminate(local, "neon")
    with db.transaction() as cur:
        cur.execute("SELECT 1")
    assert db.active_provider == "neon"
    assert _events(db, timeout=0.3) == []


def test_a_provider_that_is_really_down_still_fails_over_with_its_reason(db, local):
    db.execute_query("SELECT 1")
    local.kill("neon")
    assert _port(db) == local.get("supabase").port
    events = _events(db, 1)
    assert [(f, t) for f, t, _ in events] == [("neon", "supabase")]
    assert events[0][2].startswith("neon failed: ")
    assert "unhealthy" not in events[0][2]


def test_a_request_finishing_on_the_backup_after_fail_back_moves_nothing(db, local):
    local.kill("neon")
    assert _port(db) == local.get("supabase").port
    result: dict[str, object] = {}

    def slow_read_on_backup() -> None:
        result["row"] = db.execute_query("SELECT pg_sleep(2), current_setting('port')", fetch_mode="one")

    reader = threading.Thread(target=slow_read_on_backup)
    reader.start()  # starts on supabase, the active provider
    local.start("neon")
    assert wait_until(lambda: db.active_provider == "neon", timeout=10)
    reader.join(timeout=10)
    assert int(result["row"][1]) == local.get("supabase").port  # it did finish on the backup
    time.sleep(0.3)
    assert db.active_provider == "neon"
    assert [(f, t) for f, t, _ in _events(db, 2)] == [("neon", "supabase"), ("supabase", "neon")]


def test_recording_a_failover_never_blocks_the_request(db, local):
    db.execute_query("SELECT 1")
    store = StateStore(db.config.state_dir)
    store.failovers()  # create the file
    blocker = sqlite3.connect(store.path, timeout=30, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")  # the state store is locked: no writer can record anything
    try:
        local.kill("neon")
        done = threading.Event()
        port: dict[str, int] = {}

        def request() -> None:
            port["served_by"] = _port(db)
            done.set()

        threading.Thread(target=request, daemon=True).start()
        assert done.wait(timeout=10), "the request waited for the state store"
        assert port["served_by"] == local.get("supabase").port
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert [(f, t) for f, t, _ in _events(db, 1)] == [("neon", "supabase")]  # recorded once the lock went


@pytest.mark.timeout(240)
def test_eight_writers_through_five_kills_end_on_the_primary_with_one_switch_each_way(make_db, local):
    db = make_db(DATABASE_HEALTH_TTL="0.3", DATABASE_FAILBACK_CHECKS="2")
    stop = threading.Event()
    failures: list[BaseException] = []

    def writer() -> None:
        while not stop.is_set():
            try:
                db.execute_query("INSERT INTO agent_messages (id, sender, recipient, payload) "
                                 "VALUES (%s, 'w', 'r', %s) ON CONFLICT (id) DO NOTHING",
                                 (uuid.uuid4(), Json({})), fetch_mode="none", idempotent=True)
            except Exception as exc:  # asserted below
                failures.append(exc)
                time.sleep(0.01)

    threads = [threading.Thread(target=writer) for _ in range(8)]
    for t in threads:
        t.start()
    try:
        for cycle in range(5):
            time.sleep(0.5)
            local.kill("neon")
            assert wait_until(lambda: db.active_provider == "supabase", timeout=10), f"cycle {cycle}: no failover"
            time.sleep(0.5)
            local.start("neon")
            assert wait_until(lambda: db.active_provider == "neon", timeout=20), f"cycle {cycle}: no fail-back"
            time.sleep(0.5)  # requests still in flight on supabase finish: they must not switch back
            assert db.active_provider == "neon", f"cycle {cycle}: fail-back undone"
            events = _events(db, 2 * (cycle + 1))
            assert [(f, t) for f, t, _ in events] == [("neon", "supabase"), ("supabase", "neon")] * (cycle + 1)
            failover, failback = events[-2][2], events[-1][2]
            assert failover.startswith("neon failed: ") and "unhealthy" not in failover
            assert failback.startswith("primary passed 2 consecutive health checks")
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=30)
    assert db.active_provider == "neon"
    assert not failures, failures[:3]  # idempotent writes move with the traffic: none fails


def test_prepared_statements_follow_the_provider_setting(make_db):
    """On by default (psycopg prepares a statement run 5 times); off for a provider behind a transaction pooler."""
    sql = "SELECT current_setting(%s) /* prepared? */"
    on = make_db(DATABASE_POOL_MAX_SIZE="1")  # one connection: the count below sees its statements
    for _ in range(8):
        on.execute_query(sql, ("port",))
    assert on.execute_query("SELECT count(*) FROM pg_prepared_statements", fetch_mode="one")[0] >= 1

    off = make_db(NEON_PREPARED_STATEMENTS="false", DATABASE_POOL_MAX_SIZE="1")
    for _ in range(8):
        off.execute_query(sql, ("port",))
    assert off.execute_query("SELECT count(*) FROM pg_prepared_statements", fetch_mode="one") == (0,)


def _write_then_sleep(row_id: uuid.UUID):
    """One autocommit statement that inserts a row, then sleeps (so it can be cut mid-statement)."""
    def work(conn: psycopg.Connection) -> None:
        conn.execute("WITH w AS (INSERT INTO agent_messages (id, sender, recipient, payload) "
                     "VALUES (%s, 'a', 'b', '{}') ON CONFLICT (id) DO NOTHING RETURNING 1) "
                     "SELECT pg_sleep(1) FROM w UNION ALL SELECT pg_sleep(1) WHERE NOT EXISTS (SELECT FROM w)",
                     (row_id,))
    return work


def _cut_statement_in_flight(local, run) -> dict[str, object]:
    outcome: dict[str, object] = {}

    def request() -> None:
        try:
            outcome["result"] = run()
        except Exception as exc:  # asserted by the caller
            outcome["error"] = exc

    thread = threading.Thread(target=request)
    thread.start()
    in_flight = "query LIKE 'WITH w AS (INSERT%' AND state = 'active'"
    started = wait_until(lambda: bool(_terminate(local, "neon", in_flight)), timeout=5)
    assert started, "the statement never started"
    thread.join(timeout=10)
    return outcome


def test_a_non_idempotent_write_cut_mid_statement_raises_commit_outcome_unknown(db, local):
    row = uuid.uuid4()
    outcome = _cut_statement_in_flight(local, lambda: db.run_statement(_write_then_sleep(row), idempotent=False))
    assert isinstance(outcome.get("error"), CommitOutcomeUnknownError), outcome
    assert "may or may not have been applied" in str(outcome["error"])
    assert db.active_provider == "neon" and _events(db, timeout=0.3) == []  # one connection, not the provider


def test_an_idempotent_write_cut_mid_statement_is_retried_once_on_the_same_provider(db, local):
    row = uuid.uuid4()
    outcome = _cut_statement_in_flight(local, lambda: db.run_statement(_write_then_sleep(row), idempotent=True))
    assert "error" not in outcome, outcome.get("error")
    count = db.execute_query("SELECT count(*) FROM agent_messages WHERE id = %s", (row,), fetch_mode="one")
    assert count == (1,)
    assert db.active_provider == "neon" and _events(db, timeout=0.3) == []
