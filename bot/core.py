"""What every step of a request's path shares: policy, tools, the gate, the store, the
worker pools, the clock, this process's owner id, and how a change owes Slack a message.

The steps themselves live in modules named after the path a request takes:
`intake` → `planning` → `approvals` → `execution`, with `control` (pause, autonomy),
`sweeps` (scheduled repairs) and `delivery` (the outbox worker) beside them.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from bot.chat import Chat
from bot.directory import Directory
from bot.gate import Gate
from bot.gate_types import Now, Pause
from bot.pii import Detector
from bot.policy import Policy
from bot.privacy import Privacy
from bot.sanitize import neutralise
from bot.sealing import Sealer
from bot.settings import insecure_dev_data_key
from bot.tools import ToolRegistry
from bot.workers import Workers
from storage.models import Action, PauseKind, utcnow
from storage.outbox import Notice
from storage.repo import Audit, Store

log = logging.getLogger(__name__)

OutcomeListener = Callable[[Action, str, str | None, str | None], None]
"""Called with an action, its outcome, who caused it (if a person) and their reason."""


def new_id() -> str:
    return uuid.uuid4().hex


def new_trace() -> str:
    return uuid.uuid4().hex[:16]


def new_owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"[:64]


@dataclass(kw_only=True, frozen=True)
class Reply:
    """What to tell the person who clicked or typed (privately). Empty text: say nothing."""

    ok: bool
    text: str = ""


@dataclass(kw_only=True)
class Core:
    policy: Policy
    registry: ToolRegistry
    store: Store
    chat: Chat
    workers: Workers
    clock: Callable[[], datetime] = utcnow
    owner: str = field(default_factory=new_owner)
    # Seals personal values and keys their hashes (`Settings.data_key()`).
    data_key: bytes = field(default_factory=insecure_dev_data_key, repr=False)
    gate: Gate = field(init=False)
    privacy: Privacy = field(init=False)
    # Set by `bot.delivery.Delivery`: start delivering owed messages now.
    kick: Callable[[], None] = field(default=lambda: None)
    # Told of every action's outcome (succeeded, failed, needs_review, rejected, undone, …)
    # after it is stored: memory remembers it as a decision, the governor re-checks autonomy.
    outcome_listeners: list[OutcomeListener] = field(default_factory=list)
    # Told when a tool got feedback (👍 / 👎), so the governor can re-check its rates.
    feedback_listeners: list[Callable[[str], None]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.privacy = Privacy(Detector(self.policy.redaction), Sealer(self.data_key), self.store)
        self.directory = Directory(self.chat)
        self.gate = Gate(
            self.policy,
            self.registry,
            self.privacy.real_args,
            usage=self.store.call_counts,
            groups=self.directory.members,
            clock=self.clock,
        )

    def record_outcome(
        self, action: Action, outcome: str, by: str | None = None, reason: str | None = None
    ) -> None:
        """Tell every listener; best effort: a listener's failure never undoes the outcome."""
        for listener in self.outcome_listeners:
            try:
                listener(action, outcome, by, reason)
            except Exception:
                log.exception("outcome listener %r failed for action %s", listener, action.id)

    def record_feedback(self, tool: str) -> None:
        for listener in self.feedback_listeners:
            try:
                listener(tool)
            except Exception:
                log.exception("feedback listener %r failed for tool %s", listener, tool)

    def audit(self, actor: str, kind: str, trace_id: str = "", **data: Any) -> Audit:
        return Audit(
            actor=actor,
            kind=kind,
            trace_id=trace_id,
            policy_version=self.policy.version,
            data=data or None,
        )

    def now(self) -> Now:
        """The state rules are checked against, read fresh: the global pause and the scoped
        ones in force (their reasons made safe to post), autonomy, the clock."""
        pause, scopes = self.store.pauses()
        return Now(
            paused=pause.paused,
            paused_until=pause.until if pause.paused else None,
            pauses=tuple(
                Pause(
                    kind=PauseKind(s.kind),
                    value=s.value,
                    by=s.paused_by,
                    reason=self.safe(s.reason, 300) if s.reason else "",
                    until=s.until,
                )
                for s in scopes
            ),
            autonomy=self.store.autonomy_overrides(),
            at=self.clock(),
        )

    @property
    def paused(self) -> bool:
        return self.store.pause_state().paused

    def safe(self, text: str, limit: int = 3000) -> str:
        """Untrusted text made safe to post (no pings, no foreign links, bounded)."""
        return neutralise(text, allowed_domains=list(self.policy.agent.link_domains), limit=limit)

    def to_admins(self, text: str) -> Notice:
        return Notice(channel=self.policy.access.admin_channel, text=text)

    def is_admin(self, user: str) -> bool:
        return user in self.policy.access.admins
