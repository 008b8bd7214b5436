"""Hostile or mistaken input to the CLI gets one readable line and the right exit code, never a traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent_factory.cli import main


@pytest.fixture
def file_as_state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """AGENT_FACTORY_STATE_DIR names a file; a provider URL that nothing listens on (loopback port 1)."""
    monkeypatch.chdir(tmp_path)
    for name in ("SUPABASE_DB_URL", "RAILWAY_DB_URL", "DATABASE_PROVIDER", "DATABASE_FAILOVER_ORDER"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NEON_DB_URL", "postgresql://agent:pw@127.0.0.1:1/app")
    state = tmp_path / "state-is-a-file"
    state.write_text("not a directory\n")
    monkeypatch.setenv("AGENT_FACTORY_STATE_DIR", str(state))
    return state


@pytest.mark.parametrize("argv", [["failovers"], ["errors"], ["monitor", "--once"], ["backups", "list"]])
def test_a_state_dir_that_is_a_file_is_one_line_exit_2(file_as_state_dir: Path, argv: list[str],
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1 and f"{file_as_state_dir} is a file, not a directory" in err
    assert "Traceback" not in err and file_as_state_dir.read_text() == "not a directory\n"
    assert main(["--json", *argv]) == 2
    payload = json.loads(capsys.readouterr().out)
    assert payload["ok"] is False and "AGENT_FACTORY_STATE_DIR" in payload["error"]


@pytest.mark.parametrize("command", ["failovers", "errors"])
@pytest.mark.parametrize("since", ["999999999d", "99999999999999999999w", "1" + "0" * 400 + "s"])
def test_a_since_before_the_year_1_is_a_usage_error(command: str, since: str,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main([command, "--since", since])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err == f"agent-factory {command}: error: argument --since: {since!r} reaches back before the year 1; " \
                  "e.g. 24h, 30d or 52w (see --help)\n"
