"""`molecule test` for every role (on this machine, no Docker) and ansible-lint on the whole project."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from .conftest import BIN, REPO, clean_environ

ROLES = sorted(p.name for p in (REPO / "roles").iterdir() if (p / "molecule" / "default" / "molecule.yml").is_file())


def test_every_role_of_the_issue_has_a_molecule_scenario():
    assert ROLES == ["agent_factory_install", "health_monitor", "local_providers", "memory_backup", "status_page"]
    for role in ROLES:
        meta = (REPO / "roles" / role / "meta" / "main.yml").read_text()
        assert "namespace: agent_factory" in meta and f"role_name: {role}" in meta
        defaults = (REPO / "roles" / role / "defaults" / "main.yml").read_text().splitlines()
        for i, line in enumerate(defaults):
            if line and not line.startswith((" ", "#", "-")) and line != "---":
                assert defaults[i - 1].startswith("#") or defaults[i - 1].startswith(role), \
                    f"{role}: {line.split(':')[0]} is not documented"


@pytest.mark.real_server
@pytest.mark.parametrize("role", ROLES)
def test_molecule(role: str, tmp_path: Path) -> None:
    """`molecule test` passes even with PYTHONPATH on the checkout (the install role installs with it cleared)."""
    env = {**clean_environ(tmp_path), "PYTHONPATH": str(REPO)}
    proc = subprocess.run([str(BIN / "molecule"), "test"], cwd=REPO / "roles" / role, env=env,
                          capture_output=True, text=True, timeout=600)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-6000:]
    for step in ("syntax", "converge", "idempotence", "verify"):
        assert f"{step}: Executed: Successful" in output or f"{step}\x1b" in output, f"{role}: no {step} step"


def test_install_role_runs_venv_and_pip_with_pythonpath_cleared() -> None:
    tasks = yaml.safe_load((REPO / "roles/agent_factory_install/tasks/main.yml").read_text())
    for name in ("Create the virtualenv", "Install the agent-factory package"):
        task = next(t for t in tasks if t["name"] == name)
        assert task["environment"] == {"PYTHONPATH": ""}, name


def _lint(args: list[str], tmp_path: Path, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    env = clean_environ(tmp_path)
    env["NO_COLOR"] = "1"
    return subprocess.run([str(BIN / "ansible-lint"), "--nocolor", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)


def test_ansible_lint_production_profile_passes(tmp_path: Path) -> None:
    proc = _lint([], tmp_path)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    assert "0 failure(s), 0 warning(s)" in proc.stderr + proc.stdout
    assert "Profile 'production' was required, and it passed" in proc.stderr + proc.stdout


def test_ansible_lint_checks_our_modules_options(tmp_path: Path) -> None:
    """The `args` rule runs our modules' argument specs: a wrong option is reported."""
    probe = tmp_path / "probe.yml"
    probe.write_text("---\n- name: Probe\n  hosts: all\n  gather_facts: false\n  tasks:\n"
                     "    - name: Wrong option\n      memory_backup:\n        project_dir: /tmp\n        bogus: 1\n")
    proc = _lint(["-c", str(REPO / ".ansible-lint"), str(probe)], tmp_path)
    assert "args[module]" in proc.stdout and "Unsupported parameters" in proc.stdout and "bogus" in proc.stdout


@pytest.mark.parametrize("overrides, expected", [
    ({}, {"port": 8501, "address": "127.0.0.1", "state_dir": None}),
    ({"status_page_port": 9000, "status_page_address": "0.0.0.0", "status_page_state_dir": "/srv/af/state"},
     {"port": 9000, "address": "0.0.0.0", "state_dir": "/srv/af/state"}),
])
def test_status_page_command_is_one_the_cli_accepts(overrides: dict, expected: dict) -> None:
    """The unit's ExecStart, rendered from the role's defaults, parses with the real `agent-factory` parser."""
    import shlex

    import jinja2
    import yaml

    from agent_factory.cli import build_parser

    defaults = {**yaml.safe_load((REPO / "roles/status_page/defaults/main.yml").read_text()), **overrides}
    command = jinja2.Environment(undefined=jinja2.StrictUndefined).from_string(
        defaults["status_page_command"]).render(**defaults)
    argv = shlex.split(command)
    assert argv[0] == "/opt/agent-factory/venv/bin/agent-factory"
    args = build_parser().parse_args(argv[1:])  # argparse exits (SystemExit) on an option the CLI lacks
    assert args.command == "status-page"
    assert {"port": args.port, "address": args.address, "state_dir": args.state_dir} == expected
