"""Benchmark: a silent partition of the primary, from packets dropped to the first write acknowledged by a backup.

Each trial: four writer threads, each paced at one idempotent INSERT every
20 ms, reach neon through a loopback relay (`agent_factory.local.proxy`);
real iptables DROP rules (both directions) on the relay's port make neon's
packets vanish; the trial measures the time from the rules going in to the end
of the first write acknowledged by supabase, then removes the rules.

Ours: the library with DATABASE_DEAD_PEER_TIMEOUT=3 and DATABASE_CONNECT_TIMEOUT=2
(target: p99 <= 3 + 2 + 1 s). Baseline: the same library with the dead-peer
settings off (DATABASE_DEAD_PEER_TIMEOUT=0: no keepalives, no tcp_user_timeout),
which waits on the kernel's retransmissions (about 15 minutes): each baseline
trial is capped at `CAP_S` and reported as ">= cap". Needs root and iptables;
without them the entries say so.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
import uuid
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.types.json import Json

from agent_factory.core import DatabaseManager
from agent_factory.local.proxy import CountingProxy

from .harness import Context, Entry, median, percentile, skipped

WRITERS = 4
PACE_S = 0.020
DEAD_PEER_S, CONNECT_S = 3, 2
TARGET_S = DEAD_PEER_S + CONNECT_S + 1.0
CAP_S = 30.0
_TAG = "agent-factory-bench-partition"


def _work(conn: psycopg.Connection) -> int:
    conn.execute("INSERT INTO agent_messages (id, sender, recipient, payload) VALUES (%s, 'bench', 'partition', %s) "
                 "ON CONFLICT (id) DO NOTHING", (uuid.uuid4(), Json({"bench": "partition"})))
    return int(conn.execute("SELECT current_setting('port')").fetchone()[0])  # type: ignore[index]


def _rules(port: int) -> list[list[str]]:
    return [["INPUT", "-i", "lo", "-p", "tcp", flag, str(port), "-j", "DROP", "-m", "comment", "--comment", _TAG]
            for flag in ("--dport", "--sport")]


def _iptables(action: str, rule: list[str], check: bool = True) -> None:
    subprocess.run(["iptables", "-w", action, *rule], check=check, capture_output=True)


def _trial(ctx: Context, dead_peer: int, cap_s: float) -> float | None:
    """Return the seconds from the drop to the first write on supabase, or None past `cap_s`."""
    ctx.ensure_running()
    backup_port = ctx.local.get("supabase").port
    with CountingProxy("127.0.0.1", ctx.local.get("neon").port) as relay:
        params = conninfo_to_dict(ctx.env["NEON_DB_URL"])
        params["port"] = str(relay.port)
        db = DatabaseManager(ctx.config(NEON_DB_URL=make_conninfo(**params), DATABASE_CONNECT_TIMEOUT=str(CONNECT_S),
                                        DATABASE_DEAD_PEER_TIMEOUT=str(dead_peer)))
        acks: list[tuple[float, int]] = []
        lock = threading.Lock()
        stop = threading.Event()

        def writer() -> None:
            while not stop.is_set():
                try:
                    port = db.run_in_transaction(_work, idempotent=True)
                except Exception:  # a failed write is simply not an acknowledgement
                    port = -1
                with lock:
                    acks.append((time.perf_counter(), port))
                stop.wait(PACE_S)

        threads = [threading.Thread(target=writer, daemon=True) for _ in range(WRITERS)]
        for thread in threads:
            thread.start()
        first: float | None = None
        try:
            deadline = time.perf_counter() + 10
            while len(acks) < 4 * WRITERS and time.perf_counter() < deadline:
                time.sleep(0.01)
            for rule in _rules(relay.port):
                _iptables("-I", rule)
            dropped = time.perf_counter()
            while time.perf_counter() < dropped + cap_s:
                with lock:
                    firsts = [t for t, port in acks if port == backup_port and t > dropped]
                if firsts:
                    first = min(firsts) - dropped
                    break
                time.sleep(0.005)
        finally:
            for rule in _rules(relay.port):
                _iptables("-D", rule, check=False)
            stop.set()
            for thread in threads:
                thread.join(timeout=60)
            db.close()
    return first


def run(ctx: Context) -> list[Entry]:
    name, baseline_name = "partition.first_backup_write", "the same library, dead-peer settings off"
    target = f"ours p99 <= {TARGET_S:.0f} s (dead-peer {DEAD_PEER_S} + connect {CONNECT_S} + 1)"
    if os.geteuid() != 0 or shutil.which("iptables") is None:
        reason = "needs root and iptables to drop packets"
        return [skipped(f"{name}_p50", "s", baseline_name, "informational", reason),
                skipped(f"{name}_p99", "s", baseline_name, target, reason)]
    trials, baseline_trials = (3, 1) if ctx.quick else (10, 3)
    ours: list[float] = []
    for index in range(trials):
        seconds = _trial(ctx, DEAD_PEER_S, CAP_S)
        if seconds is None:
            raise RuntimeError(f"partition trial {index + 1}: no write reached the backup within {CAP_S:.0f} s")
        ours.append(seconds)
        ctx.log(f"partition ours {index + 1}/{trials}: first backup write after {seconds:.2f} s")
    baseline: list[float | None] = []
    for index in range(baseline_trials):
        seconds = _trial(ctx, 0, CAP_S)
        baseline.append(seconds)
        ctx.log(f"partition baseline {index + 1}/{baseline_trials}: "
                + (f"{seconds:.2f} s" if seconds is not None else f">= {CAP_S:.0f} s (cap)"))
    capped = [CAP_S if s is None else s for s in baseline]
    details: dict[str, Any] = {"trials": trials, "baseline_trials": baseline_trials, "writers": WRITERS,
                               "ours_s": [round(x, 3) for x in ours],
                               "baseline_s": [None if s is None else round(s, 3) for s in baseline],
                               "baseline_cap_s": CAP_S, "baseline_capped": sum(s is None for s in baseline),
                               "settings": {"DATABASE_DEAD_PEER_TIMEOUT": DEAD_PEER_S,
                                            "DATABASE_CONNECT_TIMEOUT": CONNECT_S}}
    p99 = percentile(ours, 99)
    return [
        Entry(f"{name}_p50", "s", median(ours), median(capped), baseline_name + " (capped trials count as the cap)",
              "informational (p99 is the target)", None, details=details),
        Entry(f"{name}_p99", "s", p99, percentile(capped, 99), baseline_name + " (capped trials count as the cap)",
              target, p99 <= TARGET_S),
    ]
