"""`agent_factory.memory._execute.execute`: one statement, its results, its errors, prepared or not."""

from __future__ import annotations

import psycopg
import pytest

from agent_factory.memory._execute import execute

SQL = "SELECT %(a)s::int + g FROM generate_series(1, 3) AS g"


@pytest.mark.parametrize("threshold", [0, 5, None])
def test_results_are_the_same_on_every_run_prepared_or_not(local, threshold):
    with psycopg.connect(local.url("neon"), autocommit=True, prepare_threshold=threshold) as conn:
        results = [execute(conn, SQL, {"a": run}).fetchall() for run in range(10)]
    assert results == [[(run + 1,), (run + 2,), (run + 3,)] for run in range(10)]


def test_an_error_is_psycopgs_own_and_the_connection_stays_usable(local):
    with psycopg.connect(local.url("neon"), autocommit=True) as conn:
        for _ in range(8):  # before, while and after the statement is prepared
            with pytest.raises(psycopg.errors.DivisionByZero):
                execute(conn, "SELECT 1 / %(zero)s::int", {"zero": 0})
            assert execute(conn, "SELECT %(one)s::int", {"one": 1}).fetchone() == (1,)


def test_a_write_is_atomic_and_committed_in_autocommit(local):
    with psycopg.connect(local.url("neon"), autocommit=True) as conn:
        conn.execute("CREATE TEMP TABLE t (v int CHECK (v < 3))")
        with pytest.raises(psycopg.errors.CheckViolation):
            execute(conn, "INSERT INTO t SELECT g FROM generate_series(1, 5) AS g", None)
        execute(conn, "INSERT INTO t SELECT g FROM generate_series(1, 2) AS g", None)
        assert conn.execute("SELECT count(*) FROM t").fetchone() == (2,)
