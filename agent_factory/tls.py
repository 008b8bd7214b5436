"""TLS defaults for provider connection strings: encrypted unless the server is on this machine.

Rules, applied by `secure_conninfo` to every provider URL (and direct URL):

- A URL that sets `sslmode` keeps it. When that mode is `verify-ca` or
  `verify-full` and the URL names no `sslrootcert`, the configured CA file is added.
- Otherwise, a connection to any host that is not loopback (127.0.0.0/8, ::1,
  `localhost`, a unix socket) gets `sslmode=require` (encrypted, no downgrade
  to plain text), or `sslmode=verify-full` plus `sslrootcert` when a CA file is
  configured (or the URL names an `sslrootcert` itself).
- Loopback-only connection strings are returned unchanged.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping

from psycopg.conninfo import conninfo_to_dict, make_conninfo

SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
_VERIFYING = ("verify-ca", "verify-full")


def is_loopback_host(host: str) -> bool:
    """Return whether one libpq host (name, address or socket directory) is on this machine."""
    host = host.strip()
    if not host or host.startswith(("/", "@")):
        return True  # the default or a named unix socket directory, or an abstract socket
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return bool(address.is_loopback or (mapped is not None and mapped.is_loopback))


def is_loopback(params: Mapping[str, object]) -> bool:
    """Return whether every host of parsed conninfo `params` is on this machine.

    Where `hostaddr` is given it is what libpq connects to, so it decides.
    """
    hosts = str(params.get("host") or "").split(",")
    addrs = str(params.get("hostaddr") or "").split(",")
    for index, host in enumerate(hosts):
        addr = addrs[index] if index < len(addrs) and addrs[index].strip() else host
        if not is_loopback_host(addr):
            return False
    return True


def secure_conninfo(url: str, ca_file: str | None = None) -> str:
    """Return `url` with the TLS defaults above applied (a conninfo string when anything was added).

    `ca_file` is the path of a CA certificate (or libpq's `system`) to verify
    servers with. Raises `ValueError` for a URL libpq cannot parse or an unknown `sslmode`.
    """
    params = conninfo_to_dict(url)
    mode = params.get("sslmode")
    if mode is not None and mode not in SSL_MODES:
        raise ValueError(f"sslmode={mode!r} is not one of {', '.join(SSL_MODES)}")
    if is_loopback(params):
        return url
    extra: dict[str, str] = {}
    if mode is None:
        if ca_file and not params.get("sslrootcert"):
            extra["sslrootcert"] = ca_file
        extra["sslmode"] = "verify-full" if ca_file or params.get("sslrootcert") else "require"
    elif mode in _VERIFYING and ca_file and not params.get("sslrootcert"):
        extra["sslrootcert"] = ca_file
    return make_conninfo(url, **extra) if extra else url
