"""Shared fixtures: databases (SQLite and PostgreSQL), policies, a recording chat."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from bot.policy import Policy, parse_policy
from storage.db import Database

pytest_plugins = ["tests.slack_fixtures"]

PG_URL = os.environ.get("WARDEN_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")

REQUESTER, APPROVER, APPROVER2, ADMIN, STRANGER = (
    "U0REQ",
    "U0APPR1",
    "U0APPR2",
    "U0ADMIN",
    "U0STRANGER",
)
APPROVER3 = "U0APPR3"  # a third approver, so a critical call edited by an approver can pass


def reset_postgres() -> None:
    engine = create_engine(PG_URL.replace("postgresql://", "postgresql+psycopg://"))
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'warden.db'}"
    reset_postgres()
    return PG_URL


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    database = Database(database_url)
    database.upgrade()
    yield database
    database.dispose()


def policy_data(tmp_path: Path, **overrides: Any) -> dict[str, Any]:
    log = tmp_path / "runbook.log"
    data: dict[str, Any] = {
        "access": {
            "admins": [ADMIN],
            "approvers": [APPROVER, APPROVER2, REQUESTER, APPROVER3],
            "admin_channel": "C0OPS",
        },
        "gate": {
            "min_confidence": 0.8,
            "clarify_below": 0.5,
            "approval_ttl": "1h",
            "undo_window": "1h",
        },
        "tools": {"post_message": {"autonomy": "auto"}},
        "runbooks": {
            "restart_service": {
                "description": "Restart a service",
                "command": [
                    "sh",
                    "-c",
                    'echo "restart $0 $WARDEN_ACTION_ID" >> "$1"',
                    "{service}",
                    str(log),
                ],
                "undo": ["sh", "-c", 'echo "undo $0" >> "$1"', "{service}", str(log)],
                "dry_run": ["echo", "would restart {service}"],
                "risk": "high",
                "timeout": "10s",
                "params": {"service": {"pattern": "^[a-z0-9-]{1,40}$"}},
            },
            "scale": {
                "description": "Scale a service",
                "command": [
                    "sh",
                    "-c",
                    'echo "scale $0 $1" >> "$2"',
                    "{service}",
                    "{env}",
                    str(log),
                ],
                "dry_run": ["echo", "would scale {service} in {env}"],
                "risk": "medium",
                "params": {
                    "service": {"pattern": "^[a-z0-9-]{1,40}$"},
                    "env": {"choices": ["staging", "prod"], "risk_if": {"prod": "critical"}},
                },
            },
            "flush_cache": {
                "description": "Flush a cache",
                "command": ["sh", "-c", 'echo "flush $0" >> "$1"', "{name}", str(log)],
                "risk": "medium",
                "params": {"name": {"choices": ["sessions", "pages"]}},
            },
        },
        "aliases": {
            "restart {service}": {"runbook": "restart_service"},
            "scale {service} in {env}": {"runbook": "scale"},
            "flush {name}": {"runbook": "flush_cache"},
            "announce {text}": {"tool": "post_message", "args": {"channel": "C0GENERAL"}},
        },
        "workers": {"planners": 4, "executors": 4, "per_requester": 500},
    }
    for key, value in overrides.items():
        data[key] = value
    return data


@pytest.fixture
def policy(tmp_path: Path) -> Policy:
    return parse_policy(policy_data(tmp_path))


class RecordingChat:
    """A `Chat` that keeps everything in memory (for bot-level tests with no Slack)."""

    def __init__(self) -> None:
        self.lock = threading.Condition()
        self.posts: list[dict[str, Any]] = []
        self.updates: list[dict[str, Any]] = []
        self.ephemerals: list[dict[str, Any]] = []
        self._ts = 1000

    def _next(self) -> str:
        self._ts += 1
        return f"1700000000.{self._ts:06d}"

    def post(self, channel: str, text: str, thread_ts: str | None = None) -> str:
        return self._post(channel, text, None, thread_ts)

    def post_card(self, channel: str, card: Any, thread_ts: str | None = None) -> str:
        return self._post(channel, card.summary, card, thread_ts)

    def _post(self, channel: str, text: str, card: Any, thread_ts: str | None) -> str:
        with self.lock:
            ts = self._next()
            self.posts.append(
                {"channel": channel, "text": text, "card": card, "thread_ts": thread_ts, "ts": ts}
            )
            self.lock.notify_all()
            return ts

    def find_card(self, channel: str, thread_ts: str | None, action_id: str) -> str | None:
        with self.lock:
            return next(
                (
                    p["ts"]
                    for p in self.posts
                    if p["card"] is not None
                    and p["channel"] == channel
                    and p["card"].action_id == action_id
                ),
                None,
            )

    def update_card(self, channel: str, ts: str, card: Any) -> None:
        with self.lock:
            self.updates.append({"channel": channel, "ts": ts, "text": card.summary, "card": card})
            self.lock.notify_all()

    def delete(self, channel: str, ts: str) -> None:
        pass

    def ephemeral(self, channel: str, user: str, text: str, thread_ts: str | None = None) -> None:
        with self.lock:
            self.ephemerals.append({"channel": channel, "user": user, "text": text})
            self.lock.notify_all()

    def react(self, channel: str, ts: str, name: str) -> None:
        pass

    def unreact(self, channel: str, ts: str, name: str) -> None:
        pass

    def user_info(self, user: str) -> dict[str, str]:
        return {"id": user, "name": user.lower(), "real_name": "", "title": "", "tz": "UTC"}

    def set_status(self, channel: str, thread_ts: str, status: str) -> None:
        pass


@pytest.fixture
def chat() -> RecordingChat:
    return RecordingChat()
