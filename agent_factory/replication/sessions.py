"""After a merge: rebuild the derived figures of the sessions whose rows changed (migration 0002)."""

from __future__ import annotations

from collections.abc import Collection

import psycopg


def recompute(conn: psycopg.Connection, session_ids: Collection[str]) -> int:
    """Run `recompute_session` for `session_ids` in the caller's transaction; return metadata rows changed.

    It also tombstones a deleted session's rows written before its deletion, so
    no live message is left under a deleted session.
    """
    if not session_ids:
        return 0
    row = conn.execute("SELECT recompute_session(%s::text[])", (sorted(session_ids),)).fetchone()
    return int(row[0]) if row and row[0] is not None else 0
