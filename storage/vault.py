"""Sealed personal data of requests (part of `storage.repo.Store`).

A request's text is redacted before it reaches the model, the memory or the audit trail; the
placeholder → value mapping an action may still need is kept encrypted (`bot/pii.py` seals
and opens it) in `request.pii_sealed`, and cleared as soon as nothing can need it (on SQLite
from the files as well: `Database.erase_forgotten`).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TypeVar

from sqlalchemy import and_, exists, or_, update
from sqlmodel import col, select

from storage.db import Database
from storage.models import (
    IN_FLIGHT,
    TERMINAL,
    UNDOABLE,
    Action,
    ActionStatus,
    Request,
    VerifyStatus,
    utcnow,
)

LIVE_ACTIONS = sorted(set(ActionStatus) - TERMINAL - set(UNDOABLE))
"""Action statuses that may still run, be approved or be undone (SUCCEEDED and CANCELLED count
only while their undo window is open)."""


T = TypeVar("T")


class VaultQueries:
    db: Database

    def set_request_pii(self, request_id: str, sealed: str | None) -> bool:
        """Store (or, with None, drop) a request's sealed mapping; False if no such request."""
        with self.db.write() as s:
            r = s.exec(
                update(Request).where(col(Request.id) == request_id).values(pii_sealed=sealed)
            )
            return r.rowcount == 1

    def update_request_pii(
        self, request_id: str, change: Callable[[str | None], tuple[T, str | None]]
    ) -> T:
        """Read a request's sealed mapping, let `change` compute a result and the new seal,
        and store it, in one transaction with the row locked: two changes of one request's
        mapping (two edits, an edit and a dry run) never number two values alike."""
        with self.db.write() as s:
            current = s.exec(
                select(Request.pii_sealed).where(col(Request.id) == request_id).with_for_update()
            ).first()
            result, sealed = change(current)
            if sealed != current:
                s.exec(
                    update(Request).where(col(Request.id) == request_id).values(pii_sealed=sealed)
                )
            return result

    def request_pii(self, request_id: str) -> str | None:
        """A request's sealed mapping, or None (none stored, cleared, or no such request)."""
        with self.db.read() as s:
            return s.exec(select(Request.pii_sealed).where(col(Request.id) == request_id)).first()

    def clear_finished_pii(self, before: datetime, now: datetime | None = None) -> int:
        """Drop the sealed mapping of every request that is finished and was last updated
        before `before`; returns how many were cleared.

        Finished: not waiting for or being planned (RECEIVED, PLANNING), and no action that
        can still act — none in a non-terminal status, where SUCCEEDED (and CANCELLED) counts
        only while its undo window (`undo_until`) is open at `now`. A FAILED request counts as
        finished: if it is retried after this, it is planned on its placeholders alone.
        """
        now = now or utcnow()
        live_action = exists().where(
            col(Action.request_id) == col(Request.id),
            or_(
                col(Action.status).in_(LIVE_ACTIONS),
                and_(
                    col(Action.status).in_(UNDOABLE),
                    col(Action.undo_until).is_not(None),
                    col(Action.undo_until) > now,
                ),
                # An outcome check still to run needs the real arguments too.
                col(Action.verify_status).in_([VerifyStatus.PENDING, VerifyStatus.RUNNING]),
            ),
        )
        with self.db.write() as s:
            r = s.exec(
                update(Request)
                .where(
                    col(Request.pii_sealed).is_not(None),
                    col(Request.updated_at) < before,
                    col(Request.status).not_in(list(IN_FLIGHT)),
                    ~live_action,
                )
                .values(pii_sealed=None)
            )
            cleared = int(r.rowcount or 0)
        if cleared:  # the old seals' bytes leave the SQLite files too (`storage/db.py`)
            self.db.erase_forgotten()
        return cleared
