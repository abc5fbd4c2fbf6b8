"""The inbox queries (part of `storage.repo.Store`): requests from Slack, stored before they
are acknowledged and handed to Bolt afterwards (`handlers/inbox.py`).

A batch of entries is stored in one transaction (group commit: many requests acknowledged at
once cost one write). An entry is owned by the replica that stored it, which dispatches it
and marks it done; one whose owner stopped sending heartbeats, or whose dispatch failed and
was released, is due again for any replica (`claim_inbox`). Done entries are kept for a while
so that Slack's retries of the same event find their key taken (`forget_inbox_before`).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, delete, func, or_, update
from sqlmodel import col, select

from storage.db import Database
from storage.models import InboxEntry
from storage.outbox import claim_rows, insert_for, live_owners


@dataclass(frozen=True)
class Arrival:
    """One request from Slack as the HTTP layer received it (signature already checked);
    `body` is stored as given (the HTTP layer seals it: it holds what people wrote)."""

    key: str
    kind: str
    content_type: str
    body: str


_STORE: dict[bool, Any] = {}


def _store_statement(db: Database) -> Any:
    stmt = _STORE.get(db.is_sqlite)
    if stmt is None:
        table = InboxEntry.__table__  # type: ignore[attr-defined]
        stmt = _STORE[db.is_sqlite] = (
            insert_for(db, table)
            .on_conflict_do_nothing(index_elements=["key"])
            .returning(table.c.key, table.c.id)
        )
    return stmt


class InboxQueries:
    db: Database

    def store_arrivals(
        self, arrivals: Sequence[Arrival], owner: str | None, now: datetime, lease: timedelta
    ) -> dict[str, int]:
        """Store `arrivals` in one transaction, owned by `owner` (None: due at once for any
        replica, as the front process stores them); return {key: id} for the ones that are
        new (a key seen before, or twice in the batch, is stored once)."""
        rows: dict[str, dict[str, Any]] = {}
        # In key order: two replicas storing overlapping batches take row locks in the same
        # order (PostgreSQL), so neither waits for the other in a cycle.
        for a in sorted(arrivals, key=lambda a: a.key):
            rows.setdefault(
                a.key,
                {
                    "key": a.key,
                    "kind": a.kind,
                    "content_type": a.content_type,
                    "body": a.body,
                    "received_at": now,
                    "owner": owner,
                    "lease_until": None if owner is None else now + lease,
                    "attempts": 0 if owner is None else 1,
                },
            )
        if not rows:
            return {}
        with self.db.write() as s:
            # One statement, compiled once per dialect and run with many parameter sets
            # (SQLAlchemy sends them as multi-row INSERTs): compiling a fresh multi-row
            # INSERT per batch cost more than the write itself.
            result = s.connection().execute(_store_statement(self.db), list(rows.values()))
            return {str(k): int(i) for k, i in result.all()}

    def claim_inbox(
        self,
        owner: str,
        now: datetime,
        lease: timedelta,
        limit: int = 50,
        held: Collection[int] = (),
    ) -> list[InboxEntry]:
        """Take up to `limit` entries nobody is handling (oldest first): released after a
        failed dispatch and due again; owned by a replica with no recent heartbeat or whose
        lease ran out; or this replica's own ones except those it `held` (is still
        handling)."""
        mine = col(InboxEntry.owner) == owner
        if held:
            mine = and_(mine, col(InboxEntry.id).not_in(list(held)))
        due = (
            col(InboxEntry.done_at).is_(None),
            or_(
                and_(
                    col(InboxEntry.owner).is_(None),
                    or_(col(InboxEntry.lease_until).is_(None), col(InboxEntry.lease_until) <= now),
                ),
                and_(
                    col(InboxEntry.owner) != owner,
                    or_(
                        col(InboxEntry.owner).not_in(live_owners(now)),
                        col(InboxEntry.lease_until) < now,
                    ),
                ),
                mine,
            ),
        )
        with self.db.write() as s:
            return claim_rows(s, InboxEntry, due, owner, now + lease, limit)

    def inbox_done(self, entry_id: int, now: datetime) -> None:
        """Handled: the body goes (only the key stays, for de-duplication)."""
        with self.db.write() as s:
            s.exec(
                update(InboxEntry)
                .where(col(InboxEntry.id) == entry_id)
                .values(done_at=now, body="")
            )

    def inbox_release(
        self, entry_id: int, owner: str, retry_at: datetime, give_up_after: int
    ) -> bool:
        """After `owner`'s dispatch failed: due again at `retry_at` for any replica, or done
        (given up) once it has been tried `give_up_after` times. True if it will be tried
        again. An entry another replica has taken over meanwhile is left to it."""
        with self.db.write() as s:
            entry = s.get(InboxEntry, entry_id, with_for_update=True)
            if entry is None or entry.done_at is not None or entry.owner != owner:
                return False
            if entry.attempts >= give_up_after:
                entry.done_at, entry.body = retry_at, ""
                return False
            entry.owner, entry.lease_until = None, retry_at
            return True

    def inbox_has(self, keys: Collection[str]) -> set[str]:
        """Which of `keys` the inbox holds (done or not)."""
        if not keys:
            return set()
        with self.db.read() as s:
            return set(
                s.exec(select(InboxEntry.key).where(col(InboxEntry.key).in_(list(keys)))).all()
            )

    def inbox_open(self) -> int:
        """How many entries are not done yet."""
        with self.db.read() as s:
            return int(
                s.exec(
                    select(func.count())
                    .select_from(InboxEntry)
                    .where(col(InboxEntry.done_at).is_(None))
                ).one()
            )

    def forget_inbox_before(self, cutoff: datetime, keep: Collection[str] = ()) -> int:
        """Delete done entries received before `cutoff` (their bodies hold what people wrote),
        except those whose key is in `keep` (still in the front's spool: forgotten, its key
        would let that spooled row be imported and acted on again)."""
        old = (col(InboxEntry.done_at).is_not(None), col(InboxEntry.received_at) < cutoff)
        with self.db.write() as s:
            if not keep:
                return int(s.exec(delete(InboxEntry).where(*old)).rowcount or 0)
            rows = s.exec(select(InboxEntry.id, InboxEntry.key).where(*old)).all()
            ids = [i for i, k in rows if k not in keep]
            for at in range(0, len(ids), 500):  # a bounded number of parameters a statement
                s.exec(delete(InboxEntry).where(col(InboxEntry.id).in_(ids[at : at + 500])))
            return len(ids)
