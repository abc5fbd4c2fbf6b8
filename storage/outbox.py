"""The outbox and once-per-deployment job queries (part of `storage.repo.Store`).

The outbox holds every Slack message Warden owes, written in the transaction of the change
that caused it (`Notice`) and delivered by `bot/delivery.py`, which claims rows with a lease.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, delete, func, or_, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import Session, col, select

from storage.db import Database
from storage.models import Instance, JobRun, Outbox, utcnow

HEARTBEAT_EVERY = timedelta(seconds=10)
"""How often a running Warden refreshes its `instance` row (`bot.jobs.heartbeat`)."""

OWNER_DEAD_AFTER = 3 * HEARTBEAT_EVERY
"""An owner with no heartbeat this recent is presumed dead: its runs were interrupted."""


def insert_for(db: Database, table: Any) -> Any:
    """The dialect's INSERT, which has `on_conflict_do_nothing` / `_do_update`."""
    return (sqlite_insert if db.is_sqlite else pg_insert)(table)


def live_owners(now: datetime) -> Any:
    """The replicas with a recent heartbeat (a subquery)."""
    return select(Instance.owner).where(col(Instance.heartbeat_at) >= now - OWNER_DEAD_AFTER)


def claim_rows(
    s: Session, model: Any, due: Sequence[Any], owner: str, lease_until: datetime, limit: int
) -> list[Any]:
    """Lease up to `limit` rows of `model` matching `due` (oldest first; rows another
    transaction is claiming are skipped) to `owner`, counting the attempt; return them."""
    ids = list(
        s.exec(
            select(model.id)
            .where(*due)
            .order_by(col(model.id))
            .limit(limit)
            .with_for_update(skip_locked=True)
        ).all()
    )
    if not ids:
        return []
    s.exec(
        update(model)
        .where(col(model.id).in_(ids))
        .values(owner=owner, lease_until=lease_until, attempts=model.attempts + 1)
    )
    return list(s.exec(select(model).where(col(model.id).in_(ids)).order_by(col(model.id))))


@dataclass(kw_only=True, frozen=True)
class Notice:
    """A Slack message owed because of a change, stored in the change's transaction.

    `action_id` set: bring that action's card to its current state (text unused).
    Otherwise: post `text` to `channel` (in `thread_ts`'s thread, if given); with
    `request_id`, the text holds that request's placeholders, revealed as it is posted.
    """

    channel: str = ""
    text: str = ""
    thread_ts: str | None = None
    action_id: str | None = None
    request_id: str | None = None


class OutboxQueries:
    db: Database

    # -- outbox ----------------------------------------------------------------------------

    @staticmethod
    def _enqueue(s: Session, notices: Sequence[Notice]) -> None:
        """Owe `notices`. A card already owed by a row nobody has claimed yet is not owed
        twice: that row renders the card as it is when delivered, after this commit."""
        now = utcnow()
        cards = {n.action_id for n in notices if n.action_id is not None}
        seen: set[str] = set()
        if cards:
            seen = {
                str(a)
                for a in s.exec(
                    select(Outbox.action_id).where(
                        col(Outbox.kind) == "card",
                        col(Outbox.action_id).in_(list(cards)),
                        col(Outbox.delivered_at).is_(None),
                        col(Outbox.lease_until).is_(None),
                    )
                ).all()
            }
        for n in notices:
            if n.action_id is not None:
                if n.action_id in seen:
                    continue
                seen.add(n.action_id)
            s.add(
                Outbox(
                    kind="card" if n.action_id else "message",
                    channel=n.channel,
                    thread_ts=n.thread_ts,
                    text=n.text,
                    action_id=n.action_id,
                    request_id=n.request_id,
                    created_at=now,
                    next_at=now,
                )
            )

    def claim_outbox(
        self, owner: str, now: datetime, lease: timedelta, limit: int = 20
    ) -> list[Outbox]:
        """Take up to `limit` due, undelivered rows (oldest first) for delivery. A row whose
        deliverer died (its lease ran out, or its owner has no recent heartbeat) is due again."""
        due = (
            col(Outbox.delivered_at).is_(None),
            col(Outbox.next_at) <= now,
            or_(
                col(Outbox.lease_until).is_(None),
                col(Outbox.lease_until) < now,
                and_(col(Outbox.owner) != owner, col(Outbox.owner).not_in(live_owners(now))),
            ),
        )
        with self.db.write() as s:
            return claim_rows(s, Outbox, due, owner, now + lease, limit)

    def outbox_delivered(self, rows: Sequence[Outbox], now: datetime) -> None:
        """Mark rows delivered (one transaction for a batch); a card row also settles every
        older card row of its action (delivering a card brings it to the current state)."""
        if not rows:
            return
        cond: list[Any] = [col(Outbox.id).in_([r.id for r in rows])]
        for row in rows:
            if row.kind == "card" and row.action_id:
                cond.append(
                    and_(
                        col(Outbox.kind) == "card",
                        col(Outbox.action_id) == row.action_id,
                        col(Outbox.id) < row.id,
                        col(Outbox.delivered_at).is_(None),
                    )
                )
        with self.db.write() as s:
            s.exec(update(Outbox).where(or_(*cond)).values(delivered_at=now, lease_until=None))

    def outbox_failed(self, row: Outbox, retry_at: datetime | None, error: str) -> None:
        """A delivery failed: try again at `retry_at`, or give up (None) keeping the error."""
        with self.db.write() as s:
            values: dict[str, Any] = {"lease_until": None, "last_error": error[:200]}
            if retry_at is None:
                values["delivered_at"] = utcnow()
            else:
                values["next_at"] = retry_at
            s.exec(update(Outbox).where(col(Outbox.id) == row.id).values(**values))

    def outbox_pending(self) -> int:
        with self.db.read() as s:
            return int(
                s.exec(
                    select(func.count())
                    .select_from(Outbox)
                    .where(col(Outbox.delivered_at).is_(None))
                ).one()
            )

    def outbox_rows(self, limit: int = 1000) -> list[Outbox]:
        with self.db.read() as s:
            return list(s.exec(select(Outbox).order_by(col(Outbox.id)).limit(limit)).all())

    def forget_delivered_before(self, cutoff: datetime) -> int:
        with self.db.write() as s:
            r = s.exec(
                delete(Outbox).where(
                    col(Outbox.delivered_at).is_not(None), col(Outbox.delivered_at) < cutoff
                )
            )
            return int(r.rowcount or 0)

    # -- once-per-deployment jobs ------------------------------------------------------------

    def claim_job(self, name: str, period: str, owner: str) -> bool:
        """True for the one replica that gets to run job `name` for `period`."""
        with self.db.write() as s:
            stmt = (
                insert_for(self.db, JobRun)
                .values(name=name, period=period, owner=owner, ran_at=utcnow())
                .on_conflict_do_nothing(index_elements=["name", "period"])
                .returning(col(JobRun.name))
            )
            return s.execute(stmt).first() is not None
