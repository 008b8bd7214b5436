"""Connection targets: one database on one provider, as client tools and direct connections reach it.

`target_for` rebuilds the provider's session URL (`NAME_DIRECT_URL` when set,
else `NAME_DB_URL`) without its password, plus the connect timeout and the
dead-peer settings. The password is kept apart (`PgTarget.password`, never in
a repr); `agent_factory.ops.tools` hands it to a child through a passfile.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from ..core.sqlstate import describe
from ..errors import ProviderUnavailableError
from ..keepalive import dead_peer_params
from ..redact import describe_url
from ..tls import is_loopback

if TYPE_CHECKING:
    from ..core import DatabaseManager

__all__ = ["PgTarget", "target_for", "target_for_url"]


@dataclass(frozen=True)
class PgTarget:
    """One database on one provider: a password-free conninfo plus the password kept apart."""

    provider: str
    host: str
    dbname: str
    conninfo: str = field(repr=False)
    password: str | None = field(repr=False)
    connect_timeout: int = 5

    def with_dbname(self, dbname: str) -> PgTarget:
        """Return the same server and role, another database (for scratch databases)."""
        params = conninfo_to_dict(self.conninfo)
        params["dbname"] = dbname
        host = self.host.rsplit("/", 1)[0] + "/" + dbname
        return replace(self, dbname=dbname, conninfo=make_conninfo("", **params), host=host)

    @property
    def needs_ssl(self) -> bool:
        """Whether a client tool for this target must be built with SSL support (else it fails or goes plain)."""
        params = conninfo_to_dict(self.conninfo)
        mode = params.get("sslmode")
        return mode != "disable" and (mode in ("require", "verify-ca", "verify-full") or not is_loopback(params))

    def connect(self, *, autocommit: bool = True, purpose: str = "ops") -> psycopg.Connection[Any]:
        """Open a direct (unpooled) connection; raise `ProviderUnavailableError` when it fails."""
        try:
            return psycopg.connect(
                self.conninfo,
                password=self.password,
                autocommit=autocommit,
                connect_timeout=self.connect_timeout,
                application_name=f"agent-factory {purpose}"[:63],
            )
        except psycopg.Error as exc:
            raise ProviderUnavailableError(self.provider, describe(exc, self.password)) from None


def target_for(db: DatabaseManager, provider: str, operation: str = "a backup or restore") -> PgTarget:
    """Return the `PgTarget` of a configured provider (its direct URL when set) for `operation`.

    Raises `ConfigError` for an unknown name and `DirectUrlRequiredError` when
    the provider's URL is a transaction pooler and no direct URL is set.
    """
    return target_for_url(db, provider, db.config.provider(provider).session_url_for(operation))


def target_for_url(db: DatabaseManager, provider: str, url: str) -> PgTarget:
    """Return the `PgTarget` of `url` (one of `provider`'s URLs) with the configured timeouts and keepalives."""
    params = conninfo_to_dict(url)
    password = params.pop("password", None)
    params.setdefault("application_name", "agent-factory")
    params.setdefault("connect_timeout", str(db.config.connect_timeout))
    for key, value in dead_peer_params(db.config.dead_peer_timeout).items():
        params.setdefault(key, str(value))
    dbname = params.get("dbname") or params.get("user") or "postgres"
    return PgTarget(provider, describe_url(url), str(dbname), make_conninfo("", **params),
                    None if password is None else str(password), db.config.connect_timeout)
