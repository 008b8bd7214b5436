"""LangGraph on the multi-provider database: `AgentFactorySaver` (a checkpointer).

Needs the `langgraph` extra: `pip install 'agent-factory[langgraph]'`.
"""

try:
    from .saver import AgentFactorySaver
except ImportError as exc:  # only without the extra
    if (exc.name or "").split(".")[0] not in ("langgraph", "langchain_core"):
        raise
    raise ImportError(
        "agent_factory.integrations.langgraph needs LangGraph: pip install 'agent-factory[langgraph]'"
    ) from exc

__all__ = ["AgentFactorySaver"]
