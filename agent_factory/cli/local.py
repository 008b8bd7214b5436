"""`agent-factory local ...`: the embedded default providers on 127.0.0.1."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from ..config import load_config
from ..core import DatabaseManager
from ..local import LocalProviders
from ..local.cluster import write_env_file
from ..schema import apply_schema
from ..vector import has_pgvector
from .output import EXIT_OK, Outcome


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("local", help="start, stop and break the local providers (neon, supabase, railway)")
    parser.add_argument("--dir", default=os.environ.get("AGENT_FACTORY_LOCAL_DIR", "var/local"),
                        help="where the providers' data lives (default var/local)")
    parser.add_argument("--env-file", default=".env", help="dotenv file to point at them (default .env)")
    local = parser.add_subparsers(dest="local_command", metavar="ACTION")
    local.required = True
    local.add_parser("up", help="create and start the providers, apply the schema, write .env").set_defaults(handler=_up)
    local.add_parser("status", help="show each provider's port, version and state").set_defaults(handler=_status)
    local.add_parser("down", help="stop every provider (data is kept)").set_defaults(handler=_down)
    for action, help_text, handler in (
        ("kill", "SIGKILL one provider, as a crash would (fault drill)", _kill),
        ("start", "start one provider again", _start),
    ):
        p = local.add_parser(action, help=help_text)
        p.add_argument("name", help="provider name, e.g. neon")
        p.set_defaults(handler=handler)


def _up(args: argparse.Namespace) -> Outcome:
    providers = LocalProviders(args.dir)
    started = providers.up()
    write_env_file(args.env_file, providers.env())
    config = load_config(env={**os.environ, **providers.env()}, env_file=args.env_file)
    lines = []
    with DatabaseManager(config) as db:
        for name in started:
            with db.provider_connection(name) as conn:
                result = apply_schema(conn, name)
                vector = "pgvector" if has_pgvector(conn) else "no pgvector (text search only)"
                conn.rollback()
            state = f"applied {', '.join(result.applied)}" if result.applied else f"schema v{result.current_version}"
            lines.append(f"[OK] {name}: 127.0.0.1:{started[name].port} PostgreSQL {started[name].major}, {state}, "
                         f"{vector}")
    lines.append(f"wrote {Path(args.env_file).absolute()} (mode 0600)")
    return Outcome(EXIT_OK, "\n".join(lines), providers.status())


def _status(args: argparse.Namespace) -> Outcome:
    rows = LocalProviders(args.dir).status()
    if not rows:
        return Outcome(EXIT_OK, "no local providers; run `agent-factory local up`", rows)
    text = "\n".join(
        f"[{'OK' if r['running'] else 'DOWN'}] {r['name']}: {r['host']} PostgreSQL {r['major']}" for r in rows
    )
    return Outcome(EXIT_OK, text, rows)


def _down(args: argparse.Namespace) -> Outcome:
    LocalProviders(args.dir).down()
    return Outcome(EXIT_OK, "stopped every local provider (data kept)", None)


def _kill(args: argparse.Namespace) -> Outcome:
    pid = LocalProviders(args.dir).kill(args.name)
    return Outcome(EXIT_OK, f"killed local provider {args.name} (postmaster pid {pid})", {"name": args.name, "pid": pid})


def _start(args: argparse.Namespace) -> Outcome:
    provider = LocalProviders(args.dir).start(args.name)
    return Outcome(EXIT_OK, f"started local provider {args.name} on 127.0.0.1:{provider.port}", {"name": args.name})
