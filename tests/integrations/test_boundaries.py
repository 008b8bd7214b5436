"""Frameworks are imported only under agent_factory/integrations/; pgvector only through agent_factory/vector.py."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "agent_factory"
FRAMEWORKS = ("langgraph", "langchain", "langchain_core")


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_only_the_integrations_import_frameworks_and_only_vector_imports_pgvector():
    for path in PACKAGE.rglob("*.py"):
        inside = PACKAGE / "integrations" in path.parents
        found = _imports(path)
        if not inside:
            assert not found & set(FRAMEWORKS), f"{path} imports {found & set(FRAMEWORKS)}"
        if path != PACKAGE / "vector.py" and not inside:
            assert "pgvector" not in found, f"{path} imports pgvector"


def test_the_core_package_loads_no_framework():
    code = ("import sys, agent_factory.core, agent_factory.memory, agent_factory.ops.verify, agent_factory.vector, "
            "agent_factory.replication; print(sorted(m for m in sys.modules if m.split('.')[0] in "
            f"{FRAMEWORKS + ('pgvector',)!r}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "[]"
