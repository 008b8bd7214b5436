"""`agent_factory.memory._arrays`: lists sent as binary arrays in one pass, the same bytes psycopg sends."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import psycopg
import pytest
from psycopg import dbapi20, postgres
from psycopg.adapt import AdaptersMap, PyFormat, Transformer
from psycopg.types import array

from agent_factory.memory._arrays import TextArray, TimestamptzArray, UuidArray

EAST = timezone(timedelta(hours=5, minutes=30))
VALUES = {
    "uuid": (UuidArray, [uuid.uuid4() for _ in range(5)] + [uuid.UUID(int=0), uuid.UUID(int=2**128 - 1)]),
    "text": (TextArray, ["hello", "", "ünïcödé ✓", "x" * 10_000, "quote ' and \" and {braces}, commas"]),
    "timestamptz": (TimestamptzArray, [datetime(2026, 12, 5, 13, 48, 11, 123456, tzinfo=timezone.utc),
                                       datetime(1999, 12, 31, 23, 59, 59, 999999, tzinfo=timezone.utc),
                                       datetime(1970, 1, 1, tzinfo=EAST), datetime(1, 1, 1, tzinfo=timezone.utc),
                                       datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=EAST)]),
}


def psycopg_defaults() -> AdaptersMap:
    """psycopg's default adapters, without the ones registered by agent_factory (as before its import)."""
    adapters = AdaptersMap(types=postgres.types)  # built as psycopg builds its global map
    postgres.register_default_adapters(adapters)
    dbapi20.register_dbapi20_adapters(adapters)
    array.register_all_arrays(adapters)
    return adapters


@pytest.mark.parametrize("kind", VALUES)
@pytest.mark.parametrize("length", ["empty", "one", "all"])
def test_the_bytes_are_psycopgs_own_and_the_server_reads_the_values(local, kind, length):
    cls, values = VALUES[kind]
    values = {"empty": [], "one": values[:1], "all": values}[length]
    with psycopg.connect(local.url("neon"), autocommit=True) as conn:
        fast = Transformer(conn).get_dumper(cls(values), PyFormat.BINARY)
        plain = Transformer(psycopg_defaults()).get_dumper(cls(values), PyFormat.BINARY)
        assert type(fast).__module__ == "agent_factory.memory._arrays"  # the one-pass dumper is the one used
        if values:
            assert fast.dump(cls(values)) == plain.dump(cls(values))
        received = conn.execute(f"SELECT %(v)b::{kind}[], cardinality(%(v)b::{kind}[])", {"v": cls(values)}).fetchone()
    assert received == (values, len(values))


def test_text_is_encoded_in_the_connections_encoding(local):
    values = ["café", "naïve", "plain"]
    with psycopg.connect(local.url("neon"), autocommit=True) as conn:
        conn.execute("SET client_encoding TO 'LATIN1'")
        assert conn.info.encoding == "iso8859-1"
        received = conn.execute("SELECT %(v)b::text[] = ARRAY['café', 'naïve', 'plain'], %(v)b::text[]",
                                {"v": TextArray(values)}).fetchone()
    assert received == (True, values)


def test_without_the_registration_a_connection_sends_them_as_the_lists_they_are(local):
    values = [uuid.uuid4(), uuid.uuid4()]
    with psycopg.connect(local.url("neon"), autocommit=True, context=psycopg_defaults()) as conn:
        dumper = Transformer(conn).get_dumper(UuidArray(values), PyFormat.BINARY)
        assert type(dumper).__module__.startswith("psycopg")
        assert conn.execute("SELECT %(v)b::uuid[]", {"v": UuidArray(values)}).fetchone() == (values,)
