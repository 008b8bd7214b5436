"""`agent-factory credentials rotate | reload`: the runbook's monthly "rotate database credentials"."""

from __future__ import annotations

import argparse
import sys

from ..ops.credentials import accept_password, check_credentials, rotate_password
from ..errors import ConfigError
from .output import EXIT_FAILED, EXIT_OK, Outcome


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("credentials", help="rotate a provider's password, or take in one rotated elsewhere")
    actions = parser.add_subparsers(dest="credentials_command", metavar="ACTION")
    actions.required = True
    p = actions.add_parser(
        "rotate", help="set a new password on the provider, prove it, then write it to the env file",
        description="Generate a strong password, set it on the provider's role (as the role itself, or as "
                    "NAME_ADMIN_URL when configured; only a SCRAM verifier is sent), prove a new login works, then "
                    "rewrite the env file atomically (0600). Running processes keep their connections and use the "
                    "new password on their next one. The password is never printed.")
    p.add_argument("--provider", required=True, help="provider name, e.g. neon")
    p.add_argument("--env-file", default=".env", help="dotenv file holding the provider URLs (default .env)")
    p.add_argument("--dry-run", action="store_true", help="log in and show the plan; change nothing")
    p.add_argument("--vault-prefix", metavar="NAME",
                   help="production: the vault variable holding the env (e.g. vault_agent_factory_env); the "
                        "result names what to update there")
    p.set_defaults(handler=_rotate)

    p = actions.add_parser(
        "reload", help="check the configured credentials, or take in a password rotated elsewhere (stdin)",
        description="Without --password-stdin: read the configuration again and try a new login on each provider "
                    "(exit 1 if one is refused). With it: read the new password (set in the provider's console) "
                    "from stdin, prove it logs in, and write it to the env file atomically.")
    p.add_argument("--provider", help="provider name (default: every provider; required with --password-stdin)")
    p.add_argument("--env-file", default=".env", help="dotenv file holding the provider URLs (default .env)")
    p.add_argument("--password-stdin", action="store_true", help="read the new password from stdin (one line)")
    p.add_argument("--dry-run", action="store_true", help="with --password-stdin: prove the login, write nothing")
    p.add_argument("--vault-prefix", metavar="NAME", help="as for rotate")
    p.set_defaults(handler=_reload)


def _rotate(args: argparse.Namespace) -> Outcome:
    result = rotate_password(args.env_file, args.provider, check=args.dry_run, vault_prefix=args.vault_prefix)
    if result.check:
        return Outcome(EXIT_OK, f"[PLAN] {result.summary}; nothing was changed (dry run)\n"
                       + "\n".join(f"  - {a}" for a in result.actions), result)
    code = EXIT_OK if result.old_password_refused else EXIT_FAILED
    return Outcome(code, f"[{'OK' if code == EXIT_OK else 'WARN'}] {result.summary}", result)


def _reload(args: argparse.Namespace) -> Outcome:
    if args.password_stdin:
        if not args.provider:
            raise ConfigError("--password-stdin needs --provider NAME")
        password = sys.stdin.readline().rstrip("\r\n")
        result = accept_password(args.env_file, args.provider, password, check=args.dry_run,
                                 vault_prefix=args.vault_prefix)
        return Outcome(EXIT_OK, f"[{'PLAN' if result.check else 'OK'}] {result.summary}", result)
    results = check_credentials(args.env_file, args.provider)
    ok = all(r.logged_in for r in results)
    lines = [f"[{'OK' if r.logged_in else 'FAIL'}] {r.summary}" for r in results]
    return Outcome(EXIT_OK if ok else EXIT_FAILED, "\n".join(lines), results)
