"""Settings on real servers: get/set, typed getters, the cache and its invalidation, soft delete, bad input."""

from __future__ import annotations

import time

import pytest

from agent_factory.memory import InvalidInputError, Settings


def test_set_then_get_and_defaults(db):
    settings = Settings(db)
    assert settings.get("missing") is None
    assert settings.get("missing", "fallback") == "fallback"
    settings.set("alert.email", "ops@example.com", category="alerts", description="where alerts go")
    assert settings.get("alert.email") == "ops@example.com"
    row = db.execute_query("SELECT setting_value, category, description FROM settings", fetch_mode="one")
    assert row == ("ops@example.com", "alerts", "where alerts go")
    settings.set("alert.email", "oncall@example.com", category="alerts")
    assert db.execute_query("SELECT setting_value, description FROM settings", fetch_mode="one") == (
        "oncall@example.com", "where alerts go")  # description kept when not given
    assert db.execute_query("SELECT count(*) FROM settings", fetch_mode="one")[0] == 1


def test_typed_getters(db):
    settings = Settings(db)
    settings.set("retries", 3)
    settings.set("ratio", 0.25)
    settings.set("enabled", True)
    settings.set("word", "maybe")
    assert settings.get("retries") == "3" and settings.get_int("retries") == 3
    assert settings.get_float("ratio") == 0.25
    assert settings.get("enabled") == "true" and settings.get_bool("enabled") is True
    assert settings.get_int("missing", 7) == 7 and settings.get_bool("missing") is None
    with pytest.raises(ValueError, match="'word'"):
        settings.get_bool("word")
    with pytest.raises(ValueError, match="integer"):
        settings.get_int("ratio")


def test_cache_serves_reads_until_ttl_and_set_invalidates(db):
    reader = Settings(db, ttl=0.3)
    writer = Settings(db)
    writer.set("mode", "a")
    assert reader.get("mode") == "a"
    assert reader.get("later") is None
    writer.set("mode", "b")
    writer.set("later", "now set")
    assert reader.get("mode") == "a"  # cached
    assert reader.get("later") is None  # misses are cached too
    reader.set("mode", "c")
    assert reader.get("mode") == "c"  # its own set updates its cache at once
    writer.set("mode", "d")
    time.sleep(0.35)
    assert reader.get("mode") == "d" and reader.get("later") == "now set"
    writer.set("mode", "e")
    reader.clear_cache()
    assert reader.get("mode") == "e"


def test_ttl_zero_disables_the_cache(db):
    reader, writer = Settings(db, ttl=0), Settings(db)
    writer.set("k", "1")
    assert reader.get("k") == "1"
    writer.set("k", "2")
    assert reader.get("k") == "2"


def test_delete_is_soft_and_set_brings_it_back(db):
    settings = Settings(db)
    settings.set("k", "v")
    assert settings.delete("k") is True
    assert settings.delete("k") is False
    assert settings.get("k") is None
    assert Settings(db).get("k") is None
    assert db.execute_query("SELECT count(*) FROM settings WHERE deleted_at IS NOT NULL", fetch_mode="one")[0] == 1
    settings.set("k", "again")
    assert Settings(db).get("k") == "again"


@pytest.mark.parametrize("call, match", [
    (lambda s: s.get(""), "key"),
    (lambda s: s.get("k" * 256), "key"),
    (lambda s: s.set("k\x00", "v"), "key"),
    (lambda s: s.set("k", None), "value"),
    (lambda s: s.set("k", "v\x00"), "value"),
    (lambda s: s.set("k", ["list"]), "value"),
    (lambda s: s.set("k", "v", category=""), "category"),
    (lambda s: s.set("k", "v", description=3), "description"),
    (lambda s: s.delete(5), "key"),
    (lambda s: s.get_int(None), "key"),
])
def test_bad_input_raises_before_any_sql(call, match):
    settings = Settings()
    with pytest.raises(InvalidInputError, match=match):
        call(settings)
    assert settings._db is None


def test_bad_ttl():
    with pytest.raises(ValueError, match="ttl"):
        Settings(ttl=-1)
