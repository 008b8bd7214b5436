"""`agent-factory credentials rotate | reload` on a real provider, with writers running (ops.credentials)."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from dotenv import dotenv_values

from agent_factory.core import DatabaseManager
from agent_factory.envfile import with_values
from agent_factory.local import LocalProviders
from agent_factory.ops.credentials import generate_password, rotate_password, scram_verifier, with_password
from tests.conftest import wait_for_failovers
from tests.roles import (LoginRole, Writers, login_role, new_logins_since, password_refused, rotation_config,
                         write_env)


@pytest.fixture
def role(local: LocalProviders) -> Iterator[LoginRole]:
    with login_role(local) as made:
        yield made


@pytest.fixture
def setup(env: dict[str, str], role: LoginRole, tmp_path: Path) -> tuple[dict[str, str], Path]:
    """The settings without NEON_DB_URL, and a .env holding the test role's URL (plus lines to keep)."""
    env_file = tmp_path / ".env"
    write_env(env_file, {"NEON_DB_URL": role.url})
    with open(env_file, "a") as fh:
        fh.write("\n# keep me\nexport OTHER_SETTING='a b'\r\n")
    settings = {k: v for k, v in env.items() if k != "NEON_DB_URL"}
    return settings, env_file


def _cli(args: list[str], settings: dict[str, str], cwd: Path, stdin: str | None = None
         ) -> subprocess.CompletedProcess[str]:
    """Run the real command in another process (as an operator would while agents run)."""
    environment = {k: v for k, v in os.environ.items() if not k.endswith("_DB_URL")}
    environment.update(settings)
    return subprocess.run([sys.executable, "-m", "agent_factory.cli", *args], cwd=cwd, env=environment,
                          input=stdin, capture_output=True, text=True, timeout=120)


def test_rotation_with_8_writers_loses_no_write_and_never_fails_over(
        setup: tuple[dict[str, str], Path], role: LoginRole, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    settings, env_file = setup
    with DatabaseManager(rotation_config(settings, env_file)) as db:
        with Writers(db) as writers:
            time.sleep(1.0)
            before = writers.total
            done = _cli(["credentials", "rotate", "--provider", "neon", "--env-file", str(env_file), "-vvv", "--json"],
                        settings, tmp_path)
            rotated_at = time.time()
            time.sleep(3.0)  # pooled connections pass DATABASE_POOL_MAX_LIFETIME: new logins, new password
        assert done.returncode == 0, done.stderr + done.stdout
        assert writers.failures == []
        assert writers.total > before  # writes went on after the rotation
        assert role.rows() == writers.total
        assert db.active_provider == "neon"
        assert wait_for_failovers(db, 1, timeout=1.0) == []
        assert new_logins_since(role, rotated_at) > 0  # the pool logged in anew, with the new password
    result = json.loads(done.stdout)["result"]
    assert result["old_password_refused"] is True and result["logged_in"] is True
    new_url = dotenv_values(env_file)["NEON_DB_URL"]
    new_password = psycopg.conninfo.conninfo_to_dict(new_url)["password"]
    assert new_password != role.password and len(new_password) >= 40
    assert password_refused(role.url) and not password_refused(new_url)
    text = env_file.read_bytes()
    assert b"# provider URLs (kept by the rotation)\n" in text and b"export OTHER_SETTING='a b'\r\n" in text
    assert env_file.stat().st_mode & 0o777 == 0o600
    assert not (tmp_path / ".env.rotating").exists()
    for secret in (role.password, new_password):
        assert secret not in done.stdout + done.stderr + caplog.text


def test_dry_run_logs_in_and_changes_nothing(setup: tuple[dict[str, str], Path], role: LoginRole,
                                             tmp_path: Path) -> None:
    settings, env_file = setup
    before = env_file.read_bytes()
    done = _cli(["credentials", "rotate", "--provider", "neon", "--env-file", str(env_file), "--dry-run"],
                settings, tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("[PLAN]") and "SCRAM" in done.stdout
    assert env_file.read_bytes() == before and not password_refused(role.url)
    assert role.password not in done.stdout + done.stderr


def test_a_url_set_in_the_environment_is_refused(setup: tuple[dict[str, str], Path], role: LoginRole,
                                                 tmp_path: Path) -> None:
    settings, env_file = setup
    done = _cli(["credentials", "rotate", "--provider", "neon", "--env-file", str(env_file)],
                {**settings, "NEON_DB_URL": role.url}, tmp_path)
    assert done.returncode == 2
    assert "NEON_DB_URL is set in the environment" in done.stderr and "Traceback" not in done.stderr
    assert not password_refused(role.url) and role.password not in done.stderr


def test_console_rotation_is_taken_in_by_reload(setup: tuple[dict[str, str], Path], role: LoginRole,
                                                tmp_path: Path) -> None:
    settings, env_file = setup
    new = generate_password()
    role.set_password(new)  # rotated in the provider's console
    checked = _cli(["credentials", "reload", "--provider", "neon", "--env-file", str(env_file)], settings, tmp_path)
    assert checked.returncode == 1 and "[FAIL] neon" in checked.stdout
    wrong = _cli(["credentials", "reload", "--provider", "neon", "--env-file", str(env_file), "--password-stdin"],
                 settings, tmp_path, stdin="not-the-password\n")
    assert wrong.returncode == 1 and "does not log in" in wrong.stderr
    assert dotenv_values(env_file)["NEON_DB_URL"] == role.url  # nothing written
    taken = _cli(["credentials", "reload", "--provider", "neon", "--env-file", str(env_file), "--password-stdin"],
                 settings, tmp_path, stdin=new + "\n")
    assert taken.returncode == 0, taken.stderr
    assert dotenv_values(env_file)["NEON_DB_URL"] == with_password(role.url, new)
    again = _cli(["credentials", "reload", "--env-file", str(env_file)], settings, tmp_path)
    assert again.returncode == 0 and "[OK] neon" in again.stdout
    for out in (checked, wrong, taken, again):
        assert new not in out.stdout + out.stderr and role.password not in out.stdout + out.stderr


def test_an_interrupted_rotation_blocks_the_next_one(setup: tuple[dict[str, str], Path], role: LoginRole) -> None:
    settings, env_file = setup
    pending = env_file.with_name(".env.rotating")
    pending.write_text("NEON_DB_URL=whatever\n")
    from agent_factory.errors import CredentialRotationError
    with pytest.raises(CredentialRotationError, match="interrupted"):
        rotate_password(env_file, "neon", check=False, env=settings)
    assert pending.exists() and not password_refused(role.url)


def test_with_values_keeps_every_other_byte() -> None:
    text = "# c\r\nexport A='x'\r\nB=\"y\"\n\nA=dup\nC=z"
    assert with_values(text, {"A": "n1", "D": "new"}) == "# c\r\nexport A='n1'\r\nB=\"y\"\n\nC=z\nD=new\n"
    assert with_values("A=1\n", {"A": "has space"}) == 'A="has space"\n'


def test_scram_verifier_has_postgres_format() -> None:
    verifier = scram_verifier("secret", salt=b"0123456789abcdef")
    assert verifier.startswith("SCRAM-SHA-256$4096:MDEyMzQ1Njc4OWFiY2RlZg==$") and "secret" not in verifier


def test_rotation_through_the_admin_url(setup: tuple[dict[str, str], Path], role: LoginRole,
                                        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    settings, env_file = setup
    with open(env_file, "a") as fh:
        fh.write(f"NEON_ADMIN_URL={role.admin_url}\n")
    result = rotate_password(env_file, "neon", check=False, env=settings)
    assert "NEON_ADMIN_URL" in result.actions[0] and result.old_password_refused
    new_url = dotenv_values(env_file)["NEON_DB_URL"]
    assert password_refused(role.url) and not password_refused(new_url)
    assert dotenv_values(env_file)["NEON_ADMIN_URL"] == role.admin_url  # untouched
    admin_password = psycopg.conninfo.conninfo_to_dict(role.admin_url)["password"]
    for secret in (admin_password, psycopg.conninfo.conninfo_to_dict(new_url)["password"], role.password):
        assert secret not in caplog.text + result.summary + " ".join(result.actions)


def test_local_up_keeps_a_rotated_password_that_works(local: LocalProviders, role: LoginRole, tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    wrong = with_password(local.url("supabase"), "stale")
    write_env(env_file, {"NEON_DB_URL": role.url, "SUPABASE_DB_URL": wrong})
    done = _cli(["local", "--dir", str(local.base_dir), "--env-file", str(env_file), "up"], {}, tmp_path)
    assert done.returncode == 0, done.stderr
    values = dotenv_values(env_file)
    assert values["NEON_DB_URL"] == role.url  # rotated since `local up`, and it logs in: kept
    assert values["SUPABASE_DB_URL"] == local.url("supabase")  # does not log in: the provider's own URL
