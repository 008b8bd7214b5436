"""Fixtures for the Ansible tests: a project directory pointing at the real local providers, and runners.

Playbooks run for real with `ansible-playbook` on `inventory/local`; modules also
run directly (`python library/NAME.py args.json`), as Ansible's own module tests do.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from agent_factory.local.cluster import write_env_file

REPO = Path(__file__).resolve().parents[2]
LIBRARY = REPO / "library"
MODULE_UTILS = REPO / "module_utils"
PLAYBOOKS = REPO / "playbooks"
BIN = Path(sys.executable).parent
MODULES = sorted(p.stem for p in LIBRARY.glob("memory_*.py"))


@dataclass
class Project:
    """A project directory for the modules: `.env` (0600) on the local providers, state and backups inside."""

    path: Path
    env_file: Path

    @property
    def backups(self) -> Path:
        return self.path / "backups"

    @property
    def state(self) -> Path:
        return self.path / "state"


@pytest.fixture
def project(env: dict[str, str], tmp_path: Path) -> Project:
    """A project directory whose `.env` points at the local providers, with its own state dir."""
    path = tmp_path / "project"
    path.mkdir()
    env_file = path / ".env"
    write_env_file(env_file, {**env, "AGENT_FACTORY_STATE_DIR": str(path / "state")})
    return Project(path, env_file)


def clean_environ(tmp_path: Path) -> dict[str, str]:
    """The environment for Ansible: no provider settings, the venv first on PATH, our ansible.cfg, private dirs."""
    environ = {k: v for k, v in os.environ.items()
               if not k.endswith("_DB_URL") and not k.startswith(("DATABASE_", "ANSIBLE_", "AGENT_FACTORY_"))}
    environ.update(
        PATH=f"{BIN}{os.pathsep}{environ.get('PATH', '')}",
        ANSIBLE_CONFIG=str(REPO / "ansible.cfg"),  # ignored in a world-writable cwd otherwise
        ANSIBLE_HOME=str(tmp_path / "ansible-home"),
        ANSIBLE_LOCAL_TEMP=str(tmp_path / "ansible-tmp"),
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_DEPRECATION_WARNINGS="0",
    )
    return environ


@pytest.fixture
def playbook(project: Project, tmp_path: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run `ansible-playbook playbooks/NAME.yml -e project_dir=...` with extra vars and flags."""

    def run(name: str, *flags: str, timeout: int = 240, **extra: Any) -> subprocess.CompletedProcess[str]:
        extra_vars = {"project_dir": str(project.path), **extra}
        cmd = [str(BIN / "ansible-playbook"), str(PLAYBOOKS / f"{name}.yml"), "-e", json.dumps(extra_vars), *flags]
        return subprocess.run(cmd, cwd=REPO, env=clean_environ(tmp_path), capture_output=True, text=True,
                              timeout=timeout)

    return run


@dataclass
class ModuleRun:
    """What a module printed: its JSON result and exit code."""

    rc: int
    result: dict[str, Any]
    stdout: str
    stderr: str


# Runs a module file as Ansible's payload does: our module_utils inside ansible.module_utils.
_RUN_MODULE = (
    "import runpy, sys, ansible.module_utils as m; m.__path__.append(sys.argv[1]); "
    "sys.argv = sys.argv[2:]; runpy.run_path(sys.argv[0], run_name='__main__')"
)


def module_command(path: Path, args_file: Path, python: str = sys.executable) -> list[str]:
    """Return the argv that runs the module at `path` with `args_file`, our module_utils importable."""
    return [python, "-c", _RUN_MODULE, str(MODULE_UTILS), str(path), str(args_file)]


@pytest.fixture
def module(project: Project, tmp_path: Path) -> Callable[..., ModuleRun]:
    """Run `library/NAME.py` directly with the given arguments (project_dir defaults to the project)."""

    def run(name: str, check_mode: bool = False, **args: Any) -> ModuleRun:
        args.setdefault("project_dir", str(project.path))
        args_file = tmp_path / f"{name}-args.json"
        args_file.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": {**args, "_ansible_check_mode": check_mode}}))
        proc = subprocess.run(module_command(LIBRARY / f"{name}.py", args_file), cwd=tmp_path,
                              env=clean_environ(tmp_path), capture_output=True, text=True, timeout=180)
        try:
            result = json.loads(proc.stdout)
        except ValueError:
            raise AssertionError(
                f"{name} printed no JSON (rc {proc.returncode}):\n{proc.stdout}\n{proc.stderr}") from None
        return ModuleRun(proc.returncode, result, proc.stdout, proc.stderr)

    return run
