"""Configuration from the environment and a `.env` file (the environment wins).

`load_config()` reads every setting the library uses and raises one
`ConfigError` naming the variable and the fix when something is wrong.
Per provider NAME: `NAME_DB_URL` (required), `NAME_DIRECT_URL` (optional, for
ops that need a session of their own), `NAME_POOLER` (`transaction`, `session`
or `none`; else guessed from the URL), `NAME_PREPARED_STATEMENTS` (default
true), `NAME_SSL_ROOT_CERT` (else `DATABASE_SSL_ROOT_CERT`) and
`NAME_STORAGE_QUOTA_MB` (optional, the plan's storage quota), `NAME_ADMIN_URL`
(optional, a role allowed to create subscriptions, used only by `stream`
operations) and `NAME_STREAM` (default true; false: the provider cannot
subscribe to the primary's stream); every URL gets
the TLS defaults of `agent_factory.tls`. `reload_provider()` reads one
provider again from the same sources (after a password rotation).

A provider whose `NAME_DB_URL` looks like a transaction pooler (port 6543,
`-pooler` in the host, or `NAME_POOLER=transaction`) gives no session of its
own: advisory locks, session `SET`s and pg_dump/pg_restore/psql then need
`NAME_DIRECT_URL`, and `ProviderConfig.session_url_for` refuses without it
(`DirectUrlRequiredError`) rather than misbehave through the pooler.
`read_env()` and the `env_bool`/`env_int`/`env_float` parsers serve other
settings (the alert channels) the same way.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from dotenv import dotenv_values
from psycopg import pq
from psycopg.conninfo import conninfo_to_dict

from .errors import ConfigError, DirectUrlRequiredError, UnknownProviderError
from .redact import describe_url, url_password
from .tls import secure_conninfo

logger = logging.getLogger(__name__)

DEFAULT_FAILOVER_ORDER = ("neon", "supabase", "railway")
_PROVIDER_NAME = re.compile(r"^[a-z][a-z0-9_]{0,30}$")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
POOLER_MODES = ("transaction", "session", "none")
TRANSACTION_POOLER_PORT = "6543"  # Supabase's Supavisor and the usual PgBouncer transaction port


@dataclass(frozen=True)
class ProviderConfig:
    """One provider: its name, connection URLs (never in repr) and connection settings.

    `url` is what the pool uses (often a pooler); `direct_url` (NAME_DIRECT_URL)
    is a connection straight to the server, for work that needs a session of its
    own; both carry the TLS defaults of `agent_factory.tls`. `prepared_statements`
    is false behind a transaction pooler (PgBouncer transaction mode, Supabase's port 6543).
    `transaction_pooler` says why `url` is taken for a transaction pooler
    ("port 6543", "-pooler in the host", "NEON_POOLER=transaction"), else None.
    """

    name: str
    url: str = field(repr=False)
    direct_url: str | None = field(default=None, repr=False)
    prepared_statements: bool = True
    storage_quota_mb: float | None = None  # NAME_STORAGE_QUOTA_MB: the plan's storage quota, when known
    transaction_pooler: str | None = None
    admin_url: str | None = field(default=None, repr=False)  # NAME_ADMIN_URL: only `stream` operations use it
    stream: bool = True  # NAME_STREAM=false: this provider cannot subscribe (it follows with `sync --follow`)

    @property
    def url_variable(self) -> str:
        """Return the variable that holds this provider's URL (and so its password), e.g. `NEON_DB_URL`."""
        return f"{self.name.upper()}_DB_URL"

    @property
    def session_url(self) -> str:
        """Return the URL for a session of its own (pg_dump, pg_restore, advisory locks): direct if configured.

        Raises `DirectUrlRequiredError` behind a transaction pooler without NAME_DIRECT_URL.
        """
        return self.session_url_for("this operation")

    def session_url_for(self, operation: str) -> str:
        """Return the URL `operation` (e.g. "backup") may hold a session of its own on.

        Raises `DirectUrlRequiredError` naming NAME_DIRECT_URL when `url` is a
        transaction pooler and no direct URL is configured.
        """
        if self.direct_url:
            return self.direct_url
        if self.transaction_pooler:
            prefix = self.name.upper()
            raise DirectUrlRequiredError(
                f"provider {self.name}: {operation} needs a session of its own, but {prefix}_DB_URL looks like a "
                f"transaction pooler ({self.transaction_pooler}); set {prefix}_DIRECT_URL to the server's direct "
                f"URL (or {prefix}_POOLER=none if it is not a pooler)"
            )
        return self.url

    @property
    def host(self) -> str:
        """Return `host:port/dbname`, safe to show anywhere."""
        return describe_url(self.url)

    @property
    def password(self) -> str | None:
        """Return the password in the URL, for callers that must hide it (never log it)."""
        return url_password(self.url)

    def __str__(self) -> str:
        return f"{self.name} ({self.host})"


@dataclass(frozen=True)
class ConfigSource:
    """Where a `Config` was read from, to read it again: the mapping given (None: `os.environ`) and the file."""

    env: Mapping[str, str] | None = field(default=None, repr=False)
    env_file: Path | None = None

    def values(self) -> dict[str, str]:
        """Return the variables as they are now (the environment over the file)."""
        return read_env(self.env, self.env_file)


@dataclass(frozen=True)
class Config:
    """Every setting of the library, validated."""

    primary: str
    failover_enabled: bool
    failover_order: tuple[str, ...]
    providers: dict[str, ProviderConfig]
    pool_min_size: int = 1
    pool_max_size: int = 10
    pool_timeout: float = 5.0
    pool_max_waiting: int = 100
    pool_max_lifetime: float = 1800.0
    pool_max_idle: float = 240.0
    connect_timeout: int = 5
    dead_peer_timeout: int = 10
    health_ttl: float = 60.0
    failback_checks: int = 3
    state_dir: Path = Path("var")
    backup_signing_key: str | None = field(default=None, repr=False)
    backup_signing_previous: tuple[str, ...] = field(default=(), repr=False)
    stream_lag_alert_seconds: float = 30.0  # STREAM_LAG_ALERT_SECONDS: a stream further behind is catching_up
    source: ConfigSource | None = field(default=None, repr=False, compare=False)  # where it was read from

    def provider(self, name: str) -> ProviderConfig:
        """Return the named provider or raise `ConfigError` listing the configured ones."""
        try:
            return self.providers[name]
        except KeyError:
            raise UnknownProviderError(name, self.providers) from None


def load_config(
    env: Mapping[str, str] | None = None, env_file: str | Path | None = ".env"
) -> Config:
    """Build a `Config` from `env` (default `os.environ`) layered over `env_file`.

    Raises `ConfigError` naming the offending variable and how to fix it.
    """
    source = ConfigSource(None if env is None else dict(env), None if env_file is None else Path(env_file))
    return _parse(source.values(), source)


def reload_provider(config: Config, name: str) -> ProviderConfig | None:
    """Read provider `name` again from the sources `config` was loaded from (env, then `.env`); None if now unset.

    Used after an authentication failure, to pick up a rotated password.
    Raises `ConfigError` when the variables now hold an invalid value.
    """
    source = config.source if config.source is not None else ConfigSource({}, None)
    return _provider(name, source.values())


def read_env(env: Mapping[str, str] | None = None, env_file: str | Path | None = ".env") -> dict[str, str]:
    """Return `env` (default `os.environ`) layered over `env_file`: the environment wins.

    A missing `env_file` (or `None`) counts as empty; values are returned as written, not stripped.
    """
    values: dict[str, str] = {}
    if env_file is not None and Path(env_file).is_file():
        values.update({k: v for k, v in dotenv_values(env_file).items() if v is not None})
    values.update(os.environ if env is None else env)
    return values


def _parse(values: Mapping[str, str], source: ConfigSource | None = None) -> Config:
    def get(name: str, default: str) -> str:
        raw = values.get(name)
        return default if raw is None or raw.strip() == "" else raw.strip()

    order = _names(get("DATABASE_FAILOVER_ORDER", ",".join(DEFAULT_FAILOVER_ORDER)))
    primary = get("DATABASE_PROVIDER", "neon").lower()
    if not _PROVIDER_NAME.match(primary):
        raise ConfigError(f"DATABASE_PROVIDER={primary!r} is not a provider name; use e.g. neon")
    if primary not in order:
        order = (primary, *order)

    providers = {}
    for name in order:
        provider = _provider(name, values)
        if provider is not None:
            providers[name] = provider
    if not providers:
        raise ConfigError(
            "no database provider is configured: set NEON_DB_URL (and SUPABASE_DB_URL, "
            "RAILWAY_DB_URL for failover), or run `agent-factory local up` to create local providers"
        )
    if primary not in providers:
        raise ConfigError(
            f"DATABASE_PROVIDER={primary} but {primary.upper()}_DB_URL is not set; "
            f"set it, or choose one of: {', '.join(providers)}"
        )

    min_size = env_int(values, "DATABASE_POOL_MIN_SIZE", 1, minimum=0)
    max_size = env_int(values, "DATABASE_POOL_MAX_SIZE", 10, minimum=1)
    if min_size > max_size:
        raise ConfigError(
            f"DATABASE_POOL_MIN_SIZE={min_size} is larger than DATABASE_POOL_MAX_SIZE={max_size}; "
            "lower the minimum or raise the maximum"
        )
    return Config(
        primary=primary,
        failover_enabled=env_bool(values, "DATABASE_FAILOVER_ENABLED", True),
        failover_order=tuple(n for n in order if n in providers),
        providers=providers,
        pool_min_size=min_size,
        pool_max_size=max_size,
        pool_timeout=env_float(values, "DATABASE_POOL_TIMEOUT", 5.0),
        pool_max_waiting=env_int(values, "DATABASE_POOL_MAX_WAITING", 100, minimum=0),
        pool_max_lifetime=env_float(values, "DATABASE_POOL_MAX_LIFETIME", 1800.0, minimum=1.0),
        pool_max_idle=env_float(values, "DATABASE_POOL_MAX_IDLE", 240.0, minimum=1.0),
        connect_timeout=env_int(values, "DATABASE_CONNECT_TIMEOUT", 5, minimum=2),  # libpq minimum
        dead_peer_timeout=_dead_peer_timeout(values),
        health_ttl=env_float(values, "DATABASE_HEALTH_TTL", 60.0, minimum=0.0),
        failback_checks=env_int(values, "DATABASE_FAILBACK_CHECKS", 3, minimum=1),
        state_dir=Path(get("AGENT_FACTORY_STATE_DIR", "./var")),
        backup_signing_key=_signing_key("BACKUP_SIGNING_KEY", get("BACKUP_SIGNING_KEY", "")) or None,
        backup_signing_previous=tuple(
            _signing_key("BACKUP_SIGNING_KEY_PREVIOUS", k.strip())
            for k in get("BACKUP_SIGNING_KEY_PREVIOUS", "").split(",") if k.strip()),
        stream_lag_alert_seconds=env_float(values, "STREAM_LAG_ALERT_SECONDS", 30.0),
        source=source,
    )


MIN_SIGNING_KEY_CHARS = 32


def _signing_key(name: str, value: str) -> str:
    """Return a backup signing key as given; raise `ConfigError` (never showing it) when it is too short."""
    if value and len(value) < MIN_SIGNING_KEY_CHARS:
        raise ConfigError(
            f"{name} is too short ({len(value)} characters, at least {MIN_SIGNING_KEY_CHARS}); generate one with "
            "`python3 -c 'import secrets; print(secrets.token_hex(32))'`"
        )
    return value


def _names(raw: str) -> tuple[str, ...]:
    names = [part.strip().lower() for part in raw.split(",") if part.strip()]
    for name in names:
        if not _PROVIDER_NAME.match(name):
            raise ConfigError(
                f"DATABASE_FAILOVER_ORDER contains {name!r}, which is not a provider name "
                "(lowercase letters, digits, underscore); e.g. DATABASE_FAILOVER_ORDER=neon,supabase,railway"
            )
    if len(set(names)) != len(names):
        raise ConfigError(f"DATABASE_FAILOVER_ORDER lists a provider twice: {raw!r}")
    if not names:
        raise ConfigError("DATABASE_FAILOVER_ORDER is empty; e.g. DATABASE_FAILOVER_ORDER=neon,supabase,railway")
    return tuple(names)


def _provider(name: str, values: Mapping[str, str]) -> ProviderConfig | None:
    """Return the provider `name` from NAME_DB_URL (and its optional settings), or None when not configured."""
    prefix = name.upper()
    url = _provider_url(name, values)
    direct = (values.get(f"{prefix}_DIRECT_URL") or "").strip()
    admin = (values.get(f"{prefix}_ADMIN_URL") or "").strip()
    if url is None:
        if direct:
            raise ConfigError(f"{prefix}_DIRECT_URL is set but {prefix}_DB_URL is not; set {prefix}_DB_URL too")
        return None
    ca_file = _ca_file(prefix, values)
    checked = _check_url(f"{prefix}_DB_URL", url)
    provider = ProviderConfig(
        name,
        _secure(f"{prefix}_DB_URL", checked, ca_file),
        _secure(f"{prefix}_DIRECT_URL", _check_url(f"{prefix}_DIRECT_URL", direct), ca_file) if direct else None,
        env_bool(values, f"{prefix}_PREPARED_STATEMENTS", True),
        _quota(f"{prefix}_STORAGE_QUOTA_MB", values),
        _transaction_pooler(prefix, checked, values),
        _secure(f"{prefix}_ADMIN_URL", _check_url(f"{prefix}_ADMIN_URL", admin), ca_file) if admin else None,
        env_bool(values, f"{prefix}_STREAM", True),
    )
    if provider.prepared_statements and _ports(provider.url).count(TRANSACTION_POOLER_PORT):
        logger.warning("provider %s: port 6543 is usually a transaction pooler (Supabase), which rejects prepared "
                       "statements; set %s_PREPARED_STATEMENTS=false if it is one", name, prefix)
    return provider


def _transaction_pooler(prefix: str, url: str, values: Mapping[str, str]) -> str | None:
    """Return why NAME_DB_URL is taken for a transaction pooler (NAME_POOLER, else the URL's look), or None.

    Raises `ConfigError` for a NAME_POOLER that is not one of `POOLER_MODES`.
    """
    var = f"{prefix}_POOLER"
    mode = (values.get(var) or "").strip().lower()
    if mode:
        if mode not in POOLER_MODES:
            raise ConfigError(f"{var}={mode!r} is not one of {', '.join(POOLER_MODES)}")
        return f"{var}=transaction" if mode == "transaction" else None
    if TRANSACTION_POOLER_PORT in _ports(url):
        return f"port {TRANSACTION_POOLER_PORT}"
    if any("-pooler" in host.lower() for host in str(conninfo_to_dict(url).get("host") or "").split(",")):
        return "-pooler in the host"
    return None


def _ports(url: str) -> list[str]:
    return str(conninfo_to_dict(url).get("port") or "").split(",")


def _dead_peer_timeout(values: Mapping[str, str]) -> int:
    """Return DATABASE_DEAD_PEER_TIMEOUT (whole seconds, 0 = off, else at least 2; default 10)."""
    seconds = env_int(values, "DATABASE_DEAD_PEER_TIMEOUT", 10, minimum=0)
    if seconds == 1:
        raise ConfigError("DATABASE_DEAD_PEER_TIMEOUT=1 is too short for keepalive probes; use at least 2 (or 0: off)")
    return seconds


def _provider_url(name: str, values: Mapping[str, str]) -> str | None:
    url = (values.get(f"{name.upper()}_DB_URL") or "").strip()
    if not url and name == "supabase":
        host = (values.get("SUPABASE_DB_HOST") or "").strip()
        password = values.get("SUPABASE_DB_PASSWORD") or ""
        if host:
            if not password:
                raise ConfigError("SUPABASE_DB_HOST is set but SUPABASE_DB_PASSWORD is empty; set both")
            from psycopg.conninfo import make_conninfo

            return make_conninfo(host=host, port=5432, user="postgres", dbname="postgres", password=password)
    return url or None


def _quota(var: str, values: Mapping[str, str]) -> float | None:
    """Return NAME_STORAGE_QUOTA_MB in MB, or None when unset; raises `ConfigError` for a non-positive value."""
    if not (values.get(var) or "").strip():
        return None
    return env_float(values, var, 0.0, minimum=0.001, unit="MB")


def _check_url(var: str, url: str) -> str:
    if "://" in url and not url.startswith(("postgres://", "postgresql://")):
        raise ConfigError(f"{var} must start with postgresql:// (got a URL for {describe_url(url)})")
    try:
        params = conninfo_to_dict(url)
    except Exception:
        raise ConfigError(
            f"{var} is not a valid PostgreSQL URL; expected postgresql://user:password@host:port/dbname"
        ) from None
    if not params.get("host"):
        raise ConfigError(f"{var} has no host; expected postgresql://user:password@host:port/dbname")
    port = params.get("port")
    if port is not None and not all(p.isdigit() and 0 < int(p) < 65536 for p in str(port).split(",") if p):
        raise ConfigError(f"{var} has an invalid port; expected a number from 1 to 65535")
    return url


def _secure(var: str, url: str, ca_file: str | None) -> str:
    try:
        return secure_conninfo(url, ca_file)
    except ValueError as exc:
        raise ConfigError(f"{var}: {exc}") from None


def _ca_file(prefix: str, values: Mapping[str, str]) -> str | None:
    """Return the CA file for a provider: NAME_SSL_ROOT_CERT, else DATABASE_SSL_ROOT_CERT, else None."""
    for var in (f"{prefix}_SSL_ROOT_CERT", "DATABASE_SSL_ROOT_CERT"):
        raw = (values.get(var) or "").strip()
        if not raw:
            continue
        if raw == "system":  # the operating system's trusted CAs
            if pq.version() < 160000:
                raise ConfigError(f"{var}=system needs libpq 16 or newer (psycopg has {pq.version()}); "
                                  "give the path of the CA certificate instead")
            return raw
        path = Path(raw).expanduser()
        if not path.is_file() or not os.access(path, os.R_OK):
            raise ConfigError(f"{var}={raw} is not a readable file; give the path of the CA certificate (PEM)")
        return str(path.resolve())
    return None


def env_bool(values: Mapping[str, str], name: str, default: bool) -> bool:
    """Return `values[name]` as a boolean (1/true/yes/on, 0/false/no/off), or `default` when unset or blank.

    Raises `ConfigError` naming the variable for any other value.
    """
    raw = (values.get(name) or "").strip().lower()
    if not raw:
        return default
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise ConfigError(f"{name}={raw!r} is not a boolean; use true or false")


def env_int(values: Mapping[str, str], name: str, default: int, minimum: int) -> int:
    """Return `values[name]` as a whole number of at least `minimum`, or `default` when unset or blank.

    Raises `ConfigError` naming the variable when it is not a whole number or is below `minimum`.
    """
    raw = (values.get(name) or "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a whole number; e.g. {name}={default}") from None
    if value < minimum:
        raise ConfigError(f"{name}={value} must be at least {minimum}")
    return value


def env_float(
    values: Mapping[str, str], name: str, default: float, minimum: float = 0.001, unit: str = "seconds"
) -> float:
    """Return `values[name]` as a finite number of `unit` of at least `minimum`, or `default` when unset or blank.

    Raises `ConfigError` naming the variable when it is not a number, is infinite
    or NaN, or is below `minimum`.
    """
    raw = (values.get(name) or "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number of {unit}; e.g. {name}={default}") from None
    if not value >= minimum or value == float("inf"):
        # The default minimum (and 0) stand for "positive"; a larger one is named.
        bound = f"a positive number of {unit}" if minimum <= 0.001 else f"at least {minimum:g} {unit}"
        raise ConfigError(f"{name}={raw} must be {bound}")
    return value
