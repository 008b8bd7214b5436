"""LangGraph on the multi-provider database: `AgentFactorySaver` (a checkpointer).

Needs the `langgraph` extra: `pip install 'agent-factory[langgraph]'`.
"""

try:
    import langgraph.checkpoint.base  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "agent_factory.integrations.langgraph needs LangGraph: pip install 'agent-factory[langgraph]'"
    ) from exc

from .saver import AgentFactorySaver

__all__ = ["AgentFactorySaver"]
