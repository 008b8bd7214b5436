"""TLS by default: sslmode=require for remote hosts, verify-full with a CA file, never plain text after a refusal."""

from __future__ import annotations

import dataclasses
import os
import shutil
import socket
import subprocess
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from agent_factory.config import ProviderConfig, load_config
from agent_factory.core import DatabaseManager
from agent_factory.errors import AgentFactoryError, BackupError, ConfigError, ToolNotFoundError
from agent_factory.local.binaries import PgInstall, supports_ssl
from agent_factory.ops import pgtools
from agent_factory.tls import is_loopback_host

REMOTE = "postgresql://agent:s3cret-pw@db.example.com:5432/app"
SSL_REQUEST = struct.pack("!ii", 8, 80877103)
STARTUP_V3 = struct.pack("!i", 196608)


def params(url: str, ca: str | None = None, **extra: str) -> dict[str, str]:
    env = {"NEON_DB_URL": url, **extra}
    if ca:
        env["DATABASE_SSL_ROOT_CERT"] = ca
    return conninfo_to_dict(load_config(env=env, env_file=None).providers["neon"].url)


@pytest.fixture
def ca_file(tmp_path: Path) -> str:
    path = tmp_path / "root.crt"
    path.write_text("-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n")
    return str(path)


def test_remote_host_without_sslmode_gets_require() -> None:
    p = params(REMOTE)
    assert p["sslmode"] == "require" and "sslrootcert" not in p
    assert (p["host"], p["port"], p["user"], p["password"], p["dbname"]) == (
        "db.example.com", "5432", "agent", "s3cret-pw", "app")


def test_a_ca_file_gives_verify_full(ca_file: str) -> None:
    p = params(REMOTE, ca_file)
    assert p["sslmode"] == "verify-full" and p["sslrootcert"] == ca_file


def test_the_per_provider_ca_file_wins(ca_file: str, tmp_path: Path) -> None:
    other = tmp_path / "neon.crt"
    other.write_text("x")
    p = params(REMOTE, ca_file, NEON_SSL_ROOT_CERT=str(other))
    assert p["sslmode"] == "verify-full" and p["sslrootcert"] == str(other)


def test_system_cas_can_be_named() -> None:
    p = params(REMOTE, "system")
    assert p["sslmode"] == "verify-full" and p["sslrootcert"] == "system"


def test_a_url_that_names_its_own_root_cert_is_verified_in_full() -> None:
    p = params(REMOTE + "?sslrootcert=/etc/ssl/neon.pem")
    assert p["sslmode"] == "verify-full" and p["sslrootcert"] == "/etc/ssl/neon.pem"


@pytest.mark.parametrize("mode", ["disable", "prefer", "require", "verify-ca", "verify-full"])
def test_a_url_that_sets_sslmode_keeps_it(mode: str) -> None:
    assert params(f"{REMOTE}?sslmode={mode}")["sslmode"] == mode


def test_a_verifying_sslmode_gets_the_configured_ca_and_a_weaker_one_does_not(ca_file: str) -> None:
    assert params(f"{REMOTE}?sslmode=verify-ca", ca_file)["sslrootcert"] == ca_file
    assert "sslrootcert" not in params(f"{REMOTE}?sslmode=require", ca_file)


@pytest.mark.parametrize("host", ["127.0.0.1", "127.3.4.5", "[::1]", "localhost", "%2Fvar%2Frun%2Fpostgresql"])
def test_loopback_hosts_keep_what_they_have(host: str, ca_file: str) -> None:
    url = f"postgresql://agent:pw@{host}:5432/app"
    config = load_config(env={"NEON_DB_URL": url, "DATABASE_SSL_ROOT_CERT": ca_file}, env_file=None)
    assert config.providers["neon"].url == url


def test_loopback_detection() -> None:
    assert all(map(is_loopback_host, ["127.0.0.1", "127.255.0.9", "::1", "localhost", "/tmp", "@abstract", ""]))
    assert not any(map(is_loopback_host, ["10.0.0.1", "db.example.com", "128.0.0.1", "::2", "localhost.example"]))


def test_hostaddr_decides_and_one_remote_host_of_several_is_enough() -> None:
    assert params("host=localhost hostaddr=10.0.0.7 user=a password=b")["sslmode"] == "require"
    assert "sslmode" not in params("host=db.example.com hostaddr=127.0.0.1 user=a password=b")
    assert params("postgresql://a:b@localhost:5432,db.example.com:5432/app")["sslmode"] == "require"


def test_supabase_host_form_and_direct_urls_get_the_same_rules(ca_file: str) -> None:
    config = load_config(env={
        "NEON_DB_URL": REMOTE, "NEON_DIRECT_URL": REMOTE.replace("db.", "direct."),
        "SUPABASE_DB_HOST": "db.abc.supabase.co", "SUPABASE_DB_PASSWORD": "pw-xyz",
        "SUPABASE_DIRECT_URL": "postgresql://postgres:pw@db.abc.supabase.co:5432/postgres?sslmode=verify-ca",
    }, env_file=None)
    assert conninfo_to_dict(config.providers["supabase"].url)["sslmode"] == "require"
    neon_direct = conninfo_to_dict(config.providers["neon"].session_url)
    assert neon_direct["host"] == "direct.example.com" and neon_direct["sslmode"] == "require"
    assert conninfo_to_dict(config.providers["supabase"].session_url)["sslmode"] == "verify-ca"


@pytest.mark.parametrize(
    ("env", "names"),
    [
        ({"NEON_DB_URL": REMOTE + "?sslmode=sometimes"}, "NEON_DB_URL"),
        ({"NEON_DB_URL": REMOTE, "DATABASE_SSL_ROOT_CERT": "/nonexistent/ca.pem"}, "DATABASE_SSL_ROOT_CERT"),
        ({"NEON_DB_URL": REMOTE, "NEON_SSL_ROOT_CERT": "/nonexistent/ca.pem"}, "NEON_SSL_ROOT_CERT"),
    ],
)
def test_bad_tls_settings_name_the_variable(env: dict[str, str], names: str) -> None:
    with pytest.raises(ConfigError, match=names) as info:
        load_config(env=env, env_file=None)
    assert "s3cret-pw" not in str(info.value)


# ---- a server that refuses TLS is never used in plain text -------------------------


class RecordingProxy:
    """Forward 127.0.0.1:port to a real server, recording every byte clients send."""

    def __init__(self, target_port: int) -> None:
        self._target = target_port
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        self.sent: list[bytes] = []  # what each client sent, one entry per connection
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._sock.accept()
            except OSError:
                return
            with self._lock:
                index = len(self.sent)
                self.sent.append(b"")
            thread = threading.Thread(target=self._serve, args=(client, index), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, client: socket.socket, index: int) -> None:
        with client, socket.create_connection(("127.0.0.1", self._target)) as server:
            back = threading.Thread(target=self._pipe, args=(server, client, None), daemon=True)
            back.start()
            self._pipe(client, server, index)
            back.join(5)

    def _pipe(self, src: socket.socket, dst: socket.socket, record: int | None) -> None:
        try:
            while data := src.recv(65536):
                if record is not None:
                    with self._lock:
                        self.sent[record] += data
                dst.sendall(data)
        except OSError:
            pass
        finally:
            try:
                dst.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    def settle(self) -> list[bytes]:
        """Wait for the connections made so far to end; return what each client sent."""
        for thread in list(self._threads):
            thread.join(5)
        return list(self.sent)

    def close(self) -> None:
        self._sock.close()
        self.settle()


@pytest.fixture
def proxy(local) -> Iterator[RecordingProxy]:
    recorder = RecordingProxy(local.get("neon").port)
    yield recorder
    recorder.close()


def through_proxy(url: str, proxy: RecordingProxy) -> str:
    """Return the library's conninfo for a remote provider, pointed at the proxy; every other setting kept."""
    config = load_config(env={"NEON_DB_URL": REMOTE}, env_file=None)
    real = conninfo_to_dict(url)
    return make_conninfo(config.providers["neon"].url, host="127.0.0.1", port=proxy.port,
                         user=real["user"], password=real["password"], dbname=real["dbname"])


def test_a_server_without_tls_is_refused_not_used_in_plain_text(env, local, proxy, passwords) -> None:
    conninfo = through_proxy(local.url("neon"), proxy)
    assert conninfo_to_dict(conninfo)["sslmode"] == "require"
    base = load_config(env={**env, "DATABASE_FAILOVER_ORDER": "neon"}, env_file=None)
    config = dataclasses.replace(base, providers={"neon": ProviderConfig("neon", conninfo)})

    with DatabaseManager(config) as db, pytest.raises(AgentFactoryError) as info:
        db.execute_query("SELECT 1")
    assert "SSL" in str(info.value)

    target = dataclasses.replace(pgtools.target_for(db, "neon"), connect_timeout=2)
    with pytest.raises(AgentFactoryError, match="SSL"):
        target.connect()
    texts = [str(info.value)]
    try:
        tool = pgtools.pick_tool("pg_dump", None, ssl=True)
    except ToolNotFoundError as exc:  # a machine with only SSL-less builds: never one of those for a TLS target
        assert "SSL support" in str(exc)
        tries = 2
    else:
        with pytest.raises(BackupError, match="SSL") as dump:
            pgtools.run_tool(tool, [f"--dbname={target.conninfo}", "--schema-only"], target)
        texts.append(str(dump.value))
        tries = 3

    sent_by_clients = proxy.settle()
    assert len(sent_by_clients) >= tries  # the probe, the direct connection and pg_dump each tried
    for sent in sent_by_clients:
        assert sent == SSL_REQUEST  # asked for TLS, was refused, sent nothing else: no startup packet, no password
    for text in texts:
        assert not any(p in text for p in passwords)


def test_the_proxy_does_see_plain_text_when_tls_is_optional(local, proxy) -> None:
    """The check above can fail: with sslmode=prefer the same server is used in plain text, and the proxy sees it."""
    conninfo = make_conninfo(through_proxy(local.url("neon"), proxy), sslmode="prefer")
    target = pgtools.PgTarget("neon", "proxy", "agent_factory", conninfo, None)
    with target.connect() as conn:
        conn.execute("SELECT 1")
    [sent] = proxy.settle()
    assert sent.startswith(SSL_REQUEST)
    assert STARTUP_V3 in sent and b"user\x00" in sent


# ---- verify-full against a real TLS server -------------------------------------------


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def _make_ca(directory: Path, name: str) -> tuple[Path, Path]:
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.crt",
             "-days", "2", "-subj", f"/CN={name}", cwd=directory)
    return directory / f"{name}.crt", directory / f"{name}.key"


@pytest.fixture
def tls_supabase(local, tmp_path: Path) -> Iterator[dict[str, str]]:
    """Turn TLS on in the local supabase server, with a certificate for IP 127.0.0.1 signed by a test CA."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make test certificates")
    provider = local.get("supabase")
    install = PgInstall(provider.major, Path(provider.bindir), "")
    if not supports_ssl(install):
        pytest.skip(f"the PostgreSQL {install.major} build serving supabase has no SSL support")
    ca_crt, ca_key = _make_ca(tmp_path, "test-ca")
    other_ca, _ = _make_ca(tmp_path, "other-ca")
    (tmp_path / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
             "-subj", "/CN=agent-factory-test", cwd=tmp_path)
    _openssl("x509", "-req", "-in", "server.csr", "-CA", str(ca_crt), "-CAkey", str(ca_key), "-CAcreateserial",
             "-out", "server.crt", "-days", "2", "-extfile", "san.ext", cwd=tmp_path)
    data = local.base_dir / "supabase" / "data"
    owner = data.stat()
    for name in ("server.crt", "server.key"):
        target = data / f"test-{name}"
        shutil.copyfile(tmp_path / name, target)
        target.chmod(0o600)
        os.chown(target, owner.st_uid, owner.st_gid)
    admin = local.admin_url("supabase")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute("ALTER SYSTEM SET ssl_cert_file = 'test-server.crt'")
        conn.execute("ALTER SYSTEM SET ssl_key_file = 'test-server.key'")
        conn.execute("ALTER SYSTEM SET ssl = on")
        conn.execute("SELECT pg_reload_conf()")
    try:
        deadline = time.monotonic() + 30
        while True:  # the postmaster applies the reload asynchronously
            try:
                psycopg.connect(admin, sslmode="require", connect_timeout=2).close()
                break
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        real = conninfo_to_dict(local.url("supabase"))
        yield {"major": str(provider.major), "port": real["port"], "user": real["user"],
               "password": real["password"], "dbname": real["dbname"],
               "ca": str(ca_crt), "other_ca": str(other_ca)}
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            for setting in ("ssl", "ssl_cert_file", "ssl_key_file"):
                conn.execute(f"ALTER SYSTEM RESET {setting}")
            conn.execute("SELECT pg_reload_conf()")
        for name in ("server.crt", "server.key"):
            (data / f"test-{name}").unlink(missing_ok=True)


def remote_config(env: dict[str, str], server: dict[str, str], ca: str, host: str = "127.0.0.1"):
    """The library's Config for a remote provider with a CA file, pointed at the local TLS server."""
    remote = load_config(env={"DATABASE_PROVIDER": "supabase", "SUPABASE_DB_URL": REMOTE, "DATABASE_SSL_ROOT_CERT": ca},
                         env_file=None)
    conninfo = make_conninfo(remote.providers["supabase"].url, host=host, port=server["port"], user=server["user"],
                             password=server["password"], dbname=server["dbname"])
    base = load_config(env={**env, "DATABASE_PROVIDER": "supabase", "DATABASE_FAILOVER_ORDER": "supabase"},
                       env_file=None)
    return dataclasses.replace(base, providers={"supabase": ProviderConfig("supabase", conninfo)})


def test_verify_full_with_the_configured_ca_connects_over_tls(env, tls_supabase) -> None:
    config = remote_config(env, tls_supabase, tls_supabase["ca"])
    params = conninfo_to_dict(config.providers["supabase"].url)
    assert params["sslmode"] == "verify-full" and params["sslrootcert"] == tls_supabase["ca"]
    with DatabaseManager(config) as db:
        assert db.execute_query("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()", fetch_mode="one") == (True,)
        target = pgtools.target_for(db, "supabase")
        assert target.needs_ssl
        with target.connect() as conn:
            assert conn.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetchone() == (True,)
        tool = pgtools.pick_tool("pg_dump", int(tls_supabase["major"]), ssl=True)
        out = pgtools.run_tool(tool, [f"--dbname={target.conninfo}", "--schema-only", "--table=settings"], target)
        assert "CREATE TABLE public.settings" in out


@pytest.mark.parametrize("case", ["certificate from another CA", "host name not in the certificate"])
def test_verify_full_refuses_a_server_it_cannot_verify(env, tls_supabase, case: str) -> None:
    if case.startswith("certificate"):
        config, expected = remote_config(env, tls_supabase, tls_supabase["other_ca"]), "certificate verify failed"
    else:
        config, expected = remote_config(env, tls_supabase, tls_supabase["ca"], host="localhost"), "does not match"
    with DatabaseManager(config) as db, pytest.raises(AgentFactoryError, match=expected):
        db.execute_query("SELECT 1")
