"""No password in any exception, log record, repr or state file: searched for the real passwords."""

from __future__ import annotations

import logging

import pytest

from agent_factory.errors import AgentFactoryError
from agent_factory.state import StateStore
from tests.conftest import wait_for_failovers


def test_no_password_in_logs_errors_reprs_or_state(make_db, local, passwords, caplog, capsys):
    caplog.set_level(logging.DEBUG)
    db = make_db()
    texts = [repr(db), repr(db.config), str(db.get_provider_stats())]
    db.execute_query("SELECT 1")
    local.kill("neon")
    db.execute_query("SELECT 1")
    local.kill("supabase")
    local.kill("railway")
    with pytest.raises(AgentFactoryError) as info:
        db.execute_query("SELECT 1")
    texts += [str(info.value), repr(info.value), str(db.get_provider_stats())]
    try:
        db.execute_query("SELECT nonsense FROM nowhere")
    except AgentFactoryError as exc:
        texts.append(str(exc))
    texts += [r.getMessage() for r in caplog.records]
    texts += [str(r.exc_info[1]) for r in caplog.records if r.exc_info]
    out = capsys.readouterr()
    texts += [out.out, out.err]
    assert wait_for_failovers(db, 1), "the failover should have been recorded"
    state = StateStore(db.config.state_dir)
    state_bytes = b"".join(p.read_bytes() for p in state.path.parent.iterdir() if p.is_file())

    assert caplog.records, "expected log records to search"
    for password in passwords:
        assert all(password not in text for text in texts)
        assert password.encode() not in state_bytes
