"""Status-update reminders: while an incident is open, its lead is reminded in the channel
when no status update was posted for `[incidents] status_update_every` (`remind_due_incidents`,
the `bot.jobs:remind_incident_leads` job on every replica; a conditional update of
`next_reminder_at` decides, so two replicas remind once).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from bot.gate_text import span_text
from bot.incident_words import number, who
from storage.models import Incident
from storage.outbox import Notice

if TYPE_CHECKING:
    from bot.core import Core


def reminder_text(incident: Incident, now: datetime, every: str) -> str:
    """What a reminder posts: the lead mentioned, how long since the last status update."""
    minutes = int((now - incident.last_update_at).total_seconds() // 60)
    quiet = span_text(timedelta(minutes=max(1, minutes)))
    return (
        f":bell: {who(incident.lead)}, {number(incident)} ({incident.severity.upper()}) has "
        f"had no status update for {quiet}. Please post one through @warden (a status update "
        f"of {number(incident)}); the next reminder comes {every} after this one without one."
    )


def remind_due_incidents(core: Core) -> int:
    """Remind the lead of every open incident whose status update is overdue at the core's
    clock, each reminder once across replicas (the storage claim decides), and move the next
    one `status_update_every` on. Returns how many this replica posted."""
    now = core.clock()
    every = core.policy.incidents.status_update_every
    posted = 0
    for incident in core.store.due_incident_reminders(now):
        due = incident.next_reminder_at
        if due is None or incident.channel is None:  # pragma: no cover - the query excludes them
            continue
        notice = Notice(
            channel=incident.channel, text=reminder_text(incident, now, span_text(every))
        )
        if core.store.claim_incident_reminder(
            int(incident.id or 0),
            due=due,
            next_at=now + every,
            notice=notice,
            policy_version=core.policy.version,
        ):
            posted += 1
    if posted:
        core.kick()
    return posted
