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


# ---- no import cycles anywhere in agent_factory ----------------------------

PACKAGE = Path(agent_factory.__file__).parent

# Annotation-only imports (under `if TYPE_CHECKING:`) that close a cycle. The fail-back hook names the manager it is
# called with; the manager holds the hook. Nothing else may join this list: a new cycle means a concept is split wrong.
ANNOTATION_CYCLES = [["agent_factory.core.database_manager", "agent_factory.core.failback"]]


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _import_nodes(tree: ast.AST, *, runtime_only: bool) -> list[ast.Import | ast.ImportFrom]:
    """Return the import statements of `tree`, anywhere in it (functions too), skipping `if TYPE_CHECKING:` bodies."""
    found: list[ast.Import | ast.ImportFrom] = []
    todo = [tree]
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        if runtime_only and isinstance(node, ast.If) and _is_type_checking(node.test):
            todo += node.orelse
            continue
        todo += ast.iter_child_nodes(node)
    return found


def import_graph(root: Path, *, runtime_only: bool = False) -> dict[str, set[str]]:
    """Return module -> the package's modules it imports (`from pkg import mod` counts as importing `pkg.mod`)."""
    modules = {_module_name(p, root): p for p in root.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        targets: set[str] = set()
        for node in _import_nodes(ast.parse(path.read_text(), str(path)), runtime_only=runtime_only):
            if isinstance(node, ast.Import):
                targets |= {alias.name for alias in node.names}
                continue
            base = node.module or ""
            if node.level:
                base = ".".join(package[: len(package) - node.level + 1] + ([node.module] if node.module else []))
            for alias in node.names:
                full = f"{base}.{alias.name}"
                targets.add(full if full in modules else base)
        graph[name] = {t for t in targets if t in modules and t != name}
    return graph


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Return the strongly connected groups of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                cycles.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(cycles)


def test_agent_factory_has_no_import_cycle():
    graph = import_graph(PACKAGE, runtime_only=True)
    assert len(graph) > 50 and "agent_factory.ops.pgtools" in graph["agent_factory.ops.backup"]
    assert import_cycles(graph) == []


def test_annotation_imports_close_no_cycle_but_the_fail_back_hook():
    assert import_cycles(import_graph(PACKAGE)) == ANNOTATION_CYCLES


def test_client_tools_do_not_import_the_archive_loader():
    graph = import_graph(PACKAGE)
    assert "agent_factory.ops.pgtools" not in graph["agent_factory.ops.tools"]
    assert "agent_factory.ops.target" in graph["agent_factory.ops.tools"]


def test_the_scan_finds_a_cycle_through_a_function_and_an_annotation(tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from .sub import b\n")
    (pkg / "sub" / "b.py").write_text("def f():\n    from .. import c\n")
    (pkg / "c.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.a import X\n")
    assert import_cycles(import_graph(pkg)) == [["pkg.a", "pkg.c", "pkg.sub.b"]]
    assert import_cycles(import_graph(pkg, runtime_only=True)) == []
