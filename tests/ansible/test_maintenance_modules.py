"""The maintenance modules run directly: capacity, statistics, credentials (check, and bad input)."""

from __future__ import annotations

from collections.abc import Callable

from agent_factory.core import DatabaseManager

from .conftest import ModuleRun, Project


def test_capacity_module_reports_every_provider(module: Callable[..., ModuleRun], project: Project,
                                                passwords: list[str]) -> None:
    run = module("memory_capacity", check_mode=True)
    assert run.rc == 0, run.result
    assert [p["provider"] for p in run.result["providers"]] == ["neon", "supabase", "railway"]
    assert not run.result["changed"] and "no quota" in run.result["summary"]
    assert not any(p in run.stdout for p in passwords)


def test_maintenance_module_analyze_in_check_mode_changes_nothing(module: Callable[..., ModuleRun],
                                                                   db: DatabaseManager) -> None:
    run = module("memory_maintenance", check_mode=True, action="analyze", provider="neon")
    assert run.rc == 0, run.result
    assert not run.result["changed"] and run.result["report"][0]["check"] is True
    assert not any(t["analyzed"] for t in run.result["report"][0]["tables"])


def test_credentials_module_check_and_bad_input(module: Callable[..., ModuleRun], project: Project,
                                                passwords: list[str]) -> None:
    run = module("memory_credentials", action="check")
    assert run.rc == 0 and all(p["logged_in"] for p in run.result["providers"])
    missing = module("memory_credentials", action="rotate")
    assert missing.rc == 1 and "provider" in missing.result["msg"]
    unknown = module("memory_credentials", action="rotate", provider="nope")
    assert unknown.rc == 1 and "unknown provider 'nope'" in unknown.result["msg"]
    for run in (missing, unknown):
        assert not any(p in run.stdout for p in passwords)
