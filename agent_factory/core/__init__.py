"""The multi-provider database core: `DatabaseManager` and its providers."""

from .database_manager import DatabaseManager, default_manager
from .provider import HealthResult

__all__ = ["DatabaseManager", "HealthResult", "default_manager"]
