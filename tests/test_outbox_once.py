"""Plain messages are delivered exactly once, through signed Slack requests on both databases:
an admin-channel notice whose post reached Slack but whose answer was lost is found by the
retry instead of posted again; a notice leased by a replica whose heartbeat went stale is
taken over by another replica and still reaches the channel once; a first attempt never
reads the channel's history."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

from sqlalchemy import update
from sqlmodel import col

from bot.delivery import LEASE
from bot.settings import Settings
from handlers.runtime import Running, start
from handlers.slack_client import MESSAGE_EVENT
from storage.models import Instance, Outbox, utcnow
from tests.conftest import ADMIN, REQUESTER
from tests.slack_fixtures import CHANNEL, OPS, SECRET, TOKEN, Slack

DELIVER_JOB = "bot.jobs:deliver_outbox"
HEARTBEAT_JOB = "bot.jobs:heartbeat"
PAUSED = f"<@{ADMIN}> paused the tool `restart_service`"
RESUMED = f"<@{ADMIN}> resumed the tool `restart_service`"


def slash(slack: Slack, command: str, text: str) -> str:
    delivery = slack.ws.slash(ADMIN, CHANNEL, command, text)
    assert delivery.status == 200, delivery.body
    slack.idle()
    try:
        return str(json.loads(delivery.body).get("text") or "")
    except ValueError:
        return str(delivery.body)


def ops(slack: Slack, words: str) -> list[dict[str, Any]]:
    return [m for m in slack.ws.messages(OPS) if words in str(m.get("text"))]


def notice_row(slack: Slack, words: str) -> Outbox:
    (row,) = [r for r in slack.store.outbox_rows() if r.channel == OPS and words in r.text]
    return row


def lookups(slack: Slack) -> int:
    return len(slack.ws.calls("conversations.history")) + len(
        slack.ws.calls("conversations.replies")
    )


@contextmanager
def replica(slack: Slack, database_url: str) -> Iterator[Running]:
    """A second Warden on the same database and Slack workspace."""
    settings = Settings(
        SLACK_BOT_TOKEN=TOKEN,
        SLACK_SIGNING_SECRET=SECRET,
        SLACK_API_URL=slack.ws.api_url,
        DATABASE_URL=database_url,
    )
    running = start(
        settings, host="127.0.0.1", port=0, policy=slack.bot.warden.policy, upgrade=False
    )
    try:
        yield running
    finally:
        running.stop()


def test_a_first_attempt_posts_with_its_key_and_never_reads_history(slack: Slack) -> None:
    assert "Paused the tool" in slash(slack, "/pause", "tool:restart_service deploy")
    (posted,) = ops(slack, PAUSED)
    row = notice_row(slack, PAUSED)
    assert row.delivered_at is not None and row.attempts == 1
    # The message carries the row's key, so a later attempt could find it.
    (call,) = [c for c in slack.ws.calls("chat.postMessage") if c.params.get("channel") == OPS]
    meta = call.params["metadata"]
    meta = json.loads(meta) if isinstance(meta, str) else meta
    assert meta["event_type"] == MESSAGE_EVENT and meta["event_payload"]["key"].startswith(
        f"{row.id}@"
    )
    assert posted["metadata"] == meta
    assert lookups(slack) == 0


def test_a_post_whose_answer_was_lost_is_found_not_posted_twice(slack: Slack) -> None:
    # The test delivers the due row itself: the every-5-s job would race it.
    slack.bot.warden.jobs.scheduler.remove_job(DELIVER_JOB)
    slack.ws.fail_next("chat.postMessage", status=500, after=True)
    slash(slack, "/pause", "tool:restart_service deploy")
    (lost,) = [c for c in slack.ws.calls("chat.postMessage") if c.response.get("done")]
    assert lost.params.get("channel") == OPS and lost.response["error"] == "fault 500"
    # Slack has the message, Warden does not know it: the row waits for its retry, and
    # the client did not retry the post on its own.
    assert len(ops(slack, PAUSED)) == 1
    row = notice_row(slack, PAUSED)
    assert row.delivered_at is None and row.attempts == 1 and row.last_error
    assert lookups(slack) == 0  # the first attempt did not look

    with slack.store.db.write() as s:  # time passes
        s.exec(update(Outbox).where(col(Outbox.id) == row.id).values(next_at=utcnow()))
    assert slack.bot.warden.lifecycle.sweeps.outbox() == 1
    slack.idle()
    assert len(ops(slack, PAUSED)) == 1
    row = notice_row(slack, PAUSED)
    assert row.delivered_at is not None and row.attempts == 2
    (looked,) = slack.ws.calls("conversations.history")
    assert looked.params.get("channel") == OPS


def test_a_notice_taken_over_from_a_stale_replica_is_posted_once(
    slack: Slack, database_url: str
) -> None:
    a = slack.bot.warden.lifecycle
    # Replica A delivers only when the test says so, and stops saying it is alive.
    for job in (DELIVER_JOB, HEARTBEAT_JOB):
        slack.bot.warden.jobs.scheduler.remove_job(job)
    a.core.kick = lambda: None
    with replica(slack, database_url) as other:
        other.warden.jobs.scheduler.remove_job(DELIVER_JOB)
        b = other.warden.lifecycle

        # A leases the notice and posts it, then stalls before marking it delivered.
        slash(slack, "/pause", "tool:restart_service deploy")
        assert ops(slack, PAUSED) == []
        (row,) = a.store.claim_outbox(a.owner, utcnow(), LEASE)
        assert row.channel == OPS and a.delivery.deliver(row)
        assert len(ops(slack, PAUSED)) == 1
        # Its lease still runs, but its heartbeat has gone stale: B takes the row over.
        with slack.store.db.write() as s:
            s.exec(
                update(Instance)
                .where(col(Instance.owner) == a.owner)
                .values(heartbeat_at=utcnow() - timedelta(minutes=5))
            )
        assert b.delivery.drain() == 1
        assert b.workers.wait_idle(30)
        assert len(ops(slack, PAUSED)) == 1
        row = notice_row(slack, PAUSED)
        assert row.delivered_at is not None and row.owner == b.owner and row.attempts == 2
        assert len(slack.ws.calls("conversations.history")) == 1

        # A leases the next notice but stalls before posting it: B looks, finds nothing,
        # and posts it — once.
        slash(slack, "/resume", "tool:restart_service")
        (row,) = a.store.claim_outbox(a.owner, utcnow(), LEASE)
        assert row.channel == OPS and ops(slack, RESUMED) == []
        assert b.delivery.drain() == 1
        assert b.workers.wait_idle(30)
        assert len(ops(slack, RESUMED)) == 1 and len(ops(slack, PAUSED)) == 1
        assert notice_row(slack, RESUMED).delivered_at is not None
        assert len(slack.ws.calls("conversations.history")) == 2


def test_a_card_whose_first_post_answer_was_lost_is_found_not_posted_twice(slack: Slack) -> None:
    """A 5xx after Slack stored the card: the client does not repost on its own; the next
    attempt finds the card by its action id and keeps it."""
    slack.bot.warden.jobs.scheduler.remove_job(DELIVER_JOB)
    slack.ws.fail_next("chat.postMessage", status=500, after=True)
    delivery = slack.ws.mention(REQUESTER, CHANNEL, "restart web-frontend")
    assert delivery.status == 200
    slack.idle()
    posts = [c for c in slack.ws.calls("chat.postMessage") if c.params.get("blocks")]
    assert len(posts) == 1 and posts[0].response["error"] == "fault 500"
    (action,) = slack.store.actions_with_status(["awaiting_approval"])
    assert slack.store.get_action(action.id).card_ts == "unsure"

    with slack.store.db.write() as s:  # time passes
        s.exec(update(Outbox).values(next_at=utcnow()))
    assert slack.bot.warden.lifecycle.sweeps.outbox() == 1
    slack.idle()
    cards = [m for m in slack.ws.messages(CHANNEL) if m.get("blocks")]
    assert len({m["ts"] for m in cards}) == 1  # one card in Slack
    assert len([c for c in slack.ws.calls("chat.postMessage") if c.params.get("blocks")]) == 1
    assert slack.store.get_action(action.id).card_ts == cards[0]["ts"]
