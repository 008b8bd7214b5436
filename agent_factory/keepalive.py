"""Detect a dead peer in seconds: the libpq TCP settings derived from DATABASE_DEAD_PEER_TIMEOUT.

A provider whose packets vanish (a partition, a dropped route, a host that
died without a reset) sends no error: with Linux's defaults a request waiting
on it hangs for about 15 minutes. Every connection the project opens (pooled,
direct, health probes, ops sessions, and pg_dump/pg_restore/psql through their
conninfo) therefore carries, for a timeout of T seconds:

- `tcp_user_timeout` = T * 1000 ms: data sent and not acknowledged for T
  seconds (a query, a COMMIT) breaks the connection;
- `keepalives=1` with `keepalives_idle` + `keepalives_count` * `keepalives_interval`
  = T: a connection waiting for a reply (a long query) sends probes after
  `keepalives_idle` seconds of silence and breaks when `keepalives_count` go
  unanswered. A healthy server's kernel answers the probes while the server
  works, so a long query on a live provider is never cut.

The broken connection then goes through the usual routing: a probe on a fresh
connection (bounded by DATABASE_CONNECT_TIMEOUT, which also bounds a SYN that
gets no answer) and failover. T = 0 turns all this off (the kernel's defaults;
for comparisons only).
"""

from __future__ import annotations

__all__ = ["dead_peer_params"]


def dead_peer_params(timeout: int) -> dict[str, int]:
    """Return the libpq keepalive and `tcp_user_timeout` parameters that drop a silent peer after `timeout` seconds.

    `timeout` is whole seconds, 0 (off: keepalives and the user timeout disabled)
    or at least 2. Raises `ValueError` for 1 or a negative number.
    """
    if timeout == 0:
        return {"keepalives": 0, "tcp_user_timeout": 0}
    if timeout < 2:
        raise ValueError(f"a dead-peer timeout of {timeout} s is too short; use 0 (off) or at least 2")
    count = min(3, timeout - 1)
    interval = max(1, timeout // (count + 1))
    idle = timeout - count * interval
    return {
        "keepalives": 1,
        "keepalives_idle": idle,
        "keepalives_interval": interval,
        "keepalives_count": count,
        "tcp_user_timeout": timeout * 1000,
    }
