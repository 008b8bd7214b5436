"""`--json` and `-v` work before and after the subcommand, defined once for every command."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent_factory.cli import CommandParser, build_parser, main
from agent_factory.cli.runbook import run_subcommand
from agent_factory.state import StateStore


@pytest.fixture
def state_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("NEON_DB_URL", "postgresql://agent:pw@db.example.com:5432/app")
    monkeypatch.setenv("AGENT_FACTORY_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.chdir(tmp_path)
    StateStore(tmp_path / "state").record_failover("neon", "supabase", "test reason")
    return tmp_path


@pytest.mark.parametrize("argv", [
    ["--json", "failovers"],
    ["failovers", "--json"],
    ["failovers", "--since", "1h", "--json"],
    ["-v", "failovers", "--json"],
    ["failovers", "-v", "--json"],
])
def test_json_before_or_after_the_subcommand(state_env: Path, argv: list[str],
                                             capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["ok"] is True
    assert [(e["from_provider"], e["to_provider"]) for e in payload["result"]] == [("neon", "supabase")]


def test_without_json_the_output_is_text(state_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["failovers"]) == 0
    out = capsys.readouterr().out
    assert "neon -> supabase: test reason" in out
    with pytest.raises(json.JSONDecodeError):
        json.loads(out)


@pytest.mark.parametrize(("argv", "verbose", "as_json"), [
    (["backups", "list"], False, False),
    (["-v", "backups", "list"], True, False),
    (["backups", "-v", "list"], True, False),
    (["backups", "list", "--verbose", "--json"], True, True),
    (["--json", "local", "up", "-v"], True, True),
])
def test_verbose_and_json_anywhere(argv: list[str], verbose: bool, as_json: bool) -> None:
    args = build_parser().parse_args(argv)
    assert (args.verbose, args.json) == (verbose, as_json)


def test_every_command_and_subcommand_has_the_options_once() -> None:
    parser = build_parser()
    seen = []

    def walk(p: CommandParser) -> None:
        seen.append(p.prog)
        options = [o for a in p._actions for o in a.option_strings]
        assert options.count("--json") == 1 and options.count("-v") == 1, p.prog
        for action in p._actions:
            if isinstance(action.choices, dict):
                for child in action.choices.values():
                    assert isinstance(child, CommandParser)
                    walk(child)

    walk(parser)
    assert {"agent-factory failovers", "agent-factory backups list", "agent-factory local up"} <= set(seen)


def test_runbook_scripts_pass_flags_through(state_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_subcommand(["failovers"], ["--json", "--since", "24h"]) == 0
    assert json.loads(capsys.readouterr().out)["ok"] is True
