"""Each module's DOCUMENTATION matches its argument spec; EXAMPLES and RETURN parse; ansible-doc renders it."""

from __future__ import annotations

import importlib.util
import json
import subprocess
from types import ModuleType
from typing import Any

import pytest
import yaml

import ansible.module_utils

from .conftest import BIN, LIBRARY, MODULE_UTILS, MODULES, REPO, clean_environ

if str(MODULE_UTILS) not in ansible.module_utils.__path__:
    ansible.module_utils.__path__.append(str(MODULE_UTILS))  # as Ansible's payload has it

from ansible.module_utils.agent_factory_module import COMMON_OPTIONS, argument_spec



def _fragments() -> dict[str, str]:
    fragments = {}
    for path in (REPO / "doc_fragments").glob("*.py"):
        spec = importlib.util.spec_from_file_location(f"doc_fragment_{path.stem}", path)
        assert spec and spec.loader
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        fragments[path.stem] = mod.ModuleDocFragment.DOCUMENTATION
    return fragments


FRAGMENTS = _fragments()

SPEC_KEYS = ("type", "default", "choices", "required", "no_log", "elements")


def load(name: str) -> ModuleType:
    """Import `library/NAME.py` with our module_utils importable, as in Ansible's payload."""
    spec = importlib.util.spec_from_file_location(f"library_{name}", LIBRARY / f"{name}.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def documented_options(doc: dict[str, Any]) -> dict[str, Any]:
    """Return a module's options with its doc fragments merged in, as ansible-doc shows them."""
    options = dict(doc.get("options") or {})
    for fragment in doc.get("extends_documentation_fragment") or []:
        options.update(yaml.safe_load(FRAGMENTS[fragment])["options"])
    return options


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
    assert doc["extends_documentation_fragment"] == ["agent_factory"]
    assert not set(doc.get("options") or {}) & set(COMMON_OPTIONS), f"{name} restates a common option"
    spec = argument_spec(**mod.OPTIONS)
    documented = documented_options(doc)
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
def test_ansible_doc_renders(name: str, tmp_path) -> None:
    proc = subprocess.run([str(BIN / "ansible-doc"), "-M", str(LIBRARY), name], cwd=REPO,
                          env=clean_environ(tmp_path), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "[WARNING]" not in proc.stderr
    proc = subprocess.run([str(BIN / "ansible-doc"), "--json", "-M", str(LIBRARY), name], cwd=REPO,
                          env=clean_environ(tmp_path), capture_output=True, text=True, timeout=60)
    rendered = json.loads(proc.stdout)[name]["doc"]
    assert set(rendered["options"]) == set(argument_spec(**load(name).OPTIONS))
    assert rendered["attributes"]["check_mode"]["support"] == "full"
    assert rendered["options"]["project_dir"]["required"] is True


def test_modules_import_only_ansible_and_our_module_utils():
    """Each module imports Ansible's basic and our module_utils at the top, agent_factory only after the guard."""
    for path in LIBRARY.glob("*.py"):
        top = path.read_text().split("\ndef main", 1)[0]
        for line in top.splitlines():
            if line.startswith(("import ", "from ")) and ("ansible" in line or "agent_factory" in line):
                assert line.startswith("from ansible.module_utils.agent_factory_module import"), f"{path.name}: {line}"


def test_action_group_lists_every_module_and_playbooks_set_common_options_once():
    """group/agent_factory.memory.all covers library/; no playbook task restates what module_defaults sets."""
    runtime = yaml.safe_load((REPO / "collections/ansible_collections/agent_factory/memory/meta/runtime.yml")
                             .read_text())
    assert runtime["action_groups"]["all"] == [f"ansible.legacy.{name}" for name in MODULES]
    for path in (REPO / "playbooks").glob("*.yml"):
        for play in yaml.safe_load(path.read_text()):
            tasks = [t for key in ("pre_tasks", "tasks", "post_tasks") for t in play.get(key) or []]
            tasks += [t for block in tasks for part in ("block", "rescue", "always") for t in block.get(part) or []]
            uses = [t for t in tasks if any(k.startswith("memory_") for k in t)]
            if not uses:
                continue
            assert "group/agent_factory.memory.all" in play.get("module_defaults", {}), f"{path.name}: {play['name']}"
            for task in uses:
                args = next(v for k, v in task.items() if k.startswith("memory_"))
                assert not {"project_dir", "env_file"} & set(args or {}), f"{path.name}: {task['name']}"
