"""`AgentFactorySaver` behind a real PgBouncer in transaction mode (langchain-ai/langgraph#6741, #5675).

With the provider configured as a pooler needs (`NEON_PREPARED_STATEMENTS=false`) graphs run from
eight threads on four server connections. (Configured with prepared statements, the same test fails
with `prepared statement "_pg3_0" does not exist`: the pooler really is in transaction mode.)
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

pytest.importorskip("langgraph.graph", reason="needs the langgraph extra")

from agent_factory.core import DatabaseManager
from agent_factory.integrations.langgraph import AgentFactorySaver
from agent_factory.local.cluster import _service_user

from .test_saver_failover import build_graph, expected_steps


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def pgbouncer_url(local) -> Iterator[str]:
    """neon behind PgBouncer in transaction pool mode (no prepared statements): yield the URL through it.

    Its files live in a temporary directory of its own (pytest's is private; PgBouncer runs unprivileged).
    """
    binary = shutil.which("pgbouncer")
    if binary is None:
        pytest.skip("pgbouncer is not installed (Debian package pgbouncer)")
    target = conninfo_to_dict(local.url("neon"))
    port = _free_port()
    workdir = Path(tempfile.mkdtemp(prefix="agent-factory-pgbouncer-"))
    (workdir / "users.txt").write_text(f'"{target["user"]}" "{target["password"]}"\n')
    (workdir / "pgbouncer.ini").write_text(
        "[databases]\n"
        f"{target['dbname']} = host=127.0.0.1 port={target['port']} dbname={target['dbname']}\n"
        "[pgbouncer]\n"
        f"listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n"
        f"auth_type = plain\nauth_file = {workdir / 'users.txt'}\n"
        "pool_mode = transaction\ndefault_pool_size = 4\nmax_client_conn = 100\n"
        "server_reset_query =\nignore_startup_parameters = extra_float_digits,options\n"
        f"logfile = {workdir / 'pgbouncer.log'}\n")
    user = _service_user()
    if user is not None:  # PgBouncer refuses to run as root
        for path in (workdir, *workdir.iterdir()):
            os.chown(path, user.pw_uid, user.pw_gid)
        (workdir / "users.txt").chmod(0o600)
    proc = subprocess.Popen([binary, str(workdir / "pgbouncer.ini")], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL,
                            **({"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []} if user else {}))
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                proc.wait(timeout=10)
                log = workdir / "pgbouncer.log"
                pytest.fail(f"pgbouncer did not start: {log.read_text() if log.exists() else 'no log'}")
            time.sleep(0.05)
    try:
        yield make_conninfo(local.url("neon"), host="127.0.0.1", port=port, sslmode="disable")
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.mark.timeout(180)
def test_graphs_run_behind_a_transaction_pooler_from_many_threads(make_db, db, pgbouncer_url):
    # As the operator configures a provider behind a transaction pooler: no prepared statements.
    manager: DatabaseManager = make_db(NEON_DB_URL=pgbouncer_url, NEON_PREPARED_STATEMENTS="false")
    graph = build_graph(AgentFactorySaver(manager))

    def run_thread(index: int) -> list[str]:
        config = {"configurable": {"thread_id": f"pooled-{index}"}}
        for turn in range(4):  # past any prepare threshold, on pooled server connections shared by the threads
            graph.invoke({"steps": [f"in:pooled-{index}-{turn}"]}, config)
        return graph.get_state(config).values["steps"]

    with ThreadPoolExecutor(max_workers=8) as executor:
        results = list(executor.map(run_thread, range(8)))
    assert results == [expected_steps(f"pooled-{i}", 4) for i in range(8)]
    assert manager.active_provider == "neon"  # served through the pooler all along: no failover
