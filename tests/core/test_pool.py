"""`LifoConnectionPool`: the connection returned last is handed out next, by the pool and through the manager."""

from __future__ import annotations

import threading

import psycopg

from agent_factory.core.pool import LifoConnectionPool


def _pid(conn: psycopg.Connection) -> int:
    return conn.execute("SELECT pg_backend_pid()").fetchone()[0]  # type: ignore[index]


def test_the_connection_returned_last_is_taken_first_and_the_others_keep_their_order(local):
    with LifoConnectionPool(local.url("neon"), min_size=3, max_size=3, open=True) as pool:
        pool.wait(timeout=10)
        held = [pool.getconn() for _ in range(3)]
        pids = [_pid(conn) for conn in held]
        for conn in held:  # returned in order: pids[2] last
            conn.rollback()
            pool.putconn(conn)
        taken = [pool.getconn() for _ in range(3)]
        assert [_pid(conn) for conn in taken] == [pids[2], pids[1], pids[0]]
        for conn in taken:
            conn.rollback()
            pool.putconn(conn)


def test_sequential_requests_reuse_one_server_process_after_the_pool_grew(db):
    barrier = threading.Barrier(3)

    def hold(conn: psycopg.Connection) -> int:
        barrier.wait(timeout=10)  # three requests at once: the pool opens three connections
        return _pid(conn)

    threads = [threading.Thread(target=db.run_read, args=(hold,)) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)
    assert db.get_provider_stats()["neon"]["pool_size"] >= 3
    pids = {db.run_read(_pid) for _ in range(12)}
    assert len(pids) == 1  # a queue (psycopg_pool's own order) would rotate over all three
