"""`agent_factory.memory.ids`: a batch of new message row ids is the row ids of a batch of message ids."""

from __future__ import annotations

from agent_factory.memory.ids import message_row_id, order_key, session_mask, uuid7_batch


def test_a_masked_batch_is_the_row_ids_of_an_ordinary_batch():
    row_ids = uuid7_batch(12, session_mask("session-1"))
    message_ids = [message_row_id("session-1", row_id) for row_id in row_ids]  # its own inverse
    assert all(m.version == 7 and m.variant == row_ids[0].variant for m in message_ids)
    assert len({order_key(m) for m in message_ids}) == 1  # one (time, counter) key, as a batch has
    assert [m.int - message_ids[0].int for m in message_ids] == list(range(12))  # counting up in the low bits
    assert row_ids == sorted(row_ids)
    other = [message_row_id("session-2", m) for m in message_ids]
    assert other != row_ids and other == sorted(other)  # the same messages in another session: other rows
