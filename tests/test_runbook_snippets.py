"""Every `python -c "..."` snippet of the runbooks runs as written against local providers.

The runbooks: the project's own docs/RUNBOOK.md (always there, so these run in
a fresh clone too) and the operators' ../shared/RUNBOOK.md beside the repo.
`poetry run` is read as running in the project's environment: a shell
function `poetry` drops `run` and the venv's `python` comes first on PATH.
The playbooks and `agent-factory` commands docs/RUNBOOK.md names must exist and parse.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import shlex

import pytest

from agent_factory.cli import build_parser
from agent_factory.local.cluster import write_env_file

REPO = Path(__file__).resolve().parents[1]
RUNBOOK = REPO.parent / "shared" / "RUNBOOK.md"
OWN_RUNBOOK = REPO / "docs" / "RUNBOOK.md"
SNIPPET = re.compile(r'(?:poetry run )?python -c "\n.*?\n"', re.DOTALL)


def _snippets() -> list[str]:
    if not RUNBOOK.is_file():
        if os.environ.get("CI"):
            raise FileNotFoundError(f"{RUNBOOK} is missing: CI runs with ../shared beside the repo")
        return []
    return SNIPPET.findall(RUNBOOK.read_text())


SNIPPETS = _snippets()
OWN_SNIPPETS = SNIPPET.findall(OWN_RUNBOOK.read_text())

# What each snippet must print, keyed by a phrase of its code.
EXPECTED = {
    "status = '[OK]' if is_healthy": [r"^\[OK\] neon$", r"^\[OK\] supabase$", r"^\[OK\] railway$"],
    "f'[OK] {name}' if is_healthy": [r"^\[OK\] neon$", r"^\[OK\] supabase$", r"^\[OK\] railway$"],
    "FROM knowledge_atoms": [r"^Knowledge atoms: \d+$"],
    "Current primary": [r"^Current primary: neon$"],
    "db.set_provider('neon')": [r"^CHECK \(\(memory_type = ANY \(ARRAY\['session_metadata'::text, "
                                r"'message_user'::text"],
    "FROM session_memories', fetch_mode='one'": [r"^Sessions: \d+$"],
    "for row in result": [r"^PRIMARY KEY \(id\)$", r"^CHECK \(\(memory_type = ANY"],
    "pool_active": [r"^neon: pool_active=\d+$", r"^supabase: pool_active=\d+$", r"^railway: pool_active=\d+$"],
    "Failover enabled": [r"^Failover enabled: True$", r"^Failover order: \['neon', 'supabase', 'railway'\]$",
                         r"^Health: \{'neon': True, 'supabase': True, 'railway': True\}$"],
    "content IS NULL": [r"^Null content rows: 0$"],
    "print(db.health_check_all())": [r"^\{'neon': True, 'supabase': True, 'railway': True\}$"],
}
# Phrases only docs/RUNBOOK.md uses.
OWN_ONLY = {"f'[OK] {name}' if is_healthy"}


def test_runbook_has_the_snippets_we_expect():
    if not SNIPPETS:
        pytest.skip(f"{RUNBOOK} not found (outside CI the shared runbook may be absent)")
    assert len(SNIPPETS) >= 10
    for key in EXPECTED:
        if key not in OWN_ONLY:
            assert any(key in s for s in SNIPPETS), f"no runbook snippet contains {key!r}"


def test_own_runbook_has_snippets_for_the_procedures():
    assert len(OWN_SNIPPETS) >= 7
    for key in ("f'[OK] {name}' if is_healthy", "FROM knowledge_atoms", "Current primary", "db.set_provider('neon')",
                "FROM session_memories', fetch_mode='one'", "Failover enabled", "content IS NULL"):
        assert any(key in s for s in OWN_SNIPPETS), f"docs/RUNBOOK.md has no snippet containing {key!r}"


def test_own_runbook_names_existing_playbooks_and_valid_commands():
    text = OWN_RUNBOOK.read_text()
    playbooks = set(re.findall(r"playbooks/(\w+)\.yml", text)) | set(re.findall(r"`(\w+)\.yml`", text))
    assert len(playbooks) >= 14
    for name in playbooks:
        assert (REPO / "playbooks" / f"{name}.yml").is_file(), f"docs/RUNBOOK.md names a missing playbook {name}"
    commands = re.findall(r"`agent-factory ([^`]+)`", text)
    commands += [line.split("agent-factory ", 1)[1] for line in text.splitlines()
                 if line.startswith("agent-factory ")]
    assert len(commands) >= 20
    parser = build_parser()
    for command in commands:
        words = [w.replace("FILE", "backups/x.dump") for w in shlex.split(command.split("#")[0])]
        try:
            parser.parse_args(words)
        except SystemExit:
            raise AssertionError(f"docs/RUNBOOK.md: `agent-factory {command}` does not parse") from None


@pytest.mark.parametrize("snippet", SNIPPETS + OWN_SNIPPETS, ids=lambda s: s.splitlines()[-2].strip()[:50])
def test_runbook_snippet_prints_what_the_runbook_shows(snippet, db, env, tmp_path, passwords):
    write_env_file(tmp_path / ".env", env)
    shell_env = {k: v for k, v in os.environ.items() if not k.endswith("_DB_URL") and not k.startswith("DATABASE_")}
    shell_env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{shell_env['PATH']}"
    script = "poetry() { shift; \"$@\"; }\n" + snippet
    result = subprocess.run(["bash", "-c", script], cwd=tmp_path, env=shell_env, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stdout.splitlines()
    checks = [patterns for key, patterns in EXPECTED.items() if key in snippet]
    assert checks, f"no expectation for snippet:\n{snippet}"
    for pattern in checks[0]:
        assert any(re.search(pattern, line) for line in lines), f"{pattern!r} not in output:\n{result.stdout}"
    assert not any(p in result.stdout + result.stderr for p in passwords)
