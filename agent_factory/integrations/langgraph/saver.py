"""`AgentFactorySaver`: a LangGraph checkpointer on the process's shared `DatabaseManager`.

It mirrors langgraph-checkpoint-postgres 3.2's `PostgresSaver` (same layout:
checkpoints, channel blobs, pending writes; same serialization and version
strings) with what this library adds:

- failover, retries and fail-back come from the manager: every call is one
  statement (one round trip, atomic without BEGIN/COMMIT), never pipelined,
  and prepared only where the provider's configuration allows prepared
  statements (off behind a transaction pooler), as every query of the library;
- the rows merge between providers (migration 0004, docs/INTEGRATIONS.md):
  ids derived from the natural key, the client's clock as `updated_at` plus a
  `write_id` (made once per call: a replay writes the same version), and
  tombstones for every delete.

The async methods run the sync ones in a worker thread (`asyncio.to_thread`).
"""

from __future__ import annotations

import asyncio
import builtins
import random
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any, cast

import psycopg
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    WRITES_IDX_MAP,
    BaseCheckpointSaver,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    get_checkpoint_id,
    get_serializable_checkpoint_metadata,
    writes_sort_key,
)
from langgraph.checkpoint.serde.base import SerializerProtocol
from langgraph.checkpoint.serde.types import TASKS, _DeltaSnapshot
from psycopg.types.json import Jsonb

from ...core.database_manager import DatabaseManager
from ...errors import InvalidInputError
from ...memory._database import LazyDatabase
from ...memory.ids import new_stamp
from . import _checkpoint_sql as q

PRUNE_STRATEGIES = ("keep_latest", "delete")


class AgentFactorySaver(BaseCheckpointSaver[str]):
    """Store LangGraph checkpoints on the active provider of `db` (default: the process's shared manager).

    Methods raise `InvalidInputError` for a config without `configurable.thread_id`
    (and, for writes, without `checkpoint_ns`/`checkpoint_id`), and the manager's
    errors (`QueryError`, `AllProvidersDownError`, ...) when the database fails.
    """

    def __init__(self, db: DatabaseManager | None = None, *, serde: SerializerProtocol | None = None) -> None:
        super().__init__(serde=serde)
        self._database = LazyDatabase(db)

    def __repr__(self) -> str:
        return f"AgentFactorySaver(db={self._database._db!r})"

    @property
    def db(self) -> DatabaseManager:
        """The `DatabaseManager` in use."""
        return self._database.db

    # ---- reads ------------------------------------------------------------------

    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        """Return the checkpoint `config` names (its latest when it names no `checkpoint_id`), or None."""
        thread_id, checkpoint_ns = _thread(config), _configurable(config).get("checkpoint_ns", "")
        checkpoint_id = get_checkpoint_id(config)
        if checkpoint_id:
            where = " AND c.thread_id = %s AND c.checkpoint_ns = %s AND c.checkpoint_id = %s"
            args: tuple[Any, ...] = (thread_id, checkpoint_ns, checkpoint_id)
        else:
            where = " AND c.thread_id = %s AND c.checkpoint_ns = %s AND c.checkpoint_id <> '' " \
                    "ORDER BY c.checkpoint_id DESC LIMIT 1"
            args = (thread_id, checkpoint_ns)
        rows = self._read(q.SELECT + where, args)
        return self._load(rows[0]) if rows else None

    def list(self, config: RunnableConfig | None, *, filter: dict[str, Any] | None = None,
             before: RunnableConfig | None = None, limit: int | None = None) -> Iterator[CheckpointTuple]:
        """Yield the matching checkpoints, newest `checkpoint_id` first (one query)."""
        wheres: builtins.list[str] = [" AND c.checkpoint_id <> ''"]
        args: builtins.list[Any] = []
        if config:
            wheres.append(" AND c.thread_id = %s")
            args.append(_thread(config))
            checkpoint_ns = _configurable(config).get("checkpoint_ns")
            if checkpoint_ns is not None:
                wheres.append(" AND c.checkpoint_ns = %s")
                args.append(checkpoint_ns)
            if checkpoint_id := get_checkpoint_id(config):
                wheres.append(" AND c.checkpoint_id = %s")
                args.append(checkpoint_id)
        if filter:
            wheres.append(" AND c.metadata @> %s")
            args.append(Jsonb(filter))
        if before is not None:
            wheres.append(" AND c.checkpoint_id < %s")
            args.append(get_checkpoint_id(before))
        query = q.SELECT + "".join(wheres) + " ORDER BY c.checkpoint_id DESC"
        if limit is not None:
            query += " LIMIT %s"
            args.append(int(limit))
        for row in self._read(query, tuple(args)):
            yield self._load(row)

    # ---- writes -----------------------------------------------------------------

    def put(self, config: RunnableConfig, checkpoint: Checkpoint, metadata: CheckpointMetadata,
            new_versions: ChannelVersions) -> RunnableConfig:
        """Store a checkpoint and its new channel values in one statement; return its config."""
        configurable = _configurable(config)
        thread_id = _thread(config)
        checkpoint_ns = _required(configurable, "checkpoint_ns")
        copy = checkpoint.copy()
        copy["channel_values"] = values = dict(copy["channel_values"])
        blob_values: dict[str, Any] = {}
        for key, value in checkpoint["channel_values"].items():
            if isinstance(value, _DeltaSnapshot):
                blob_values[key] = values.pop(key)
                values[key] = True
            elif not (value is None or isinstance(value, (str, int, float, bool))):
                blob_values[key] = values.pop(key)
        blobs = [(k, str(v), *(self.serde.dumps_typed(blob_values[k]) if k in blob_values else ("empty", None)))
                 for k, v in new_versions.items() if k in blob_values]
        stamp = new_stamp()
        params = {
            "thread": thread_id, "ns": checkpoint_ns, "cid": checkpoint["id"],
            "parent": configurable.get("checkpoint_id"), "checkpoint": Jsonb(copy),
            "metadata": Jsonb(get_serializable_checkpoint_metadata(config, metadata)),
            "channels": [b[0] for b in blobs], "versions": [b[1] for b in blobs],
            "types": [b[2] for b in blobs], "blobs": [b[3] for b in blobs],
            "at": stamp.updated_at, "wid": stamp.write_id,
        }
        self._write(q.PUT, params)
        return {"configurable": {"thread_id": thread_id, "checkpoint_ns": checkpoint_ns,
                                 "checkpoint_id": checkpoint["id"]}}

    def put_writes(self, config: RunnableConfig, writes: Sequence[tuple[str, Any]], task_id: str,
                   task_path: str = "") -> None:
        """Store the pending writes of a task for the checkpoint `config` names, in one statement.

        As in langgraph-checkpoint-postgres, writes to the special channels
        (errors, interrupts, ...) replace earlier ones; others keep the first
        value stored under their (task, index).
        """
        configurable = _configurable(config)
        thread_id = _thread(config)
        checkpoint_ns = _required(configurable, "checkpoint_ns")
        checkpoint_id = _required(configurable, "checkpoint_id")
        upsert = all(w[0] in WRITES_IDX_MAP for w in writes)
        rows: dict[int, tuple[str, str, bytes]] = {}
        for idx, (channel, value) in enumerate(writes):
            key = WRITES_IDX_MAP.get(channel, idx)
            if upsert or key not in rows:
                rows[key] = (channel, *self.serde.dumps_typed(value))
        if not rows:
            return
        stamp = new_stamp()
        self._write(q.PUT_WRITES, {
            "thread": thread_id, "ns": checkpoint_ns, "cid": checkpoint_id, "task": str(task_id),
            "path": task_path, "idx": list(rows), "channels": [r[0] for r in rows.values()],
            "types": [r[1] for r in rows.values()], "blobs": [r[2] for r in rows.values()],
            "upsert": upsert, "at": stamp.updated_at, "wid": stamp.write_id,
        })

    def delete_thread(self, thread_id: str) -> None:
        """Delete every checkpoint, write and blob of the thread (tombstones, one statement)."""
        self._delete_threads([str(thread_id)])

    def delete_for_runs(self, run_ids: Sequence[str]) -> None:
        """Delete the checkpoints whose metadata `run_id` is one of `run_ids`, with their writes.

        The blobs they reference go too, unless a remaining checkpoint uses them. One statement.
        """
        runs = _id_list(run_ids, "run_ids")
        if runs:
            stamp = new_stamp()
            self._write(q.DELETE_FOR_RUNS, {"runs": runs, "at": stamp.updated_at, "wid": stamp.write_id})

    def copy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        """Copy every visible checkpoint of a thread, with its writes and blobs, to another thread (one statement).

        Rows the target already has under the same keys are overwritten. Copying a
        thread that does not exist does nothing.
        """
        source, target = str(source_thread_id), str(target_thread_id)
        if source == target:
            raise InvalidInputError(f"copy_thread: source and target are the same thread {source!r}")
        stamp = new_stamp()
        self._write(q.COPY_THREAD, {"src": source, "dst": target, "at": stamp.updated_at, "wid": stamp.write_id})

    def prune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        """Prune the threads' checkpoints: `"keep_latest"` keeps the newest of each namespace, `"delete"` all.

        `"keep_latest"` keeps the newest checkpoint of each namespace with its
        pending writes and the blobs it references, tombstones the rest, and
        leaves a kept checkpoint whose parent it deletes with no parent; it
        refuses (NotImplementedError, nothing pruned) threads that use a
        `DeltaChannel`, as langgraph-checkpoint-postgres does. Raises
        `InvalidInputError` for an unknown strategy or a single string of ids.
        """
        threads = _id_list(thread_ids, "thread_ids")
        if strategy not in PRUNE_STRATEGIES:
            raise InvalidInputError(f"unknown prune strategy {strategy!r}; use one of {', '.join(PRUNE_STRATEGIES)}")
        if not threads:
            return
        if strategy == "delete":
            self._delete_threads(threads)
            return
        delta = [r[0] for r in self._read(q.DELTA_THREADS, {"threads": threads})]
        if delta:
            raise NotImplementedError(f"keep_latest can't prune threads that use a DeltaChannel: {', '.join(delta)}")
        stamp = new_stamp()
        self._write(q.PRUNE_KEEP_LATEST, {"threads": threads, "at": stamp.updated_at, "wid": stamp.write_id})

    def get_next_version(self, current: str | None, channel: None) -> str:
        """Return the next channel version: langgraph-checkpoint-postgres's format (counter, then a random part)."""
        if current is None:
            current_v = 0
        elif isinstance(current, int):
            current_v = current
        else:
            current_v = int(current.split(".")[0])
        return f"{current_v + 1:032}.{random.random():016}"

    # ---- async ------------------------------------------------------------------

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        """Async `get_tuple` (runs in a worker thread)."""
        return await asyncio.to_thread(self.get_tuple, config)

    async def alist(self, config: RunnableConfig | None, *, filter: dict[str, Any] | None = None,
                    before: RunnableConfig | None = None, limit: int | None = None) -> AsyncIterator[CheckpointTuple]:
        """Async `list` (the query runs in a worker thread)."""
        found = await asyncio.to_thread(lambda: list(self.list(config, filter=filter, before=before, limit=limit)))
        for item in found:
            yield item

    async def aput(self, config: RunnableConfig, checkpoint: Checkpoint, metadata: CheckpointMetadata,
                   new_versions: ChannelVersions) -> RunnableConfig:
        """Async `put` (runs in a worker thread)."""
        return await asyncio.to_thread(self.put, config, checkpoint, metadata, new_versions)

    async def aput_writes(self, config: RunnableConfig, writes: Sequence[tuple[str, Any]], task_id: str,
                          task_path: str = "") -> None:
        """Async `put_writes` (runs in a worker thread)."""
        await asyncio.to_thread(self.put_writes, config, writes, task_id, task_path)

    async def adelete_thread(self, thread_id: str) -> None:
        """Async `delete_thread` (runs in a worker thread)."""
        await asyncio.to_thread(self.delete_thread, thread_id)

    async def adelete_for_runs(self, run_ids: Sequence[str]) -> None:
        """Async `delete_for_runs` (runs in a worker thread)."""
        await asyncio.to_thread(self.delete_for_runs, run_ids)

    async def acopy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        """Async `copy_thread` (runs in a worker thread)."""
        await asyncio.to_thread(self.copy_thread, source_thread_id, target_thread_id)

    async def aprune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        """Async `prune` (runs in a worker thread)."""
        await asyncio.to_thread(self.prune, thread_ids, strategy=strategy)

    # ---- internals --------------------------------------------------------------

    def _delete_threads(self, threads: builtins.list[str]) -> None:
        stamp = new_stamp()
        self._write(q.DELETE_THREADS, {"threads": threads, "at": stamp.updated_at, "wid": stamp.write_id})

    def _read(self, query: str, params: Any) -> builtins.list[tuple[Any, ...]]:
        def work(conn: psycopg.Connection) -> builtins.list[tuple[Any, ...]]:
            with conn.cursor(binary=True) as cur:
                cur.execute(query, params)
                return cur.fetchall()

        return self.db.run_read(work)

    def _write(self, statement: str, params: dict[str, Any]) -> None:
        """Run one write statement in autocommit; replays are safe: the stamp was made once, before the first try."""
        def work(conn: psycopg.Connection) -> None:
            conn.execute(statement, params)

        self.db.run_statement(work, idempotent=True)

    def _load(self, row: tuple[Any, ...]) -> CheckpointTuple:
        thread_id, checkpoint_ns, checkpoint_id, parent_id, checkpoint, metadata, blobs, writes, sends = row
        values = dict(checkpoint.get("channel_values") or {})
        for channel, type_, blob in blobs or ():
            if type_.decode() != "empty":
                values[channel.decode()] = self.serde.loads_typed((type_.decode(), blob))
        if sends:
            values[TASKS] = [self.serde.loads_typed((t.decode(), b)) for t, b in sends]
            versions = checkpoint.setdefault("channel_versions", {})
            versions[TASKS] = max(versions.values()) if versions else self.get_next_version(None, None)
        pending = [
            (tid.decode(), channel.decode(), self.serde.loads_typed((t.decode(), v)))
            for tid, channel, t, v, _, _ in sorted(
                writes or (), key=lambda w: writes_sort_key(w[4].decode(), w[0].decode(), int(w[5])))
        ]
        parent: RunnableConfig | None = ({"configurable": {"thread_id": thread_id, "checkpoint_ns": checkpoint_ns,
                                    "checkpoint_id": parent_id}} if parent_id else None)
        return CheckpointTuple(
            {"configurable": {"thread_id": thread_id, "checkpoint_ns": checkpoint_ns, "checkpoint_id": checkpoint_id}},
            cast(Checkpoint, {**checkpoint, "channel_values": values}), metadata, parent, pending)


def _configurable(config: RunnableConfig) -> dict[str, Any]:
    configurable = (config or {}).get("configurable") if isinstance(config, dict) else None
    if not isinstance(configurable, dict):
        raise InvalidInputError("config has no 'configurable' mapping: pass {'configurable': {'thread_id': ...}}")
    return configurable


def _thread(config: RunnableConfig) -> str:
    thread_id = _configurable(config).get("thread_id")
    if thread_id is None or thread_id == "":
        raise InvalidInputError("config['configurable'] has no 'thread_id': the checkpointer needs one per thread")
    return str(thread_id)


def _required(configurable: dict[str, Any], key: str) -> str:
    if key not in configurable or configurable[key] is None:
        raise InvalidInputError(f"config['configurable'] has no {key!r}")
    return str(configurable[key])


def _id_list(ids: Sequence[str], name: str) -> list[str]:
    if isinstance(ids, (str, bytes)):
        raise InvalidInputError(f"{name} must be a sequence of ids, not a single string")
    return [str(i) for i in ids]
