"""The multi-provider database core: `DatabaseManager` and its providers."""

from .database_manager import DatabaseManager, close_default_manager, default_manager
from .provider import HealthResult

__all__ = ["DatabaseManager", "HealthResult", "close_default_manager", "default_manager"]
