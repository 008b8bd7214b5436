"""`AgentFactoryStore`: LangGraph's `BaseStore` on the shared `DatabaseManager` (failover, retries, merge).

Contracts mirror langgraph-checkpoint-postgres 3.2's `PostgresStore`: namespaces
are stored dot-joined (so a label may not be empty or contain a dot), puts of the
same (namespace, key) in one batch keep the last, search orders by recency or, with
an index and a query, by cosine similarity (`score` = 1 - cosine distance), and
TTLs are in minutes with `refresh_on_read`. Differences, by design:

- rows are mergeable (migration 0005): a delete and an expiry are tombstones,
  versions carry the client's clock and a write id, and the sync carries them;
- a batch's puts and deletes are one statement (one round trip), each read one;
- bad input raises `InvalidInputError` before anything is written;
- on a provider without pgvector (or without the `pgvector` package) a semantic
  search answers with the filtered items by recency and logs a warning.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

import psycopg
from langgraph.store.base import (
    NOT_PROVIDED,
    BaseStore,
    GetOp,
    IndexConfig,
    Item,
    ListNamespacesOp,
    Op,
    PutOp,
    Result,
    SearchItem,
    SearchOp,
    TTLConfig,
    ensure_embeddings,
    get_text_at_path,
)

from ...core import DatabaseManager, default_manager
from ...errors import InvalidInputError
from ...memory.ids import new_stamp
from ...vector import package_available, register, to_vector
from . import store_sql as q
from .store_checks import check_namespace, validate_op

logger = logging.getLogger(__name__)


class AgentFactoryStore(BaseStore):
    """A LangGraph store whose items live in the agent_factory providers and follow their failovers."""

    supports_ttl: bool = True

    def __init__(self, db: DatabaseManager | None = None, *, index: IndexConfig | None = None,
                 ttl: TTLConfig | None = None) -> None:
        """Bind the store to `db` (the process's `default_manager()` when None).

        `index` = {"dims": N, "embed": Embeddings or callable on a list of strings, "fields": [...]}
        turns on semantic search; `ttl` = LangGraph's TTLConfig (minutes).
        Raises `InvalidInputError` for a malformed index or TTL configuration.
        """
        self._db = db
        self.ttl_config = ttl
        self.index_config: IndexConfig | None = None
        self.embeddings = None
        self._fields: list[tuple[str, str | list[str]]] = []
        if index is not None:
            dims = index.get("dims")
            if not isinstance(dims, int) or isinstance(dims, bool) or dims < 1:
                raise InvalidInputError(f"index dims must be a positive integer, not {dims!r}")
            if index.get("embed") is None:
                raise InvalidInputError("index needs an `embed`: a LangChain Embeddings or a callable on strings")
            fields = index.get("fields") or ["$"]
            self.index_config = {**index, "fields": list(fields)}
            self.embeddings = ensure_embeddings(index["embed"])
            self._fields = [(f, f) for f in fields]
        default_ttl = None if ttl is None else ttl.get("default_ttl")
        if default_ttl is not None and not default_ttl > 0:
            raise InvalidInputError(f"ttl default_ttl must be a positive number of minutes, not {default_ttl!r}")
        self._providers_ready: dict[tuple[str, int, str], bool] = {}
        self._ready_lock = threading.Lock()
        self._sweeper: threading.Thread | None = None
        self._sweeper_stop = threading.Event()

    @property
    def db(self) -> DatabaseManager:
        """The manager this store runs on."""
        return self._db if self._db is not None else default_manager()

    # ---- BaseStore ------------------------------------------------------------------

    def put(self, namespace: tuple[str, ...], key: str, value: Mapping[str, Any], index: Any = None, *,
            ttl: Any = NOT_PROVIDED) -> None:
        """Store or replace one item (ttl: minutes, None for none, default TTLConfig's).

        Raises `InvalidInputError` for a bad namespace, value, TTL or embedding size; nothing is written then.
        """
        check_namespace(namespace)
        super().put(namespace, key, value, index, ttl=ttl)

    async def aput(self, namespace: tuple[str, ...], key: str, value: Mapping[str, Any], index: Any = None, *,
                   ttl: Any = NOT_PROVIDED) -> None:
        """Store or replace one item (async); raises as `put`."""
        await asyncio.to_thread(self.put, namespace, key, value, index, ttl=ttl)

    def batch(self, ops: Iterable[Op]) -> list[Result]:
        """Run get, put (value None deletes), search and list_namespaces operations; results in op order.

        Every op is checked first: bad input raises `InvalidInputError` and nothing is written.
        All puts and deletes are one statement; each read is one more. Raises the
        manager's errors (`AllProvidersDownError`, `QueryError`, ...) when no provider serves.
        """
        ops = list(ops)
        for op in ops:
            validate_op(op)
        results: list[Result] = [None] * len(ops)
        puts = {}
        for op in ops:
            if isinstance(op, PutOp):
                puts[(op.namespace, op.key)] = op  # the last put of a key wins, as PostgresStore does
        if puts:
            self._write(list(puts.values()))
        gets = [(i, op) for i, op in enumerate(ops) if isinstance(op, GetOp)]
        if gets:
            self._get(gets, results)
        for i, op in enumerate(ops):
            if isinstance(op, SearchOp):
                results[i] = self._search(op)
            elif isinstance(op, ListNamespacesOp):
                results[i] = self._list_namespaces(op)
        return results

    async def abatch(self, ops: Iterable[Op]) -> list[Result]:
        """Run `batch` in a worker thread; raises as `batch`."""
        return await asyncio.to_thread(self.batch, list(ops))

    # ---- TTL ---------------------------------------------------------------------------

    def sweep_ttl(self) -> int:
        """Turn every expired item (and its vectors) into a tombstone on the serving provider; return how many.

        The tombstone's version time is the item's expiry, so a put after the expiry
        wins a merge. Raises the manager's errors when no provider serves.
        """
        def work(conn: psycopg.Connection) -> int:
            sql = q.SWEEP_WITH_VECTORS_SQL if self._vectors_ready(conn) else q.SWEEP_SQL
            row = conn.execute(sql).fetchone()
            return int(row[0]) if row else 0

        swept = self.db.run_statement(work, idempotent=True)
        if swept:
            logger.info("store: %d expired item(s) became tombstones on %s", swept, self.db.active_provider)
        return swept

    def start_ttl_sweeper(self, sweep_interval_minutes: float | None = None) -> concurrent.futures.Future[None]:
        """Sweep expired items every `sweep_interval_minutes` (TTLConfig's, default 5) in a daemon thread.

        Returns a future that completes when `stop_ttl_sweeper` stops it. A sweep that
        fails is logged and retried at the next interval.
        """
        future: concurrent.futures.Future[None] = concurrent.futures.Future()
        interval = sweep_interval_minutes or (self.ttl_config or {}).get("sweep_interval_minutes") or 5
        if self._sweeper is not None and self._sweeper.is_alive():
            future.set_result(None)
            return future
        self._sweeper_stop.clear()

        def loop() -> None:
            try:
                while not self._sweeper_stop.wait(float(interval) * 60):
                    try:
                        self.sweep_ttl()
                    except Exception:  # the sweeper's loop is a boundary: log and try again later
                        logger.exception("store: TTL sweep failed; retrying in %s minute(s)", interval)
            finally:
                future.set_result(None)

        self._sweeper = threading.Thread(target=loop, name="agent-factory-store-ttl", daemon=True)
        self._sweeper.start()
        return future

    def stop_ttl_sweeper(self, timeout: float | None = None) -> bool:
        """Stop the sweeper thread; return False when it did not stop within `timeout` seconds."""
        if self._sweeper is None or not self._sweeper.is_alive():
            return True
        self._sweeper_stop.set()
        self._sweeper.join(timeout)
        return not self._sweeper.is_alive()

    # ---- reindex -------------------------------------------------------------------------

    def reindex(self, batch_size: int = 100) -> int:
        """Embed the live items whose current version has no vectors on the serving provider; return how many.

        Items written where pgvector is missing (during a failover to such a
        provider) reach the primary without vectors; this fills them in with the
        item's own version stamps, so it creates no new version. Returns 0 when the
        store has no index or the serving provider has no pgvector. Raises
        `InvalidInputError` for a wrong embedding size, the manager's errors when no provider serves.
        """
        if self.index_config is None:
            return 0
        done = 0
        while True:
            found, ok = self._read(q.MISSING_VECTORS_SQL, {"limit": batch_size}, writes=False, semantic=True)
            if not ok or not found:
                return done
            stamps = {r[0]: (r[4], r[5]) for r in found}
            puts = [PutOp(tuple(r[1].split(".")), r[2], r[3]) for r in found]
            vectors = self._embed_puts(puts)
            if not vectors:
                return done
            params = {"v_ids": [v[0] for v in vectors], "v_items": [v[1] for v in vectors],
                      "v_fields": [v[2] for v in vectors], "v_embs": [to_vector(v[3]) for v in vectors],
                      "v_updated": [stamps[v[1]][0] for v in vectors], "v_writes": [stamps[v[1]][1] for v in vectors]}

            def work(conn: psycopg.Connection) -> int:
                if not self._vectors_ready(conn):
                    return 0
                return conn.execute(q.ADD_VECTORS_SQL, params).rowcount  # noqa: B023 - run in this iteration

            if not self.db.run_statement(work, idempotent=True):
                return done
            done += len({v[1] for v in vectors})
            if len(found) < batch_size:
                return done

    # ---- writes --------------------------------------------------------------------------

    def _embed_puts(self, puts: list[PutOp]) -> list[tuple[uuid.UUID, uuid.UUID, str, list[float]]]:
        """Embed the indexed fields of the puts (before any write); raise `InvalidInputError` on a wrong size."""
        if self.embeddings is None or self.index_config is None:
            return []
        wanted: list[tuple[uuid.UUID, uuid.UUID, str, str]] = []
        for op in puts:
            if op.value is None or op.index is False:
                continue
            prefix = ".".join(op.namespace)
            fields = self._fields if op.index is None else [(f, f) for f in op.index]
            for name, path in fields:
                texts = get_text_at_path(op.value, path)
                for n, text in enumerate(texts):
                    field = name if len(texts) == 1 else f"{name}.{n}"
                    wanted.append((q.vector_id(prefix, op.key, field), q.item_id(prefix, op.key), field, text))
        if not wanted:
            return []
        vectors = self.embeddings.embed_documents([w[3] for w in wanted])
        dims = self.index_config["dims"]
        out = []
        for (vid, iid, field, _), vec in zip(wanted, vectors, strict=True):
            if len(vec) != dims:
                raise InvalidInputError(f"the embedding of field {field!r} has {len(vec)} dimensions; "
                                        f"the index is configured with {dims}")
            out.append((vid, iid, field, [float(x) for x in vec]))
        return out

    def _write(self, puts: list[PutOp]) -> None:
        vectors = self._embed_puts(puts)
        stamp = new_stamp()  # the client's clock, strictly increasing in this process (docs/CONTINUITY.md)
        params: dict[str, Any] = {
            "ids": [], "prefixes": [], "keys": [], "vals": [], "ttls": [], "dels": [],
            "now": stamp.updated_at, "write_id": stamp.write_id,
        }
        for op in puts:
            prefix = ".".join(op.namespace)
            params["ids"].append(q.item_id(prefix, op.key))
            params["prefixes"].append(prefix)
            params["keys"].append(op.key)
            params["vals"].append("{}" if op.value is None else q.to_json(op.value, what=f"value of {op.key!r}"))
            params["ttls"].append(op.ttl)  # BaseStore.put resolved the default already
            params["dels"].append(op.value is None)

        def work(conn: psycopg.Connection) -> None:
            with_vectors = self._vectors_ready(conn)
            if with_vectors:
                params.update(v_ids=[v[0] for v in vectors], v_items=[v[1] for v in vectors],
                              v_fields=[v[2] for v in vectors], v_embs=[to_vector(v[3]) for v in vectors])
            elif vectors:
                logger.warning("store: no pgvector on the serving provider; %d embedding(s) not stored there "
                               "(semantic search falls back to filters and recency)", len(vectors))
            conn.execute(q.write_sql(with_vectors), params)

        # Replaying the same versions (same stamps and write id) is harmless: the write is idempotent.
        self.db.run_statement(work, idempotent=True)

    # ---- reads ---------------------------------------------------------------------------

    def _refresh_default(self, refresh: bool | None) -> bool:
        if self.ttl_config is None:
            return False
        return self.ttl_config.get("refresh_on_read", True) if refresh is None else bool(refresh)

    @property
    def _omit_expired(self) -> bool:
        return bool((self.ttl_config or {}).get("omit_expired", False))

    def _read(self, sql: str, params: dict[str, Any], *, writes: bool, semantic: bool = False
              ) -> tuple[list[tuple[Any, ...]], bool]:
        """Run one read statement; return its rows and whether the serving provider could run it semantically."""
        def work(conn: psycopg.Connection) -> tuple[list[tuple[Any, ...]], bool]:
            if semantic and not self._vectors_ready(conn):
                return [], False
            return conn.execute(sql, params).fetchall(), True

        if writes:
            return self.db.run_statement(work, idempotent=True)
        return self.db.run_read(work)

    def _get(self, gets: list[tuple[int, GetOp]], results: list[Result]) -> None:
        ids = {i: q.item_id(".".join(op.namespace), op.key) for i, op in gets}
        refresh_ids = [ids[i] for i, op in gets if self._refresh_default(op.refresh_ttl)]
        sql = q.get_sql(self._omit_expired, bool(refresh_ids))
        rows, _ = self._read(sql, {"ids": list(ids.values()), "refresh_ids": refresh_ids},
                             writes=bool(refresh_ids))
        found = {row[0]: row for row in rows}
        for i, _op in gets:
            row = found.get(ids[i])
            results[i] = None if row is None else Item(
                value=row[3], key=row[2], namespace=tuple(row[1].split(".")), created_at=row[4], updated_at=row[5])

    def _search(self, op: SearchOp) -> list[SearchItem]:
        params: dict[str, Any] = {"limit": op.limit, "offset": op.offset}
        where = ["s.deleted_at IS NULL", q.namespace_condition(".".join(op.namespace_prefix), params),
                 *q.filter_conditions(op.filter, params)]
        if self._omit_expired:
            where.append("(s.expires_at IS NULL OR s.expires_at > now())")
        refresh = self._refresh_default(op.refresh_ttl)
        rows: list[tuple[Any, ...]] | None = None
        if op.query and self.embeddings is not None and self.index_config is not None and not package_available():
            logger.warning("store: the pgvector package is not installed (extra `vector`): "
                           "answering the semantic search with filtered items by recency")
        elif op.query and self.embeddings is not None and self.index_config is not None:
            vec = self.embeddings.embed_query(op.query)
            dims = self.index_config["dims"]
            if len(vec) != dims:
                raise InvalidInputError(f"the query embedding has {len(vec)} dimensions; the index has {dims}")
            params.update(query_vec=to_vector([float(x) for x in vec]),
                          expanded=op.limit * max(len(self._fields), 1) * 2 + op.offset + 1)
            rows, ok = self._read(q.search_sql(where, semantic_dims=dims, refresh=refresh), params,
                                  writes=refresh, semantic=True)
            if not ok:
                logger.warning("store: semantic search on %s is not possible (no pgvector there): "
                               "answering with filtered items by recency", self.db.active_provider)
                rows = None
        if rows is None:
            rows, _ = self._read(q.search_sql(where, semantic_dims=None, refresh=refresh), params, writes=refresh)
        return [SearchItem(namespace=tuple(r[1].split(".")), key=r[2], value=r[3], created_at=r[4],
                           updated_at=r[5], score=None if r[6] is None else float(r[6])) for r in rows]

    def _list_namespaces(self, op: ListNamespacesOp) -> list[tuple[str, ...]]:
        params: dict[str, Any] = {"limit": op.limit, "offset": op.offset}
        conditions = [(c.match_type, tuple(c.path)) for c in (op.match_conditions or ())]
        sql = q.list_namespaces_sql(conditions, op.max_depth, self._omit_expired, params)
        rows, _ = self._read(sql, params, writes=False)
        return [tuple(r[0].split(".")) for r in rows]

    # ---- pgvector per provider ----------------------------------------------------------

    def _vectors_ready(self, conn: psycopg.Connection) -> bool:
        """Return whether this connection's provider holds vectors (set it up once per provider).

        Registers pgvector's adapter on the connection; the first time per provider it
        makes sure the vector table exists and, with an index configured, creates the
        HNSW index for its dimensions under an advisory lock (several processes may
        race). A store without an index still tombstones the vectors of what it
        overwrites or deletes.
        """
        key = (str(conn.info.host), int(conn.info.port), str(conn.info.dbname))
        if self._providers_ready.get(key) is False or not register(conn):
            self._providers_ready[key] = False
            return False
        ready = self._providers_ready.get(key)
        if ready is not None:
            return ready
        with self._ready_lock:
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (0x4146_5653,))  # "AFVS"
                row = conn.execute("SELECT af_store_vectors_table()").fetchone()
                ready = bool(row and row[0])
                if ready and self.index_config is not None:
                    conn.execute(q.create_hnsw_sql(int(self.index_config["dims"])))
            self._providers_ready[key] = ready
        return ready


