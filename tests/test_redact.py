"""Redaction of passwords in free text: URLs (SQLAlchemy forms too), key=value, JSON fields; a URL's password."""

from __future__ import annotations

import json

import psycopg
import pytest

from agent_factory.redact import scrub, scrub_foreign, url_password

SECRET = "p4ss-Secr3t"


@pytest.mark.parametrize("text", [
    f"connect to postgresql://agent:{SECRET}@db.example.com:5432/app failed",
    f"postgres://agent:{SECRET}@db.example.com/app",
    f"engine = create_engine('postgresql+psycopg://agent:{SECRET}@db.example.com/app')",
    f"postgresql+asyncpg://agent:{SECRET}@db.example.com/app",
    f"POSTGRESQL+PSYCOPG2://agent:{SECRET}@db.example.com/app",
    f"host=db.example.com password={SECRET} user=agent",
    f"host=db.example.com password='{SECRET} with space' user=agent",
    f"PGPASSWORD={SECRET} pg_dump",
    json.dumps({"user": "agent", "password": SECRET, "host": "db"}),
    json.dumps({"db": {"Password": SECRET}}, indent=2),
    json.dumps({"smtp_password": SECRET}),
    f'{{"password":"{SECRET}\\" still secret"}}',
    str({"password": SECRET, "user": "agent"}),  # a Python repr
])
def test_the_password_is_gone_and_the_rest_stays(text: str) -> None:
    out = scrub(text)
    assert "p4ss" not in out and "Secr3t" not in out
    assert "***" in out
    assert ("agent" in out) == ("agent" in text)


@pytest.mark.parametrize("password", ["p@ss", "a@b@c", "@lead", "trail@", "x:y@z"])
def test_an_unencoded_at_sign_inside_the_password_stays_hidden(password: str) -> None:
    out = scrub(f"failed: postgresql://agent:{password}@db.example.com:5432/app (timeout)")
    assert out == "failed: postgresql://agent:***@db.example.com:5432/app (timeout)"


def test_two_urls_on_one_line_are_both_redacted_and_hosts_kept() -> None:
    out = scrub(f"postgresql://a:{SECRET}@h1:5432/d1,postgresql://b:other@secret@h2/d2")
    assert out == "postgresql://a:***@h1:5432/d1,postgresql://b:***@h2/d2"


def test_json_numbers_and_nulls_are_hidden_and_json_stays_valid() -> None:
    out = scrub(json.dumps({"password": 123456, "other": 1}))
    assert json.loads(out.replace("***", '"***"')) == {"password": "***", "other": 1}
    assert json.loads(scrub(json.dumps({"password": "x\"y", "n": [1, 2]}))) == {"password": "***", "n": [1, 2]}


def test_text_without_secrets_is_unchanged() -> None:
    text = "provider neon (db.example.com:5432/app) failed: connection refused; see postgresql docs"
    assert scrub(text) == text


@pytest.mark.parametrize("text, secret", [
    ("POST https://api.telegram.org/bot123456:AAH-xyz_Secret/sendMessage: 502", "AAH-xyz_Secret"),
    ('pagerduty said {"routing_key": "R0UT1NGKEY"}', "R0UT1NGKEY"),
    ("Authorization: Bearer tok3n-value", "tok3n-value"),
    ("api_key=abc123XYZ rejected", "abc123XYZ"),
    (f"connect to postgresql://agent:{SECRET}@db/app failed", SECRET),
])
def test_scrub_foreign_also_removes_tokens_and_keys(text: str, secret: str) -> None:
    out = scrub_foreign(text)
    assert secret not in out and "***" in out


def test_scrub_leaves_tokens_to_scrub_foreign() -> None:
    text = "Authorization: Bearer tok3n-value"
    assert scrub(text) == text  # text we write keeps its words; only `scrub_foreign` guesses at unknown secrets


@pytest.mark.parametrize(("url", "expected"), [
    (f"postgresql://agent:{SECRET}@db.example.com:5432/app", SECRET),
    (f"host=db.example.com password={SECRET} user=agent", SECRET),
    ("postgresql://agent:12345@db.example.com/app", "12345"),  # digits stay a string
    ("postgresql://agent@db.example.com/app", None),
    ("host=db.example.com user=agent", None),
])
def test_url_password_reads_the_password_of_either_form(url: str, expected: str | None) -> None:
    assert url_password(url) == expected


def test_url_password_of_an_unparseable_url_raises_psycopgs_error() -> None:
    with pytest.raises(psycopg.ProgrammingError):
        url_password("host='unterminated")
