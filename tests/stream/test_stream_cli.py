"""`agent-factory stream`: one line per stream, exit codes, --json, bad input, and no secret anywhere."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent_factory.cli import main
from agent_factory.core import DatabaseManager
from agent_factory.errors import StreamPoolerUrlError, StreamPrivilegeError
from agent_factory.local import LocalProviders
from agent_factory.ops.stream import drop_streams, setup_streams


@pytest.fixture
def cli_env(db: DatabaseManager, env: dict[str, str], tmp_path: Path,
            monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """The local providers in the process environment (no .env file); streams dropped afterwards."""
    monkeypatch.chdir(tmp_path)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    yield env
    drop_streams(db)


@pytest.fixture
def secrets(local: LocalProviders) -> list[str]:
    """Every password of the local providers: the application's and the superuser's."""
    return [value for name in local.providers() for value in
            (local.password(name), (local.base_dir / name / "admin_password").read_text().strip())]


def no_secret(text: str, secrets: list[str]) -> None:
    for secret in secrets:
        assert secret not in text


def test_setup_status_pause_resume_drop(cli_env: dict[str, str], secrets: list[str],
                                        capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    seen: list[str] = []

    def run(*argv: str) -> tuple[int, str]:
        code = main(list(argv))
        out, err = capsys.readouterr()
        seen.append(out + err)
        return code, out

    code, out = run("stream", "setup", "-v")
    assert code == 0 and len(out.splitlines()) == 2 and all(" streaming " in line for line in out.splitlines())
    code, out = run("stream", "status", "--json")
    assert code == 0
    assert [(s["subscriber"], s["status"]) for s in json.loads(out)["result"]["streams"]] == [
        ("supabase", "streaming"), ("railway", "streaming")]
    code, out = run("stream", "pause", "--provider", "railway")
    assert code == 0 and "railway  paused" in out
    assert run("stream", "status")[0] == 0  # paused on purpose is not a failure
    code, out = run("stream", "resume", "--provider", "railway")
    assert code == 0 and "railway  streaming" in out
    code, out = run("stream", "drop", "--json")
    assert code == 0 and {s["status"] for s in json.loads(out)["result"]["streams"]} == {"absent"}
    no_secret("".join(seen) + caplog.text, secrets)


def test_the_primary_named_as_a_subscriber_is_a_usage_error(cli_env: dict[str, str],
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["stream", "setup", "--provider", "neon"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "neon is the primary" in err


def test_a_stopped_stream_fails_status(cli_env: dict[str, str], db: DatabaseManager, local: LocalProviders,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    setup_streams(db, subscribers=["supabase"])
    local.kill("neon")
    assert main(["stream", "status", "--provider", "supabase"]) == 1
    out = capsys.readouterr().out
    assert "supabase  stopped" in out and "neon is unreachable" in out


def test_a_pooler_url_gets_one_clear_line(cli_env: dict[str, str], secrets: list[str],
                                          make_db, capsys: pytest.CaptureFixture[str],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(StreamPoolerUrlError, match="NEON_DIRECT_URL"):
        setup_streams(make_db(NEON_POOLER="transaction"))
    monkeypatch.setenv("NEON_POOLER", "transaction")
    assert main(["stream", "setup"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "transaction pooler" in err and "NEON_DIRECT_URL" in err
    no_secret(err, secrets)


def test_a_subscriber_without_the_right_to_subscribe_gets_one_clear_line(
        cli_env: dict[str, str], secrets: list[str], make_db, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Without SUPABASE_ADMIN_URL the application role (not a superuser) would create the subscription: PostgreSQL 15
    # refuses, and so does 16 for a role outside pg_create_subscription.
    with pytest.raises(StreamPrivilegeError, match="SUPABASE_ADMIN_URL"):
        setup_streams(make_db(SUPABASE_ADMIN_URL=""), subscribers=["supabase"])
    monkeypatch.setenv("RAILWAY_ADMIN_URL", "")
    assert main(["stream", "setup", "--provider", "railway"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "may not create a subscription" in err
    no_secret(err, secrets)


def test_a_publisher_role_without_replication_gets_one_clear_line(
        cli_env: dict[str, str], db: DatabaseManager, local: LocalProviders, secrets: list[str],
        capsys: pytest.CaptureFixture[str]) -> None:
    import psycopg

    with psycopg.connect(local.app_admin_url("neon"), autocommit=True) as conn:
        conn.execute("ALTER ROLE agent NOREPLICATION")
    try:
        assert main(["stream", "setup"]) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "lacks the REPLICATION attribute" in err
        no_secret(err, secrets)
    finally:
        with psycopg.connect(local.app_admin_url("neon"), autocommit=True) as conn:
            conn.execute("ALTER ROLE agent REPLICATION")


def test_no_password_in_any_process_title(cli_env: dict[str, str], db: DatabaseManager, secrets: list[str]) -> None:
    setup_streams(db)
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                no_secret((proc / "cmdline").read_bytes().decode(errors="replace"), secrets)
            except OSError:
                continue


def test_a_provider_that_cannot_subscribe_is_unsupported(cli_env: dict[str, str], make_db,
                                                         capsys: pytest.CaptureFixture[str],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    states = setup_streams(make_db(RAILWAY_STREAM="false"), subscribers=["railway"])
    assert [(s.status, s.detail) for s in states] == [
        ("unsupported", "RAILWAY_STREAM=false: follows neon with `agent-factory sync --follow`")]
    monkeypatch.setenv("RAILWAY_STREAM", "false")
    assert main(["stream", "status", "--provider", "railway"]) == 1
    assert "railway  unsupported" in capsys.readouterr().out
