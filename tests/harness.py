"""Building a Warden for bot-level tests (no Slack): real database, real workers."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from bot.app import Warden, build
from bot.intake import Incoming
from bot.policy import Policy
from bot.settings import Settings
from storage.models import Action

_counter = 0


@contextmanager
def warden(database_url: str, policy: Policy, chat: Any, **kwargs: Any) -> Iterator[Warden]:
    settings = Settings(DATABASE_URL=database_url, SLACK_BOT_TOKEN="xoxb-test")
    w = build(settings, policy=policy, chat=chat, **kwargs)
    try:
        yield w
    finally:
        w.workers.shutdown(wait=True)
        w.lifecycle.stop()  # the executor's tool threads
        w.db.dispose()


def mention(
    w: Warden, text: str, user: str, channel: str = "C0GENERAL", event_id: str | None = None
) -> Action | None:
    """Accept a request, let the workers plan it, return its (first) action."""
    global _counter
    _counter += 1
    ts = f"1700000000.{_counter:06d}"
    w.lifecycle.intake.accept(
        Incoming(
            event_id=event_id or f"Ev{_counter:08d}",
            channel=channel,
            user=user,
            text=f"<@U0WARDEN> {text}",
            ts=ts,
        )
    )
    assert w.workers.wait_idle(30)
    req = w.store.latest_request_in_thread(channel, ts)
    assert req is not None
    actions = w.store.actions_for_request(req.id)
    return actions[0] if actions else None
