"""A `DatabaseManager` made on first use, for classes that take `db=None`."""

from __future__ import annotations

import threading

from ..core.database_manager import DatabaseManager


class LazyDatabase:
    """Hold a given `DatabaseManager`, or create one from the configuration on first use.

    No connection is opened, and no configuration read, until `.db` is first used;
    a manager created here is closed by `close()`, a given one is left to its owner.
    """

    def __init__(self, db: DatabaseManager | None = None) -> None:
        self._db = db
        self._owns_db = db is None
        self._db_lock = threading.Lock()

    @property
    def db(self) -> DatabaseManager:
        """The `DatabaseManager` in use (created from the configuration if none was given).

        Raises `ConfigError` when it must be created and the configuration is invalid.
        """
        db = self._db
        if db is None:
            with self._db_lock:
                if self._db is None:
                    self._db = DatabaseManager()
                db = self._db
        return db

    def close(self) -> None:
        """Close the `DatabaseManager` if this object created it."""
        with self._db_lock:
            db, owned = self._db, self._owns_db
            if owned:
                self._db = None
        if owned and db is not None:
            db.close()
