"""Redaction of credentials written into URLs (scheme://user:password@host)."""

from __future__ import annotations

import json

import pytest

from bot.redact import redact
from tests.conftest import PG_URL


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "DATABASE_URL=postgresql://warden:hunter2@db.internal:5432/warden",
            "DATABASE_URL=postgresql://warden:[redacted]@db.internal:5432/warden",
        ),
        (
            "try postgresql+psycopg://app:s3cr%40t@10.0.0.5/db now",
            "try postgresql+psycopg://app:[redacted]@10.0.0.5/db now",
        ),
        ("redis://:p@ss@cache:6379/0", "redis://:[redacted]@cache:6379/0"),
        (
            "clone HTTPS://bot:ghp-like-value@git.example.com/x.git?ref=a@b",
            "clone HTTPS://bot:[redacted]@git.example.com/x.git?ref=a@b",
        ),
        ("amqp://guest:guest@rabbit/", "amqp://guest:[redacted]@rabbit/"),
    ],
)
def test_passwords_in_urls_are_redacted(text: str, expected: str) -> None:
    assert redact(text) == expected
    assert redact(expected) == expected  # stable when applied twice


@pytest.mark.parametrize(
    "text",
    [
        "https://example.com:8443/path",
        "http://user@example.com/",
        "see https://example.com/a:b@c for details",
        "mail ops@example.com at 10:30",
    ],
)
def test_urls_without_a_password_are_left_alone(text: str) -> None:
    assert redact(text) == text


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ('"restart \\ud800 web"', "restart \ufffd web"),  # a lone high surrogate
        ('"\\udfff\\ud800"', "\ufffd\ufffd"),  # a low one, and a pair in the wrong order
        ('"x\\ud83d"', "x\ufffd"),  # half of an emoji, cut off
        ('"ok \\ud83d\\ude00"', "ok \U0001f600"),  # a real pair is one character: kept
    ],
)
def test_lone_surrogates_become_replacement_characters(payload: str, expected: str) -> None:
    text = json.loads(payload)  # how one arrives: a Slack payload's JSON escape
    cleaned = redact(text)
    assert cleaned == expected
    cleaned.encode("utf-8")  # what the database driver and the audit log do with it
    assert redact(cleaned) == cleaned


def test_a_redacted_lone_surrogate_can_be_stored_in_postgresql() -> None:
    import psycopg

    text = json.loads('"token=abc \\ud800 done"')
    conn = psycopg.connect(PG_URL, connect_timeout=5)  # the suite requires PostgreSQL
    with conn:
        with pytest.raises(UnicodeEncodeError):
            conn.execute("SELECT %s::text", [text])
        (stored,) = conn.execute("SELECT %s::text", [redact(text)]).fetchone() or ("",)
    assert stored == "token=[redacted] \ufffd done"
