"""Health checks: concurrency under a hung provider, caching, passive marking and stats."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from agent_factory.errors import ConfigError

from agent_factory.local.hanging import HangingServer


@pytest.fixture
def hanging() -> Iterator[HangingServer]:
    server = HangingServer()
    yield server
    server.close()


def test_health_check_all_is_bounded_by_one_connect_timeout(make_db, hanging):
    db = make_db(RAILWAY_DB_URL=hanging.url(), DATABASE_CONNECT_TIMEOUT="2")
    start = time.monotonic()
    health = db.health_check_all()
    elapsed = time.monotonic() - start
    assert health == {"neon": True, "supabase": True, "railway": False}
    assert 1.5 < elapsed < 3.5, elapsed  # one 2 s timeout, not the sum of sequential checks
    assert db.get_provider_stats()["railway"]["last_error"] == "connection timed out"


def test_traffic_fails_over_from_a_hung_primary(make_db, hanging):
    db = make_db(NEON_DB_URL=hanging.url(), DATABASE_CONNECT_TIMEOUT="2")
    assert db.execute_query("SELECT current_database()", fetch_mode="one") == ("agent_factory",)
    assert db.active_provider == "supabase"


def test_health_is_cached_for_the_ttl_and_refreshed_after(make_db, local):
    db = make_db(DATABASE_HEALTH_TTL="1")
    assert db.health_check_all()["supabase"] is True
    checked = db.get_provider_stats()["supabase"]["last_checked"]
    local.kill("supabase")
    assert db.health_check_all()["supabase"] is True  # cached
    assert db.get_provider_stats()["supabase"]["last_checked"] == checked
    time.sleep(1.1)
    assert db.health_check_all()["supabase"] is False
    assert db.health_check("supabase", force=True) is False


def test_connection_error_on_traffic_marks_the_provider_down_at_once(make_db, local):
    db = make_db(DATABASE_HEALTH_TTL="600")
    assert db.health_check_all()["neon"] is True
    local.kill("neon")
    db.execute_query("SELECT 1")
    assert db.health_check_all()["neon"] is False  # no need to wait 600 s for the cache


def test_provider_stats_have_the_runbook_keys(db):
    db.execute_query("SELECT 1")
    stats = db.get_provider_stats()
    assert set(stats) == {"neon", "supabase", "railway"}
    for info in stats.values():
        assert {"healthy", "pool_active", "pool_size", "pool_available", "requests_waiting", "host",
                "last_error", "last_checked"} <= set(info)
        assert info["pool_active"] == info["pool_size"] - info["pool_available"]
        assert info["host"].startswith("127.0.0.1:")
    assert stats["neon"]["pool_size"] >= 1


def test_set_provider_switches_and_rejects_unknown_names(db):
    db.set_provider("railway")
    assert db.primary_provider == "railway" and db.active_provider == "railway"
    with pytest.raises(ValueError, match="unknown provider 'mysql'; configured providers: neon, supabase, railway"):
        db.set_provider("mysql")
    assert isinstance(ConfigError("x"), ValueError)


def test_execute_query_rejects_bad_arguments(db):
    with pytest.raises(ValueError, match="fetch_mode"):
        db.execute_query("SELECT 1", fetch_mode="many")
    with pytest.raises(ValueError, match="non-empty"):
        db.execute_query("   ")


def test_no_connection_is_opened_until_first_use(make_db):
    db = make_db()
    assert all(info["pool_size"] == 0 for info in (p.pool_stats() for p in db._providers.values()))
