"""Agent Factory: the memory system AI agents run on, on multi-provider PostgreSQL."""

from .core import DatabaseManager
from .core.failback import register_failback
from .errors import AgentFactoryError
from .replication.failback import FailbackLoop

register_failback(FailbackLoop)  # core fails back through this layer; see core/failback.py

__all__ = ["AgentFactoryError", "DatabaseManager"]
__version__ = "0.1.0"
