"""A provider's credentials, read again from the configuration when the server refuses them.

A password rotated by `agent-factory credentials rotate` (or in a provider's
console, then written to `.env`) makes every *new* connection of a running
process fail with `28P01` (invalid_password) or `28000`
(invalid_authorization_specification); connections already open keep working.
Such a failure is not an outage: it is never classified as one, never marks a
provider down and never causes a failover. Instead the next new connection
re-reads the configuration once (`config.reload_provider`) and retries with
the new URL; if the server still refuses it, `AuthenticationFailedError`
names the provider and the variable to fix.

libpq reports a refused login before any SQLSTATE reaches the client, so
`sqlstate.is_auth_failure` also recognises the server's message.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import psycopg

from ..config import Config, ProviderConfig, reload_provider
from ..errors import AuthenticationFailedError, ConfigError
from .sqlstate import is_auth_failure

logger = logging.getLogger(__name__)
C = TypeVar("C")

class Credentials:
    """The URL a provider connects with now; thread-safe.

    `connect(factory)` opens a new connection through `factory(url)`; on an
    authentication failure it re-reads the configuration once and retries.
    """

    def __init__(self, provider: ProviderConfig, config: Config) -> None:
        self.name = provider.name
        self.variable = provider.url_variable
        self._config = config
        self._url = provider.url
        self._password = provider.password
        self._lock = threading.Lock()
        self.generation = 0  # bumped each time a reload brought a different URL

    def __repr__(self) -> str:
        return f"Credentials(provider={self.name!r}, variable={self.variable!r}, generation={self.generation})"

    @property
    def url(self) -> str:
        """The URL in use now (it holds the password: never log it)."""
        return self._url

    @property
    def password(self) -> str | None:
        """The password in use now, for callers that must hide it."""
        return self._password

    def reload(self) -> bool:
        """Read this provider's URL again from the configuration's sources; return whether it changed.

        Raises `AuthenticationFailedError` when the provider is no longer
        configured or its variables are now invalid.
        """
        try:
            fresh = reload_provider(self._config, self.name)
        except ConfigError as exc:
            raise AuthenticationFailedError(self.name, self.variable, f"re-reading the configuration failed: {exc}"
                                            ) from None
        if fresh is None:
            raise AuthenticationFailedError(self.name, self.variable, "it is no longer set")
        with self._lock:
            if fresh.url == self._url:
                return False
            self._url, self._password = fresh.url, fresh.password
            self.generation += 1
        logger.warning("provider %s: the server refused the credentials; using the new %s from the configuration",
                       self.name, self.variable)
        return True

    def connect(self, factory: Callable[[str], C]) -> C:
        """Return `factory(url)`; on an authentication failure re-read the configuration once and retry.

        Raises `AuthenticationFailedError` (never a failover) when the server
        refuses the credentials after the re-read, and whatever `factory`
        raises for any other failure.
        """
        generation, url = self.generation, self._url
        try:
            return factory(url)
        except psycopg.Error as exc:
            if not is_auth_failure(exc):
                raise
            first = exc
        # Another thread may have reloaded already; else read the configuration ourselves.
        if self.generation == generation and not self.reload():
            raise AuthenticationFailedError(self.name, self.variable, _reason(first)) from None
        try:
            return factory(self._url)
        except psycopg.Error as exc:
            if not is_auth_failure(exc):
                raise
            raise AuthenticationFailedError(self.name, self.variable, _reason(exc)) from None


def _reason(exc: BaseException) -> str:
    text = str(exc).lower()
    if "no pg_hba.conf entry" in text:
        return "the server has no pg_hba.conf entry for this host and user"
    if "does not exist" in text:
        return "the role does not exist"
    return "password authentication failed"


def connection_class(credentials: Credentials) -> type[psycopg.Connection[Any]]:
    """Return a connection class for `psycopg_pool` whose `connect` goes through `credentials`.

    The pool's own (background) connections then pick up a rotated password too.
    """

    class ProviderConnection(psycopg.Connection[Any]):
        @classmethod
        def connect(cls, conninfo: str = "", **kwargs: Any) -> Any:
            connect = super().connect
            return credentials.connect(lambda url: connect(url, **kwargs))

    ProviderConnection.__name__ = ProviderConnection.__qualname__ = f"ProviderConnection[{credentials.name}]"
    return ProviderConnection
