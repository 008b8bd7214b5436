"""The `DatabaseManager` of classes that take `db=None`: the given one, or the process's default."""

from __future__ import annotations

from ..core.database_manager import DatabaseManager, default_manager


class LazyDatabase:
    """Hold a given `DatabaseManager`, or use the process's default one (`default_manager()`).

    No connection is opened, and no configuration read, until `.db` is first used.
    `close()` never closes a manager: a given one belongs to its owner, the
    default one to the whole process.
    """

    def __init__(self, db: DatabaseManager | None = None) -> None:
        self._db = db

    @property
    def db(self) -> DatabaseManager:
        """The `DatabaseManager` in use: the given one, or the process's default.

        Raises `ConfigError` when the default must be created and the configuration is invalid.
        """
        return self._db if self._db is not None else default_manager()

    def close(self) -> None:
        """Do nothing: kept so that storages can be used as closable resources."""
