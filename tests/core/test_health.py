"""Health checks: concurrency under a hung provider, caching, passive marking and stats."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from agent_factory.errors import ConfigError

from agent_factory.local.hanging import HangingServer
from tests.conftest import wait_until


@pytest.fixture
def hanging() -> Iterator[HangingServer]:
    server = HangingServer()
    yield server
    server.close()


def test_health_check_all_is_bounded_by_one_connect_timeout(make_db, hanging):
    # Two hung providers: checked one after the other, the second would connect only once the first timed out.
    db = make_db(SUPABASE_DB_URL=hanging.url(), RAILWAY_DB_URL=hanging.url(), DATABASE_CONNECT_TIMEOUT="8")
    health: dict[str, bool] = {}
    checking = threading.Thread(target=lambda: health.update(db.health_check_all()))
    checking.start()
    both_waiting = wait_until(lambda: hanging.accepted >= 2, timeout=6)  # well inside the first one's 8 s
    checking.join(timeout=60)
    assert both_waiting, "the hung providers were checked one after the other"
    assert health == {"neon": True, "supabase": False, "railway": False}
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
    assert wait_until(lambda: db.health_check_all()["supabase"] is False, timeout=10)  # refreshed once the TTL ends
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
