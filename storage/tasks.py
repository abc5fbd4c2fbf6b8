"""Tasks and reminders (part of `storage.repo.Store`).

A task or reminder is created once per action: the insert is guarded by the unique
`action_id`, so a retried call finds the row the first one made. Every later change is one
conditional update whose row count decides it: a task is completed only while it is open and
reopened only by the undo of the action that completed it; a reminder is cancelled only
while it is active.

Firing a reminder is a claim: `UPDATE reminder SET next_at = :next … WHERE id = :id AND
next_at = :due` (and not cancelled, and no pause holding it: `held_in`), so of two replicas
that both saw it due exactly one moves it on; that one writes the message (an outbox row) and
the audit row in the same transaction. Nothing here reads a row to decide a write outside the
write's own transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import and_, delete, exists, or_, update
from sqlmodel import col, select

from storage import audit
from storage.db import Database
from storage.models import Action, Control, PauseKind, PauseScope, Reminder, Task, TaskStatus
from storage.outbox import Notice, OutboxQueries, insert_for


class Change(StrEnum):
    """What a conditional change of a task or reminder did."""

    DONE = "done"  # this call changed it
    REPEATED = "repeated"  # this same action had already changed it (a retried call)
    ALREADY = "already"  # it was already so: nothing changed
    CHANGED = "changed"  # someone else changed it since: an undo leaves it as it is
    MISSING = "missing"  # no such row


@dataclass(kw_only=True, frozen=True)
class TaskChange:
    """The outcome of assigning or completing a task, with the row as it is now."""

    change: Change
    task: Task | None = None
    previous_assignee: str | None = None


def held_in(channel: Any, tool: str | None = None, risk: str | None = None) -> Any:
    """True while a pause holds what Warden posts by itself in `channel` (a column, correlated
    with the row a statement updates, or a value): the global pause, or an active scope naming
    that channel — or `tool`, or a tier `risk` is in, for posts a tool's call set up (a
    reminder's). The rule `storage.pauses.held_by_a_pause` puts on an action's claim, for the
    posts of reminders, which are no actions: `/pause channel:#ops` quiets #ops."""
    scopes = [
        and_(col(PauseScope.kind) == PauseKind.CHANNEL.value, col(PauseScope.value) == channel)
    ]
    if tool is not None:
        scopes.append(
            and_(col(PauseScope.kind) == PauseKind.TOOL.value, col(PauseScope.value) == tool)
        )
    if risk is not None:
        scopes.append(
            and_(
                col(PauseScope.kind) == PauseKind.TIER.value,
                col(PauseScope.tiers).like(f"%,{risk},%"),
            )
        )
    return or_(
        exists().where(col(Control.id) == 1, col(Control.paused).is_(True)),
        exists().where(col(PauseScope.ended_at).is_(None), or_(*scopes)),
    )


def _scope(table: type[Task] | type[Reminder], channel: str, dm_person: str | None) -> Any:
    """Rows a lookup made in `channel` may show: the channel's own, and — asked in
    `dm_person`'s own DM with Warden — theirs (created by them, or a task assigned to them)
    in channels, never in another DM."""
    own = col(table.channel) == channel
    if dm_person is None:
        return own
    person = (
        or_(col(Task.created_by) == dm_person, col(Task.assignee) == dm_person)
        if table is Task
        else col(Reminder.created_by) == dm_person
    )
    return or_(own, person & ~col(table.channel).startswith("D"))


class TaskQueries:
    db: Database

    # -- tasks ----------------------------------------------------------------------------

    def create_task(
        self,
        *,
        title: str,
        channel: str,
        created_by: str,
        assignee: str | None,
        due: date | None,
        action_id: str,
        now: datetime,
    ) -> Task:
        """The task `action_id` creates: inserted once; a retried call gets the same row."""
        table = Task.__table__  # type: ignore[attr-defined]
        stmt = (
            insert_for(self.db, table)
            .values(
                title=title,
                channel=channel,
                created_by=created_by,
                assignee=assignee,
                status=TaskStatus.OPEN,
                due=due,
                action_id=action_id,
                created_at=now,
            )
            .on_conflict_do_nothing(index_elements=["action_id"])
        )
        with self.db.write() as s:
            s.execute(stmt)
            row = s.exec(select(Task).where(col(Task.action_id) == action_id)).one()
            return row

    def task(self, task_id: int) -> Task | None:
        with self.db.read() as s:
            return s.get(Task, task_id)

    def delete_task(self, task_id: int, action_id: str) -> Change:
        """Undo of a create: the task `action_id` created is deleted (DONE), unless someone
        other than its creator has worked on it since — completed it, or made its latest
        assignment or completion (CHANGED: it stays) — decided in the delete's own WHERE.
        MISSING: it is gone already."""
        others_completed = and_(
            col(Task.completed_by).is_not(None), col(Task.completed_by) != col(Task.created_by)
        )
        others_changed = (
            select(Action.id)
            .where(
                col(Action.id) == col(Task.changed_by_action),
                col(Action.requester) != col(Task.created_by),
            )
            .correlate(Task)
            .exists()
        )
        with self.db.write() as s:
            r = s.exec(
                delete(Task).where(
                    col(Task.id) == task_id,
                    col(Task.action_id) == action_id,
                    ~others_completed,
                    ~others_changed,
                )
            )
            if r.rowcount == 1:
                return Change.DONE
            gone = s.exec(
                select(Task.id).where(col(Task.id) == task_id, col(Task.action_id) == action_id)
            ).first()
            return Change.MISSING if gone is None else Change.CHANGED

    def assign_task(self, task_id: int, assignee: str, action_id: str) -> TaskChange:
        """Give the task to `assignee`, remembering who had it. The row is locked and the
        update conditioned on the assignee read, in one transaction."""
        with self.db.write() as s:
            row = s.exec(select(Task).where(col(Task.id) == task_id).with_for_update()).first()
            if row is None:
                return TaskChange(change=Change.MISSING)
            if row.changed_by_action == action_id:
                return TaskChange(
                    change=Change.REPEATED, task=row, previous_assignee=row.previous_assignee
                )
            if row.assignee == assignee:
                return TaskChange(change=Change.ALREADY, task=row, previous_assignee=assignee)
            # Read before the update: an ORM update also refreshes `row` in this session.
            previous = row.assignee
            held = (
                col(Task.assignee).is_(None) if previous is None else col(Task.assignee) == previous
            )
            r = s.exec(
                update(Task)
                .where(col(Task.id) == task_id, held)
                .values(
                    assignee=assignee,
                    previous_assignee=previous,
                    changed_by_action=action_id,
                )
            )
            if r.rowcount != 1:
                return TaskChange(change=Change.ALREADY, task=row)
            s.refresh(row)
            return TaskChange(change=Change.DONE, task=row, previous_assignee=previous)

    def unassign_task(self, task_id: int, action_id: str, previous: str | None) -> bool:
        """Undo of an assignment: `previous` gets the task back, unless someone changed it
        since (then False and nothing changes)."""
        with self.db.write() as s:
            r = s.exec(
                update(Task)
                .where(col(Task.id) == task_id, col(Task.changed_by_action) == action_id)
                .values(assignee=previous, previous_assignee=None, changed_by_action=None)
            )
            return r.rowcount == 1

    def complete_task(self, task_id: int, by: str, action_id: str, now: datetime) -> TaskChange:
        """Mark an open task done; a done one is left as it is."""
        with self.db.write() as s:
            r = s.exec(
                update(Task)
                .where(col(Task.id) == task_id, col(Task.status) == TaskStatus.OPEN)
                .values(
                    status=TaskStatus.DONE,
                    completed_at=now,
                    completed_by=by,
                    changed_by_action=action_id,
                )
            )
            row = s.get(Task, task_id)
            if row is None:
                return TaskChange(change=Change.MISSING)
            if r.rowcount == 1:
                return TaskChange(change=Change.DONE, task=row)
            if row.changed_by_action == action_id:
                return TaskChange(change=Change.REPEATED, task=row)
            return TaskChange(change=Change.ALREADY, task=row)

    def reopen_task(self, task_id: int, action_id: str) -> bool:
        """Undo of a completion: only the completion `action_id` made is reversed."""
        with self.db.write() as s:
            r = s.exec(
                update(Task)
                .where(
                    col(Task.id) == task_id,
                    col(Task.status) == TaskStatus.DONE,
                    col(Task.changed_by_action) == action_id,
                )
                .values(
                    status=TaskStatus.OPEN,
                    completed_at=None,
                    completed_by=None,
                    changed_by_action=None,
                )
            )
            return r.rowcount == 1

    def tasks_visible(
        self,
        channel: str,
        *,
        dm_person: str | None = None,
        status: str | None = TaskStatus.OPEN,
        assignee: str | None = None,
        limit: int = 50,
    ) -> list[Task]:
        """Tasks a lookup made in `channel` may show (see `_scope`), oldest first."""
        stmt = select(Task).where(_scope(Task, channel, dm_person))
        if status is not None:
            stmt = stmt.where(col(Task.status) == status)
        if assignee is not None:
            stmt = stmt.where(col(Task.assignee) == assignee)
        with self.db.read() as s:
            return list(s.exec(stmt.order_by(col(Task.id)).limit(limit)).all())

    def tasks_of_person(self, person: str, limit: int = 15) -> list[Task]:
        """Open tasks assigned to `person` or created by them (the App Home), theirs first."""
        with self.db.read() as s:
            rows = s.exec(
                select(Task)
                .where(
                    col(Task.status) == TaskStatus.OPEN,
                    or_(col(Task.assignee) == person, col(Task.created_by) == person),
                )
                .order_by(col(Task.id))
                .limit(limit * 4)
            ).all()
        mine = [t for t in rows if t.assignee == person]
        return (mine + [t for t in rows if t.assignee != person])[:limit]

    # -- reminders ------------------------------------------------------------------------

    def create_reminder(
        self,
        *,
        channel: str,
        text: str,
        cron: str | None,
        timezone: str,
        at: datetime | None,
        next_at: datetime,
        created_by: str,
        action_id: str,
        now: datetime,
    ) -> Reminder:
        """The reminder `action_id` creates: inserted once; a retried call gets the same row."""
        table = Reminder.__table__  # type: ignore[attr-defined]
        stmt = (
            insert_for(self.db, table)
            .values(
                channel=channel,
                text=text,
                cron=cron,
                timezone=timezone,
                at=at,
                next_at=next_at,
                created_by=created_by,
                action_id=action_id,
                created_at=now,
                fired_count=0,
            )
            .on_conflict_do_nothing(index_elements=["action_id"])
        )
        with self.db.write() as s:
            s.execute(stmt)
            return s.exec(select(Reminder).where(col(Reminder.action_id) == action_id)).one()

    def reminder(self, reminder_id: int) -> Reminder | None:
        with self.db.read() as s:
            return s.get(Reminder, reminder_id)

    def cancel_reminder(
        self, reminder_id: int, by: str, now: datetime
    ) -> tuple[Change, Reminder | None]:
        """Cancel an active reminder (one that has an occurrence to come). Its `next_at`
        stays, so a restore (`restore_reminder`) is as if it had never been cancelled."""
        with self.db.write() as s:
            r = s.exec(
                update(Reminder)
                .where(
                    col(Reminder.id) == reminder_id,
                    col(Reminder.cancelled_at).is_(None),
                    col(Reminder.next_at).is_not(None),
                )
                .values(cancelled_at=now, cancelled_by=by)
            )
            row = s.get(Reminder, reminder_id)
            if row is None:
                return Change.MISSING, None
            return (Change.DONE if r.rowcount == 1 else Change.ALREADY), row

    def restore_reminder(self, reminder_id: int, cancelled_at: datetime) -> bool:
        """Undo of a cancel: only the cancellation made at `cancelled_at` is reversed. An
        occurrence that fell due meanwhile fires once, at the next run of the job."""
        with self.db.write() as s:
            r = s.exec(
                update(Reminder)
                .where(
                    col(Reminder.id) == reminder_id,
                    col(Reminder.cancelled_at) == cancelled_at,
                )
                .values(cancelled_at=None, cancelled_by=None)
            )
            return r.rowcount == 1

    def due_reminders(self, now: datetime, limit: int = 100) -> list[Reminder]:
        """Active reminders whose next occurrence is at or before `now`, earliest first."""
        with self.db.read() as s:
            return list(
                s.exec(
                    select(Reminder)
                    .where(
                        col(Reminder.cancelled_at).is_(None),
                        col(Reminder.next_at).is_not(None),
                        col(Reminder.next_at) <= now,
                    )
                    .order_by(col(Reminder.next_at), col(Reminder.id))
                    .limit(limit)
                ).all()
            )

    def fire_reminder(
        self,
        reminder_id: int,
        *,
        due: datetime,
        next_at: datetime | None,
        now: datetime,
        notice: Notice,
        policy_version: str = "",
        tool: str | None = None,
        risk: str | None = None,
    ) -> bool:
        """Claim the occurrence due at `due` and owe its message: True for the one caller
        whose conditional update moved `next_at` on (to `next_at`; None: a one-off is done),
        which wrote the message and the `reminder.fired` audit row in the same transaction.
        Nothing fires while a pause holds it (`held_in`: Warden paused, or a scope naming its
        channel, or `tool` / a tier `risk` is in — the tool that set reminders up), nor once
        the reminder is cancelled; what a pause held fires once it ends."""
        with self.db.write() as s:
            r = s.exec(
                update(Reminder)
                .where(
                    col(Reminder.id) == reminder_id,
                    col(Reminder.next_at) == due,
                    col(Reminder.cancelled_at).is_(None),
                    ~held_in(col(Reminder.channel), tool, risk),
                )
                .values(
                    next_at=next_at,
                    last_fired_at=now,
                    fired_count=Reminder.fired_count + 1,
                )
            )
            if r.rowcount != 1:
                return False
            audit.append(
                s,
                actor="warden",
                kind="reminder.fired",
                subject=f"reminder:{reminder_id}",
                policy_version=policy_version,
                data={
                    "channel": notice.channel,
                    "due": due.isoformat(),
                    "next": next_at.isoformat() if next_at else None,
                },
            )
            OutboxQueries._enqueue(s, [notice])
            return True

    def reminders_visible(
        self, channel: str, *, dm_person: str | None = None, limit: int = 50
    ) -> list[Reminder]:
        """Active reminders a lookup made in `channel` may show, soonest first."""
        with self.db.read() as s:
            return list(
                s.exec(
                    select(Reminder)
                    .where(
                        _scope(Reminder, channel, dm_person),
                        col(Reminder.cancelled_at).is_(None),
                        col(Reminder.next_at).is_not(None),
                    )
                    .order_by(col(Reminder.next_at), col(Reminder.id))
                    .limit(limit)
                ).all()
            )
