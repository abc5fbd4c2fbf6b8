"""What every incident tool is bound to (the store, the policy, the lasting form of people's
words and Warden's clock) and the helpers they share: previews' lookups, preconditions,
timeline entries, the messages owed to the incident channel and plain-words failures.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from bot.channel_words import failed as _failed
from bot.errors import ToolFailed
from bot.incident_words import may_see, number
from bot.policy import Policy
from bot.sanitize import neutralise
from bot.tools import ToolContext, ToolResult
from storage.incidents import Entry, IncidentChange, Outcome
from storage.models import Incident, IncidentStatus, utcnow
from storage.outbox import Notice
from storage.repo import Store


@dataclass(frozen=True)
class IncidentKit:
    """The incident tools' bindings: a store (None while only checking configuration), the
    policy, the lasting form of people's words and Warden's clock."""

    store: Store | None
    policy: Policy
    lasting: Callable[[str], str] = field(default=str)
    clock: Callable[[], datetime] = field(default=utcnow)

    def safe(self, text: str, limit: int = 3000) -> str:
        return neutralise(text, allowed_domains=list(self.policy.agent.link_domains), limit=limit)

    def every(self) -> timedelta:
        return self.policy.incidents.status_update_every

    def offline(self) -> ToolResult:
        return _failed("Warden has no database or no connection to Slack here")

    def entry(self, kind: str, ctx: ToolContext, text: str, at: datetime | None = None) -> Entry:
        return Entry(
            kind=kind,
            author=ctx.requester,
            at=at or self.clock(),
            text=text,
            action_id=ctx.action_id,
        )

    def find(self, incident_id: int) -> Incident:
        """For previews: the incident, or ToolFailed in plain words."""
        row = self.store.incident(incident_id) if self.store is not None else None
        if row is None or row.status == IncidentStatus.CANCELLED:
            raise ToolFailed(f"there is no incident {number(incident_id)}")
        return row

    def is_open(self, args: Any) -> str | None:
        """Precondition: the incident exists and is open."""
        if self.store is None:
            return None
        row = self.store.incident(args.incident)
        if row is None or row.status == IncidentStatus.CANCELLED:
            return f"there is no incident {number(args.incident)}"
        if row.status != IncidentStatus.OPEN:
            return f"{number(row)} is {row.status}; it takes no more changes"
        return None

    def exists(self, args: Any) -> str | None:
        """Precondition: the incident exists (open or resolved)."""
        if self.store is None:
            return None
        row = self.store.incident(args.incident)
        if row is None or row.status == IncidentStatus.CANCELLED:
            return f"there is no incident {number(args.incident)}"
        return None

    def not_changed(self, change: IncidentChange, n: int) -> ToolResult:
        """A change that did not happen, in plain words (None of them changed anything)."""
        if change.outcome is Outcome.MISSING or change.incident is None:
            return _failed(f"there is no incident {number(n)}")
        if change.outcome is Outcome.NOT_OPEN:
            return _failed(f"{number(n)} is {change.incident.status}; nothing was changed")
        return _failed(f"{number(n)} was changed by someone else meanwhile; nothing was changed")

    def to_channel(self, incident: Incident, text: str) -> list[Notice]:
        return [Notice(channel=incident.channel, text=text)] if incident.channel else []

    def elsewhere(self, row: Incident | None, ctx: ToolContext) -> ToolResult | None:
        """A private incident is changed only from its own channel, where its contents may
        be seen: asked anywhere else a change is refused (a role change would invite someone
        into its private channel, past the channel tools' reach; an update would post there
        words its members never saw asked)."""
        if row is None or may_see(row, ctx):
            return None
        where = f", <#{row.channel}>" if row.channel else ""
        return _failed(
            f"{number(row)} is private: it is changed only from its own channel{where}; ask there"
        )
