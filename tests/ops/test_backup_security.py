"""Backups and manifests as hostile input (issue 13): signatures, plain-script meta-commands, forged manifests.

Real pg_dump, psql and pg_restore on the local providers, real HMAC signatures, real files.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest

from agent_factory.cli import main
from agent_factory.cli.local import signing_key_values
from agent_factory.config import load_config
from agent_factory.core import DatabaseManager
from agent_factory.errors import BackupError, BackupVerificationError, ConfigError, UnsignedBackupError
from agent_factory.local.binaries import find_installs
from agent_factory.ops import pgtools
from agent_factory.ops.backup import backup
from agent_factory.ops.catalog import list_backups, verify_backup
from agent_factory.ops.manifest import SigningKeys, key_id_of, manifest_path, sha256_of
from agent_factory.ops.plainsql import guard_lines, restrict_prefix, supports_restrict
from agent_factory.ops.prune import prune_backups
from agent_factory.ops.restore import restore
from agent_factory.ops.tools import Tool, run_tool
from agent_factory.state.backups import BackupCatalog, newest_good_backup
from agent_factory.state.store import StateStore, utcnow
from status_app import model
from status_app.data import PageSettings, load_snapshot

from ..conftest import SIGNING_KEY
from .signing import KEYS, resign, write_signed_manifest
from .test_backup import seed

OTHER_KEY = "another-signing-key-" + "x" * 20


def tamper(made: Path, into: Path, insert: bytes, *, before: bytes = b"SET ", sign: bool = False) -> Path:
    """Copy a backup, insert `insert` before the first `before`, and re-hash (and optionally re-sign) its manifest."""
    copy = into / f"COPY-{made.name}"
    data = made.read_bytes()
    at = data.index(before)
    copy.write_bytes(data[:at] + insert + data[at:])
    raw = json.loads(manifest_path(made).read_text())
    raw.update(sha256=sha256_of(copy), size_bytes=copy.stat().st_size)
    manifest_path(copy).write_text(json.dumps(raw))
    if sign:
        resign(copy)
    return copy


def one_line(capsys: pytest.CaptureFixture[str]) -> str:
    captured = capsys.readouterr()
    lines = [ln for ln in (captured.out + captured.err).splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in lines[0], lines
    return lines[0]


# ---- the reproduction ---------------------------------------------------------------------------------


def test_tampered_plain_archive_runs_nothing_at_verify_or_restore(cli_env: dict[str, str], tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["backup", "--provider", "railway", "--format", "plain"]) == 0
    [made] = sorted((tmp_path / "backups").glob("*.sql"))
    marker = tmp_path / "PWNED"
    evil = f"\\! touch {marker}\n".encode()
    capsys.readouterr()

    rehashed = tamper(made, tmp_path, evil)  # the review's attack: archive edited, manifest re-hashed
    assert main(["backups", "verify", str(rehashed), "--deep"]) == 1
    assert "signature does not match" in one_line(capsys)
    assert main(["restore", "--backup", str(rehashed), "--yes"]) == 1
    assert "refusing to restore" in one_line(capsys)

    resigned = tamper(made, tmp_path / "backups", evil, sign=True)  # even by someone holding the key
    assert main(["backups", "verify", str(resigned), "--deep"]) == 1
    assert "line 1" not in (line := one_line(capsys)) and "psql meta-command \\!" in line
    assert main(["restore", "--backup", str(resigned), "--yes"]) == 1
    assert "psql meta-command \\!" in one_line(capsys)
    assert not marker.exists()


def test_meta_command_hidden_after_copy_data_or_mid_line_is_refused(db: DatabaseManager, tmp_path: Path) -> None:
    seed(db, "railway", atoms=5, sessions=3)
    [made] = backup(db, "railway", fmt="plain", backup_dir=tmp_path / "b")
    marker = tmp_path / "MARKER"
    for n, (insert, before) in enumerate([
        (f"\n\\! touch {marker}".encode(), b"\n--\n-- PostgreSQL database dump complete"),  # after all COPY data
        (f"SELECT 1; \\! touch {marker}\n".encode(), b"SET "),  # after a statement on the same line
        (f"SELECT 'x\\' ' \\! touch {marker} ';\n".encode(), b"SET "),  # quote games (standard_conforming_strings)
    ]):
        (tmp_path / f"t{n}").mkdir()
        bad = tamper(made.path, tmp_path / f"t{n}", insert, before=before, sign=True)
        with pytest.raises(BackupVerificationError, match="refusing to replay it with psql"):
            verify_backup(db, bad, deep=True)
        with pytest.raises(BackupVerificationError, match="refusing"):
            restore(db, "railway", bad, yes=True, backup_dir=tmp_path / "b")
    assert not marker.exists()


def _script(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode())
    return path


def test_psql_reads_what_the_lexer_accepts_as_inert_and_never_starts_on_what_it_refuses(
        db: DatabaseManager, tmp_path: Path) -> None:
    """Differential check against the real psql: accepted scripts run no command; refused ones commit nothing."""
    target = pgtools.target_for(db, "railway")
    marker = tmp_path / "M"
    inert = [
        f"SELECT 1; -- \\! touch {marker}\n",
        f"/* /* \\! touch {marker} */ \\! touch {marker} */ SELECT 2;\n",
        f"SELECT $_$ \\! touch {marker} $_$;\n",
        f"SELECT E'\\\\! touch {marker}';\n",
        "SELECT \"a\\\" FROM (SELECT 1 AS \"a\\\") s;\n",
        f"CREATE TEMP TABLE t (x text);\nCOPY t (x) FROM stdin;\n\\\\! touch {marker}\n\\! touch {marker}\n\\.\n",
        "\\restrict abcDEF123\nSELECT 3;\n\\unrestrict abcDEF123\n",
    ]
    tools = every_psql()
    for tool in tools:  # with \restrict (psql 15.14+) and without it (pgserver's 16.2)
        for n, text in enumerate(inert):
            pgtools.apply_archive(tool, _script(tmp_path, f"ok{n}.sql", text), "plain", target, clean=False)
    assert not marker.exists()

    refused = [
        f"\\! touch {marker}\n",
        f"SELECT 1;\n\\o |touch {marker}\nSELECT 2;\n",
        "SELECT\n  1 \\gexec\n",
        f"COPY t (x) FROM stdin; \\! touch {marker}\n",
        f"SELECT 'a\\' ' \\! touch {marker} ';\n",
        f"\\restrict abc; \\! touch {marker}\n",
    ]
    for n, text in enumerate(refused):
        script = _script(tmp_path, f"bad{n}.sql", f"CREATE TABLE af_probe_{n} (x int);\n" + text)
        with pytest.raises(BackupVerificationError, match="refusing to replay"):
            pgtools.apply_archive(tools[n % len(tools)], script, "plain", target, clean=False)
        with target.connect() as conn:  # psql was killed before its input ended: nothing committed
            assert conn.execute("SELECT to_regclass(%s)", (f"af_probe_{n}",)).fetchone() == (None,)
    assert not marker.exists()


def every_psql() -> list[Tool]:
    """Every psql installed (pgserver's, the OS's), with its full version."""
    tools = []
    for install in find_installs():
        path = install.tool("psql")
        if path is not None:
            out = subprocess.run([str(path), "--version"], capture_output=True, text=True, timeout=30).stdout
            match = re.search(r"\(PostgreSQL\) (\d+)\.(\d+)", out)
            assert match, out
            tools.append(Tool("psql", path, int(match.group(1)), f"{match.group(1)}.{match.group(2)}"))
    return tools


def test_lexer_units() -> None:
    def lex(text: str) -> list[bytes]:
        return list(guard_lines([ln.encode() for ln in text.splitlines(True)], "x.sql"))

    assert lex("\\restrict k1\nSELECT 1;\n")[0].startswith(b"-- \\restrict (pg_dump's key removed")
    with pytest.raises(BackupVerificationError, match=r"x.sql line 3: COPY data without its ending"):
        lex("COPY t (a) FROM stdin;\n1\n2\n")
    with pytest.raises(BackupVerificationError, match="line 2: psql meta-command \\\\i"):
        lex("SELECT 1\n\\i /etc/passwd\n;")
    assert (supports_restrict("15.14"), supports_restrict("15.13"), supports_restrict("16.2"),
            supports_restrict("17.6"), supports_restrict("18.1")) == (True, False, False, True, True)


# ---- signatures -----------------------------------------------------------------------------------------------


def test_manifests_are_signed_and_the_key_is_never_written(db: DatabaseManager, tmp_path: Path,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    [made] = backup(db, "neon", backup_dir=tmp_path / "b")
    raw = json.loads(manifest_path(made.path).read_text())
    assert raw["key_id"] == key_id_of(SIGNING_KEY.encode()) and len(raw["signature"]) == 64
    assert len(raw["archive_hmac"]) == 64
    verify_backup(db, made.path)
    for blob in [*(p.read_bytes() for p in (tmp_path / "b").iterdir()),
                 (Path(db.config.state_dir) / "state.db").read_bytes(), caplog.text.encode(),
                 repr(db.config).encode(), repr(SigningKeys.from_config(db.config)).encode()]:
        assert SIGNING_KEY.encode() not in blob


def test_no_key_refuses_to_back_up_and_a_short_key_is_a_config_error(
        make_db, env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    db = make_db(BACKUP_SIGNING_KEY="")
    with pytest.raises(ConfigError, match="BACKUP_SIGNING_KEY is not set"):
        backup(db, "neon", backup_dir=tmp_path / "b", check=True)
    assert not (tmp_path / "b").exists()
    with pytest.raises(ConfigError, match="BACKUP_SIGNING_KEY is too short") as caught:
        load_config(env={**env, "BACKUP_SIGNING_KEY": "short-secret-value"}, env_file=None)
    assert "short-secret-value" not in str(caught.value)
    for key, value in {**env, "BACKUP_SIGNING_KEY": ""}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(tmp_path)
    assert main(["backup"]) == 2
    assert "BACKUP_SIGNING_KEY" in one_line(capsys)


def test_wrong_key_is_refused_and_a_rotation_re_signs(db: DatabaseManager, make_db, tmp_path: Path) -> None:
    [made] = backup(db, "neon", backup_dir=tmp_path / "b")
    other = make_db(BACKUP_SIGNING_KEY=OTHER_KEY)
    with pytest.raises(BackupVerificationError, match="key that is not configured here"):
        verify_backup(other, made.path)
    with pytest.raises(BackupVerificationError, match="key that is not configured here"):
        restore(other, "neon", made.path, check=True)
    rotating = make_db(BACKUP_SIGNING_KEY=OTHER_KEY, BACKUP_SIGNING_KEY_PREVIOUS=SIGNING_KEY)
    verify_backup(rotating, made.path)
    assert json.loads(manifest_path(made.path).read_text())["key_id"] == key_id_of(OTHER_KEY.encode())
    verify_backup(other, made.path)  # re-signed with the new key: the old one can go


def test_unsigned_backup_needs_allow_unsigned_and_a_deep_verify_before_restore(
        db: DatabaseManager, tmp_path: Path) -> None:
    seed(db, atoms=20, sessions=2)
    [made] = backup(db, "neon", backup_dir=tmp_path / "b")
    mpath = manifest_path(made.path)
    raw = json.loads(mpath.read_text())
    for name in ("signature", "key_id", "archive_hmac"):
        raw.pop(name)  # as written before backups were signed
    mpath.write_text(json.dumps(raw))
    other_state = StateStore(tmp_path / "other-state")
    [entry] = list_backups(other_state, backup_dir=tmp_path / "b", keys=KEYS)
    assert entry.state == "unsigned" and entry.record.verified_at is None  # its claim of "quick" is not taken

    with pytest.raises(UnsignedBackupError, match="is unsigned"):
        verify_backup(db, made.path)
    with pytest.raises(UnsignedBackupError, match="is unsigned"):
        restore(db, "neon", made.path, yes=True, backup_dir=tmp_path / "b")
    verify_backup(db, made.path, allow_unsigned=True)
    with pytest.raises(UnsignedBackupError, match="has not passed a deep verification"):
        restore(db, "neon", made.path, yes=True, backup_dir=tmp_path / "b", allow_unsigned=True)
    verify_backup(db, made.path, deep=True, allow_unsigned=True)
    assert json.loads(mpath.read_text()) == raw  # never signed after the fact
    result = restore(db, "neon", made.path, yes=True, backup_dir=tmp_path / "pre", allow_unsigned=True)
    assert result.status == "ok"
    catalog = BackupCatalog(StateStore(db.config.state_dir))
    assert newest_good_backup(catalog.entries("neon")) is None or \
        newest_good_backup(catalog.entries("neon")).path != str(made.path.absolute())  # type: ignore[union-attr]


def test_local_up_generates_a_key_only_when_none_is_set(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BACKUP_SIGNING_KEY", raising=False)
    env_file = tmp_path / ".env"
    generated = signing_key_values(env_file)["BACKUP_SIGNING_KEY"]
    assert len(generated) == 64 and generated != signing_key_values(env_file)["BACKUP_SIGNING_KEY"]
    env_file.write_text(f"BACKUP_SIGNING_KEY={SIGNING_KEY}\n")
    assert signing_key_values(env_file) == {}


# ---- forged manifests -----------------------------------------------------------------------------------------


def test_forged_manifests_are_untrusted_and_never_steer_prune_or_the_page(db: DatabaseManager, tmp_path: Path) -> None:
    directory, outside = tmp_path / "b", tmp_path / "outside"
    outside.mkdir()
    [old_real] = backup(db, "neon", backup_dir=outside)  # catalogued, verified, outside the directory
    [real] = backup(db, "neon", backup_dir=directory)
    now = utcnow()

    def fake(name: str) -> Path:
        path = directory / name
        path.write_bytes(os.urandom(1000))
        return path

    claimed = fake("neon-2099-01-01T000000Z.dump")  # unsigned, claims a deep verification, newest by name
    manifest_path(claimed).write_text(json.dumps({
        "provider": "neon", "host": "h", "database": "d", "format": "custom", "file": claimed.name,
        "size_bytes": 1000, "sha256": sha256_of(claimed), "server_version": "16.2", "server_version_num": 160002,
        "pg_dump_version": "16.2", "started_at": (now + timedelta(minutes=1)).isoformat(),
        "finished_at": (now + timedelta(minutes=1)).isoformat(), "duration_s": 1.0, "row_counts": {},
        "verified_at": now.isoformat(), "verify_depth": "deep"}))
    wrong_key = fake("neon-wrong-key.dump")
    write_signed_manifest(wrong_key, "neon", now, key=OTHER_KEY.encode(), verified_at=now.isoformat(),
                          verify_depth="deep")
    future = fake("neon-future.dump")
    write_signed_manifest(future, "neon", now + timedelta(hours=2), verified_at=now.isoformat(), verify_depth="deep")
    victim = outside / "victim.dump"
    victim.write_bytes(b"precious")
    (directory / "neon-link.dump").symlink_to(victim)
    write_signed_manifest(victim, "neon", now - timedelta(days=9))
    shutil.copy(manifest_path(victim), manifest_path(directory / "neon-link.dump"))

    state = StateStore(db.config.state_dir)
    states = {Path(e.record.path).name: (e.state, e.problem or "")
              for e in list_backups(state, backup_dir=directory, keys=KEYS)}
    assert states[claimed.name][0] == "unsigned"
    assert states[wrong_key.name][0] == "invalid" and "key that is not configured" in states[wrong_key.name][1]
    assert states[future.name][0] == "invalid" and "in the future" in states[future.name][1]
    assert states["neon-link.dump"][0] == "invalid" and "symbolic link" in states["neon-link.dump"][1]
    assert states[real.path.name][0] == "verified"

    for forged in (claimed, wrong_key, future):
        with pytest.raises(BackupVerificationError):
            verify_backup(db, forged, deep=True)

    plan = prune_backups(state, keep=1, backup_dir=directory, check=True, keys=KEYS)
    assert plan.deleted == [] and real.path in plan.kept
    assert any(old_real.path.name in u and "outside the backup directory" in u for u in plan.untouched)
    done = prune_backups(state, keep=0, max_age_days=0, backup_dir=directory, keys=KEYS)
    assert done.deleted == [] and real.path.exists() and old_real.path.exists() and victim.read_bytes() == b"precious"

    snap = load_snapshot(db.config.state_dir, utcnow())
    [rpo] = [r for r in model.rpos(snap, PageSettings(state_dir=Path(db.config.state_dir)), utcnow())
             if r.provider == "neon"]
    assert rpo.backup is not None and rpo.backup.path == real.path.name
    assert rpo.age is not None and rpo.age.total_seconds() >= 0
    table = model.backup_table(snap.backups)
    shown = dict(zip(table["file"], table["verified"], strict=True))
    assert shown[claimed.name] == "unsigned, no" and shown[real.path.name] == "yes (quick)"
    assert not {wrong_key.name, future.name, "neon-link.dump"} & set(shown)


# ---- hostile manifests: one line, the right exit code, the other entries still listed ----------------------------


@pytest.mark.parametrize("content, field", [
    ('{"started_at": "not-a-time"}', "started_at"),
    ("[1, 2, 3]", "JSON list"),
    ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
    ('{"a": ' * 40 + "1" + "}" * 40, "nested too deeply"),
    ('{"size_bytes": "8039646"}', "size_bytes"),
])
def test_hostile_manifests_give_one_line_and_keep_list_and_prune_working(
        cli_env: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, field: str) -> None:
    assert main(["backup"]) == 0
    [good] = sorted((tmp_path / "backups").glob("*.dump"))
    bad = tmp_path / "backups" / "neon-2026-01-01T000000Z.dump"
    shutil.copy(good, bad)
    raw = json.loads(manifest_path(good).read_text())
    raw["file"] = bad.name
    if content.startswith("{") and field in ("started_at", "size_bytes"):
        raw.update(json.loads(content))
        manifest_path(bad).write_text(json.dumps(raw))
    else:
        manifest_path(bad).write_text(content)
    capsys.readouterr()

    assert main(["backups", "verify", str(bad)]) == 1
    line = one_line(capsys)
    assert bad.name in line and field in line
    assert main(["backups", "list"]) == 0
    out = capsys.readouterr().out
    assert "invalid" in out and bad.name in out and "verified" in out
    assert main(["backups", "prune", "--keep", "1", "--dry-run"]) == 0
    assert "would delete 0 backup(s)" in capsys.readouterr().out
    with psycopg.connect(cli_env["NEON_DB_URL"]) as conn:  # still a working system
        conn.execute("SELECT 1")


def test_restricted_psql_refuses_meta_commands_on_its_own(db: DatabaseManager, tmp_path: Path) -> None:
    """The second lock: a psql that knows \\restrict, fed our random-key prefix, runs no meta-command itself."""
    tools = [t for t in every_psql() if supports_restrict(t.version)]
    if not tools:
        pytest.skip("no psql with \\restrict (15.14, 16.10, 17.6 or later) installed")
    target = pgtools.target_for(db, "railway")
    marker = tmp_path / "M"
    script = [restrict_prefix(), f"\\! touch {marker}\n".encode(), b"\\unrestrict guessed\n",
              f"\\! touch {marker}\n".encode()]
    with pytest.raises(BackupError, match="backslash commands are restricted"):
        run_tool(tools[0], ["-X", "-q", "-v", "ON_ERROR_STOP=1", f"--dbname={target.conninfo}", "-f", "-"], target,
                 stdin=script)
    assert not marker.exists()


@pytest.mark.parametrize("fmt", ["plain", "custom"])
def test_what_is_loaded_is_the_copy_that_was_checked(db: DatabaseManager, tmp_path: Path, fmt: str) -> None:
    """A backup rewritten in place after its checks (during the pre-restore backup) changes nothing."""
    seed(db, "railway", atoms=30, sessions=4)
    [made] = backup(db, "railway", fmt=fmt, backup_dir=tmp_path / "b")
    original = made.path.read_bytes()
    extra = b"CREATE TABLE public.af_swapped_in (x int);\n" if fmt == "plain" else b""
    swapped = []

    def swap(message: str) -> None:
        if not swapped and ("pre-restore" in message or "scratch database" in message):
            with open(made.path, "r+b") as fh:  # same inode: what an owner of the file could do
                fh.write(extra + original[: len(original) // 2][len(extra):])
                fh.truncate()
            swapped.append(message)

    result = verify_backup(db, made.path, deep=True, progress=swap)
    assert swapped and result.row_counts["public.knowledge_atoms"] == 30
    made.path.write_bytes(original)
    swapped.clear()
    done = restore(db, "railway", made.path, yes=True, backup_dir=tmp_path / "pre", progress=swap)
    assert swapped and done.status == "ok" and done.row_counts_after["public.knowledge_atoms"] == 30
    with db.provider_connection("railway") as conn:
        assert conn.execute("SELECT to_regclass('public.af_swapped_in')").fetchone() == (None,)
    assert not list(Path(db.config.state_dir).glob(".checked-backup-*"))  # the private copies are gone


def test_a_custom_archive_rendered_to_a_script_runs_no_meta_command(db: DatabaseManager, tmp_path: Path) -> None:
    """Into a provider without pgvector, a custom archive is rendered by pg_restore and loaded by psql.

    A meta-command planted in the archive's table of contents (by a key holder, or
    by a hostile server that was dumped) reaches that script: the same guard as for
    plain archives refuses it, and nothing runs.
    """
    name = "q" * 28
    with db.provider_connection("neon") as conn:
        conn.execute(f"CREATE TABLE {name} (a integer)")
        conn.commit()
    try:
        [made] = backup(db, "neon", fmt="custom", backup_dir=tmp_path)
    finally:
        with db.provider_connection("neon") as conn:
            conn.execute(f"DROP TABLE {name}")
            conn.commit()
    marker_dir = Path(tempfile.mkdtemp(prefix="m", dir="/tmp"))
    marker = marker_dir / "x"
    old = f"CREATE TABLE public.{name}".encode()
    planted = f"\\! touch {marker}".encode().ljust(len(old) - 1) + b"\n"  # same length: the archive stays valid
    data = made.path.read_bytes()
    assert data.count(old) == 1 and len(planted) == len(old)
    made.path.write_bytes(data.replace(old, planted))
    resign(made.path)
    try:
        with pytest.raises(BackupError, match=r"rolled back.*psql meta-command \\!"):
            restore(db, "supabase", made.path, yes=True, backup_dir=tmp_path)
        assert not marker.exists()
    finally:
        shutil.rmtree(marker_dir, ignore_errors=True)
