"""Array parameters sent in PostgreSQL's binary array format, built in one pass.

psycopg dumps a list element by element in Python (a dumper looked up and
called for each): 11-15 us per list of 10 on the bench machine, and every
append and save sends four such lists. `UuidArray`, `TextArray` and
`TimestamptzArray` are lists whose dumpers pack the whole array at once (6-11 us
each; docs/BENCHMARKS.md, "Fourth pass"). They are registered on psycopg's
global adapters when this module is imported; a connection whose adapters were
copied before that (pgvector's registration copies them) dumps them as the plain
lists they also are: the same value, the slower way. Elements must not be None;
timestamps must be aware.
"""

from __future__ import annotations

import struct
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

import psycopg
from psycopg.adapt import Dumper
from psycopg.pq import Format

_HEADER = struct.Struct(">iiIii")  # dimensions, has-nulls flag, element type, length, lower bound
_EMPTY = struct.Struct(">iiI")  # no dimensions: an empty array
_LENGTH = struct.Struct(">i")
_UUID_LENGTH = _LENGTH.pack(16)
_PG_EPOCH = datetime(2000, 1, 1, tzinfo=timezone.utc)
_MICROSECOND = timedelta(microseconds=1)


class UuidArray(list[uuid.UUID]):
    """A list of UUIDs, sent as one binary `uuid[]`."""


class TextArray(list[str]):
    """A list of strings, sent as one binary `text[]`."""


class TimestamptzArray(list[datetime]):
    """A list of aware datetimes, sent as one binary `timestamptz[]`."""


class _ArrayDumper(Dumper):
    format = Format.BINARY
    element_oid = 0

    def _header(self, length: int) -> bytes:
        if not length:
            return _EMPTY.pack(0, 0, self.element_oid)
        return _HEADER.pack(1, 0, self.element_oid, length, 1)


class _UuidArrayDumper(_ArrayDumper):
    oid = 2951  # uuid[]
    element_oid = 2950

    def dump(self, obj: Any) -> bytes:
        return self._header(len(obj)) + b"".join([_UUID_LENGTH + value.bytes for value in obj])


class _TextArrayDumper(_ArrayDumper):
    oid = 1009  # text[]
    element_oid = 25

    def __init__(self, cls: type, context: Any = None) -> None:
        super().__init__(cls, context)
        self._encoding = self.connection.info.encoding if self.connection is not None else "utf-8"

    def dump(self, obj: Any) -> bytes:
        parts = [self._header(len(obj))]
        for value in obj:
            data = value.encode(self._encoding)
            parts.append(_LENGTH.pack(len(data)))
            parts.append(data)
        return b"".join(parts)


class _TimestamptzArrayDumper(_ArrayDumper):
    oid = 1185  # timestamptz[]
    element_oid = 1184

    def dump(self, obj: Any) -> bytes:
        values: list[int] = []
        for value in obj:
            values.append(8)
            values.append((value - _PG_EPOCH) // _MICROSECOND)  # microseconds since 2000-01-01 UTC
        return self._header(len(obj)) + struct.pack(">" + "iq" * len(obj), *values)


psycopg.adapters.register_dumper(UuidArray, _UuidArrayDumper)
psycopg.adapters.register_dumper(TextArray, _TextArrayDumper)
psycopg.adapters.register_dumper(TimestamptzArray, _TimestamptzArrayDumper)
