"""The multi-provider database core: `DatabaseManager` and its providers."""

from .database_manager import DatabaseManager
from .provider import HealthResult

__all__ = ["DatabaseManager", "HealthResult"]
