"""Intake: which messages are requests, storing each exactly once, and queueing it fairly.

Rules for what Slack delivers (`Incoming` is the event, already parsed by `handlers/`):

- A mention of @warden in a channel, or any DM, is a request. Another app's bot is never a
  requester.
- A plain reply in a Warden thread continues it only from someone who asked there (others
  mention @warden to join); replies sent "also to channel" (`thread_broadcast`) or with a
  file (`file_share`) are replies like any other. Other subtypes (edits, deletions, joins)
  are not requests.
- In a DM, a top-level reply within 30 minutes to a question Warden asked (or to a request
  it could not plan) continues that conversation.
- `retry` in a thread re-plans a request the planner could not reach.
- One request per Slack message: Slack re-sends `app_mention` when a message is edited (same
  ts, new event id), and an edit must never start a second request.
- Each requester may have `workers.per_requester` requests waiting or being planned; beyond
  that they are told so and nothing is stored. Planning is round-robin across requesters.

Runs on Slack's ack path: one short transaction, then hand-offs.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import timedelta

from bot.core import Core, new_id, new_trace
from bot.logcontext import bind, scoped
from bot.redact import redact
from storage.models import Request, RequestStatus
from storage.repo import Accepted

DM_QUESTION_OPEN = timedelta(minutes=30)
REPLY_SUBTYPES = frozenset({"thread_broadcast", "file_share"})
RETRY_WORDS = frozenset({"retry", "try again"})
log = logging.getLogger(__name__)
CAP_NOTICE_EVERY = 60.0  # seconds between "too many in flight" answers to one person


@dataclass(kw_only=True, frozen=True)
class Incoming:
    """A message event addressed to Warden or in one of its threads."""

    event_id: str | None
    team_id: str = ""
    channel: str
    user: str
    text: str
    ts: str
    thread_ts: str | None = None
    mention: bool = True  # an app_mention event (else a `message` event)
    is_dm: bool = False
    mentions_bot: bool = False
    from_bot: bool = False
    subtype: str | None = None
    edited: bool = False


class Intake:
    def __init__(self, core: Core, plan: Callable[[str], None]) -> None:
        self.core = core
        self._plan = plan
        self._queued: set[str] = set()
        self._guard = threading.Lock()
        self._told: dict[str, float] = {}

    def receive(self, msg: Incoming) -> bool:
        """Apply the rules above to one event; True if a request was stored."""
        if msg.from_bot or msg.edited:
            return False
        if msg.subtype is not None and msg.subtype not in REPLY_SUBTYPES:
            return False
        if msg.mention or msg.is_dm:
            if not msg.mention and msg.is_dm and not msg.thread_ts:
                thread = self.open_question(msg.channel, msg.user)
                if thread:
                    msg = replace(msg, thread_ts=thread)
        else:
            if msg.mentions_bot:
                return False  # delivered as app_mention too (Slack sends none for DMs)
            if not msg.thread_ts:
                return False
            if msg.user not in self.core.store.thread_requesters(msg.channel, msg.thread_ts):
                return False
        if (
            msg.thread_ts
            and msg.text.strip().lower() in RETRY_WORDS
            and self.retry(msg.channel, msg.thread_ts, msg.user)
        ):
            return False
        return self.accept(msg)

    @scoped
    def accept(self, msg: Incoming) -> bool:
        """Store a request (once per event id and per message) and queue it for planning."""
        core = self.core
        # Secrets go for good; personal data becomes placeholders, the values sealed in the
        # request's own row (bot/privacy.py).
        masker = core.privacy.masker()
        text = masker.mask(redact(msg.text))
        request = Request(
            id=new_id(),
            trace_id=new_trace(),
            event_id=msg.event_id,
            team_id=msg.team_id,
            channel=msg.channel,
            thread_ts=msg.thread_ts or msg.ts,
            message_ts=msg.ts,
            requester=msg.user,
            text=text,
            pii_sealed=core.privacy.seal(masker),
        )
        bind(trace_id=request.trace_id, request_id=request.id, owner=core.owner)
        outcome = core.store.accept_request(request, core.policy.workers.per_requester)
        if outcome is Accepted.OVER_CAP:
            log.info("request not stored: the requester has too many in flight")
            self._tell_over_cap(msg)
            return False
        if outcome is Accepted.DUPLICATE:
            log.debug("request not stored: this message was stored before")
            return False
        log.info("request accepted")
        core.workers.outbox.submit(core.chat.react, msg.channel, msg.ts, "eyes")
        self.queue(request.id, request.requester)
        return True

    def _tell_over_cap(self, msg: Incoming) -> None:
        now = time.monotonic()
        with self._guard:
            if now - self._told.get(msg.user, -CAP_NOTICE_EVERY) < CAP_NOTICE_EVERY:
                return
            self._told[msg.user] = now
        cap = self.core.policy.workers.per_requester
        self.core.workers.replies.submit(
            self.core.chat.ephemeral,
            msg.channel,
            msg.user,
            f":hourglass: You already have {cap} requests in flight. I'll take new ones as "
            "those finish; please ask again then.",
            msg.thread_ts,
        )

    def queue(self, request_id: str, requester: str) -> None:
        """Hand a request to the planners once (the sweep finds a backlog's requests again
        every minute, and each would otherwise take another place in the queue)."""
        with self._guard:
            if request_id in self._queued:
                return
            self._queued.add(request_id)
        if not self.core.workers.planners.submit_fair(requester, self._planned, request_id):
            with self._guard:
                self._queued.discard(request_id)

    def _planned(self, request_id: str) -> None:
        try:
            self._plan(request_id)
        finally:
            with self._guard:
                self._queued.discard(request_id)

    def open_question(self, channel: str, user: str) -> str | None:
        """The thread of `user`'s latest request in a DM if Warden asked them a question there
        (or could not plan it) within the last 30 minutes."""
        core = self.core
        req = core.store.latest_request_by(channel, user)
        if (
            req is None
            or req.status not in (RequestStatus.PLANNED, RequestStatus.FAILED)
            or not req.answer
            or req.created_at < core.clock() - DM_QUESTION_OPEN
            or core.store.actions_for_request(req.id)
        ):
            return None
        return req.thread_ts

    def retry(self, channel: str, thread_ts: str, user: str) -> bool:
        """Re-queue the thread's failed request (the requester replied `retry`)."""
        req = self.core.store.latest_request_in_thread(channel, thread_ts)
        if req is None or req.status != RequestStatus.FAILED:
            return False
        if self.core.store.retry_request(req.id, user):
            self.queue(req.id, req.requester)
            return True
        return False

    def requeue_waiting(self) -> int:
        """Requests nobody is planning (accepted before a crash, or whose planner's lease
        ran out) go back in the queue."""
        rows = self.core.store.requests_to_plan()
        for request_id, requester in rows:
            self.queue(request_id, requester)
        return len(rows)
