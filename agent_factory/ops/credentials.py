"""Rotate a provider's database password without downtime, or take in one rotated elsewhere.

`rotate_password` (`agent-factory credentials rotate`):

1. reads the provider's variables from the env file (a variable set in the
   process environment overrides the file, so rotation refuses it);
2. claims `<env file>.rotating` (created exclusively, 0600): it is the lock
   against a second rotation and, until the end, holds the new file, so a
   crash after the password changed loses nothing (move it into place);
3. logs in with the current credentials: as the role itself (a role may change
   its own password) or, when `NAME_ADMIN_URL` is configured, as that admin;
4. generates a password (`secrets.token_urlsafe(32)`, 256 bits) and sets it
   with `ALTER ROLE ... PASSWORD` given a SCRAM-SHA-256 verifier computed
   here: the plaintext never reaches the server, its logs or
   `pg_stat_statements`, and never appears in argv, output or logs;
5. proves that a new login works with every updated URL; if one fails, the
   old password is set back and the env file is left alone;
6. only then replaces the env file atomically (mode 0600, every other line
   kept byte for byte) and checks that the old password is refused.

Running processes keep their open connections and pick the new password up
on their next new connection (`core.credentials`). For a production
inventory the env file on the host is written by the install role from the
vault: the result names the vault variable to update from that file.

`accept_password` (`agent-factory credentials reload`) is for a password
rotated elsewhere (a provider console): it proves the new password (read from
stdin, never argv) logs in and writes it to the env file the same way;
`check_credentials` only re-reads the configuration and tries every login.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import os
import secrets
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import psycopg
from dotenv import dotenv_values
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from ..config import ProviderConfig, load_config
from ..core.sqlstate import describe, is_auth_failure
from ..envfile import with_values, write_private
from ..errors import AuthenticationFailedError, ConfigError, CredentialRotationError
from ..redact import url_password
from ..tls import secure_conninfo

logger = logging.getLogger(__name__)

SCRAM_ITERATIONS = 4096  # PostgreSQL's default (scram_iterations)
_CONNECT_TIMEOUT = 10


@dataclass(kw_only=True)
class CredentialResult:
    """The outcome (or, with `check`, the plan) of a rotation, reload or credentials check."""

    provider: str
    role: str
    changed: bool
    check: bool
    actions: list[str]  # done, or planned in check mode
    variables: list[str]  # the env file's variables that hold (or would hold) the new password
    env_file: Path | None
    logged_in: bool  # a new login with the (new) credentials worked
    old_password_refused: bool | None = None  # after a rotation: the old password no longer logs in
    vault_variables: list[str] = field(default_factory=list)  # to update from the env file (production)
    summary: str = ""


@dataclass(frozen=True)
class _Target:
    """What a rotation changes: the role, its variables' current raw values and the URL to log in with."""

    provider: ProviderConfig
    role: str
    values: dict[str, str]  # variable -> raw value in the env file
    admin_url: str | None


def scram_verifier(password: str, *, salt: bytes | None = None, iterations: int = SCRAM_ITERATIONS) -> str:
    """Return the SCRAM-SHA-256 verifier PostgreSQL stores for `password` (what `ALTER ROLE ... PASSWORD` accepts)."""
    salt = salt if salt is not None else secrets.token_bytes(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()

    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode("ascii")

    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"


def generate_password() -> str:
    """Return a new strong password: 32 random bytes, URL-safe (no quoting needed in a URL or .env)."""
    return secrets.token_urlsafe(32)


def with_password(url: str, password: str) -> str:
    """Return `url` (a postgresql:// URL or a key=value conninfo) with its password replaced."""
    if "://" in url:
        parts = urlsplit(url)
        userinfo, _, hostinfo = parts.netloc.rpartition("@")
        user = userinfo.split(":", 1)[0]
        return urlunsplit(parts._replace(netloc=f"{user}:{quote(password, safe='')}@{hostinfo}"))
    return make_conninfo(url, password=password)


def _user(url: str) -> str:
    if "://" in url:
        userinfo = urlsplit(url).netloc.rpartition("@")[0]
        return unquote(userinfo.split(":", 1)[0])
    return str(conninfo_to_dict(url).get("user") or "")


def rotate_password(env_file: str | Path, provider: str, *, check: bool, vault_prefix: str | None = None,
                    env: Mapping[str, str] | None = None) -> CredentialResult:
    """Give provider `provider`'s role a new password, prove it, then write it to `env_file`.

    `env` (default `os.environ`) is layered over `env_file` as `load_config`
    does. `vault_prefix` (e.g. "vault_agent_factory_env") names where a
    production inventory keeps the variables. Raises `ConfigError` (unknown
    provider, missing file, a variable overridden by the environment),
    `AuthenticationFailedError` when the current credentials are refused,
    `CredentialRotationError` when the rotation could not complete (the
    message says what state the role and the file are in). With `check=True`
    it logs in and plans, changing nothing.
    """
    path, target = _target(env_file, provider, env)
    who = f"the admin ({target.provider.name.upper()}_ADMIN_URL)" if target.admin_url else f"role {target.role}"
    actions = [f"log in to {target.provider.name} as {who}",
               f"set a new password on role {target.role} (SCRAM-SHA-256 verifier, computed locally)",
               "prove a new login with " + ", ".join(target.values),
               f"write {', '.join(target.values)} to {path} (atomic, mode 0600)",
               "check that the old password is refused"]
    result = CredentialResult(provider=target.provider.name, role=target.role, changed=not check, check=check,
                              actions=actions, variables=list(target.values), env_file=path, logged_in=False,
                              vault_variables=_vault(vault_prefix, target.values))
    claimed = _claim(path)
    pending: Path | None = claimed
    keep = False  # once the role has the new password, the pending file is its only copy until it moves
    try:
        with _login(target) as conn:
            result.logged_in = True
            if check:
                result.summary = (f"would rotate the password of role {target.role} on {target.provider.name} "
                                  f"and update {', '.join(target.values)} in {path}")
                return result
            old_password = target.provider.password or ""
            new_password = generate_password()
            new_values = {var: _replace(var, raw, new_password) for var, raw in target.values.items()}
            original = _read(path)
            write_private(claimed, with_values(original, new_values))
            keep = True
            _alter_role(conn, target.role, new_password)
            logger.info("provider %s: role %s has a new password; proving a new login", target.provider.name,
                        target.role)
            failure = _prove(target, new_values)
            if failure is not None:
                _alter_role(conn, target.role, old_password)
                keep = False
                raise CredentialRotationError(
                    f"provider {target.provider.name}: a login with the new password failed ({failure}); the old "
                    f"password was set back on role {target.role} and {path} was not changed")
        if _read(path) != original:
            raise CredentialRotationError(
                f"{path} changed during the rotation; the new password of role {target.role} is in {pending}: "
                f"merge its {', '.join(target.values)} line(s) into {path}, then delete {pending}")
        os.replace(claimed, path)
        pending = None
        result.old_password_refused = _refused(target)
    finally:
        if pending is not None and not keep:
            pending.unlink(missing_ok=True)
    result.summary = (f"rotated the password of role {target.role} on {target.provider.name}; new logins work; "
                      f"{', '.join(target.values)} updated in {path}"
                      + ("" if result.old_password_refused else "; WARNING: the old password still logs in")
                      + (f"; now copy {', '.join(target.values)} from {path} into {', '.join(result.vault_variables)}"
                         if result.vault_variables else ""))
    logger.info("provider %s: %s", target.provider.name, result.summary)
    return result


def accept_password(env_file: str | Path, provider: str, new_password: str, *, check: bool,
                    vault_prefix: str | None = None, env: Mapping[str, str] | None = None) -> CredentialResult:
    """Prove that `new_password` (set elsewhere, e.g. a provider console) logs in, then write it to `env_file`.

    Raises as `rotate_password`, and `AuthenticationFailedError` when the new password is refused
    (nothing is written then).
    """
    if not new_password or any(c in new_password for c in "\r\n"):
        raise ConfigError("the new password is empty or has a line break; give it on one line on stdin")
    path, target = _target(env_file, provider, env)
    new_values = {var: _replace(var, raw, new_password) for var, raw in target.values.items()}
    actions = ["prove a new login with the new password", f"write {', '.join(target.values)} to {path}"]
    result = CredentialResult(provider=target.provider.name, role=target.role, changed=not check, check=check,
                              actions=actions, variables=list(target.values), env_file=path, logged_in=False,
                              vault_variables=_vault(vault_prefix, target.values))
    failure = _prove(target, new_values)
    if failure is not None:
        raise AuthenticationFailedError(target.provider.name, next(iter(target.values)),
                                        f"the new password does not log in: {failure}")
    result.logged_in = True
    if check:
        result.summary = f"the new password logs in to {target.provider.name}; would update it in {path}"
        return result
    pending = _claim(path)
    try:
        write_private(pending, with_values(_read(path), new_values))
        os.replace(pending, path)
    finally:
        pending.unlink(missing_ok=True)
    result.summary = (f"the new password of role {target.role} logs in to {target.provider.name}; "
                      f"{', '.join(target.values)} updated in {path}; running processes pick it up on their "
                      "next new connection"
                      + (f"; now copy them into {', '.join(result.vault_variables)}" if result.vault_variables
                         else ""))
    return result


def check_credentials(env_file: str | Path | None, provider: str | None = None,
                      env: Mapping[str, str] | None = None) -> list[CredentialResult]:
    """Read the configuration again and try a new login on `provider` (default: every provider).

    Never raises for a refused login: each result says whether it logged in. Raises `ConfigError`.
    """
    config = load_config(env, env_file)
    names = [config.provider(provider).name] if provider else list(config.providers)
    results = []
    for name in names:
        p = config.providers[name]
        urls = {p.url_variable: p.url, **({f"{name.upper()}_DIRECT_URL": p.direct_url} if p.direct_url else {})}
        problems = [f"{var}: {why}" for var, url in urls.items() if (why := _try_login(url, p.password)) is not None]
        summary = (f"{name}: the configured credentials log in ({', '.join(urls)})" if not problems
                   else f"{name}: " + "; ".join(problems))
        results.append(CredentialResult(provider=name, role=_user(p.url), changed=False, check=True, actions=[],
                                        variables=list(urls), env_file=None if env_file is None else Path(env_file),
                                        logged_in=not problems, summary=summary))
    return results


# ---- steps -----------------------------------------------------------------------


def _target(env_file: str | Path, provider: str, env: Mapping[str, str] | None) -> tuple[Path, _Target]:
    path = Path(env_file)
    if not path.is_file():
        raise ConfigError(f"env file {path.absolute()} does not exist; the provider URLs live there")
    environment = os.environ if env is None else env
    config = load_config(environment, path)
    p = config.provider(provider.strip().lower())
    prefix = p.name.upper()
    in_file = {k: v for k, v in dotenv_values(path).items() if v is not None}
    candidates = [f"{prefix}_DB_URL", f"{prefix}_DIRECT_URL"]
    if p.name == "supabase" and not in_file.get("SUPABASE_DB_URL") and not environment.get("SUPABASE_DB_URL"):
        candidates = ["SUPABASE_DB_PASSWORD", f"{prefix}_DIRECT_URL"]
    for var in candidates:
        if (environment.get(var) or "").strip():
            raise ConfigError(f"{var} is set in the environment, which overrides {path}: a rotation written to the "
                              "file would not be used. Unset it (or rotate where the file holds it), or rotate in "
                              "the provider's console and run `agent-factory credentials reload`")
    role = _user(p.url)
    values = {}
    for var in candidates:
        raw = (in_file.get(var) or "").strip()
        if not raw:
            continue
        if var.endswith("_URL") and _user(raw) != role:
            logger.info("provider %s: %s logs in as another role; leaving it alone", p.name, var)
            continue
        values[var] = raw
    if not values:
        raise ConfigError(f"{prefix}_DB_URL is not in {path}; nothing to rotate")
    admin = (environment.get(f"{prefix}_ADMIN_URL") or in_file.get(f"{prefix}_ADMIN_URL") or "").strip() or None
    if admin:
        try:
            admin = secure_conninfo(admin)
        except ValueError as exc:
            raise ConfigError(f"{prefix}_ADMIN_URL: {exc}") from None
    return path, _Target(p, role, values, admin)


def _vault(prefix: str | None, values: Mapping[str, str]) -> list[str]:
    return [f"{prefix}.{var}" for var in values] if prefix else []


def _replace(var: str, raw: str, password: str) -> str:
    return password if var.endswith("_PASSWORD") else with_password(raw, password)


def _read(path: Path) -> str:
    with open(path, newline="", encoding="utf-8") as fh:
        return fh.read()


def _claim(path: Path) -> Path:
    """Create `<path>.rotating` exclusively (0600): the rotation lock and the new file until it moves into place."""
    pending = path.with_name(path.name + ".rotating")
    try:
        fd = os.open(pending, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise CredentialRotationError(
            f"{pending} exists: another rotation is running, or one was interrupted after it may have changed the "
            f"password. If none is running: when that file has content, the role's password is probably the one "
            f"in it (move it to {path}); when it is empty, delete it") from None
    os.close(fd)
    return pending


@contextmanager
def _login(target: _Target) -> Iterator[psycopg.Connection]:
    """Yield a connection for ALTER ROLE: the admin URL when configured, else the role's own session URL."""
    p = target.provider
    url = target.admin_url or p.session_url
    variable = f"{p.name.upper()}_ADMIN_URL" if target.admin_url else p.url_variable
    try:
        conn = psycopg.connect(url, autocommit=True, connect_timeout=_CONNECT_TIMEOUT,
                               application_name="agent-factory-credentials")
    except psycopg.Error as exc:
        if is_auth_failure(exc):
            raise AuthenticationFailedError(p.name, variable, "password authentication failed") from None
        raise CredentialRotationError(f"provider {p.name}: cannot log in to rotate: "
                                      f"{describe(exc, p.password)}") from None
    with conn:
        yield conn


def _alter_role(conn: psycopg.Connection, role: str, password: str) -> None:
    """Set `role`'s password to the SCRAM verifier of `password` (the plaintext is never sent)."""
    statement = sql.SQL("ALTER ROLE {} PASSWORD {}").format(sql.Identifier(role), sql.Literal(scram_verifier(password)))
    try:
        conn.execute(statement)
    except psycopg.Error as exc:
        raise CredentialRotationError(
            f"cannot change the password of role {role}: {describe(exc)}; nothing was changed. Give it an admin URL "
            "(NAME_ADMIN_URL) or rotate in the provider's console") from None


def _prove(target: _Target, new_values: Mapping[str, str]) -> str | None:
    """Log in with each new value; return why one failed, or None when all work."""
    p = target.provider
    for var, raw in new_values.items():
        if var.endswith("_PASSWORD"):
            url = make_conninfo(p.url, password=raw)
        else:
            root_cert = conninfo_to_dict(p.url).get("sslrootcert")
            url = secure_conninfo(raw, None if root_cert is None else str(root_cert))
        why = _try_login(url, raw if var.endswith("_PASSWORD") else url_password(url))
        if why is not None:
            return f"{var}: {why}"
    return None


def _try_login(url: str, password: str | None) -> str | None:
    try:
        with psycopg.connect(url, autocommit=True, connect_timeout=_CONNECT_TIMEOUT,
                             application_name="agent-factory-credentials") as conn:
            conn.execute("SELECT 1").fetchone()
    except psycopg.Error as exc:
        return describe(exc, password or "")
    return None


def _refused(target: _Target) -> bool:
    """Return whether the old password is now refused (it must be)."""
    p = target.provider
    try:
        with psycopg.connect(p.session_url, autocommit=True, connect_timeout=_CONNECT_TIMEOUT):
            return False
    except psycopg.Error as exc:
        return is_auth_failure(exc)
