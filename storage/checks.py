"""Outcome checks (a runbook's verify): which are due, claimed once across replicas, and their
results (part of `storage.repo.Store`).

A check lives on its action's row: `verify_status` pending → running → passed | failed |
error (or canceled by an undo), `verify_at` (when due, then when done) and `verify_note`.
Claiming is one conditional update (pending, due, the action still succeeded, no pause
holding it → running with this process as `owner` and a `lease_until`), so of several replicas
exactly one wins. The action's `owner` and `lease_until` columns are free once its run has
finished, and a check uses them the way a run does. A check whose lease ran out (its process
died) goes back to pending; every claim is audited (`action.verify_started`), and those rows
are what bounds the attempts. Each result is written with its audit row and the Slack
messages it owes, in one transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import case, func, update
from sqlmodel import col, select

from storage import audit
from storage.db import Database
from storage.models import Action, ActionStatus, AuditEvent, VerifyStatus, utcnow
from storage.outbox import Notice, OutboxQueries
from storage.pauses import held_by_a_pause

if TYPE_CHECKING:
    from storage.repo import Audit

STARTED = "action.verify_started"
"""The audit kind of a claimed check: one row per attempt."""

OPEN = (VerifyStatus.PENDING.value, VerifyStatus.RUNNING.value)


def _append(s: Any, a: Audit, subject: str, before: str | None, after: str | None) -> None:
    audit.append(
        s,
        actor=a.actor,
        kind=a.kind,
        subject=subject,
        trace_id=a.trace_id,
        policy_version=a.policy_version,
        before=before,
        after=after,
        data=dict(a.data or {}),
    )


def cancel_open_check(note: str) -> dict[str, Any]:
    """`Store.transition` values that cancel an action's check if it has not finished (an
    undo: the outcome it would check is being reversed); a finished check stays as it was."""
    open_ = col(Action.verify_status).in_(OPEN)
    return {
        "verify_status": case(
            (open_, VerifyStatus.CANCELED.value), else_=col(Action.verify_status)
        ),
        "verify_note": case((open_, note), else_=col(Action.verify_note)),
    }


class CheckQueries:
    db: Database

    def due_checks(self, now: datetime, limit: int = 100) -> list[str]:
        """Actions whose check is pending and due at `now` (soonest first)."""
        with self.db.read() as s:
            return list(
                s.exec(
                    select(Action.id)
                    .where(
                        col(Action.verify_status) == VerifyStatus.PENDING.value,
                        col(Action.verify_at) <= now,
                        col(Action.status) == ActionStatus.SUCCEEDED.value,
                    )
                    .order_by(col(Action.verify_at))
                    .limit(limit)
                ).all()
            )

    def stale_checks(self, now: datetime, limit: int = 100) -> list[Action]:
        """Running checks whose lease ran out at `now`: their process died mid-check."""
        with self.db.read() as s:
            return list(
                s.exec(
                    select(Action)
                    .where(
                        col(Action.verify_status) == VerifyStatus.RUNNING.value,
                        col(Action.lease_until) < now,
                    )
                    .limit(limit)
                ).all()
            )

    def check_attempts(self, action_id: str) -> int:
        """How many times the action's check was claimed (its `action.verify_started` rows)."""
        with self.db.read() as s:
            return int(
                s.exec(
                    select(func.count())
                    .select_from(AuditEvent)
                    .where(col(AuditEvent.subject) == action_id, col(AuditEvent.kind) == STARTED)
                ).one()
            )

    def claim_check(
        self, action_id: str, owner: str, now: datetime, lease_until: datetime, audit_: Audit
    ) -> Action | None:
        """Take a due check to run it (None: not due, not pending, the action no longer
        succeeded, a pause holds it, or another replica won). Audited as `action.verify_started`
        with the attempt's number, in the same transaction."""
        with self.db.write() as s:
            won = s.exec(
                update(Action)
                .where(
                    col(Action.id) == action_id,
                    col(Action.verify_status) == VerifyStatus.PENDING.value,
                    col(Action.verify_at) <= now,
                    col(Action.status) == ActionStatus.SUCCEEDED.value,
                    ~held_by_a_pause(),  # the global pause, or a scope holding its action
                )
                .values(
                    verify_status=VerifyStatus.RUNNING.value,
                    owner=owner,
                    lease_until=lease_until,
                    updated_at=utcnow(),
                )
            )
            if won.rowcount != 1:
                return None
            attempt = 1 + int(
                s.exec(
                    select(func.count())
                    .select_from(AuditEvent)
                    .where(col(AuditEvent.subject) == action_id, col(AuditEvent.kind) == STARTED)
                ).one()
            )
            started = replace(
                audit_, kind=STARTED, data={**(audit_.data or {}), "attempt": attempt}
            )
            _append(s, started, action_id, VerifyStatus.PENDING.value, VerifyStatus.RUNNING.value)
            action = s.get(Action, action_id, populate_existing=True)
            assert action is not None
            return action

    def requeue_check(self, action_id: str, now: datetime, audit_: Audit) -> bool:
        """A running check whose lease ran out at `now` goes back to pending, unless someone
        else already moved it."""
        with self.db.write() as s:
            r = s.exec(
                update(Action)
                .where(
                    col(Action.id) == action_id,
                    col(Action.verify_status) == VerifyStatus.RUNNING.value,
                    col(Action.lease_until) < now,
                )
                .values(verify_status=VerifyStatus.PENDING.value, lease_until=None)
            )
            if r.rowcount != 1:
                return False
            _append(s, audit_, action_id, VerifyStatus.RUNNING.value, VerifyStatus.PENDING.value)
            return True

    def finish_check(
        self,
        action_id: str,
        owner: str,
        status: VerifyStatus,
        note: str,
        audit_: Audit,
        *,
        now: datetime,
        expired: bool = False,
        notices: Sequence[Notice] = (),
    ) -> Action | None:
        """Record a check's result if `owner` still holds it (or, `expired`, if its lease ran
        out at `now`: giving up on a dead owner's check); the audit row, the card's refresh
        and `notices` commit with it. None: someone else's, or canceled by an undo meanwhile."""
        with self.db.write() as s:
            stmt = update(Action).where(
                col(Action.id) == action_id,
                col(Action.verify_status) == VerifyStatus.RUNNING.value,
            )
            if expired:
                stmt = stmt.where(col(Action.lease_until) < now)
            else:
                stmt = stmt.where(col(Action.owner) == owner)
            r = s.exec(
                stmt.values(
                    verify_status=status.value,
                    verify_note=note,
                    verify_at=now,
                    lease_until=None,
                    updated_at=utcnow(),
                )
            )
            if r.rowcount != 1:
                return None
            _append(s, audit_, action_id, VerifyStatus.RUNNING.value, status.value)
            OutboxQueries._enqueue(s, [Notice(action_id=action_id), *notices])
            action = s.get(Action, action_id, populate_existing=True)
            assert action is not None
            return action
