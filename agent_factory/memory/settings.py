"""`Settings`: runtime configuration in the `settings` table, behind a short cache.

Values are stored as text. `get` serves from a per-instance cache for `ttl`
seconds (missing keys are cached too); `set` and `delete` update the cache at
once, other processes see the change within `ttl`. Deletes are soft.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, TypeVar, cast

import psycopg

from ..core.database_manager import DatabaseManager
from ..errors import InvalidInputError
from ._database import LazyDatabase
from .ids import setting_row_id
from .validation import check_id, check_optional_text, check_text

logger = logging.getLogger(__name__)
T = TypeVar("T")

_TRUE = frozenset(("1", "true", "yes", "on"))
_FALSE = frozenset(("0", "false", "no", "off"))
_MISSING = object()

GET_SQL = "SELECT setting_value FROM settings WHERE setting_key = %s AND deleted_at IS NULL"
SET_SQL = """
INSERT INTO settings AS t (id, setting_key, setting_value, category, description)
VALUES (%(id)s, %(key)s, %(value)s, %(category)s, %(description)s)
ON CONFLICT (setting_key) DO UPDATE
SET setting_value = excluded.setting_value, category = excluded.category,
    description = coalesce(excluded.description, t.description), updated_at = now(), deleted_at = NULL
WHERE t.deleted_at IS NOT NULL
   OR (t.setting_value, t.category) IS DISTINCT FROM (excluded.setting_value, excluded.category)
   OR (excluded.description IS NOT NULL AND excluded.description IS DISTINCT FROM t.description)
"""
DELETE_SQL = ("UPDATE settings SET deleted_at = now(), updated_at = now() "
              "WHERE setting_key = %s AND deleted_at IS NULL RETURNING 1")


def _to_text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return check_text(value, "value")


class Settings(LazyDatabase):
    """Read and write settings, with reads cached `ttl` seconds per instance (thread-safe).

    `db=None` creates a `DatabaseManager()` from the configuration on first use.
    Invalid keys or values raise `InvalidInputError` (a `ValueError`) before any SQL runs.
    """

    def __init__(self, db: DatabaseManager | None = None, ttl: float = 30.0) -> None:
        super().__init__(db)
        if isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or ttl < 0:
            raise InvalidInputError(f"ttl must be a number of seconds >= 0; got {ttl!r}")
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
        text = _to_text(value)
        params = {"id": setting_row_id(key), "key": key, "value": text,
                  "category": check_id(category, "category"),
                  "description": check_optional_text(description, "description")}

        def work(conn: psycopg.Connection) -> None:
            conn.execute(SET_SQL, params)

        self.db.run_in_transaction(work, idempotent=True)
        self._remember(key, text)
        logger.debug("set setting %s on provider %s", key, self.db.active_provider)

    def delete(self, key: str) -> bool:
        """Soft-delete the setting; return whether it was set."""
        key = check_id(key, "key")

        def work(conn: psycopg.Connection) -> bool:
            return conn.execute(DELETE_SQL, (key,)).fetchone() is not None

        deleted = self.db.run_in_transaction(work, idempotent=True)
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
        """Return the setting as a float, or `default` if not set; `InvalidInputError` if not a number."""
        return cast("float | None", self._typed(key, default, float, "a number"))

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
