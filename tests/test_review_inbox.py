"""The inbox under review: a stranded entry, thread order, and a command taken over mid-dispatch."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

from sqlalchemy import update
from sqlmodel import select

from storage.models import InboxEntry, Instance, Request, utcnow
from tests.conftest import ADMIN, REQUESTER
from tests.slack_fixtures import CHANNEL, Slack, SlackFactory


def entries(slack: Slack) -> list[InboxEntry]:
    with slack.store.db.read() as s:
        return list(s.exec(select(InboxEntry).order_by(InboxEntry.id)))  # type: ignore[arg-type]


def requests(slack: Slack) -> list[Request]:
    with slack.store.db.read() as s:
        return list(s.exec(select(Request)))


def test_an_entry_stranded_on_a_live_replica_is_taken_back_once_its_lease_runs_out(
    slack: Slack,
) -> None:
    """A database blip: the dispatch fails, and so does the release that would make it due
    again. The entry stays owned by this (live, only) replica, and `claim_inbox` never gives
    a replica back its own entries, even long after the lease ran out: the acknowledged
    event is never handled (and its sealed body is never forgotten)."""
    inbox = slack.bot.inbox
    inbox.stop_recovering()
    app, store = inbox.app, slack.store
    real_dispatch, real_release = app.dispatch, store.inbox_release

    def blip(*_: Any) -> Any:
        raise RuntimeError("database connection lost")

    app.dispatch = blip  # type: ignore[method-assign]
    store.inbox_release = blip
    try:
        assert slack.ws.mention(REQUESTER, CHANNEL, "restart web-frontend").status == 200
        slack.idle()
    finally:
        app.dispatch = real_dispatch  # type: ignore[method-assign]
        store.inbox_release = real_release
    (entry,) = entries(slack)
    assert entry.done_at is None and entry.owner == slack.bot.warden.lifecycle.owner
    # Long after: the lease has run out; the replica is alive and heartbeating.
    with store.db.write() as s:
        s.exec(update(InboxEntry).values(lease_until=utcnow() - timedelta(minutes=30)))
    assert inbox.recover() == 1  # before the fix: 0, the entry is stranded for good
    slack.idle()
    assert len(requests(slack)) == 1


def test_a_thread_reply_is_not_handled_before_the_mention_that_started_the_thread(
    slack: Slack,
) -> None:
    """The inbox pool has several threads and FairPool's per-sender line is only FIFO in
    the order items are *started*: two events from one person (a mention, then a reply in
    its thread) are dispatched at the same time, so the reply can be handled first."""
    app = slack.bot.inbox.app
    real = app.dispatch
    order: list[str] = []
    lock = threading.Lock()
    reply_started = threading.Event()

    def tracking(req: Any) -> Any:
        event = req.body.get("event") or {}
        kind = None
        if event.get("type") == "app_mention" and not event.get("thread_ts"):
            kind = "mention"
        elif event.get("type") == "message" and event.get("thread_ts"):
            kind = "reply"
        if kind is None:
            return real(req)
        with lock:
            order.append(f"{kind}-start")
        if kind == "mention":
            reply_started.wait(1)  # returns early only if the reply runs concurrently
        else:
            reply_started.set()
        try:
            return real(req)
        finally:
            with lock:
                order.append(f"{kind}-end")

    app.dispatch = tracking  # type: ignore[method-assign]
    try:
        assert slack.ws.mention(REQUESTER, CHANNEL, "restart web-frontend").status == 200
        root = next(
            m
            for m in reversed(slack.ws.messages(CHANNEL))
            if m.get("user") == REQUESTER and "web-frontend" in str(m.get("text"))
        )
        assert slack.ws.reply(REQUESTER, CHANNEL, root["ts"], "also web-backend").status == 200
        slack.idle()
    finally:
        app.dispatch = real  # type: ignore[method-assign]
    assert order == ["mention-start", "mention-end", "reply-start", "reply-end"], order


def test_a_command_acknowledged_by_a_replica_that_died_mid_dispatch_is_acted_on(
    slack_factory: SlackFactory,
) -> None:
    """Crash at a bad moment: replica A acknowledged /pause and died while its listener ran
    (after Bolt's once_per_trigger middleware had spent the trigger id). Replica B takes the
    entry over, but the middleware now treats it as a replay: nothing is paused and the
    admin is never answered, although Slack was told the command was received."""
    a = slack_factory()
    a.bot.warden.jobs.stop()  # no more heartbeats from a
    control = a.bot.warden.lifecycle.control
    dying, release = threading.Event(), threading.Event()

    def dies_here(*_: Any) -> Any:
        dying.set()
        release.wait(30)  # the process is gone; nothing after this happens in time
        raise RuntimeError("process died")

    control.pause = dies_here  # type: ignore[method-assign]
    try:
        assert a.ws.slash(ADMIN, CHANNEL, "/pause", "drill", wait=0).status == 200
        assert dying.wait(10)
        with a.store.db.write() as s:  # a stopped sending heartbeats (it died)
            s.exec(
                update(Instance)
                .where(Instance.owner == a.bot.warden.lifecycle.owner)  # type: ignore[arg-type]
                .values(heartbeat_at=utcnow() - timedelta(minutes=5))
            )
        b = slack_factory()  # takes the command over as it starts
        b.ws.wait_until(lambda: all(e.done_at is not None for e in entries(b)))
        b.idle()
        assert b.store.pause_state().paused  # before the fix: B's dispatch is dropped as a replay
    finally:
        release.set()
