"""Incidents and their timelines (part of `storage.repo.Store`).

An incident is stored once per declaring action: the insert is guarded by the unique
`action_id`, so a retried declaration finds the row (and the channel name) the first run
chose, before any channel exists. Every later change is one write transaction that

- finds the timeline entry this action already wrote (a retried call: `REPEATED`, nothing
  changes again),
- changes the incident with a conditional update — on the status it must have, and for a
  restore on the value this action set — whose row count decides,
- writes the timeline entry, and the Slack message the change owes (an outbox row).

Reminding the lead to post a status update is a claim: `UPDATE incident SET
next_reminder_at = :next WHERE id = :id AND next_reminder_at = :due AND status = 'open'`
(and no pause holding its channel: `storage.tasks.held_in`), so of two replicas that both saw
it due exactly one posts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import delete, update
from sqlmodel import Session, col, select

from storage import audit
from storage.db import Database
from storage.models import Incident, IncidentEvent, IncidentStatus
from storage.outbox import Notice, OutboxQueries, insert_for
from storage.tasks import held_in


class Outcome(StrEnum):
    """What a change of an incident did."""

    DONE = "done"  # this call changed it
    REPEATED = "repeated"  # this same action had already changed it (a retried call)
    ALREADY = "already"  # it was already so: nothing changed, nothing recorded
    NOT_OPEN = "not_open"  # it is resolved or cancelled (or, to reopen, not resolved)
    CHANGED = "changed"  # someone changed it since: a restore leaves it as it is
    MISSING = "missing"  # no such incident


@dataclass(kw_only=True, frozen=True)
class IncidentChange:
    """The outcome of a change, with the incident as it is now and what it replaced."""

    outcome: Outcome
    incident: Incident | None = None
    previous: str | None = None


@dataclass(kw_only=True, frozen=True)
class Entry:
    """A timeline entry to record with a change."""

    kind: str
    author: str
    at: datetime
    text: str
    action_id: str | None


ROLES = ("lead", "comms")


def _record(s: Session, incident_id: int, entry: Entry, notices: Sequence[Notice]) -> None:
    s.add(
        IncidentEvent(
            incident_id=incident_id,
            at=entry.at,
            kind=entry.kind,
            author=entry.author,
            text=entry.text,
            action_id=entry.action_id,
        )
    )
    if notices:
        OutboxQueries._enqueue(s, notices)


def _recorded(s: Session, entry: Entry) -> bool:
    """Whether this action already wrote this kind of entry (a retried call)."""
    if entry.action_id is None:
        return False
    return (
        s.exec(
            select(IncidentEvent.id).where(
                col(IncidentEvent.action_id) == entry.action_id,
                col(IncidentEvent.kind) == entry.kind,
            )
        ).first()
        is not None
    )


class IncidentQueries:
    db: Database

    # -- declaring -----------------------------------------------------------------------

    def declare_incident(
        self,
        *,
        title: str,
        severity: str,
        private: bool,
        channel_name: str,
        lead: str,
        comms: str | None,
        action_id: str,
        entry: Entry,
        next_reminder_at: datetime,
    ) -> tuple[Incident, bool]:
        """The incident `action_id` declares: inserted once, with its `declared` entry; a
        retried call gets the same row. True when this call inserted it."""
        table = Incident.__table__  # type: ignore[attr-defined]
        stmt = (
            insert_for(self.db, table)
            .values(
                title=title,
                severity=severity,
                status=IncidentStatus.OPEN,
                private=private,
                channel_name=channel_name,
                lead=lead,
                comms=comms,
                created_by=entry.author,
                action_id=action_id,
                declared_at=entry.at,
                last_update_at=entry.at,
                next_reminder_at=next_reminder_at,
            )
            .on_conflict_do_nothing(index_elements=["action_id"])
            .returning(table.c.id)
        )
        with self.db.write() as s:
            inserted = s.execute(stmt).first()
            row = s.exec(select(Incident).where(col(Incident.action_id) == action_id)).one()
            if inserted is not None:
                _record(s, int(row.id or 0), entry, ())
            return row, inserted is not None

    def set_incident_channel(
        self, incident_id: int, channel: str, notices: Sequence[Notice]
    ) -> bool:
        """Record the channel an open incident got, and owe its first messages (the
        summary), once: False if it already had one (a retried call)."""
        with self.db.write() as s:
            r = s.exec(
                update(Incident)
                .where(
                    col(Incident.id) == incident_id,
                    col(Incident.channel).is_(None),
                    col(Incident.status) == IncidentStatus.OPEN,
                )
                .values(channel=channel)
            )
            if r.rowcount != 1:
                return False
            OutboxQueries._enqueue(s, notices)
            return True

    def cancel_incident(
        self,
        incident_id: int,
        entry: Entry,
        notices: Sequence[Notice],
        *,
        unless_others_changed: bool = False,
    ) -> Outcome:
        """The declaration of `entry.action_id` is undone (or its channel could not be
        made): the incident is cancelled and no longer reminds anyone. DONE: cancelled now;
        NOT_OPEN: it was already cancelled; MISSING: no such incident, or another action
        declared it. `unless_others_changed` (an Undo): only while every timeline entry is
        its declarer's own — once someone else has worked on it (a status update, a role, a
        note…), CHANGED and it stays as it is; decided in the update's own WHERE."""
        held = [
            col(Incident.id) == incident_id,
            col(Incident.action_id) == entry.action_id,
            col(Incident.status) != IncidentStatus.CANCELLED,
        ]
        if unless_others_changed:
            others = (
                select(IncidentEvent.id)
                .where(
                    col(IncidentEvent.incident_id) == incident_id,
                    col(IncidentEvent.author) != col(Incident.created_by),
                )
                .correlate(Incident)
                .exists()
            )
            held.append(~others)
        with self.db.write() as s:
            r = s.exec(
                update(Incident)
                .where(*held)
                .values(status=IncidentStatus.CANCELLED, next_reminder_at=None)
            )
            if r.rowcount == 1:
                _record(s, incident_id, entry, notices)
                return Outcome.DONE
            row = s.get(Incident, incident_id)
            if row is None or row.action_id != entry.action_id:
                return Outcome.MISSING
            if row.status == IncidentStatus.CANCELLED:
                return Outcome.NOT_OPEN
            return Outcome.CHANGED

    # -- reading -------------------------------------------------------------------------

    def incident(self, incident_id: int) -> Incident | None:
        with self.db.read() as s:
            return s.get(Incident, incident_id)

    def open_incidents(self, limit: int = 50) -> list[Incident]:
        """Open incidents, the most severe first, then the oldest."""
        with self.db.read() as s:
            return list(
                s.exec(
                    select(Incident)
                    .where(col(Incident.status) == IncidentStatus.OPEN)
                    .order_by(col(Incident.severity), col(Incident.id))
                    .limit(limit)
                ).all()
            )

    def incident_timeline(self, incident_id: int, limit: int = 1000) -> list[IncidentEvent]:
        """An incident's timeline, oldest first (entries written at the same moment in the
        order they were written)."""
        with self.db.read() as s:
            return list(
                s.exec(
                    select(IncidentEvent)
                    .where(col(IncidentEvent.incident_id) == incident_id)
                    .order_by(col(IncidentEvent.at), col(IncidentEvent.id))
                    .limit(limit)
                ).all()
            )

    # -- changes -------------------------------------------------------------------------

    def _change(
        self,
        incident_id: int,
        entry: Entry,
        notices: Sequence[Notice],
        *,
        statuses: Sequence[str],
        field: str | None,
        value: Any,
        extra: dict[str, Any] | None = None,
    ) -> IncidentChange:
        """Set `field` to `value` (and `extra`) on an incident whose status is one of
        `statuses`, conditioned on the value read, and record `entry` with `notices`."""
        with self.db.write() as s:
            row = s.exec(
                select(Incident).where(col(Incident.id) == incident_id).with_for_update()
            ).first()
            if row is None:
                return IncidentChange(outcome=Outcome.MISSING)
            if _recorded(s, entry):
                return IncidentChange(outcome=Outcome.REPEATED, incident=row)
            if row.status not in statuses:
                return IncidentChange(outcome=Outcome.NOT_OPEN, incident=row)
            previous = getattr(row, field) if field is not None else None
            if field is not None and previous == value:
                return IncidentChange(outcome=Outcome.ALREADY, incident=row, previous=previous)
            held = [col(Incident.id) == incident_id, col(Incident.status) == row.status]
            if field is not None:
                column = getattr(Incident, field)
                held.append(column.is_(None) if previous is None else column == previous)
            values = dict(extra or {})
            if field is not None:
                values[field] = value
            if values:
                r = s.exec(update(Incident).where(*held).values(**values))
                if r.rowcount != 1:
                    return IncidentChange(outcome=Outcome.CHANGED, incident=row)
            _record(s, incident_id, entry, notices)
            s.refresh(row)
            return IncidentChange(
                outcome=Outcome.DONE,
                incident=row,
                previous=str(previous) if previous is not None else None,
            )

    def assign_incident_role(
        self, incident_id: int, role: str, person: str, entry: Entry, notices: Sequence[Notice]
    ) -> IncidentChange:
        """Give `role` (lead or comms) of an open incident to `person`, keeping who had it."""
        if role not in ROLES:
            raise ValueError(f"unknown incident role {role!r}")
        return self._change(
            incident_id,
            entry,
            notices,
            statuses=[IncidentStatus.OPEN],
            field=role,
            value=person,
        )

    def set_incident_severity(
        self, incident_id: int, severity: str, entry: Entry, notices: Sequence[Notice]
    ) -> IncidentChange:
        """Change an open incident's severity, keeping the one it had."""
        return self._change(
            incident_id,
            entry,
            notices,
            statuses=[IncidentStatus.OPEN],
            field="severity",
            value=severity,
        )

    def restore_incident_field(
        self,
        incident_id: int,
        field: str,
        *,
        now_value: str,
        previous: str | None,
        entry: Entry,
        notices: Sequence[Notice],
    ) -> IncidentChange:
        """Undo of a role or severity change: `field` goes back to `previous`, only while it
        is still `now_value` (what the undone action set) and the incident is open."""
        if field not in (*ROLES, "severity"):
            raise ValueError(f"{field!r} cannot be restored")
        column = getattr(Incident, field)
        with self.db.write() as s:
            if _recorded(s, entry):
                return IncidentChange(
                    outcome=Outcome.REPEATED, incident=s.get(Incident, incident_id)
                )
            r = s.exec(
                update(Incident)
                .where(
                    col(Incident.id) == incident_id,
                    col(Incident.status) == IncidentStatus.OPEN,
                    column == now_value,
                )
                .values(**{field: previous})
            )
            row = s.get(Incident, incident_id)
            if row is None:
                return IncidentChange(outcome=Outcome.MISSING)
            if r.rowcount != 1:
                outcome = Outcome.NOT_OPEN if row.status != IncidentStatus.OPEN else Outcome.CHANGED
                return IncidentChange(outcome=outcome, incident=row)
            _record(s, incident_id, entry, notices)
            s.refresh(row)
            return IncidentChange(outcome=Outcome.DONE, incident=row, previous=now_value)

    def post_incident_update(
        self, incident_id: int, entry: Entry, notices: Sequence[Notice], next_reminder_at: datetime
    ) -> IncidentChange:
        """Record a status update of an open incident and owe its post: the lead's next
        reminder moves to `next_reminder_at`."""
        return self._change(
            incident_id,
            entry,
            notices,
            statuses=[IncidentStatus.OPEN],
            field=None,
            value=None,
            extra={"last_update_at": entry.at, "next_reminder_at": next_reminder_at},
        )

    def add_incident_note(self, incident_id: int, entry: Entry) -> IncidentChange:
        """Add an entry to the timeline of an open or resolved incident (a post-mortem note
        is welcome after the fact; a cancelled incident takes none)."""
        return self._change(
            incident_id,
            entry,
            (),
            statuses=[IncidentStatus.OPEN, IncidentStatus.RESOLVED],
            field=None,
            value=None,
        )

    def delete_incident_note(self, incident_id: int, action_id: str, kind: str) -> bool:
        """Undo of a timeline entry: the entry `action_id` wrote is deleted (False: gone)."""
        with self.db.write() as s:
            r = s.exec(
                delete(IncidentEvent).where(
                    col(IncidentEvent.incident_id) == incident_id,
                    col(IncidentEvent.action_id) == action_id,
                    col(IncidentEvent.kind) == kind,
                )
            )
            return r.rowcount == 1

    def resolve_incident(
        self, incident_id: int, summary: str, entry: Entry, notices: Sequence[Notice]
    ) -> IncidentChange:
        """Resolve an open incident with its summary: no more reminders."""
        return self._change(
            incident_id,
            entry,
            notices,
            statuses=[IncidentStatus.OPEN],
            field="status",
            value=IncidentStatus.RESOLVED,
            extra={
                "resolved_at": entry.at,
                "resolved_by_action": entry.action_id,
                "summary": summary,
                "next_reminder_at": None,
            },
        )

    def reopen_incident(
        self,
        incident_id: int,
        resolved_by: str,
        entry: Entry,
        notices: Sequence[Notice],
        next_reminder_at: datetime,
    ) -> IncidentChange:
        """Undo of a resolution: only the resolution `resolved_by` made is reversed; the
        lead is reminded again from `next_reminder_at`."""
        with self.db.write() as s:
            if _recorded(s, entry):
                return IncidentChange(
                    outcome=Outcome.REPEATED, incident=s.get(Incident, incident_id)
                )
            r = s.exec(
                update(Incident)
                .where(
                    col(Incident.id) == incident_id,
                    col(Incident.status) == IncidentStatus.RESOLVED,
                    col(Incident.resolved_by_action) == resolved_by,
                )
                .values(
                    status=IncidentStatus.OPEN,
                    resolved_at=None,
                    resolved_by_action=None,
                    next_reminder_at=next_reminder_at,
                )
            )
            row = s.get(Incident, incident_id)
            if row is None:
                return IncidentChange(outcome=Outcome.MISSING)
            if r.rowcount != 1:
                return IncidentChange(outcome=Outcome.CHANGED, incident=row)
            _record(s, incident_id, entry, notices)
            s.refresh(row)
            return IncidentChange(outcome=Outcome.DONE, incident=row)

    # -- status-update reminders ---------------------------------------------------------

    def due_incident_reminders(self, now: datetime, limit: int = 100) -> list[Incident]:
        """Open incidents with a channel whose lead is due a reminder, the earliest first."""
        with self.db.read() as s:
            return list(
                s.exec(
                    select(Incident)
                    .where(
                        col(Incident.status) == IncidentStatus.OPEN,
                        col(Incident.channel).is_not(None),
                        col(Incident.next_reminder_at).is_not(None),
                        col(Incident.next_reminder_at) <= now,
                    )
                    .order_by(col(Incident.next_reminder_at), col(Incident.id))
                    .limit(limit)
                ).all()
            )

    def claim_incident_reminder(
        self,
        incident_id: int,
        *,
        due: datetime,
        next_at: datetime,
        notice: Notice,
        policy_version: str = "",
    ) -> bool:
        """Claim the reminder due at `due` and owe its message: True for the one caller
        whose conditional update moved `next_reminder_at` on to `next_at`; it wrote the
        message and the `incident.reminded` audit row in the same transaction. Nothing is
        claimed while Warden is paused or a scoped pause names the incident's channel, nor
        once the incident is resolved or cancelled."""
        with self.db.write() as s:
            r = s.exec(
                update(Incident)
                .where(
                    col(Incident.id) == incident_id,
                    col(Incident.next_reminder_at) == due,
                    col(Incident.status) == IncidentStatus.OPEN,
                    col(Incident.channel).is_not(None),
                    ~held_in(col(Incident.channel)),
                )
                .values(next_reminder_at=next_at)
            )
            if r.rowcount != 1:
                return False
            audit.append(
                s,
                actor="warden",
                kind="incident.reminded",
                subject=f"incident:{incident_id}",
                policy_version=policy_version,
                data={
                    "channel": notice.channel,
                    "due": due.isoformat(),
                    "next": next_at.isoformat(),
                },
            )
            OutboxQueries._enqueue(s, [notice])
            return True
