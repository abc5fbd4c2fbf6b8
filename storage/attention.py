"""Keeping a waiting card in people's sight (part of `storage.repo.Store`): reminders and
escalation, approvers' 30-minute grants, and the review of break glass.

Reminding and escalating are claims, as firing a reminder is: `UPDATE action SET
reminded_at = :now … WHERE id = :id AND reminded_at IS NULL AND status =
'awaiting_approval'` (and the card has not expired), so of every replica that saw the card
due exactly one moves it on, and that one writes the DMs (outbox rows of kind `nudge`, one
per person), the card's refresh and the audit row in the same transaction. Acknowledging a
break glass is one conditional update too. Grants are plain rows: whether one counts for a
new call is the gate's to say, each time.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import ColumnElement, and_, or_, update
from sqlmodel import Session, col, select

from storage import audit
from storage.db import Database
from storage.models import Action, ActionStatus, ApprovalGrant, Outbox, utcnow
from storage.outbox import Notice, OutboxQueries

if TYPE_CHECKING:
    from storage.repo import Audit

NUDGE = "nudge"
"""Outbox kind: a DM to `channel` (a user id) reminding them of `action_id`'s card."""


def _append(s: Session, a: Audit, subject: str, extra: dict[str, object]) -> None:
    audit.append(
        s,
        actor=a.actor,
        kind=a.kind,
        subject=subject,
        trace_id=a.trace_id,
        policy_version=a.policy_version,
        data={**(a.data or {}), **extra},
    )


def _waiting(now: datetime) -> ColumnElement[bool]:
    """A card still waiting: awaiting approval and not expired at `now`."""
    return and_(
        col(Action.status) == ActionStatus.AWAITING_APPROVAL,
        or_(col(Action.expires_at).is_(None), col(Action.expires_at) > now),
    )


class AttentionQueries:
    db: Database

    # -- reminders and escalation -----------------------------------------------------------

    def cards_to_remind(
        self, proposed_before: datetime, now: datetime, limit: int = 100
    ) -> list[Action]:
        """Waiting cards proposed at or before `proposed_before` whose approvers were not
        reminded yet, oldest first."""
        with self.db.read() as s:
            return list(
                s.exec(
                    select(Action)
                    .where(
                        _waiting(now),
                        col(Action.reminded_at).is_(None),
                        col(Action.created_at) <= proposed_before,
                    )
                    .order_by(col(Action.created_at))
                    .limit(limit)
                ).all()
            )

    def remind(self, action_id: str, people: Sequence[str], now: datetime, audit_: Audit) -> bool:
        """Claim a card's reminder: True for the one caller whose conditional update set
        `reminded_at`, which also owed each of `people` a DM, the card its "Reminded …" line
        and the audit row, in the same transaction."""
        with self.db.write() as s:
            won = s.exec(
                update(Action)
                .where(
                    col(Action.id) == action_id,
                    col(Action.reminded_at).is_(None),
                    _waiting(now),
                )
                .values(reminded_at=now, reminded_users=",".join(people))
            ).rowcount
            if won != 1:
                return False
            _append(s, audit_, action_id, {"reminded": list(people)})
            OutboxQueries._enqueue(s, [Notice(action_id=action_id)])
            at = utcnow()
            for person in people:
                s.add(
                    Outbox(
                        kind=NUDGE,
                        channel=person,
                        action_id=action_id,
                        created_at=at,
                        next_at=at,
                    )
                )
            return True

    def cards_to_escalate(
        self, proposed_before: datetime, now: datetime, limit: int = 100
    ) -> list[Action]:
        """Waiting cards proposed at or before `proposed_before` not escalated yet."""
        with self.db.read() as s:
            return list(
                s.exec(
                    select(Action)
                    .where(
                        _waiting(now),
                        col(Action.escalated_at).is_(None),
                        col(Action.created_at) <= proposed_before,
                    )
                    .order_by(col(Action.created_at))
                    .limit(limit)
                ).all()
            )

    def escalate(self, action_id: str, now: datetime, audit_: Audit, notice: Notice) -> bool:
        """Claim a card's escalation: True for the one caller whose conditional update set
        `escalated_at`, which also owed the admin channel `notice`, the card its
        "Escalated …" line and the audit row, in the same transaction."""
        with self.db.write() as s:
            won = s.exec(
                update(Action)
                .where(
                    col(Action.id) == action_id,
                    col(Action.escalated_at).is_(None),
                    _waiting(now),
                )
                .values(escalated_at=now)
            ).rowcount
            if won != 1:
                return False
            _append(s, audit_, action_id, {"channel": notice.channel})
            OutboxQueries._enqueue(s, [Notice(action_id=action_id), notice])
            return True

    # -- 30-minute grants -------------------------------------------------------------------

    def record_grant(self, grant: ApprovalGrant, audit_: Audit) -> ApprovalGrant:
        """Store a grant with its `approval.granted` audit row (one transaction)."""
        with self.db.write() as s:
            s.add(grant)
            s.flush()
            s.refresh(grant)
            _append(
                s,
                audit_,
                grant.action_id,
                {"grant": grant.id, "until": grant.until.isoformat(), "tool": grant.tool},
            )
            s.expunge(grant)
            return grant

    def grants_for_call(self, tool: str, args_digest: str, now: datetime) -> list[ApprovalGrant]:
        """Grants for calls of `tool` with these arguments that have not run out at `now`,
        oldest first (whether each counts is the gate's to say)."""
        with self.db.read() as s:
            return list(
                s.exec(
                    select(ApprovalGrant)
                    .where(
                        col(ApprovalGrant.tool) == tool,
                        col(ApprovalGrant.args_digest) == args_digest,
                        col(ApprovalGrant.until) > now,
                    )
                    .order_by(col(ApprovalGrant.id))
                    .limit(50)
                ).all()
            )

    def channels_of(self, action_ids: Iterable[str]) -> dict[str, str]:
        """The channel each of `action_ids` was asked in (a grant's card: where it was given)."""
        wanted = sorted(set(action_ids))
        if not wanted:
            return {}
        with self.db.read() as s:
            rows = s.exec(select(Action.id, Action.channel).where(col(Action.id).in_(wanted)))
            return {str(i): str(c) for i, c in rows.all()}

    def note_grants_not_counted(
        self, action_id: str, revision: int, note: str, now: datetime, audit_: Audit
    ) -> bool:
        """Audit why approvers' grants did not cover a card and keep it (`note`, the card's
        to show) with the card's refresh, in one transaction: True if the conditional update
        wrote the note — the revision still waits and had no note (a click may have decided
        it meanwhile; the audit row is written either way)."""
        with self.db.write() as s:
            won = s.exec(
                update(Action)
                .where(
                    col(Action.id) == action_id,
                    col(Action.revision) == revision,
                    col(Action.grant_note).is_(None),
                    _waiting(now),
                )
                .values(grant_note=note, updated_at=utcnow())
            ).rowcount
            _append(s, audit_, action_id, {})
            if won != 1:
                return False
            OutboxQueries._enqueue(s, [Notice(action_id=action_id)])
            return True

    def grants_by_id(self, ids: Iterable[int]) -> dict[int, ApprovalGrant]:
        wanted = sorted(set(ids))
        if not wanted:
            return {}
        with self.db.read() as s:
            rows = s.exec(select(ApprovalGrant).where(col(ApprovalGrant.id).in_(wanted))).all()
            return {int(g.id or 0): g for g in rows}

    # -- break glass ------------------------------------------------------------------------

    def acknowledge_break_glass(
        self, action_id: str, person: str, now: datetime, audit_: Audit
    ) -> bool:
        """An approver reviewed a break glass: True for the one click whose conditional
        update recorded it, with its audit row and the card's refresh."""
        with self.db.write() as s:
            won = s.exec(
                update(Action)
                .where(
                    col(Action.id) == action_id,
                    col(Action.break_glass_by).is_not(None),
                    col(Action.acknowledged_by).is_(None),
                )
                .values(acknowledged_by=person, acknowledged_at=now)
            ).rowcount
            _append(s, audit_, action_id, {})
            if won != 1:
                return False
            OutboxQueries._enqueue(s, [Notice(action_id=action_id)])
            return True

    def unacknowledged_break_glass(self, limit: int = 50) -> list[Action]:
        """Actions an admin ran by breaking the glass that no approver has reviewed yet,
        oldest first."""
        with self.db.read() as s:
            return list(
                s.exec(
                    select(Action)
                    .where(
                        col(Action.break_glass_by).is_not(None),
                        col(Action.acknowledged_by).is_(None),
                    )
                    .order_by(col(Action.decided_at), col(Action.id))
                    .limit(limit)
                ).all()
            )
