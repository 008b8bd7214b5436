"""`AgentFactorySaver` beyond the conformance suite: bad input, tombstones, the default manager, secrets."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest

pytest.importorskip("langgraph.checkpoint.base", reason="needs the langgraph extra")

from langgraph.checkpoint.base import empty_checkpoint
from langgraph.checkpoint.base.id import uuid6

from agent_factory.errors import InvalidInputError
from agent_factory.integrations.langgraph import AgentFactorySaver

TABLES = ("langgraph_checkpoints", "langgraph_checkpoint_blobs", "langgraph_checkpoint_writes")


def _checkpoint() -> dict:
    checkpoint = empty_checkpoint()
    checkpoint["id"] = str(uuid6(clock_seq=-1))
    checkpoint["channel_values"] = {"items": [1, 2]}
    checkpoint["channel_versions"] = {"items": "1"}
    return checkpoint


def _counts(db) -> dict[str, tuple[int, int]]:
    """(live rows, tombstones) per checkpoint table on the active provider."""
    out = {}
    for table in TABLES:
        out[table] = db.execute_query(
            f"SELECT count(*) FILTER (WHERE deleted_at IS NULL), count(*) FILTER (WHERE deleted_at IS NOT NULL) "
            f"FROM {table}", fetch_mode="one")
    return out


@pytest.mark.parametrize("config", [
    {}, {"configurable": None}, {"configurable": {}}, {"configurable": {"thread_id": ""}},
    {"configurable": {"checkpoint_ns": ""}},
])
def test_a_config_without_thread_id_is_refused_and_nothing_is_written(db, config):
    saver = AgentFactorySaver(db)
    with pytest.raises(InvalidInputError, match=r"thread_id|configurable"):
        saver.put(config, _checkpoint(), {}, {"items": "1"})
    with pytest.raises(InvalidInputError, match=r"thread_id|configurable"):
        saver.get_tuple(config)
    with pytest.raises(InvalidInputError, match=r"thread_id|configurable"):
        saver.put_writes({**config}, [("items", 1)], "task")
    with pytest.raises(InvalidInputError, match=r"thread_id|configurable"):
        asyncio.run(saver.aget_tuple(config))
    assert _counts(db) == {t: (0, 0) for t in TABLES}


def test_writes_need_the_checkpoint_they_belong_to(db):
    saver = AgentFactorySaver(db)
    with pytest.raises(InvalidInputError, match="checkpoint_id"):
        saver.put_writes({"configurable": {"thread_id": "t", "checkpoint_ns": ""}}, [("items", 1)], "task")
    with pytest.raises(InvalidInputError, match="checkpoint_ns"):
        saver.put({"configurable": {"thread_id": "t"}}, _checkpoint(), {}, {})
    assert _counts(db) == {t: (0, 0) for t in TABLES}


def test_prune_and_copy_refuse_bad_arguments(db):
    saver = AgentFactorySaver(db)
    with pytest.raises(InvalidInputError, match="strategy"):
        saver.prune(["t"], strategy="oldest")
    with pytest.raises(InvalidInputError, match="single string"):
        saver.prune("thread-1")
    with pytest.raises(InvalidInputError, match="single string"):
        saver.delete_for_runs("run-1")
    with pytest.raises(InvalidInputError, match="same thread"):
        saver.copy_thread("t", "t")


def test_deletes_are_tombstones_and_a_later_put_brings_the_thread_back(db):
    saver = AgentFactorySaver(db)
    stored = saver.put({"configurable": {"thread_id": "t", "checkpoint_ns": ""}}, _checkpoint(), {"run_id": "r"},
                       {"items": "1"})
    saver.put_writes(stored, [("items", 3)], "task")
    saver.delete_thread("t")
    assert saver.get_tuple({"configurable": {"thread_id": "t"}}) is None
    # One tombstone per row, plus the thread's deletion marker; nothing removed.
    assert _counts(db) == {"langgraph_checkpoints": (0, 2), "langgraph_checkpoint_blobs": (0, 1),
                           "langgraph_checkpoint_writes": (0, 1)}
    again = saver.put({"configurable": {"thread_id": "t", "checkpoint_ns": ""}}, _checkpoint(), {}, {"items": "1"})
    found = saver.get_tuple({"configurable": {"thread_id": "t"}})
    assert found.config == again and found.checkpoint["channel_values"] == {"items": [1, 2]}


def test_the_default_manager_serves_a_saver_made_without_one(env, db, monkeypatch, passwords):
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    saver = AgentFactorySaver()
    stored = saver.put({"configurable": {"thread_id": "d", "checkpoint_ns": ""}}, _checkpoint(), {}, {"items": "1"})
    assert AgentFactorySaver(db).get_tuple(stored).checkpoint["channel_values"] == {"items": [1, 2]}
    assert not any(p in repr(saver) for p in passwords)


def _python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)


def test_the_core_package_imports_no_framework():
    proc = _python(
        "import sys\n"
        "import agent_factory, agent_factory.core, agent_factory.memory, agent_factory.replication\n"
        "import agent_factory.ops, agent_factory.cli, agent_factory.schema, agent_factory.state\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('langgraph', 'langchain_core', 'langchain')))")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_without_the_extra_the_import_error_names_it():
    proc = _python("import sys\nsys.modules['langgraph'] = None\nimport agent_factory.integrations.langgraph")
    assert proc.returncode == 1
    assert "pip install 'agent-factory[langgraph]'" in proc.stderr.strip().splitlines()[-1]
