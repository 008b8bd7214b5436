"""Silent partitions: real iptables DROP rules on a loopback relay in front of neon.

Settings as the issue's target: DATABASE_DEAD_PEER_TIMEOUT=3, DATABASE_CONNECT_TIMEOUT=2,
so no request may wait more than 6 s on a provider whose packets vanish.
The relay (`agent_factory.local.proxy`) is a second door to the same neon: other
processes, and other tests, keep neon's own port.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import psycopg
import pytest

from agent_factory.core import DatabaseManager
from agent_factory.errors import CommitOutcomeUnknownError
from agent_factory.keepalive import dead_peer_params
from agent_factory.local.proxy import CountingProxy
from agent_factory.memory import Message, PostgresMemoryStorage, Session
from tests.conftest import make_config, wait_until, with_port


FLEET = {"DATABASE_DEAD_PEER_TIMEOUT": "3", "DATABASE_CONNECT_TIMEOUT": "2", "DATABASE_HEALTH_TTL": "0.5"}
BOUND_S = 6.0  # dead-peer + connect timeouts + 1 s of work


@pytest.fixture
def relay(local) -> Iterator[CountingProxy]:
    """A loopback TCP relay in front of neon: the port the test drops."""
    with CountingProxy("127.0.0.1", local.get("neon").port) as proxy:
        yield proxy


@pytest.fixture
def cut_env(env, relay) -> dict[str, str]:
    """`env` with the fleet settings and neon reached through the relay."""
    return {**env, **FLEET, "NEON_DB_URL": with_port(env["NEON_DB_URL"], relay.port)}


class Writers:
    """Threads saving sessions through one manager, timing every request."""

    def __init__(self, manager: DatabaseManager, name: str, count: int = 3) -> None:
        self.storage = PostgresMemoryStorage(manager)
        self.name = name
        self.stop = threading.Event()
        self.waits: list[float] = []
        self.acked: dict[str, str] = {}
        self.unknown = 0  # CommitOutcomeUnknownError: allowed, never acknowledged
        self.errors: list[BaseException] = []
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(count)]

    def __enter__(self) -> Writers:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=60)

    def _run(self, n: int) -> None:
        i = 0
        while not self.stop.is_set():
            i += 1
            text = f"{self.name}-{n}-{i}"
            started = time.monotonic()
            try:
                session = Session(user_id=self.name, messages=[Message("user", text)])
                self.storage.save_session(session)
                self.acked[session.session_id] = text
            except CommitOutcomeUnknownError:
                self.unknown += 1
            except BaseException as exc:  # asserted by the test
                self.errors.append(exc)
            self.waits.append(time.monotonic() - started)
            time.sleep(0.01)



@pytest.mark.timeout(180)
def test_a_cut_off_process_fails_over_within_the_bound_while_the_others_keep_neon(
        firewall, relay, cut_env, env, db):
    cut = DatabaseManager(make_config(cut_env))
    kept = DatabaseManager(make_config({**env, **FLEET}))
    try:
        with Writers(cut, "cut") as cut_writers, Writers(kept, "kept") as kept_writers:
            assert wait_until(lambda: len(cut_writers.acked) > 20 and len(kept_writers.acked) > 20, 30)
            firewall.drop(relay.port)
            dropped = time.monotonic()
            assert wait_until(lambda: cut.active_provider != "neon", 30), "the cut process never failed over"
            failed_over_after = time.monotonic() - dropped
            before = len(cut_writers.acked)
            assert wait_until(lambda: len(cut_writers.acked) > before + 20, 30), "no writes acknowledged on the backup"
            firewall.heal()
        assert kept.active_provider == "neon"
    finally:
        cut.close()
        kept.close()
    for writers in (cut_writers, kept_writers):
        assert writers.errors == [], writers.errors[:3]
        assert max(writers.waits) < BOUND_S, f"{writers.name}: a request waited {max(writers.waits):.1f} s"
    assert failed_over_after < BOUND_S
    with DatabaseManager(make_config(env)) as fresh:  # the kept process's writes are on neon
        reader = PostgresMemoryStorage(fresh)
        assert all(reader.load_session(sid) is not None for sid in kept_writers.acked)


@pytest.mark.timeout(120)
def test_a_request_waiting_for_the_pool_to_grow_fails_over_within_the_bound(firewall, relay, cut_env, local):
    """Every pooled connection is busy when the packets stop: the request waits for a new one that cannot
    connect, and fails over within the bound instead of after DATABASE_POOL_TIMEOUT (20 s here)."""
    env = {**cut_env, "DATABASE_POOL_MIN_SIZE": "1", "DATABASE_POOL_TIMEOUT": "20"}
    held, release = threading.Event(), threading.Event()

    def hold(conn: psycopg.Connection) -> None:
        held.set()
        release.wait(30)

    with DatabaseManager(make_config(env)) as manager:
        manager.execute_query("SELECT 1")  # the pool holds one connection
        holder = threading.Thread(target=lambda: manager.run_read(hold), daemon=True)
        holder.start()
        assert held.wait(10)
        firewall.drop(relay.port)
        started = time.monotonic()
        try:
            port = manager.run_read(lambda conn: conn.execute("SELECT current_setting('port')").fetchone())
        finally:
            waited = time.monotonic() - started
            release.set()
            holder.join(timeout=30)
        assert port == (str(local.get("supabase").port),)
        assert manager.active_provider == "supabase"
    assert waited < BOUND_S, f"the request waited {waited:.1f} s"


@pytest.mark.timeout(120)
def test_a_long_query_on_a_healthy_provider_through_the_same_path_is_not_cut(relay, cut_env):
    with DatabaseManager(make_config(cut_env)) as manager:
        started = time.monotonic()
        row = manager.run_read(lambda conn: conn.execute("SELECT pg_sleep(8), 42").fetchone())
        assert row is not None and row[1] == 42
        assert time.monotonic() - started >= 8
        assert manager.active_provider == "neon"


def _connect(url: str, port: int) -> psycopg.Connection:
    return psycopg.connect(with_port(url, port), autocommit=True, connect_timeout=2, **dead_peer_params(3))


@pytest.mark.timeout(120)
def test_each_way_a_silent_peer_shows_is_bounded(firewall, relay, env):
    """A SYN unanswered: connect_timeout; unacked data: tcp_user_timeout; waiting for a reply: keepalives."""
    url = env["NEON_DB_URL"]
    with _connect(url, relay.port) as sending, _connect(url, relay.port) as waiting:
        outcome = _cut_each_way(firewall, relay, url, sending, waiting)
    assert set(outcome) == {"sending", "waiting", "connecting"}, outcome
    assert all(seconds < BOUND_S for seconds in outcome.values()), outcome


def _cut_each_way(firewall, relay: CountingProxy, url: str, sending: psycopg.Connection,
                  waiting: psycopg.Connection) -> dict[str, float]:
    """Drop the relay's packets with one connection idle, one in a long query; time how each ends."""
    outcome: dict[str, float] = {}

    def long_query() -> None:
        started = time.monotonic()
        try:
            waiting.execute("SELECT pg_sleep(60)")
        except psycopg.OperationalError:
            outcome["waiting"] = time.monotonic() - started

    query = threading.Thread(target=long_query, daemon=True)
    query.start()
    time.sleep(0.5)  # the query is on the server; its client now only waits
    firewall.drop(relay.port)
    dropped = time.monotonic()
    with pytest.raises(psycopg.OperationalError):
        sending.execute("SELECT 1")
    outcome["sending"] = time.monotonic() - dropped
    started = time.monotonic()
    with pytest.raises(psycopg.OperationalError):
        _connect(url, relay.port)
    outcome["connecting"] = time.monotonic() - started
    query.join(timeout=30)
    return outcome


@pytest.mark.timeout(120)
def test_a_non_idempotent_write_cut_during_commit_raises_commit_outcome_unknown(firewall, relay, cut_env, db):
    with DatabaseManager(make_config(cut_env)) as manager:
        manager.execute_query("SELECT 1")

        def work(conn: psycopg.Connection) -> None:
            conn.execute("INSERT INTO agent_messages (id, sender, recipient, payload) "
                         "VALUES (gen_random_uuid(), 'test', 'cut', '{}')")
            firewall.drop(relay.port)  # the COMMIT that follows is never acknowledged

        started = time.monotonic()
        with pytest.raises(CommitOutcomeUnknownError):
            manager.run_in_transaction(work, idempotent=False)
        assert time.monotonic() - started < BOUND_S
