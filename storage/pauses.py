"""Pauses: scoped pauses and the global pause's timed end (part of `storage.repo.Store`).

The rule, in SQL: an action is held while Warden is paused (`control.paused`), or while an
active scope (`pause_scope.ended_at IS NULL`) names its tool, its channel, or a tier its risk
is at least (`tiers LIKE '%,' || action.risk || ',%'`). `held_by_a_pause()` is that rule as a
WHERE clause over the `action` row a statement updates; `Store.transition(…,
unless_paused=True)` puts `NOT (…)` in the claim's own UPDATE, so a pause that committed first
always wins over a claim, on SQLite and PostgreSQL alike. Its other face is the gate's
`Gate.paused_for` / `Pause.holds` (bot/gate.py, bot/gate_types.py), which the executor asks
just before claiming; tests/test_scoped_pause.py checks the two agree over a table of cases.

A pause lasts until it is ended: by `/resume`, or — once its `until` has passed — by the
auto-resume job. Each end is one conditional update (`… WHERE id = :id AND ended_at IS
NULL`, the job adding `AND until <= :now`; for the global pause `… WHERE paused AND until <=
:now`) whose row count decides who audits and announces it, however many replicas try. A
passed `until` does not end a pause by itself, so the gate and this guard never disagree
about the clock. At most one scope per (kind, value) is active: a partial unique index, which
the insert names as its conflict target.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, exists, literal, or_, update
from sqlalchemy import text as sql_text
from sqlmodel import Session, col, select

from storage import audit
from storage.db import Database
from storage.models import ACTIVE_SCOPE, Action, Control, PauseKind, PauseScope
from storage.outbox import Notice, OutboxQueries, insert_for

if TYPE_CHECKING:
    from storage.repo import Audit

SUBJECT = "control"
"""Every pause and resume, global or scoped, is audited about the kill switch."""


def held_by_a_pause() -> Any:
    """True for an `action` row a pause holds now (see the module's docstring): use it in a
    statement over `action`, whose row the subqueries correlate with."""
    scope = and_(
        col(PauseScope.ended_at).is_(None),
        or_(
            and_(
                col(PauseScope.kind) == PauseKind.TOOL.value,
                col(PauseScope.value) == col(Action.tool),
            ),
            and_(
                col(PauseScope.kind) == PauseKind.CHANNEL.value,
                col(PauseScope.value) == col(Action.channel),
            ),
            and_(
                col(PauseScope.kind) == PauseKind.TIER.value,
                col(PauseScope.tiers).like(literal("%,") + col(Action.risk) + literal(",%")),
            ),
        ),
    )
    return or_(
        exists().where(col(Control.id) == 1, col(Control.paused)),
        exists().where(scope),
    )


def _append(s: Any, a: Audit, before: str, after: str) -> None:
    audit.append(
        s,
        actor=a.actor,
        kind=a.kind,
        subject=SUBJECT,
        trace_id=a.trace_id,
        policy_version=a.policy_version,
        before=before,
        after=after,
        data=dict(a.data or {}),
    )


class PauseQueries:
    db: Database

    @staticmethod
    def _active_scopes(s: Session) -> list[PauseScope]:
        return list(
            s.exec(
                select(PauseScope)
                .where(col(PauseScope.ended_at).is_(None))
                .order_by(col(PauseScope.started_at), col(PauseScope.id))
            ).all()
        )

    def active_pause_scopes(self) -> list[PauseScope]:
        """The scoped pauses in force, oldest first."""
        with self.db.read() as s:
            return self._active_scopes(s)

    def active_pause_scope(self, kind: str, value: str) -> PauseScope | None:
        with self.db.read() as s:
            return s.exec(
                select(PauseScope).where(
                    col(PauseScope.kind) == kind,
                    col(PauseScope.value) == value,
                    col(PauseScope.ended_at).is_(None),
                )
            ).first()

    def start_pause_scope(
        self,
        *,
        kind: str,
        value: str,
        tiers: str,
        reason: str,
        by: str,
        now: datetime,
        until: datetime | None,
        audit_: Audit,
        notices: Sequence[Notice] = (),
    ) -> PauseScope | None:
        """Pause one scope; None if it already is paused (the partial unique index is the
        insert's conflict target). Audited and announced in the same transaction."""
        table = PauseScope.__table__  # type: ignore[attr-defined]
        stmt = (
            insert_for(self.db, table)
            .values(
                kind=kind,
                value=value,
                tiers=tiers,
                reason=reason,
                paused_by=by,
                started_at=now,
                until=until,
            )
            .on_conflict_do_nothing(
                index_elements=["kind", "value"], index_where=sql_text(ACTIVE_SCOPE)
            )
            .returning(table.c.id)
        )
        with self.db.write() as s:
            new = s.execute(stmt).scalar()
            if new is None:
                return None
            _append(s, audit_, before="running", after="paused")
            OutboxQueries._enqueue(s, notices)
            return s.get(PauseScope, new)

    def end_pause_scope(
        self,
        scope_id: int,
        by: str,
        now: datetime,
        audit_: Audit,
        notices: Sequence[Notice] = (),
        *,
        expired: bool = False,
    ) -> bool:
        """End one scoped pause; False if it had already ended (or, `expired`, if its `until`
        is not past `now`). The update's row count decides who audits and announces it."""
        with self.db.write() as s:
            if not self._end_scope(s, scope_id, by, now, expired):
                return False
            _append(s, audit_, before="paused", after="running")
            OutboxQueries._enqueue(s, notices)
            return True

    @staticmethod
    def _end_scope(s: Session, scope_id: int, by: str, now: datetime, expired: bool) -> bool:
        stmt = update(PauseScope).where(
            col(PauseScope.id) == scope_id, col(PauseScope.ended_at).is_(None)
        )
        if expired:
            stmt = stmt.where(col(PauseScope.until).is_not(None), col(PauseScope.until) <= now)
        return s.exec(stmt.values(ended_at=now, ended_by=by)).rowcount == 1

    def end_pauses(
        self,
        scopes: Iterable[tuple[PauseScope, Audit]],
        global_audit: Audit | None,
        by: str,
        now: datetime,
        notices: Sequence[Notice] = (),
    ) -> tuple[bool, list[PauseScope]]:
        """`/resume all`: end the global pause (if `global_audit` is given and Warden is
        paused) and each of `scopes` still active, in one transaction, each audited with its
        own row. Returns whether the global pause ended and which scopes did; `notices` are
        stored only if anything ended."""
        ended: list[PauseScope] = []
        with self.db.write() as s:
            for scope, audit_ in scopes:
                assert scope.id is not None
                if self._end_scope(s, scope.id, by, now, expired=False):
                    _append(s, audit_, before="paused", after="running")
                    ended.append(scope)
            lifted = False
            if global_audit is not None:
                lifted = self._resume(s, by, now, global_audit, expired=False)
            if lifted or ended:
                OutboxQueries._enqueue(s, notices)
            return lifted, ended

    def extend_global_pause(
        self,
        until: datetime | None,
        reason: str,
        by: str,
        now: datetime,
        audit_: Audit,
        notices: Sequence[Notice] = (),
    ) -> bool:
        """A `/pause` while a timed global pause is in force: the stronger pause wins — an
        untimed one (`until` None) makes it last until /resume, a longer one moves its end.
        False if Warden is not paused, not timed, or already paused at least that long (one
        conditional update decides, with its audit row and notices)."""
        stmt = update(Control).where(
            col(Control.id) == 1, col(Control.paused), col(Control.until).is_not(None)
        )
        if until is not None:
            stmt = stmt.where(col(Control.until) < until)
        stmt = stmt.values(reason=reason, changed_by=by, changed_at=now, until=until)
        with self.db.write() as s:
            if s.exec(stmt).rowcount != 1:
                return False
            _append(s, audit_, before="paused", after="paused")
            OutboxQueries._enqueue(s, notices)
            return True

    def end_expired_global_pause(
        self, now: datetime, audit_: Audit, notices: Sequence[Notice] = ()
    ) -> bool:
        """The auto-resume of a timed global pause whose `until` has passed `now`: False if it
        is not paused, not timed, not yet due, or another replica ended it first."""
        with self.db.write() as s:
            if not self._resume(s, audit_.actor, now, audit_, expired=True):
                return False
            OutboxQueries._enqueue(s, notices)
            return True

    @staticmethod
    def _resume(s: Session, by: str, now: datetime, audit_: Audit, *, expired: bool) -> bool:
        stmt = update(Control).where(col(Control.id) == 1, col(Control.paused))
        if expired:
            stmt = stmt.where(col(Control.until).is_not(None), col(Control.until) <= now)
        stmt = stmt.values(paused=False, reason="", changed_by=by, changed_at=now, until=None)
        if s.exec(stmt).rowcount != 1:
            return False
        _append(s, audit_, before="paused", after="running")
        return True
