"""`core` stands below `replication`: no module under agent_factory/core imports it (fail-back is wired from above)."""

from __future__ import annotations

import ast
from pathlib import Path

import agent_factory

CORE = Path(agent_factory.__file__).parent / "core"


def _imports(path: Path) -> list[str]:
    """Return every module `path` imports, relative imports resolved against agent_factory.core."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = ["agent_factory", "core"][: max(0, 3 - node.level)]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            found.append(module)
            found += [f"{module}.{alias.name}" for alias in node.names]
    return found


def test_no_module_under_core_imports_replication():
    modules = sorted(CORE.glob("*.py"))
    assert len(modules) >= 4, modules
    offending = {p.name: m for p in modules for m in _imports(p)
                 if m == "agent_factory.replication" or m.startswith("agent_factory.replication.")}
    assert offending == {}


def test_the_scan_sees_a_relative_import_of_replication(tmp_path):
    sample = tmp_path / "x.py"
    sample.write_text("def f():\n    from ..replication import sync_pair\n    from .. import replication\n")
    assert "agent_factory.replication" in _imports(sample)
    assert "agent_factory.replication.sync_pair" in _imports(sample)


def test_a_manager_built_with_no_wiring_gets_the_replication_fail_back(make_db):
    from agent_factory.replication.failback import FailbackLoop

    db = make_db()
    assert isinstance(db._failback, FailbackLoop)
