"""Switching the primary provider on the real local providers: health check, atomic 0600 rewrite, refusals."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from dotenv import dotenv_values

from agent_factory.cli import main
from agent_factory.config import load_config
from agent_factory.errors import ConfigError, ProviderUnavailableError
from agent_factory.local import LocalProviders
from agent_factory.local.cluster import write_env_file
from agent_factory.ops.primary import switch_primary


@pytest.fixture
def env_file(env: dict[str, str], tmp_path: Path) -> Path:
    path = tmp_path / ".env"
    path.write_text("# provider settings\nDATABASE_PROVIDER=neon\n")
    write_env_file(path, env)
    return path


def test_switch_rewrites_only_the_primary_line_mode_0600(env_file: Path):
    before = env_file.read_text()
    result = switch_primary(env_file, "supabase", check=False, env={})
    assert (result.previous, result.current, result.changed, result.healthy) == ("neon", "supabase", True, True)
    after = env_file.read_text()
    assert after == before.replace("DATABASE_PROVIDER=neon", "DATABASE_PROVIDER=supabase")
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    assert [p.name for p in env_file.parent.iterdir() if p.name.startswith(".")] == [".env"]  # no temp file left
    again = switch_primary(env_file, "supabase", check=False, env={})
    assert again.changed is False and env_file.read_text() == after


def test_check_mode_writes_nothing(env_file: Path):
    before = env_file.read_text()
    result = switch_primary(env_file, "railway", check=True, env={})
    assert result.changed and result.check and env_file.read_text() == before


def test_killed_target_is_refused_and_nothing_written(env_file: Path, local: LocalProviders, passwords: list[str]):
    before = env_file.read_text()
    local.kill("railway")
    with pytest.raises(ProviderUnavailableError, match=r"railway is unavailable.*neon stays primary") as info:
        switch_primary(env_file, "railway", check=False, env={})
    assert env_file.read_text() == before
    assert not any(p in str(info.value) for p in passwords)
    forced = switch_primary(env_file, "railway", check=False, require_healthy=False, env={})
    assert forced.changed and forced.healthy is None and "DATABASE_PROVIDER=railway" in env_file.read_text()


def test_refusals(env_file: Path, tmp_path: Path):
    with pytest.raises(ConfigError, match="unknown provider 'nope'"):
        switch_primary(env_file, "nope", check=False, env={})
    with pytest.raises(ConfigError, match="does not exist"):
        switch_primary(tmp_path / "missing.env", "neon", check=False, env={})
    with pytest.raises(ConfigError, match="DATABASE_PROVIDER is set in the environment"):
        switch_primary(env_file, "supabase", check=False, env={"DATABASE_PROVIDER": "neon"})


def test_line_is_added_when_absent_and_duplicates_removed(env: dict[str, str], tmp_path: Path):
    path = tmp_path / "plain.env"
    write_env_file(path, env)
    switch_primary(path, "supabase", check=False, env={})
    assert path.read_text().count("DATABASE_PROVIDER=") == 1
    path.write_text(path.read_text() + "export DATABASE_PROVIDER=neon\n")
    switch_primary(path, "railway", check=False, env={"x": "y"}, require_healthy=False)
    assert [ln for ln in path.read_text().splitlines() if "DATABASE_PROVIDER" in ln] == ["DATABASE_PROVIDER=railway"]


def test_cli_primary_set(env_file: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                         passwords: list[str]):
    monkeypatch.chdir(env_file.parent)
    for key in list(os.environ):
        if key.endswith("_DB_URL") or key.startswith("DATABASE_"):
            monkeypatch.delenv(key)
    assert main(["primary", "set", "supabase", "--dry-run"]) == 0
    assert "[PLAN] would switch the primary from neon to supabase" in capsys.readouterr().out
    assert main(["primary", "set", "supabase"]) == 0
    out = capsys.readouterr().out
    assert "[OK] primary switched from neon to supabase (healthy)" in out
    assert "DATABASE_PROVIDER=supabase" in env_file.read_text()
    assert main(["primary", "set", "nope"]) == 2
    err = capsys.readouterr().err
    assert "unknown provider 'nope'" in err
    assert not any(p in out + err for p in passwords)


QUOTED = 'NOTE="the old runbook said:\nDATABASE_PROVIDER=neon\nthen restart"\n'


def test_an_assignment_inside_a_quoted_value_is_not_the_variable(env: dict[str, str], tmp_path: Path):
    path = tmp_path / "quoted.env"
    path.write_text(QUOTED)
    write_env_file(path, env)
    note = dotenv_values(path)["NOTE"]
    result = switch_primary(path, "supabase", check=False, env={}, require_healthy=False)
    assert (result.previous, result.current, result.changed) == ("neon", "supabase", True)
    assert load_config({}, path).primary == "supabase", "the switch is real"
    assert dotenv_values(path)["NOTE"] == note and path.read_text().startswith(QUOTED), "the quoted value is kept"
    assert switch_primary(path, "neon", check=False, env={}, require_healthy=False).changed
    assert load_config({}, path).primary == "neon" and dotenv_values(path)["NOTE"] == note


def test_cli_primary_set_with_a_quoted_lookalike(env: dict[str, str], tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):
    path = tmp_path / ".env"
    path.write_text(QUOTED)
    write_env_file(path, env)
    monkeypatch.chdir(tmp_path)
    for key in list(os.environ):
        if key.endswith("_DB_URL") or key.startswith("DATABASE_"):
            monkeypatch.delenv(key)
    assert main(["primary", "set", "railway", "--skip-health-check"]) == 0
    assert "[OK] primary switched from neon to railway" in capsys.readouterr().out
    assert load_config({}, path).primary == "railway"
