"""Chat history through a failover: a session created on the backup merges back without overwriting the real one."""

from __future__ import annotations

from langchain_core.messages import AIMessage, HumanMessage

from agent_factory.integrations.langchain import AgentFactoryChatMessageHistory
from agent_factory.memory import PostgresMemoryStorage, Session
from agent_factory.replication import sync_pair
from tests.conftest import STREAMS, wait_for_failovers, wait_until


def test_a_session_the_backup_never_saw_is_created_there_and_merges_back_under_the_real_one(db, local, make_db):
    storage = PostgresMemoryStorage(db)
    session = Session("alice", session_id="support-1", metadata={"channel": "email"},
                      messages=[{"role": "user", "content": "first, on neon"}])
    storage.save_session(session)  # written on neon only: no sync has run
    before = []
    if STREAMS:  # the stream brings it to the backup within seconds: the failover continues the real session
        assert wait_until(lambda: PostgresMemoryStorage(make_db(DATABASE_PROVIDER="supabase",
                                                                DATABASE_FAILOVER_ENABLED="false"))
                          .load_session("support-1") is not None, 30)
        before = [HumanMessage("first, on neon")]

    local.kill("neon")
    history = AgentFactoryChatMessageHistory("support-1", user_id="alice", db=db)
    history.add_messages([HumanMessage("during the failover"), AIMessage("answered by the backup")])
    assert db.active_provider == "supabase"
    assert wait_for_failovers(db, 1)
    assert history.messages == [*before, HumanMessage("during the failover"), AIMessage("answered by the backup")]

    local.start("neon")
    assert sync_pair(db, "supabase", "neon", margin_s=0).ok
    assert sync_pair(db, "neon", "supabase", margin_s=0).ok
    for provider in ("neon", "supabase"):
        with db.provider_connection(provider) as conn:
            metadata, count = conn.execute(
                "SELECT metadata, message_count FROM session_memories WHERE session_id = 'support-1' "
                "AND memory_type = 'session_metadata'").fetchone()
        assert metadata == {"channel": "email"}, provider  # the placeholder lost to the real row
        assert count == 3, provider
    fresh = AgentFactoryChatMessageHistory("support-1", user_id="alice", db=make_db())  # serves from neon
    assert fresh.messages == [HumanMessage("first, on neon"), HumanMessage("during the failover"),
                              AIMessage("answered by the backup")]
