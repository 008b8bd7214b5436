"""Row ids and write stamps that let rows from different providers merge.

- Things with a natural key (a session's metadata row, a knowledge atom, a
  setting) are keyed by a UUID derived from that key (the first 16 bytes of a
  SHA-256): the same thing created on two providers is one row.
- A message is keyed by a time-ordered UUIDv7 made by the client once per call,
  so a replay on any provider writes the same row and a session's messages are
  ordered by id. The 48-bit millisecond time and the 12-bit counter after it
  (`rand_a`) order the ids; this process never hands out the same or a smaller
  (time, counter) twice, even when its clock steps back. The messages of one
  append share a (time, counter) and count up in the low random bits, so a batch
  stays contiguous beside concurrent appends.
- A message's row id is its `Message.id` with the 62 random bits mixed with
  the session id (`message_row_id`, its own inverse): the same `Message` saved
  into two sessions makes two rows, in the same order in each.
- Every write carries one `WriteStamp`: the client's clock (strictly increasing
  in this process) as `updated_at`, and a random `write_id` that breaks ties.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

_PREFIX = "agent_factory/"
_RAND_B = (1 << 62) - 1
_BATCH = 0xFFFF  # the low random bits that number the ids of one batch
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def stable_uuid(kind: str, *parts: str) -> uuid.UUID:
    """Return the UUID of the row of `kind` with natural key `parts`."""
    text = _PREFIX + kind + "/" + "/".join(parts)
    return uuid.UUID(bytes=hashlib.sha256(text.encode("utf-8")).digest()[:16])


def session_row_id(session_id: str) -> uuid.UUID:
    """Return the id of a session's `session_metadata` row."""
    return stable_uuid("session", session_id)


def atom_row_id(atom_id: str) -> uuid.UUID:
    """Return the id of a knowledge atom's row."""
    return stable_uuid("atom", atom_id)


def setting_row_id(key: str) -> uuid.UUID:
    """Return the id of a setting's row."""
    return stable_uuid("setting", key)


# ---- UUIDv7 -------------------------------------------------------------------------------

_lock = threading.Lock()
_last = 0  # (ms << 12) | counter of the last id made here


def _build(order: int) -> uuid.UUID:
    """Return a UUIDv7 with order key `order` ((ms << 12) | counter) and fresh random bits."""
    rand_b = int.from_bytes(os.urandom(8), "big") & _RAND_B
    value = ((order >> 12) << 80) | (0x7 << 76) | ((order & 0xFFF) << 64) | (0b10 << 62) | rand_b
    return uuid.UUID(int=value)


def order_key(value: uuid.UUID) -> int:
    """Return the part of a UUIDv7 that orders it: (milliseconds << 12) | counter."""
    return ((value.int >> 80) << 12) | ((value.int >> 64) & 0xFFF)


def uuid7(after: uuid.UUID | None = None) -> uuid.UUID:
    """Return a new UUIDv7, ordered after every id made before in this process and after `after`.

    Within a millisecond a 12-bit counter counts up; when it overflows, the time
    field moves on by one millisecond (ids stay unique and ordered).
    """
    global _last
    floor = order_key(after) if after is not None else 0
    with _lock:
        now = (time.time_ns() // 1_000_000) << 12
        order = max(now, _last + 1, floor + 1)
        _last = order
    return _build(order)


def uuid7_batch(count: int, mask: int = 0) -> list[uuid.UUID]:
    """Return `count` ascending UUIDv7s that no other call's ids fall between.

    They share one (time, counter) key, reserved at once, and count up in the low
    16 random bits from a random start: a batch made here and one made at the same
    moment by another process do not interleave. With a `session_mask` as `mask`,
    they are the message row ids of new messages of that session (`message_row_ids`
    of the batch, without making the message ids first).
    """
    global _last
    ids: list[uuid.UUID] = []
    while len(ids) < count:
        with _lock:
            order = max((time.time_ns() // 1_000_000) << 12, _last + 1)
            _last = order
        high = int.from_bytes(os.urandom(8), "big") & _RAND_B & ~_BATCH
        value = ((order >> 12) << 80) | (0x7 << 76) | ((order & 0xFFF) << 64) | (0b10 << 62) | (high ^ mask)
        ids.extend([uuid.UUID(int=value | i) for i in range(min(count - len(ids), _BATCH + 1))])
    return ids


def message_row_id(session_id: str, message_id: uuid.UUID) -> uuid.UUID:
    """Return the row id of message `message_id` in session `session_id` (and back: its own inverse).

    Keeps the time, counter, version and variant bits and the low 16 bits (the
    order within a batch); mixes the other 46 random bits with a hash of the
    session id.
    """
    return uuid.UUID(int=message_id.int ^ session_mask(session_id))


def message_row_ids(session_id: str, message_ids: Iterable[uuid.UUID]) -> list[uuid.UUID]:
    """Return `message_row_id(session_id, m)` for each of `message_ids`, hashing the session id once."""
    mask = session_mask(session_id)
    return [uuid.UUID(int=message_id.int ^ mask) for message_id in message_ids]


def session_mask(session_id: str) -> int:
    """Return the bits `message_row_id` flips for this session (in the low 64 bits of the UUID)."""
    digest = hashlib.sha256((_PREFIX + "message/" + session_id).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") & _RAND_B & ~_BATCH


def message_id_sql(row_id: str, mask: str) -> str:
    """Return an SQL expression (text) equal to `str(message_row_id(session, row_id))`, for SQL operands.

    `mask` is `session_mask(session)` as a bigint operand. Computed by the server,
    it spares the client converting every loaded message's id.
    """
    low = f"substr(replace({row_id}::text, '-', ''), 17, 16)"
    return (f"overlay(replace({row_id}::text, '-', '') placing "
            f"lpad(to_hex(('x' || {low})::bit(64)::bigint # {mask}), 16, '0') from 17 for 16)::uuid::text")


# ---- write stamps --------------------------------------------------------------------------

_stamp_lock = threading.Lock()
_last_stamp = _EPOCH


@dataclass(frozen=True)
class WriteStamp:
    """The version of one write: `updated_at` (the client's clock) and `write_id` (the tie-break)."""

    updated_at: datetime
    write_id: uuid.UUID

    def newer_than(self, updated_at: datetime, write_id: uuid.UUID) -> bool:
        """Return whether this write wins against a row at version (updated_at, write_id)."""
        return (self.updated_at, self.write_id.bytes) > (updated_at, write_id.bytes)


def new_stamp() -> WriteStamp:
    """Return the stamp of a new write: now on this client, strictly after the previous stamp here.

    Microsecond resolution, like PostgreSQL's timestamptz.
    """
    global _last_stamp
    with _stamp_lock:
        stamp = max(datetime.now(timezone.utc), _last_stamp + timedelta(microseconds=1))
        _last_stamp = stamp
    return WriteStamp(stamp, uuid.uuid4())
