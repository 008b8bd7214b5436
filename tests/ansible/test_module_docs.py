"""Each module's DOCUMENTATION matches its argument spec; EXAMPLES and RETURN parse; ansible-doc renders it."""

from __future__ import annotations

import importlib.util
import subprocess
from types import ModuleType
from typing import Any

import pytest
import yaml

from agent_factory.automation import COMMON_OPTIONS, argument_spec

from .conftest import BIN, LIBRARY, MODULES, REPO, clean_environ

SPEC_KEYS = ("type", "default", "choices", "required", "no_log", "elements")


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"library_{name}", LIBRARY / f"{name}.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_every_module_of_the_issue_is_there():
    assert MODULES == sorted([
        "memory_backup", "memory_backup_info", "memory_backup_prune", "memory_backup_verify", "memory_capacity",
        "memory_credentials", "memory_health", "memory_maintenance", "memory_primary", "memory_restore",
        "memory_schema", "memory_schema_info", "memory_stream", "memory_stream_info", "memory_sync", "memory_verify",
    ])


@pytest.mark.parametrize("name", MODULES)
def test_documentation_matches_argument_spec(name: str) -> None:
    mod = load(name)
    doc = yaml.safe_load(mod.DOCUMENTATION)
    assert doc["module"] == name
    assert doc["attributes"]["check_mode"]["support"] == "full"
    spec = argument_spec(**mod.OPTIONS)
    documented = doc["options"]
    assert set(documented) == set(spec), f"{name}: documented {sorted(documented)} != spec {sorted(spec)}"
    for option, rules in spec.items():
        shown = documented[option]
        assert shown.get("description"), f"{name}.{option} has no description"
        for key in SPEC_KEYS:
            want: Any = rules.get(key)
            got: Any = shown.get(key)
            if key == "required":
                want, got = bool(want), bool(got)
            if key == "no_log":
                continue  # not a documentation field; checked below
            assert got == want, f"{name}.{option}: documentation says {key}={got!r}, argument_spec {want!r}"
    assert spec["provider_urls"]["no_log"] is True


@pytest.mark.parametrize("name", MODULES)
def test_examples_and_return_parse(name: str) -> None:
    mod = load(name)
    examples = yaml.safe_load(mod.EXAMPLES)
    assert isinstance(examples, list) and examples
    uses = [task for task in examples if name in task]
    assert uses, f"{name}: no example uses the module"
    for task in uses:
        assert set(task[name]) <= set(argument_spec(**mod.OPTIONS)), f"{name}: example uses an unknown option"
    returned = yaml.safe_load(mod.RETURN)
    for key, entry in returned.items():
        assert {"description", "returned", "type", "sample"} <= set(entry), f"{name}: RETURN {key} incomplete"
    assert "results" not in returned


@pytest.mark.parametrize("name", MODULES)
def test_fallback_spec_without_the_package_matches(name: str) -> None:
    """The spec a module builds when agent_factory is missing must hide provider_urls the same way."""
    source = (LIBRARY / f"{name}.py").read_text()
    fallback = source.split("except ImportError:", 1)[1].split("else:", 1)[0]
    namespace: dict[str, Any] = {"traceback": __import__("traceback")}
    exec(compile("def _f():\n    pass\n" + "\n".join(
        line[4:] for line in fallback.splitlines() if line.startswith("    ") and "IMPORT_ERROR" not in line
    ), name, "exec"), namespace)
    assert namespace["argument_spec"](x=dict(type="str")) == {**COMMON_OPTIONS, "x": {"type": "str"}}


@pytest.mark.parametrize("name", MODULES)
def test_ansible_doc_renders(name: str, tmp_path) -> None:
    proc = subprocess.run([str(BIN / "ansible-doc"), "-M", str(LIBRARY), name], cwd=REPO,
                          env=clean_environ(tmp_path), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "project_dir" in proc.stdout and "[WARNING]" not in proc.stderr


def test_modules_import_only_ansible_basic_and_agent_factory():
    for path in LIBRARY.glob("*.py"):
        for line in path.read_text().splitlines():
            stripped = line.strip()
            if stripped.startswith(("import ", "from ")) and "ansible" in stripped:
                assert stripped.startswith("from ansible.module_utils.basic import"), f"{path.name}: {stripped}"
    assert not (REPO / "module_utils").exists()
