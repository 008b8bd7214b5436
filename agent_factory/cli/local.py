"""`agent-factory local ...`: the embedded default providers on 127.0.0.1."""

from __future__ import annotations

import argparse
import os
import secrets
import signal
from pathlib import Path

import psycopg
from dotenv import dotenv_values

from ..config import load_config, read_env
from ..core import DatabaseManager
from ..errors import LocalProviderError
from ..local import LocalPooler, LocalProviders, local_env
from ..local.pooler import NAME as POOLER
from ..local.cluster import write_env_file
from ..redact import describe_url
from ..schema import apply_schema
from ..vector import has_pgvector
from .output import EXIT_OK, Outcome


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("local", help="start, stop and break the local providers (neon, supabase, railway)")
    parser.add_argument("--dir", default=os.environ.get("AGENT_FACTORY_LOCAL_DIR", "var/local"),
                        help="where the providers' data lives (default var/local)")
    parser.add_argument("--env-file", default=".env", help="dotenv file to point at them (default .env)")
    local = parser.add_subparsers(dest="local_command", metavar="ACTION")
    local.required = True
    up = local.add_parser("up", help="create and start the providers, apply the schema, write .env")
    up.add_argument("--pooler", action="store_true",
                    help="also start PgBouncer (transaction mode) in front of neon: NEON_DB_URL goes through it, "
                         "NEON_DIRECT_URL past it")
    up.set_defaults(handler=_up)
    local.add_parser("status", help="show each provider's (and the pooler's) port, version and state"
                     ).set_defaults(handler=_status)
    local.add_parser("down", help="stop every provider and the pooler (data is kept)").set_defaults(handler=_down)
    for action, help_text, handler in (
        ("kill", "SIGKILL one provider (or pgbouncer), as a crash would (fault drill)", _kill),
        ("start", "start one provider (or pgbouncer) again", _start),
    ):
        p = local.add_parser(action, help=help_text)
        p.add_argument("name", help="provider name, e.g. neon, or pgbouncer")
        p.set_defaults(handler=handler)


def _up(args: argparse.Namespace) -> Outcome:
    providers = LocalProviders(args.dir)
    started = providers.up()
    pooler = LocalPooler(providers)
    if args.pooler:
        pooler.create("neon")
    if pooler.exists:
        pooler.start()
    env = local_env(providers)
    values = {**_keep_rotated(Path(args.env_file), env), **signing_key_values(args.env_file)}
    write_env_file(args.env_file, values)
    config = load_config(env={**os.environ, **values}, env_file=args.env_file)
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
    if pooler.exists:
        lines.append(f"[OK] {POOLER}: 127.0.0.1:{pooler.port} transaction mode in front of {pooler.provider} "
                     f"({pooler.provider.upper()}_DB_URL; {pooler.provider.upper()}_DIRECT_URL goes past it)")
    generated = " with a new BACKUP_SIGNING_KEY" if "BACKUP_SIGNING_KEY" in values else ""
    lines.append(f"wrote {Path(args.env_file).absolute()} (mode 0600){generated}")
    return Outcome(EXIT_OK, "\n".join(lines), _rows(providers))


def _rows(providers: LocalProviders) -> list[dict[str, object]]:
    pooler = LocalPooler(providers)
    return providers.status() + ([pooler.status()] if pooler.exists else [])


def signing_key_values(env_file: str | Path) -> dict[str, str]:
    """Return `{BACKUP_SIGNING_KEY: new key}` when neither the environment nor `env_file` sets one, else `{}`."""
    if read_env(None, env_file).get("BACKUP_SIGNING_KEY", "").strip():
        return {}
    return {"BACKUP_SIGNING_KEY": secrets.token_hex(32)}  # signs backups; never printed


def _keep_rotated(env_file: Path, values: dict[str, str]) -> dict[str, str]:
    """Keep a URL of `env_file` for the same server when it logs in: its password was rotated since `local up`."""
    if not env_file.is_file():
        return values
    current = dotenv_values(env_file)
    kept = dict(values)
    for key, url in values.items():
        old = (current.get(key) or "").strip()
        if key.endswith("_DB_URL") and old and old != url and describe_url(old) == describe_url(url):
            try:
                with psycopg.connect(old, connect_timeout=5):
                    kept[key] = old
            except psycopg.Error:
                pass  # not a rotated password that works: the local provider's own URL is written
    return kept


def _status(args: argparse.Namespace) -> Outcome:
    rows = _rows(LocalProviders(args.dir))
    if not rows:
        return Outcome(EXIT_OK, "no local providers; run `agent-factory local up`", rows)
    text = "\n".join(
        f"[{'OK' if r['running'] else 'DOWN'}] {r['name']}: {r['host']} "
        + (f"PgBouncer (transaction mode) in front of {r['pooler_for']}" if r.get("pooler_for")
           else f"PostgreSQL {r['major']}") for r in rows
    )
    return Outcome(EXIT_OK, text, rows)


def _down(args: argparse.Namespace) -> Outcome:
    providers = LocalProviders(args.dir)
    pooler = LocalPooler(providers)
    if pooler.exists:
        pooler.stop()
    providers.down()
    return Outcome(EXIT_OK, "stopped every local provider (data kept)", None)


def _kill(args: argparse.Namespace) -> Outcome:
    providers = LocalProviders(args.dir)
    if args.name == POOLER:
        pid = LocalPooler(providers).stop(signal.SIGKILL)
        if pid is None:
            raise LocalProviderError(f"local {POOLER} is not running")
        return Outcome(EXIT_OK, f"killed local {POOLER} (pid {pid})", {"name": args.name, "pid": pid})
    pid = providers.kill(args.name)
    return Outcome(EXIT_OK, f"killed local provider {args.name} (postmaster pid {pid})",
                   {"name": args.name, "pid": pid})


def _start(args: argparse.Namespace) -> Outcome:
    providers = LocalProviders(args.dir)
    if args.name == POOLER:
        pooler = LocalPooler(providers)
        pooler.start()
        return Outcome(EXIT_OK, f"started local {POOLER} on 127.0.0.1:{pooler.port}", {"name": args.name})
    provider = providers.start(args.name)
    return Outcome(EXIT_OK, f"started local provider {args.name} on 127.0.0.1:{provider.port}", {"name": args.name})
