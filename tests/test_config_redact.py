"""Redaction of credentials written into URLs (scheme://user:password@host)."""

from __future__ import annotations

import pytest

from bot.redact import redact


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
