"""The inbox: Slack's events and commands are stored before they are acknowledged, handed to
Bolt right after, and never lost or acted on twice — through signed requests over HTTP."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

from sqlalchemy import update
from sqlmodel import select

from bot.workers import FairPool
from handlers.inbox import GIVE_UP_AFTER, Inbox
from storage.inbox import Arrival
from storage.models import InboxEntry, Instance, Request, utcnow
from tests.conftest import ADMIN, APPROVER, APPROVER2, REQUESTER, STRANGER
from tests.slack_fixtures import CHANNEL, Slack, SlackFactory


def entries(slack: Slack) -> list[InboxEntry]:
    with slack.store.db.read() as s:
        return list(s.exec(select(InboxEntry).order_by(InboxEntry.id)))  # type: ignore[arg-type]


def requests(slack: Slack) -> list[Request]:
    with slack.store.db.read() as s:
        return list(s.exec(select(Request)))


def inbox(slack: Slack) -> Inbox:
    return slack.bot.inbox


def test_a_mention_is_stored_sealed_then_handled_and_its_body_dropped(slack: Slack) -> None:
    delivery = slack.ws.mention(REQUESTER, CHANNEL, "restart web-frontend")
    assert delivery.status == 200 and delivery.body == ""
    slack.idle()
    (entry,) = entries(slack)
    assert entry.kind == "event" and entry.key == f"e:{delivery.event_id}"
    assert entry.done_at is not None and entry.body == ""  # handled: nothing kept but the key
    (request,) = requests(slack)
    assert request.event_id == delivery.event_id
    assert slack.store.actions_with_status(["awaiting_approval"])  # the card followed


def test_what_waits_in_the_inbox_is_sealed(slack: Slack) -> None:
    gate = threading.Event()
    real = inbox(slack)._dispatch
    inbox(slack)._dispatch = lambda *a: (gate.wait(10), real(*a))[1]  # type: ignore[method-assign]
    try:
        text = "restart web-frontend, mail ann@example.com"
        assert slack.ws.mention(REQUESTER, CHANNEL, text).status == 200
        (entry,) = entries(slack)
        assert entry.done_at is None and entry.body
        assert "ann@example.com" not in entry.body and "web-frontend" not in entry.body
        stored = json.loads(slack.bot.warden.lifecycle.core.privacy.sealer.open_text(entry.body))
        assert text in stored["event"]["text"]
    finally:
        gate.set()
    slack.idle()
    assert entries(slack)[0].body == ""


def test_a_retried_or_replayed_event_is_stored_and_acted_on_once(slack: Slack) -> None:
    first = slack.ws.mention(REQUESTER, CHANNEL, "restart web-frontend")
    slack.idle()
    for retry in range(1, 4):  # Slack's retries carry the same body and event id
        again = slack.ws.raw_post(first.raw, {**first.headers, "X-Slack-Retry-Num": str(retry)})
        assert again.status == 200
    slack.idle()
    assert len(entries(slack)) == 1
    assert len(requests(slack)) == 1
    assert len(slack.store.actions_with_status(["awaiting_approval"])) == 1


class CountingQueue:
    """The writer's queue, telling when `until` requests have been put in it."""

    def __init__(self, inner: Any, until: int) -> None:
        self.inner, self.until, self.count = inner, until, 0
        self.reached, self.lock = threading.Event(), threading.Lock()
        self.get, self.get_nowait = inner.get, inner.get_nowait

    def put(self, item: Any) -> None:
        self.inner.put(item)
        with self.lock:
            self.count += item is not None
            if self.count >= self.until:
                self.reached.set()


def test_a_burst_is_stored_in_few_transactions(slack: Slack) -> None:
    """Group commit: requests arriving while a write is in progress go in the next one."""
    store = slack.store
    real = store.store_arrivals
    batches: list[int] = []
    hold, holding = threading.Event(), threading.Event()

    def recording(arrivals: Any, *args: Any) -> Any:
        batches.append(len(arrivals))
        if len(batches) == 1:
            holding.set()
            assert hold.wait(10)
        return real(arrivals, *args)

    people = (REQUESTER, APPROVER, APPROVER2, ADMIN, STRANGER)
    queued = CountingQueue(inbox(slack)._queue, until=24)
    inbox(slack)._queue = queued  # type: ignore[assignment]
    store.store_arrivals = recording
    try:
        with ThreadPoolExecutor(24) as pool:
            first = pool.submit(slack.ws.mention, REQUESTER, CHANNEL, "restart web-frontend")
            assert holding.wait(10)
            rest = [
                pool.submit(slack.ws.mention, people[i % 5], CHANNEL, f"restart svc{i}")
                for i in range(1, 24)
            ]
            assert queued.reached.wait(10)  # all 23 wait while the first is written
            hold.set()
            statuses = [f.result().status for f in [first, *rest]]
    finally:
        store.store_arrivals = real
    assert statuses == [200] * 24
    assert batches == [1, 23]
    slack.idle()
    assert len(entries(slack)) == 24
    assert all(e.done_at is not None for e in entries(slack))
    assert len(requests(slack)) == 24


def test_a_request_that_cannot_be_stored_is_answered_503_and_the_retry_is_kept(
    slack: Slack,
) -> None:
    store = slack.store
    real = store.store_arrivals

    def broken(*_: Any) -> Any:
        raise RuntimeError("database is gone")

    store.store_arrivals = broken
    try:
        first = slack.ws.mention(REQUESTER, CHANNEL, "restart web-frontend")
    finally:
        store.store_arrivals = real
    assert first.status == 503  # Slack will send it again
    assert entries(slack) == [] and requests(slack) == []
    again = slack.ws.raw_post(first.raw, {**first.headers, "X-Slack-Retry-Num": "1"})
    assert again.status == 200
    slack.idle()
    assert len(requests(slack)) == 1


def test_a_slash_command_is_answered_through_its_response_url(slack: Slack) -> None:
    reply = slack.ws.slash(ADMIN, CHANNEL, "/pause", "deploy freeze")
    assert reply.status == 200 and reply.late  # the HTTP answer was empty
    assert "Paused" in reply.body
    assert slack.store.pause_state().paused
    (entry,) = entries(slack)
    assert entry.kind == "command" and entry.key.startswith("t:")
    # The user sees it as Slack shows a response_url answer: an ephemeral message.
    assert any(
        m.get("ephemeral_to") == ADMIN and "Paused" in str(m.get("text"))
        for m in slack.ws.messages(CHANNEL, include_ephemeral_for=ADMIN)
    )


def test_a_replayed_command_is_not_acted_on_again(slack: Slack) -> None:
    resume = slack.ws.slash(ADMIN, CHANNEL, "/pause", "first")
    assert resume.status == 200
    resumed = slack.ws.slash(ADMIN, CHANNEL, "/resume")
    assert "Resumed" in resumed.body
    slack.ws.slash(ADMIN, CHANNEL, "/pause", "second")
    assert slack.store.pause_state().paused
    replay = slack.ws.raw_post(resumed.raw, resumed.headers)  # same signed /resume
    assert replay.status == 200
    slack.idle()
    assert slack.store.pause_state().paused


def test_a_url_verification_is_answered_inline(slack: Slack) -> None:
    body = json.dumps({"type": "url_verification", "challenge": "abc123", "token": "t"}).encode()
    delivery = slack.ws.raw_post(body, {"Content-Type": "application/json", **slack.ws.sign(body)})
    assert delivery.status == 200 and "abc123" in delivery.body
    assert entries(slack) == []


def test_requests_a_dead_replica_had_acknowledged_are_handled_by_another(
    slack_factory: SlackFactory,
) -> None:
    """A replica acks, then dies before handing the request on: nothing is lost."""
    a = slack_factory()
    a.bot.warden.jobs.stop()  # no more heartbeats from a
    frozen = threading.Event()
    a.bot.inbox._dispatch = lambda *_: frozen.set()  # type: ignore[method-assign]
    assert a.ws.mention(REQUESTER, CHANNEL, "restart web-frontend").status == 200
    assert a.ws.slash(ADMIN, CHANNEL, "/pause", "drill", wait=0).status == 200
    assert frozen.wait(10)
    a.idle()
    assert requests(a) == [] and not a.store.pause_state().paused
    # `a` stops sending heartbeats (it died); its lease has not even run out.
    with a.store.db.write() as s:
        s.exec(
            update(Instance)
            .where(Instance.owner == a.bot.warden.lifecycle.owner)  # type: ignore[arg-type]
            .values(heartbeat_at=utcnow() - timedelta(minutes=5))
        )
    b = slack_factory()  # takes them over as it starts, then every few seconds
    b.ws.wait_until(lambda: all(e.done_at is not None for e in entries(b)))
    b.idle()
    assert len(requests(b)) == 1
    assert b.store.pause_state().paused
    b.bot.inbox.stop_recovering()
    assert b.bot.inbox.recover() == 0  # taken once


def test_a_live_replica_keeps_what_it_is_handling(slack: Slack) -> None:
    store, now = slack.store, utcnow()
    store.heartbeat("replica-a", now)
    store.heartbeat("replica-b", now)
    new = store.store_arrivals(
        [Arrival(key="e:1", kind="event", content_type="application/json", body="x")],
        "replica-a",
        now,
        timedelta(minutes=5),
    )
    assert list(new) == ["e:1"]
    held = set(new.values())
    assert store.claim_inbox("replica-b", now, timedelta(minutes=5)) == []
    # a itself never takes back what it is still handling...
    assert store.claim_inbox("replica-a", now, timedelta(minutes=5), held=held) == []
    later = now + timedelta(minutes=6)  # the lease ran out although a is alive
    store.heartbeat("replica-a", later)
    store.heartbeat("replica-b", later)
    (taken,) = store.claim_inbox("replica-b", later, timedelta(minutes=5))
    assert taken.owner == "replica-b" and taken.attempts == 2
    # ...and a release from a, which lost it meanwhile, leaves it with b.
    assert not store.inbox_release(taken.id, "replica-a", later, 5)
    assert store.claim_inbox("replica-b", later, timedelta(minutes=5), held={taken.id}) == []
    # An entry a holds but no longer handles (its release failed) is a's to take back.
    store.store_arrivals(
        [Arrival(key="e:2", kind="event", content_type="application/json", body="y")],
        "replica-a",
        later,
        timedelta(minutes=5),
    )
    (mine,) = store.claim_inbox("replica-a", later, timedelta(minutes=5), held=held)
    assert mine.key == "e:2"


def test_a_failing_event_is_retried_then_dropped(slack: Slack) -> None:
    inbox(slack).stop_recovering()  # the test takes the retries' turns itself
    calls: list[int] = []
    app = inbox(slack).app
    real = app.dispatch

    def failing(req: Any) -> Any:
        calls.append(1)
        raise RuntimeError("listener blew up")

    app.dispatch = failing  # type: ignore[method-assign]
    try:
        assert slack.ws.mention(REQUESTER, CHANNEL, "restart web-frontend").status == 200
        slack.idle()
        (entry,) = entries(slack)
        assert entry.done_at is None and entry.owner is None  # released, due again later
        clock = slack.bot.warden.lifecycle.core
        for _ in range(GIVE_UP_AFTER):
            with slack.store.db.write() as s:  # its retry time has come
                s.exec(update(InboxEntry).values(lease_until=clock.clock() - timedelta(seconds=1)))
            inbox(slack).recover()
            slack.idle()
    finally:
        app.dispatch = real  # type: ignore[method-assign]
    assert len(calls) == GIVE_UP_AFTER
    (entry,) = entries(slack)
    assert entry.done_at is not None and entry.body == ""


def test_a_command_that_fails_says_so_and_is_not_retried(slack: Slack) -> None:
    app = inbox(slack).app
    real = app.dispatch

    def failing(req: Any) -> Any:
        raise RuntimeError("listener blew up")

    app.dispatch = failing  # type: ignore[method-assign]
    try:
        reply = slack.ws.slash(ADMIN, CHANNEL, "/pause", "now")
    finally:
        app.dispatch = real  # type: ignore[method-assign]
    assert reply.status == 200 and "could not act on that command" in reply.body
    slack.idle()
    (entry,) = entries(slack)
    assert entry.done_at is not None


def test_handing_on_is_round_robin_across_senders_with_commands_first() -> None:
    """One person's flood does not hold up another's request; a command (someone is
    looking for its answer) goes before every waiting event."""
    pool = FairPool("inbox-test", 1)
    started, release = threading.Event(), threading.Event()
    order: list[str] = []
    pool.submit_fair("busy", lambda: (started.set(), release.wait(10)))
    assert started.wait(10)  # the only thread is taken: the rest queue
    for i in range(3):
        pool.submit_fair("flooder", order.append, f"flood{i}")
    pool.submit_fair("other", order.append, "other")
    pool.submit_fair("admin", order.append, "/pause", first=True)
    release.set()
    assert pool.wait_idle(10)
    pool.shutdown()
    assert order == ["/pause", "flood0", "other", "flood1", "flood2"]


def test_one_persons_commands_go_ahead_one_at_a_time() -> None:
    """A command goes before waiting events, but a person's further commands, while one of
    theirs waits ahead, take their turn with everyone else's work."""
    pool = FairPool("inbox-test", 1)
    started, release = threading.Event(), threading.Event()
    order: list[str] = []
    pool.submit_fair("busy", lambda: (started.set(), release.wait(10)))
    assert started.wait(10)
    for i in range(4):
        pool.submit_fair("flooder", order.append, f"/cmd{i}", first=True)
    pool.submit_fair("other", order.append, "mention")
    pool.submit_fair("admin", order.append, "/pause", first=True)
    release.set()
    assert pool.wait_idle(10)
    pool.shutdown()
    assert order == ["/cmd0", "/pause", "/cmd1", "mention", "/cmd2", "/cmd3"]
    # A person's commands keep their order: one sent once the first left the front, while
    # the rest wait in the person's line, waits behind them.
    pool = FairPool("inbox-test", 1)
    started, release, took = threading.Event(), threading.Event(), threading.Event()
    order.clear()
    pool.submit_fair("busy", lambda: (started.set(), release.wait(10)))
    assert started.wait(10)
    for i in range(3):
        pool.submit_fair("flooder", order.append, f"/cmd{i}", first=True)
    held = threading.Event()
    pool.submit_fair("busy2", lambda: (took.set(), held.wait(10)))
    release.set()
    assert took.wait(10)  # /cmd0 and /cmd1 ran; /cmd2 waits in the line
    pool.submit_fair("flooder", order.append, "/cmd3", first=True)
    held.set()
    assert pool.wait_idle(10)
    pool.shutdown()
    assert order == ["/cmd0", "/cmd1", "/cmd2", "/cmd3"]


def test_odd_but_signed_ids_and_headers_neither_collide_nor_break_a_batch(slack: Slack) -> None:
    """A long event id is hashed, not cut (two ids sharing a long prefix stay two); a long
    Content-Type is stored as its media type."""
    long_prefix = "Ev" + "X" * 120
    for suffix in ("A", "B"):
        payload = {
            "type": "event_callback",
            "team_id": "T0TEST",
            "event_id": long_prefix + suffix,
            "event": {
                "type": "app_mention",
                "user": REQUESTER,
                "channel": CHANNEL,
                "text": f"<@U0WARDEN> restart svc{suffix.lower()}",
                "ts": f"1700000000.00000{1 if suffix == 'A' else 2}",
            },
        }
        body = json.dumps(payload).encode()
        ctype = "application/json; charset=utf-8; " + "x" * 300
        delivery = slack.ws.raw_post(body, {"Content-Type": ctype, **slack.ws.sign(body)})
        assert delivery.status == 200
    slack.idle()
    stored = entries(slack)
    assert len({e.key for e in stored}) == 2 and all(len(e.key) <= 100 for e in stored)
    assert all(e.content_type == "application/json" and e.done_at for e in stored)  # both handed on
    assert requests(slack) == []  # intake ignores an event id longer than Slack's as malformed
