"""Fixtures: real local PostgreSQL providers, started once per test session.

The servers are the same code as `agent-factory local up`, in a temporary
directory. Tests that kill a provider leave it to `providers_running` to start
it again, so every test begins with all three up.
"""

from __future__ import annotations

import secrets
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from agent_factory.config import Config, load_config
from agent_factory.core import DatabaseManager, close_default_manager
from agent_factory.local import LocalProviders
from agent_factory.schema import EXPECTED_TABLES, apply_schema
from agent_factory.state.store import FailoverEvent


@pytest.fixture(scope="session")
def local() -> Iterator[LocalProviders]:
    """Three real providers (neon, supabase, railway) with the schema applied.

    Their data lives in a temporary directory of its own, not under pytest's
    basetemp: pytest keeps that private (0700), and the servers run as an
    unprivileged user when the tests run as root.
    """
    base = Path(tempfile.mkdtemp(prefix="agent-factory-test-"))
    providers = LocalProviders(base, durable=False)
    providers.up()
    config = load_config(env={**providers.env(), "AGENT_FACTORY_STATE_DIR": str(base / "state")}, env_file=None)
    with DatabaseManager(config) as db:
        for name in db.providers:
            with db.provider_connection(name) as conn:
                apply_schema(conn, name)
    yield providers
    providers.down()
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(autouse=True)
def providers_running(request: pytest.FixtureRequest) -> Iterator[None]:
    """After each test that used the providers, start any provider it killed; close the process's default manager."""
    yield
    close_default_manager()
    if "local" in request.fixturenames:
        local: LocalProviders = request.getfixturevalue("local")
        for name in local.providers():
            if local.pid(name) is None:
                local.start(name)


# The backup signing key of every test (a secret: `passwords` includes it for the leak checks).
SIGNING_KEY = "test-signing-key-" + secrets.token_hex(16)


@pytest.fixture
def env(local: LocalProviders, tmp_path: Path) -> dict[str, str]:
    """Environment variables pointing at the local providers, with a per-test state dir."""
    return {
        **local.env(),
        "AGENT_FACTORY_STATE_DIR": str(tmp_path / "state"),
        "DATABASE_CONNECT_TIMEOUT": "2",
        "DATABASE_HEALTH_TTL": "0.5",
        "DATABASE_FAILBACK_CHECKS": "2",
        "BACKUP_SIGNING_KEY": SIGNING_KEY,
    }


@pytest.fixture
def make_db(env: dict[str, str]) -> Iterator[Callable[..., DatabaseManager]]:
    """Factory for `DatabaseManager`s on the local providers; settings override the env. Closed after the test."""
    made: list[DatabaseManager] = []

    def make(**overrides: str) -> DatabaseManager:
        db = DatabaseManager(make_config(env, **overrides))
        made.append(db)
        return db

    yield make
    for db in made:
        db.close()


def make_config(env: dict[str, str], **overrides: str) -> Config:
    """Build a Config from `env` plus overrides, ignoring any .env file and the real environment."""
    return load_config(env={**env, **overrides}, env_file=None)


@pytest.fixture
def db(make_db: Callable[..., DatabaseManager]) -> DatabaseManager:
    """A DatabaseManager on the local providers with every table emptied on every provider."""
    manager = make_db()
    for name in manager.providers:
        with manager.provider_connection(name) as conn:
            conn.execute("TRUNCATE " + ", ".join(EXPECTED_TABLES) + " CASCADE")
            conn.commit()
    return manager


@pytest.fixture
def passwords(local: LocalProviders) -> list[str]:
    """The real provider passwords, to search captured output for leaks."""
    return [*(local.password(n) for n in local.providers()), SIGNING_KEY]


def wait_for_failovers(db: DatabaseManager, count: int, timeout: float = 5.0) -> list[FailoverEvent]:
    """Return the failover log once it holds `count` events (recording is asynchronous), or as it is at `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        events = db.state.failovers()
        if len(events) >= count or time.monotonic() > deadline:
            return events
        time.sleep(0.05)


def with_port(url: str, port: int) -> str:
    """Return the provider URL `url` with its port replaced (a relay in front of the server)."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=parts.netloc.rsplit(":", 1)[0] + f":{port}"))


def wait_until(predicate: Callable[[], bool], timeout: float) -> bool:
    """Poll `predicate` every 50 ms until it is true (return True) or `timeout` seconds pass (return False)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that uses the local providers as `real_server`."""
    for item in items:
        if "local" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.real_server)

