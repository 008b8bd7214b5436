"""What PostgreSQL would reject is rejected in validation, naming the field, before any SQL: huge integers in
JSON and settings, NaN/Inf settings and ttl, `real` underflow, and search vectors over 1 MiB."""

from __future__ import annotations

import enum
import random
import string
from typing import Any

import psycopg
import pytest

from agent_factory.memory import InvalidInputError, KnowledgeAtom, KnowledgeBase, Message, Session, Settings
from agent_factory.memory.validation import REAL_MIN, TSVECTOR_MAX_BYTES, check_json_object, tsvector_bytes

from .conftest import fingerprint

HUGE = 10**5000


class Big(enum.IntEnum):
    HUGE = 10**5000


@pytest.mark.parametrize(("value", "where"), [
    ({"n": HUGE}, r"metadata\['n'\]"),
    ({"a": [1, {"b": -HUGE}]}, r"metadata\['a'\]\[1\]\['b'\]"),
    ({"e": Big.HUGE}, r"metadata\['e'\]"),
])
def test_integers_json_cannot_write_are_refused_naming_the_path(value: dict[str, Any], where: str) -> None:
    with pytest.raises(InvalidInputError, match=where + " is an integer of about 5000 digits"):
        check_json_object(value, "metadata")
    assert check_json_object({"n": 10**4000, "m": -(10**4000)}, "metadata")


def test_storage_refuses_a_huge_integer_and_writes_nothing(storage: Any) -> None:
    storage.save_session(Session("alice", session_id="s-1"))
    before = fingerprint(storage)
    with pytest.raises(InvalidInputError, match=r"metadata\['n'\]"):
        storage.save_memory_atom("s-1", "alice", "log", {"a": 1}, metadata={"n": HUGE})
    with pytest.raises(InvalidInputError, match=r"content\['n'\]"):
        storage.save_memory_atom("s-1", "alice", "log", {"n": HUGE})
    with pytest.raises(InvalidInputError, match="metadata"):
        storage.append_messages("s-1", [Message("user", "hi", metadata={"n": HUGE})])
    assert fingerprint(storage) == before


@pytest.mark.parametrize(("value", "match"), [
    (HUGE, "value of setting 'k' is an integer of about 5000 digits"),
    (float("nan"), "value of setting 'k' is nan"),
    (float("inf"), "value of setting 'k' is inf"),
    (float("-inf"), "value of setting 'k' is -inf"),
], ids=["huge", "nan", "inf", "-inf"])
def test_settings_refuse_values_that_cannot_be_written_before_any_sql(value: object, match: str) -> None:
    settings = Settings()  # no DatabaseManager: any database use would create one
    with pytest.raises(InvalidInputError, match=match):
        settings.set("k", value)  # type: ignore[arg-type]
    assert settings._db is None


@pytest.mark.parametrize("ttl", [float("nan"), float("inf"), -1, 10**400, 366 * 86400 + 1],
                         ids=["nan", "inf", "negative", "huge", "over-a-year"])
def test_settings_refuse_a_ttl_that_is_not_a_sane_number(ttl: object) -> None:
    with pytest.raises(InvalidInputError, match="ttl must be a number of seconds"):
        Settings(ttl=ttl)  # type: ignore[arg-type]


def test_a_stored_nan_is_not_a_float(db) -> None:
    settings = Settings(db)
    settings.set("ratio", "nan")
    settings.set("big", "1e999")
    with pytest.raises(InvalidInputError, match="'ratio' is 'nan', which is not a finite number"):
        settings.get_float("ratio")
    with pytest.raises(InvalidInputError, match="not a finite number"):
        settings.get_float("big")
    settings.set("ok", 10**4000)
    assert settings.get_int("ok") == 10**4000


def _atom(atom_id: str, **fields: Any) -> KnowledgeAtom:
    values: dict[str, Any] = {"atom_type": "concept", "title": f"Title {atom_id}", "content": "Plain content."}
    values.update(fields)
    return KnowledgeAtom(atom_id, **values)


@pytest.mark.parametrize("score", [1e-50, 5e-324, 1e-39])
def test_a_quality_score_that_underflows_a_real_is_refused_before_any_sql(score: float) -> None:
    kb = KnowledgeBase()
    with pytest.raises(InvalidInputError, match=r"atom.quality_score .* too close to 0 for a PostgreSQL real"):
        kb.upsert(_atom("x", quality_score=score))
    assert kb._db is None


def test_the_smallest_normal_real_and_zero_are_stored(db) -> None:
    kb = KnowledgeBase(db)
    kb.upsert(_atom("tiny", quality_score=REAL_MIN))
    kb.upsert(_atom("zero", quality_score=0))
    assert kb.get("tiny").quality_score == pytest.approx(REAL_MIN)
    assert kb.get("zero").quality_score == 0


def _distinct_words(count: int, seed: int = 7) -> str:
    rng = random.Random(seed)
    return " ".join("".join(rng.choices(string.ascii_lowercase, k=10)) for _ in range(count))


def test_postgres_itself_rejects_what_validation_rejects(db) -> None:
    content = _distinct_words(85_000)
    assert tsvector_bytes(content) > TSVECTOR_MAX_BYTES
    with db.provider_connection(db.active_provider) as conn:
        with pytest.raises(psycopg.errors.ProgramLimitExceeded, match="string is too long for tsvector"):
            conn.execute("SELECT to_tsvector('english', %s)", [content])
        conn.rollback()


def test_content_over_the_tsvector_limit_is_refused_before_any_sql_and_nothing_is_written(db) -> None:
    kb = KnowledgeBase(db)
    before = kb.count()
    for fields in ({"content": _distinct_words(85_000)},
                   {"content": _distinct_words(45_000, 1), "summary": _distinct_words(45_000, 2)}):
        with pytest.raises(InvalidInputError, match=r"atom \(title, summary and content\) has too many distinct"):
            kb.upsert(_atom("long", **fields))
        with pytest.raises(InvalidInputError, match=r"atoms\[1\]"):
            kb.upsert_many([_atom("first"), _atom("long", **fields)])
    assert kb.count() == before and kb.get("first") is None


def _shapes(budget: int, seed: int) -> str:
    """Text of adversarial chunks (compounds, URLs, e-mails, numbers, non-ASCII) estimated just under `budget`."""
    rng = random.Random(seed)
    letters = string.ascii_lowercase + "éø中文"

    def chunk() -> str:
        w = ["".join(rng.choices(letters, k=rng.randint(2, 9))) for _ in range(3)]
        return rng.choice([f"{w[0]}-{w[1]}-{w[2]}", f"https://{w[0]}.{w[1]}/{w[2]}?q={w[0]}", f"{w[0]}@{w[1]}.com",
                           f"{rng.randint(0, 10**9)}.{rng.randint(0, 99)}", f"-{rng.randint(0, 10**6)}",
                           f"{w[0]}_{w[1]}", f"({w[0]}),", f"/{w[0]}/{w[1]}.txt", f"{w[0]}\u3000{w[1]}", w[2]])

    chunks = [chunk() for _ in range(10_000)]
    count = int(len(chunks) * budget / tsvector_bytes(" ".join(chunks)))
    chunks += [chunk() for _ in range(count - len(chunks))]
    while tsvector_bytes(" ".join(chunks[:count])) > budget:
        count = int(count * 0.99)
    return " ".join(chunks[:count])


@pytest.mark.parametrize("seed", [1, 2])
def test_what_validation_accepts_near_the_limit_postgres_stores(db, seed: int) -> None:
    content = _shapes(TSVECTOR_MAX_BYTES, seed)
    assert TSVECTOR_MAX_BYTES * 0.9 < tsvector_bytes(content) <= TSVECTOR_MAX_BYTES
    kb = KnowledgeBase(db)
    kb.upsert(_atom("near", content=content))
    assert kb.get("near").content == content


def test_a_long_document_of_ordinary_words_is_stored(db) -> None:
    rng = random.Random(3)
    vocabulary = [w for w in _distinct_words(20_000).split()]
    content = " ".join(rng.choice(vocabulary) + rng.choice(["", ",", ".", ""]) for _ in range(85_000))
    assert len(content) > 900_000 and tsvector_bytes(content) <= TSVECTOR_MAX_BYTES
    kb = KnowledgeBase(db)
    kb.upsert(_atom("book", content=content))
    assert kb.get("book").content == content


def test_overlong_words_and_late_positions_are_not_errors(db) -> None:
    content = "pump " * 20_000 + "x" * 3000 + " valve"  # positions past 16,383; a word past 2,047 bytes
    kb = KnowledgeBase(db)
    kb.upsert(_atom("late", content=content))
    assert kb.get("late").content == content
    assert [a.atom_id for a in kb.search("valve")] == ["late"], "positions are capped, words still indexed"
