"""LangGraph adapters on the shared DatabaseManager: the store (and the checkpointer, `saver.py`)."""

from .store import AgentFactoryStore

__all__ = ["AgentFactoryStore"]
