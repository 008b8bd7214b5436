"""`Settings`: runtime configuration in the `settings` table, behind a short cache.

Values are stored as text. `get` serves from a per-instance cache for `ttl`
seconds (missing keys are cached too); `set` and `delete` update the cache at
once, other processes see the change within `ttl`. Each write is one statement
carrying the client's clock as `updated_at`: last writer wins. Deletes are
tombstones.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from typing import Any, TypeVar, cast

import psycopg

from ..core.database_manager import DatabaseManager
from ..errors import InvalidInputError
from ._database import LazyDatabase
from .ids import new_stamp, setting_row_id
from .validation import check_id, check_number, check_optional_text, check_text

logger = logging.getLogger(__name__)
T = TypeVar("T")

_TRUE = frozenset(("1", "true", "yes", "on"))
_FALSE = frozenset(("0", "false", "no", "off"))
_MISSING = object()
MAX_TTL = 366 * 86400  # NaN, infinities and absurd cache lifetimes are refused

GET_SQL = "SELECT setting_value FROM settings WHERE setting_key = %s AND deleted_at IS NULL"
# Last writer wins: a row is only replaced by a write with a greater (updated_at, write_id).
SET_SQL = """
INSERT INTO settings AS t (id, setting_key, setting_value, category, description, created_at, updated_at, write_id)
VALUES (%(id)s, %(key)s, %(value)s, %(category)s, %(description)s, %(updated_at)s, %(updated_at)s, %(write_id)s)
ON CONFLICT (setting_key) DO UPDATE
SET setting_value = excluded.setting_value, category = excluded.category,
    description = coalesce(excluded.description, t.description), updated_at = excluded.updated_at,
    write_id = excluded.write_id, deleted_at = NULL
WHERE (t.updated_at, t.write_id) < (excluded.updated_at, excluded.write_id)
  AND (t.deleted_at IS NOT NULL
       OR (t.setting_value, t.category) IS DISTINCT FROM (excluded.setting_value, excluded.category)
       OR (excluded.description IS NOT NULL AND excluded.description IS DISTINCT FROM t.description))
"""
# A tombstone is written even for a key this provider never held (a copy merged from
# elsewhere stays deleted). Returns true if a live setting was deleted.
DELETE_SQL = """
INSERT INTO settings AS t (id, setting_key, setting_value, created_at, updated_at, write_id, deleted_at)
VALUES (%(id)s, %(key)s, '', %(updated_at)s, %(updated_at)s, %(write_id)s, %(updated_at)s)
ON CONFLICT (setting_key) DO UPDATE
SET deleted_at = excluded.deleted_at, updated_at = excluded.updated_at, write_id = excluded.write_id
WHERE t.deleted_at IS NULL AND (t.updated_at, t.write_id) < (excluded.updated_at, excluded.write_id)
RETURNING xmax::text <> '0'
"""


def _to_text(value: object, field: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(check_number(value, field))  # NaN and infinities are refused, huge integers too
    return check_text(value, field)


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(text)
    return value


class Settings(LazyDatabase):
    """Read and write settings, with reads cached `ttl` seconds per instance (thread-safe).

    `db=None` creates a `DatabaseManager()` from the configuration on first use.
    Invalid keys or values raise `InvalidInputError` (a `ValueError`) before any SQL runs.
    """

    def __init__(self, db: DatabaseManager | None = None, ttl: float = 30.0) -> None:
        super().__init__(db)
        if isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or not 0 <= ttl <= MAX_TTL:
            raise InvalidInputError(f"ttl must be a number of seconds from 0 to {MAX_TTL} (a year); got {ttl!r}")
        self.ttl = float(ttl)
        self._cache: dict[str, tuple[float, object]] = {}
        self._cache_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Settings(db={self._db!r}, ttl={self.ttl!r})"

    def __enter__(self) -> Settings:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def get(self, key: str, default: T | None = None) -> str | T | None:
        """Return the setting's value (a string), or `default` if it is not set."""
        key = check_id(key, "key")
        now = time.monotonic()
        with self._cache_lock:
            cached = self._cache.get(key)
        if cached is not None and cached[0] > now:
            value = cached[1]
        else:
            value = self._fetch(key)
            self._remember(key, value)
        return default if value is _MISSING else value  # type: ignore[return-value]

    def _fetch(self, key: str) -> object:
        def work(conn: psycopg.Connection) -> object:
            row = conn.execute(GET_SQL, (key,)).fetchone()
            return _MISSING if row is None else row[0]

        return self.db.run_read(work)

    def _remember(self, key: str, value: object) -> None:
        if self.ttl > 0:
            with self._cache_lock:
                self._cache[key] = (time.monotonic() + self.ttl, value)

    def set(self, key: str, value: str | int | float | bool, category: str = "general",
            description: str | None = None) -> None:
        """Store `value` (as text; booleans as "true"/"false") under `key`, and update the cache.

        `description=None` keeps the description already stored.
        """
        key = check_id(key, "key")
        if value is None:
            raise InvalidInputError("value must not be None; use delete() to remove a setting")
        text = _to_text(value, f"value of setting {key!r}")
        stamp = new_stamp()  # one version per call: a replay writes the same row
        params = {"id": setting_row_id(key), "key": key, "value": text,
                  "category": check_id(category, "category"),
                  "description": check_optional_text(description, "description"),
                  "updated_at": stamp.updated_at, "write_id": stamp.write_id}

        def work(conn: psycopg.Connection) -> None:
            conn.execute(SET_SQL, params)

        self.db.run_statement(work, idempotent=True)
        self._remember(key, text)
        logger.debug("set setting %s on provider %s", key, self.db.active_provider)

    def delete(self, key: str) -> bool:
        """Delete the setting (a tombstone, written even if the key is not here); return whether it was set.

        A deletion older than the setting's last write (by the writers' clocks) changes nothing.
        """
        key = check_id(key, "key")
        stamp = new_stamp()
        params = {"id": setting_row_id(key), "key": key, "updated_at": stamp.updated_at, "write_id": stamp.write_id}

        def work(conn: psycopg.Connection) -> bool:
            row = conn.execute(DELETE_SQL, params).fetchone()
            return bool(row and row[0])

        deleted = self.db.run_statement(work, idempotent=True)
        self._remember(key, _MISSING)
        return deleted

    def clear_cache(self) -> None:
        """Forget every cached value: the next `get` of each key reads the database."""
        with self._cache_lock:
            self._cache.clear()

    def get_int(self, key: str, default: int | None = None) -> int | None:
        """Return the setting as an int, or `default` if not set; `InvalidInputError` if not an integer."""
        return cast("int | None", self._typed(key, default, int, "an integer"))

    def get_float(self, key: str, default: float | None = None) -> float | None:
        """Return the setting as a float, or `default` if not set; `InvalidInputError` if not a finite number."""
        return cast("float | None", self._typed(key, default, _finite_float, "a finite number"))

    def get_bool(self, key: str, default: bool | None = None) -> bool | None:
        """Return the setting as a bool (true/false, yes/no, on/off, 1/0), or `default` if not set."""
        what = "a boolean (true/false, yes/no, on/off, 1/0)"
        return cast("bool | None", self._typed(key, default, _parse_bool, what))

    def _typed(self, key: str, default: Any, parse: Any, what: str) -> Any:
        value = self.get(key, _MISSING)
        if value is _MISSING:
            return default
        try:
            return parse(str(value).strip())
        except ValueError:
            raise InvalidInputError(f"setting {key!r} is {value!r}, which is not {what}") from None


def _parse_bool(text: str) -> bool:
    lowered = text.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ValueError(text)
