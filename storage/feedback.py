"""Feedback: one 👍 / 👎 per (action, person), what the card and the metrics read (part of
`storage.repo.Store`).

A vote is one upsert (`INSERT … ON CONFLICT DO UPDATE`, on SQLite and PostgreSQL alike) whose
`RETURNING` says whether anything changed; only a change writes its audit row and owes the
card an update, in the same transaction. A button vote is explicit and always wins; a
reaction's vote never replaces a button vote, and removing the reaction removes only the
vote that reaction gave. Comments are stored on the person's row, never in the audit trail
(it keeps their sha256).
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, case, delete, func, update
from sqlmodel import col, select

from storage import audit
from storage.db import Database
from storage.models import Action, Feedback, utcnow
from storage.outbox import Notice, OutboxQueries, insert_for

if TYPE_CHECKING:
    from storage.repo import Audit

BUTTON, REACTION = "button", "reaction"


def _append(
    s: Any, a: Audit, subject: str, before: str | None, after: str | None, **data: Any
) -> None:
    audit.append(
        s,
        actor=a.actor,
        kind=a.kind,
        subject=subject,
        trace_id=a.trace_id,
        policy_version=a.policy_version,
        before=before,
        after=after,
        data={**(a.data or {}), **data},
    )


def _word(vote: int | None) -> str | None:
    return None if vote is None else ("up" if vote > 0 else "down")


class FeedbackQueries:
    db: Database

    def action_by_card(self, channel: str, card_ts: str) -> Action | None:
        """The action whose card is the message `card_ts` in `channel` (None: not a card)."""
        with self.db.read() as s:
            return s.exec(
                select(Action).where(col(Action.channel) == channel, col(Action.card_ts) == card_ts)
            ).first()

    def give_feedback(
        self, action: Action, person: str, vote: int, source: str, audit_: Audit
    ) -> bool:
        """Store `person`'s vote on `action` (one row per person; a changed mind updates it).

        A button vote replaces whatever the person gave before; a reaction's vote replaces
        only an earlier reaction's. True if the row changed (then it is audited and the card
        is owed an update in the same transaction); False if it already said this, or a
        button vote stands."""
        now = utcnow()
        table = Feedback.__table__  # type: ignore[attr-defined]
        stmt = insert_for(self.db, table).values(
            action_id=action.id,
            person=person,
            vote=vote,
            comment="",
            source=source,
            tool=action.tool,
            created_at=now,
            updated_at=now,
        )
        changed = (table.c.vote != stmt.excluded.vote) | (table.c.source != stmt.excluded.source)
        if source == REACTION:
            changed = and_(table.c.source == REACTION, changed)
        stmt = stmt.on_conflict_do_update(
            index_elements=["action_id", "person"],
            set_={"vote": stmt.excluded.vote, "source": stmt.excluded.source, "updated_at": now},
            where=changed,
        ).returning(table.c.vote)
        with self.db.write() as s:
            before = s.exec(
                select(Feedback.vote)
                .where(col(Feedback.action_id) == action.id, col(Feedback.person) == person)
                .with_for_update()
            ).first()
            if s.execute(stmt).first() is None:
                return False
            _append(s, audit_, action.id, _word(before), _word(vote), vote=vote, source=source)
            OutboxQueries._enqueue(s, [Notice(action_id=action.id)])
            return True

    def comment_feedback(self, action: Action, person: str, comment: str, audit_: Audit) -> bool:
        """Keep `comment` on `person`'s feedback row (False: they have none). The audit row
        holds its sha256 and length, never the text."""
        with self.db.write() as s:
            r = s.exec(
                update(Feedback)
                .where(col(Feedback.action_id) == action.id, col(Feedback.person) == person)
                .values(comment=comment, updated_at=utcnow())
            )
            if r.rowcount != 1:
                return False
            _append(
                s,
                audit_,
                action.id,
                None,
                None,
                comment_sha256=hashlib.sha256(comment.encode()).hexdigest(),
                comment_chars=len(comment),
            )
            return True

    def remove_reaction_vote(self, action: Action, person: str, vote: int, audit_: Audit) -> bool:
        """A removed reaction takes back the vote that reaction gave, and nothing else (a
        button vote, or the other reaction's vote, stays)."""
        with self.db.write() as s:
            r = s.exec(
                delete(Feedback).where(
                    col(Feedback.action_id) == action.id,
                    col(Feedback.person) == person,
                    col(Feedback.source) == REACTION,
                    col(Feedback.vote) == vote,
                )
            )
            if r.rowcount != 1:
                return False
            _append(s, audit_, action.id, _word(vote), None, vote=vote, source=REACTION)
            OutboxQueries._enqueue(s, [Notice(action_id=action.id)])
            return True

    def feedback_tally(self, action_id: str) -> tuple[int, int]:
        """(👍, 👎) on one action, for its card."""
        with self.db.read() as s:
            row = s.exec(
                select(
                    func.coalesce(func.sum(case((col(Feedback.vote) > 0, 1), else_=0)), 0),
                    func.coalesce(func.sum(case((col(Feedback.vote) < 0, 1), else_=0)), 0),
                ).where(col(Feedback.action_id) == action_id)
            ).one()
            return int(row[0]), int(row[1])

    def feedback_of(self, action_id: str) -> list[Feedback]:
        """Every person's feedback on one action (oldest first)."""
        with self.db.read() as s:
            return list(
                s.exec(
                    select(Feedback)
                    .where(col(Feedback.action_id) == action_id)
                    .order_by(col(Feedback.created_at), col(Feedback.person))
                ).all()
            )
