"""LangGraph's own checkpointer conformance suite against `AgentFactorySaver` on the local providers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator

import pytest

pytest.importorskip("langgraph.checkpoint.conformance", reason="needs the dev extra (langgraph-checkpoint-conformance)")

from langgraph.checkpoint.conformance import checkpointer_test, validate
from langgraph.checkpoint.conformance.capabilities import BASE_CAPABILITIES, EXTENDED_CAPABILITIES

from agent_factory.integrations.langgraph import AgentFactorySaver


@pytest.mark.timeout(600)
def test_conformance_base_58_of_58_and_extended_23_of_23(db):
    @checkpointer_test(name="AgentFactorySaver")
    async def factory() -> AsyncGenerator[AgentFactorySaver, None]:
        yield AgentFactorySaver(db)

    report = asyncio.run(validate(factory))
    report.print_report()
    results = report.results
    failures = {cap: r.failures for cap, r in results.items() if r.failures}
    assert not failures, failures
    base = [results[c.value] for c in BASE_CAPABILITIES]
    extended = [results[c.value] for c in EXTENDED_CAPABILITIES]
    assert all(r.detected for r in base + extended), {c: r.detected for c, r in results.items()}
    assert sum(r.tests_passed for r in base) == 58
    assert sum(r.tests_failed for r in base) == 0
    assert sum(r.tests_passed for r in extended) == 23
    assert sum(r.tests_failed for r in extended) == 0
    assert report.conformance_level() == "FULL"
