"""Delivery: the outbox worker that brings Slack up to date with the database.

Every message Warden owes — answers, questions, admin notices, card posts and updates — is an
`outbox` row written in the same transaction as the change that caused it (`storage/repo.py`
`Notice`). After a commit the caller kicks delivery; a sweep every few seconds also picks up
rows nobody delivered (a crash between commit and post, a failed post). Rows are claimed with
a lease, so replicas share the work and a dead deliverer's rows come back.

Delivering a card row means "bring this card to the action's current state": it is rebuilt
from the row, so redelivery is harmless and older card rows of the same action are settled by
the newest. A card's first post is reserved first (`claim_card`), so two workers never both
post it; a reservation given up after a failed post or a dead process is marked "unsure"
(the post may have reached Slack), and the next attempt looks for the card (it carries the
action id in its message metadata) before posting, so a crash never shows two cards.
A plain message is posted carrying its row's key (`message_key`) the same way; an attempt
after one that may have reached Slack (the row was claimed before: a failed post, or a lease
taken over from a replica whose heartbeat went stale) looks for it first and, found, only
marks the row delivered. A first attempt never looks.
Slack's 429s are honoured by slack-sdk's retry handler (it sleeps `Retry-After`); other
failures are retried with backoff and given up after `MAX_ATTEMPTS`.
"""

from __future__ import annotations

import json
import logging
import threading
from datetime import timedelta
from typing import Any

from bot.cards import Card, CardFacts, as_nudge, build_card
from bot.core import Core
from bot.errors import ChatRefused
from bot.gate_text import span_text
from bot.gate_types import FEEDBACK_ON
from bot.logcontext import bind, scoped
from bot.memory import Memory
from bot.runbooks import command_preview
from bot.tools import canonical_json
from storage.attention import NUDGE
from storage.models import Action, ActionStatus, Outbox
from storage.repo import UNSURE

log = logging.getLogger(__name__)

LEASE = timedelta(seconds=60)
# Action fields that may hold the request's placeholders, revealed on its card.
REVEALED = (
    "rationale",
    "preview",
    "result",
    "result_note",
    "status_note",
    "progress",
    "break_glass_reason",
)
MAX_ATTEMPTS = 8


def message_key(row: Outbox) -> str:
    """The key a plain row's message carries: its id, and when it was owed, since SQLite may
    give a forgotten row's id to a new one."""
    return f"{row.id}@{row.created_at:%Y%m%dT%H%M%S%f}"


class Delivery:
    def __init__(self, core: Core, memory: Memory) -> None:
        self.core = core
        self.memory = memory
        self._card_locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()
        self._draining = 0
        core.kick = self.kick

    def kick(self) -> None:
        """Deliver what is owed, soon, on an outbox worker (a few drains at most at once)."""
        with self._guard:
            if self._draining >= 2:
                return
            self._draining += 1
        if self.core.workers.outbox.submit(self._drain_once) is None:
            with self._guard:
                self._draining -= 1

    def _drain_once(self) -> None:
        try:
            self.drain()
        finally:
            with self._guard:
                self._draining -= 1

    def drain(self, rounds: int = 50) -> int:
        """Deliver due rows until none are left (or `rounds` batches); return how many."""
        core = self.core
        done = 0
        for _ in range(rounds):
            rows = core.store.claim_outbox(core.owner, core.clock(), LEASE)
            if not rows:
                break
            delivered = [row for row in rows if self.deliver(row)]
            core.store.outbox_delivered(delivered, core.clock())
            done += len(rows)
        return done

    @scoped
    def deliver(self, row: Outbox) -> bool:
        """Deliver one row; True if Slack took it (the caller marks it delivered)."""
        core = self.core
        bind(action_id=row.action_id, request_id=row.request_id, owner=core.owner)
        try:
            if row.kind == "card" and row.action_id:
                self._card(row.action_id)
            elif row.kind == NUDGE and row.action_id:
                self._nudge(row.channel, row.action_id)
            else:
                self._message(row)
        except Exception as exc:
            attempt = row.attempts
            retry_at = (
                None
                if attempt >= MAX_ATTEMPTS
                else core.clock() + timedelta(seconds=min(300, 2**attempt))
            )
            log.warning("outbox row %s (%s) failed, attempt %s: %s", row.id, row.kind, attempt, exc)
            core.store.outbox_failed(row, retry_at, f"{type(exc).__name__}: {exc}")
            return False
        log.debug("outbox row %s (%s) delivered", row.id, row.kind)
        return True

    def _message(self, row: Outbox) -> None:
        """Post a plain row's text once: unless an earlier attempt is found in Slack."""
        core = self.core
        key = message_key(row)
        # `claim_outbox` counts this attempt: more than one means an earlier claim, whose
        # post may have reached Slack before its answer (or its deliverer) was lost.
        if row.attempts > 1:
            try:
                found = core.chat.find_message(row.channel, row.thread_ts, key)
            except ChatRefused as exc:  # cannot look: a repeat beats a message never sent
                log.warning("outbox row %s: cannot look for an earlier post: %s", row.id, exc)
                found = None
            if found is not None:
                log.info("outbox row %s was already posted (%s)", row.id, found)
                return
        text = row.text
        if row.request_id:  # back into the thread where the values were written
            masker = core.privacy.for_request(row.request_id)
            text = core.privacy.reveal_posted(masker, text, core.safe)
        core.chat.post(row.channel, text, row.thread_ts, key=key)

    def _lock(self, action_id: str) -> threading.Lock:
        with self._guard:
            lock = self._card_locks.get(action_id)
            if lock is None:
                if len(self._card_locks) > 10_000:
                    self._card_locks.clear()
                lock = self._card_locks[action_id] = threading.Lock()
            return lock

    def facts(self, action: Action) -> CardFacts:
        core = self.core
        command = None
        runbook = core.policy.runbooks.get(action.tool)
        if runbook is not None:
            try:
                command = command_preview(runbook, json.loads(action.args_json))
            except (KeyError, ValueError):
                command = None
        approvals = core.store.approvals(action.id, action.revision)
        held = core.gate.paused_for(action.tool, action.channel, action.risk, core.now())
        counted = core.gate.counted(action, approvals)
        grants = core.store.grants_by_id(
            a.via_grant for a in approvals if a.via_grant is not None and a.approver in counted
        )
        return CardFacts(
            rule=core.gate.rule_text(action, core.clock()),
            approvers=tuple(core.gate.approvers(action.tool, action.requester, action.channel)),
            approved_by=tuple(sorted(core.gate.counted(action, approvals))),
            paused=held is not None,
            pause_note=held or "",
            command=command,
            allowed_domains=tuple(core.policy.agent.link_domains),
            previously=tuple(self._previously(action)),
            feedback=core.store.feedback_tally(action.id)
            if action.status in FEEDBACK_ON
            else (0, 0),
            granted=tuple((g.approver, g.until) for g in grants.values()),
            admin_channel=core.policy.access.admin_channel,
        )

    def _previously(self, action: Action) -> list[str]:
        if action.status not in (ActionStatus.AWAITING_APPROVAL, ActionStatus.SUGGESTED):
            return []
        try:
            args = json.loads(action.args_json)
        except ValueError:
            return []
        return self.memory.previously(action, args if isinstance(args, dict) else {})

    def card_of(self, action: Action) -> Card:
        """An action's card as its channel sees it: personal data written there is shown
        (the row holds placeholders)."""
        masker = self.core.privacy.for_request(action.request_id)
        if masker.mapping:
            update: dict[str, Any] = {
                name: masker.reveal(value)
                for name in REVEALED
                if isinstance(value := getattr(action, name), str)
            }
            update["args_json"] = canonical_json(masker.reveal_value(json.loads(action.args_json)))
            action = action.model_copy(update=update)
        return build_card(action, self.facts(action), self.core.clock())

    def _nudge(self, person: str, action_id: str) -> None:
        """A reminder DM to `person` with the card's Approve / Reject, unless the card no
        longer waits (then it is owed nothing). Personal data keeps its placeholders: a DM
        is not the channel it was written in."""
        core = self.core
        action = core.store.get_action(action_id)
        if action is None or action.status != ActionStatus.AWAITING_APPROVAL:
            return
        bind(trace_id=action.trace_id, request_id=action.request_id)
        now = core.clock()
        minutes = max(1, int((now - action.created_at).total_seconds() // 60))
        waited = span_text(timedelta(minutes=minutes))
        if minutes > 60 and minutes % 60:
            waited = f"{minutes // 60}h {minutes % 60}m"
        where = "a DM" if action.channel.startswith("D") else f"<#{action.channel}>"
        card = as_nudge(build_card(action, self.facts(action), now), waited, where)
        core.chat.post_card(person, card)

    def _card(self, action_id: str) -> None:
        core = self.core
        with self._lock(action_id):
            action = core.store.get_action(action_id)
            if action is None:
                return
            bind(trace_id=action.trace_id, request_id=action.request_id)
            card = self.card_of(action)
            if action.card_ts is None or action.card_ts.startswith(("pending:", UNSURE)):
                if action.card_ts != f"pending:{core.owner}"[:64]:
                    claimed = core.store.claim_card(action_id, core.owner)
                    if claimed is None:
                        raise RuntimeError("another worker is posting this card")
                    maybe_posted = claimed
                else:
                    maybe_posted = True  # our own earlier attempt may have reached Slack
                ts = None
                if maybe_posted:
                    ts = core.chat.find_card(action.channel, action.thread_ts, action_id)
                if ts is None:
                    try:
                        ts = core.chat.post_card(action.channel, card, action.thread_ts)
                    except Exception:
                        core.store.release_card(action_id, core.owner)
                        raise
                core.store.set_card(action_id, ts)
                # The state may have moved on while the first post was in flight (or the
                # card found was posted with an older state).
                latest = core.store.get_action(action_id)
                if latest is not None and (maybe_posted or latest.updated_at != action.updated_at):
                    core.chat.update_card(action.channel, ts, self.card_of(latest))
            else:
                core.chat.update_card(action.channel, action.card_ts, card)
