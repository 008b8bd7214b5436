"""Agent Factory: the memory system AI agents run on, on multi-provider PostgreSQL."""

from .core import DatabaseManager
from .errors import AgentFactoryError

__all__ = ["AgentFactoryError", "DatabaseManager"]
__version__ = "0.1.0"
