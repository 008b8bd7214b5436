"""The maintenance playbooks run for real: credential rotation with writers running, and the three checklists."""

from __future__ import annotations

import time
from collections.abc import Callable
from subprocess import CompletedProcess

import psycopg
import pytest
from dotenv import dotenv_values

from agent_factory.core import DatabaseManager
from agent_factory.local import LocalProviders
from agent_factory.local.cluster import write_env_file
from tests.conftest import wait_for_failovers
from tests.roles import Writers, login_role, new_logins_since, password_refused, rotation_config

from .conftest import Project
from .test_playbooks import _no_secret, _ok, _recap


def test_rotate_credentials_with_writers_running_loses_no_write_and_never_fails_over(
        playbook: Callable[..., CompletedProcess[str]], project: Project, env: dict[str, str],
        local: LocalProviders, passwords: list[str]) -> None:
    with login_role(local) as role:
        write_env_file(project.env_file, {"NEON_DB_URL": role.url})
        settings = {k: v for k, v in env.items() if k != "NEON_DB_URL"}
        settings["AGENT_FACTORY_STATE_DIR"] = str(project.state)
        with DatabaseManager(rotation_config(settings, project.env_file)) as db:
            with Writers(db) as writers:
                time.sleep(1.0)
                proc = playbook("rotate_credentials", "-vvv", provider="neon", confirm="yes")
                rotated_at = time.time()
                time.sleep(3.0)
            out = _ok(proc)
            assert writers.failures == [] and role.rows() == writers.total
            assert wait_for_failovers(db, 1, timeout=1.0) == [] and db.active_provider == "neon"
            assert new_logins_since(role, rotated_at) > 0
        new_url = dotenv_values(project.env_file)["NEON_DB_URL"]
        new_password = psycopg.conninfo.conninfo_to_dict(new_url)["password"]
        assert password_refused(role.url) and not password_refused(new_url)
        assert "Step 2: Rotate the password of neon" in out and "new logins work" in out
        _no_secret(proc, [*passwords, role.password, new_password])


def test_rotate_credentials_needs_confirmation(playbook: Callable[..., CompletedProcess[str]]) -> None:
    proc = playbook("rotate_credentials", provider="neon")
    assert proc.returncode != 0 and "-e confirm=yes" in proc.stdout


@pytest.mark.parametrize("name, steps", [
    ("weekly_maintenance", ["Review provider health metrics", "Check disk usage on all providers",
                            "Verify backups are running and valid", "Review slow query logs (if enabled)",
                            "Check for schema drift across providers"]),
    ("monthly_maintenance", ["Rotate database credentials", "Test disaster recovery (full restore)",
                             "Review connection pool sizes", "Analyze query performance trends",
                             "Update provider statistics"]),
    ("quarterly_maintenance", ["Load testing (find bottlenecks)", "Security audit (SQL injection, encryption)",
                               "Capacity planning (project growth)", "Review and update runbook",
                               "Provider cost analysis"]),
])
def test_the_checklists_run_green(playbook: Callable[..., CompletedProcess[str]], project: Project, name: str,
                                  steps: list[str], passwords: list[str]) -> None:
    proc = playbook(name)
    out = _ok(proc)
    assert _recap(out)["failed"] == 0
    for step in steps:
        assert f"TASK [{step}]" in out, step
    assert "TASK [Report]" in out
    _no_secret(proc, passwords)


def test_the_weekly_checklist_fails_on_a_quota_below_the_size(
        playbook: Callable[..., CompletedProcess[str]], project: Project) -> None:
    write_env_file(project.env_file, {"RAILWAY_STORAGE_QUOTA_MB": "1"})
    proc = playbook("weekly_maintenance")
    assert proc.returncode != 0
    assert "railway" in proc.stdout and "95 %" in proc.stdout
