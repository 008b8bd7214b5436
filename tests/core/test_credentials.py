"""Refused credentials on a new connection: re-read the configuration once, never a failover (core.credentials)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from agent_factory.config import load_config
from agent_factory.core import DatabaseManager
from agent_factory.core.sqlstate import Action, classify, is_auth_failure
from agent_factory.errors import AuthenticationFailedError
from agent_factory.local import LocalProviders
from agent_factory.ops.credentials import generate_password, with_password
from tests.conftest import wait_for_failovers
from tests.roles import LoginRole, login_role, write_env


@pytest.fixture
def role(local: LocalProviders) -> Iterator[LoginRole]:
    with login_role(local) as made:
        yield made


def _manager(env: dict[str, str], role: LoginRole, env_file: Path, **overrides: str) -> DatabaseManager:
    """A manager whose neon URL (the test role's) lives in `env_file`, as in production."""
    write_env(env_file, {"NEON_DB_URL": role.url})
    settings = {k: v for k, v in env.items() if k != "NEON_DB_URL"}
    return DatabaseManager(load_config({**settings, **overrides}, env_file))


def test_a_refused_login_is_classified_as_raise_not_failover(role: LoginRole) -> None:
    with pytest.raises(psycopg.OperationalError) as caught:
        psycopg.connect(with_password(role.url, "wrong"), connect_timeout=5)
    assert is_auth_failure(caught.value)
    assert classify(caught.value) is Action.RAISE
    assert role.password not in str(caught.value)


def test_refused_credentials_raise_a_named_error_and_never_fail_over(
        env: dict[str, str], role: LoginRole, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    role.set_password(generate_password())  # rotated in a console; .env still has the old one
    with _manager(env, role, tmp_path / ".env") as db:
        with pytest.raises(AuthenticationFailedError) as caught:
            db.execute_query("SELECT 1")
        message = str(caught.value)
        assert "neon" in message and "NEON_DB_URL" in message and "not a failover" in message
        assert db.active_provider == "neon"
        assert wait_for_failovers(db, 1, timeout=1.0) == []
        health = db.health_details(force=True)["neon"]
        assert not health.healthy and "NEON_DB_URL" in (health.error or "")
        assert db.health_details()["supabase"].healthy  # the others are untouched
        assert db.active_provider == "neon"
    assert role.password not in caplog.text


def test_open_connections_keep_working_and_the_next_new_one_rereads_env(
        env: dict[str, str], role: LoginRole, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    env_file = tmp_path / ".env"
    with _manager(env, role, env_file, DATABASE_POOL_MIN_SIZE="1", DATABASE_POOL_MAX_SIZE="2") as db:
        db.execute_query("INSERT INTO maint_test_writes (writer) VALUES (1)", fetch_mode="none")
        new = generate_password()
        role.set_password(new)  # the console rotation: open sessions stay logged in
        db.execute_query("INSERT INTO maint_test_writes (writer) VALUES (2)", fetch_mode="none")  # pooled, open
        assert not db.health_check(force=True)  # a new connection: refused, .env not updated yet
        write_env(env_file, {"NEON_DB_URL": with_password(role.url, new)})
        assert db.health_check(force=True)  # re-read .env once, retried with the new password
        db.execute_query("INSERT INTO maint_test_writes (writer) VALUES (3)", fetch_mode="none")
        assert db.active_provider == "neon"
        assert wait_for_failovers(db, 1, timeout=1.0) == []
    assert role.rows() == 3
    for secret in (role.password, new):
        assert secret not in caplog.text


def test_the_monitor_reports_refused_credentials_as_such_not_as_an_outage(
        env: dict[str, str], role: LoginRole, tmp_path: Path) -> None:
    from datetime import datetime, timedelta, timezone

    from agent_factory.ops.alerts import MonitorSettings
    from agent_factory.ops.monitor import run_monitor_once
    from agent_factory.state import StateStore

    role.set_password(generate_password())
    settings = MonitorSettings(backup_max_age=None, sync_backups=False)
    at = datetime(2025, 5, 5, tzinfo=timezone.utc)
    with _manager(env, role, tmp_path / ".env") as db:
        store = StateStore(db.config.state_dir)
        result = [run_monitor_once(db, store, [], at + timedelta(minutes=5 * i), settings=settings)
                  for i in range(2)][-1]
        assert "agent-factory/credentials/neon" in result.firing
        assert not any("down" in key for key in result.firing)
        assert db.active_provider == "neon" and wait_for_failovers(db, 1, timeout=1.0) == []
    assert role.password not in result.summary
