"""Every query Warden runs. State changes are conditional updates whose row count decides
who won a race (never read-then-write), each committed together with its audit row.

Where a change must also record what it replaced (an action's previous status, a tool's
previous autonomy), the row is read with `SELECT … FOR UPDATE` inside the same write
transaction and the update is conditioned on what was read (on SQLite, write transactions
begin IMMEDIATE, so nobody else can write in between). Singleton rows (`control`,
`audit_head`) are seeded by the migrations and never created by a racing writer.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from sqlalchemy import Integer, and_, bindparam, delete, func, or_, update
from sqlalchemy import select as sa_select
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from storage import audit
from storage.alerts import AlertQueries
from storage.attention import AttentionQueries
from storage.audit import Problem
from storage.checks import CheckQueries
from storage.db import Database
from storage.feedback import FeedbackQueries
from storage.inbox import InboxQueries
from storage.incidents import IncidentQueries
from storage.memory import MemoryQueries
from storage.metrics import MetricsQueries
from storage.models import (
    ACTION_GRAPH,
    IN_FLIGHT,
    INITIAL,
    UNDOABLE,
    Action,
    ActionStatus,
    Approval,
    AuditEvent,
    AutonomySetting,
    Control,
    Instance,
    Outbox,
    PauseScope,
    Request,
    RequestStatus,
    SlackEvent,
    utcnow,
)
from storage.outbox import (
    OWNER_DEAD_AFTER,
    Notice,
    OutboxQueries,
    insert_for,
)
from storage.pauses import PauseQueries, held_by_a_pause
from storage.tasks import TaskQueries
from storage.vault import VaultQueries


@dataclass(kw_only=True, frozen=True)
class Audit:
    """What to write to the audit trail alongside a change."""

    actor: str
    kind: str
    trace_id: str = ""
    policy_version: str = ""
    data: dict[str, Any] | None = None


@dataclass(kw_only=True, frozen=True)
class Move:
    """A further move `Store.transition` makes in the same statement (see `then`)."""

    status: ActionStatus
    audit: Audit
    values: dict[str, Any]


UNSURE = "unsure"
"""`action.card_ts` when a first card post was attempted and given up: it may be in Slack."""


# Statements on Slack's ack path are built once per dialect and reused with bound values:
# SQLAlchemy memoises a reused statement's cache key, so a request skips rebuilding,
# re-keying and looking up the statement (most of its CPU time when built afresh; under a
# burst every request thread waits on the others' CPU time for the GIL).
_PREBUILT: dict[tuple[str, bool | None], Any] = {}


def _stamps(before: ActionStatus, after: ActionStatus, now: datetime) -> dict[str, datetime]:
    """The lifecycle times a transition records (what latency and wait metrics read)."""
    if after in (ActionStatus.APPROVED, ActionStatus.REJECTED) and before is not after:
        return {"decided_at": now}
    if after is ActionStatus.EXECUTING:
        return {"started_at": now}
    if before is ActionStatus.EXECUTING:  # succeeded, failed or needs review: the first outcome
        return {"finished_at": now}
    return {}


def _prebuilt(name: str, build: Callable[[], Any], sqlite: bool | None = None) -> Any:
    """The statement(s) `build` makes, built once (per dialect, for the dialect's INSERT)."""
    key = (name, sqlite)
    stmt = _PREBUILT.get(key)
    if stmt is None:
        stmt = _PREBUILT[key] = build()  # a race builds it twice, harmlessly
    return stmt


def _accept_statements(db: Database) -> tuple[Any, Any]:
    """`accept_request`'s INSERT … SELECT (values bound as `v_<column>`, the requester and the
    cap as `in_flight_requester` / `in_flight_cap`) and its in-flight count."""
    table = Request.__table__  # type: ignore[attr-defined]
    in_flight = (
        sa_select(func.count())
        .select_from(table)
        .where(
            table.c.requester == bindparam("in_flight_requester", type_=table.c.requester.type),
            table.c.status.in_(list(IN_FLIGHT)),
        )
        .scalar_subquery()
    )
    row = sa_select(*(bindparam(f"v_{c.name}", type_=c.type).label(c.name) for c in table.c))
    insert_new = (
        insert_for(db, table)
        .from_select(
            [c.name for c in table.c],
            row.where(in_flight < bindparam("in_flight_cap", type_=Integer())),
        )
        .on_conflict_do_nothing()
        .returning(table.c.id)
    )
    return insert_new, sa_select(in_flight)


def _first_delivery_statement(db: Database) -> Any:
    table = SlackEvent.__table__  # type: ignore[attr-defined]
    return (
        insert_for(db, table)
        .values(
            event_id=bindparam("key", type_=table.c.event_id.type),
            received_at=bindparam("at", type_=table.c.received_at.type),
        )
        .on_conflict_do_nothing(index_elements=["event_id"])
        .returning(table.c.event_id)
    )


def _pause_statement() -> Any:
    table = Control.__table__  # type: ignore[attr-defined]
    c = table.c
    return sa_select(c.paused, c.reason, c.changed_by, c.changed_at, c.until).where(c.id == 1)


def _counts_statement() -> Any:
    """Actions per status, for the statuses bound (a list) as `statuses`."""
    status = Action.__table__.c.status  # type: ignore[attr-defined]
    return (
        sa_select(status, func.count())
        .where(status.in_(bindparam("statuses", expanding=True)))
        .group_by(status)
    )


def _usage_statement() -> Any:
    c = Request.__table__.c  # type: ignore[attr-defined]
    return sa_select(
        func.count(),
        func.coalesce(func.sum(c.input_tokens), 0),
        func.coalesce(func.sum(c.output_tokens), 0),
        func.coalesce(func.sum(c.cache_read_tokens), 0),
        func.coalesce(func.sum(c.cache_write_tokens), 0),
        func.coalesce(func.sum(c.cost_usd), 0.0),
    )


class IllegalTransition(RuntimeError):
    """A transition the lifecycle's state graph (`ACTION_GRAPH`) does not allow: a bug."""


class Accepted(StrEnum):
    """What `accept_request` did with a message."""

    NEW = "new"
    DUPLICATE = "duplicate"  # the same event or the same message (an edit) was seen before
    OVER_CAP = "over_cap"  # the requester has too many requests in flight


@dataclass(kw_only=True, frozen=True)
class PauseState:
    paused: bool
    reason: str
    changed_by: str
    changed_at: datetime | None
    until: datetime | None = None  # a timed pause ends by itself then (the auto-resume job)


class Store(
    OutboxQueries,
    InboxQueries,
    MemoryQueries,
    VaultQueries,
    MetricsQueries,
    FeedbackQueries,
    IncidentQueries,
    CheckQueries,
    AlertQueries,
    TaskQueries,
    PauseQueries,
    AttentionQueries,
):
    """Warden's persistence API over a `Database` (the outbox and job queries live in
    `storage/outbox.py`)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    # -- Slack events and requests ---------------------------------------------------------

    def accept_request(self, request: Request, in_flight_cap: int) -> Accepted:
        """Store a request from Slack once per event id and once per message (channel, ts).

        This is the ack path: one short transaction — an indexed count and one insert that
        both unique keys guard (a retried event and an edited message are refused by the
        insert itself) — with no audit-chain lock: the request's `request.received` audit
        row is written when a planner claims it, so a burst of mentions never queues on the
        chain's tip. A requester who already has `in_flight_cap` requests waiting or being
        planned gets OVER_CAP and nothing is stored.
        """
        insert_new, count_in_flight = _prebuilt(
            "accept", lambda: _accept_statements(self.db), self.db.is_sqlite
        )
        params: dict[str, Any] = {f"v_{k}": v for k, v in request.model_dump().items()}
        params["in_flight_requester"] = request.requester
        params["in_flight_cap"] = in_flight_cap
        with self.db.write() as s:
            conn = s.connection()
            # One statement: insert unless the requester is at the cap, and unless the
            # event or the message was seen (both unique keys).
            if conn.execute(insert_new, params).first() is not None:
                return Accepted.NEW
            over = conn.execute(count_in_flight, params).scalar_one() >= in_flight_cap
            return Accepted.OVER_CAP if over else Accepted.DUPLICATE

    def first_delivery(self, key: str) -> bool:
        """True the first time `key` (a click's or command's trigger id) is seen, shared by
        every replica: Slack's signature allows a replay within 5 minutes, and a replayed
        `/resume` or Approve must not act twice."""
        stmt = _prebuilt(
            "first_delivery", lambda: _first_delivery_statement(self.db), self.db.is_sqlite
        )
        with self.db.write() as s:
            seen = s.connection().execute(stmt, {"key": key[:64], "at": utcnow()}).first()
            return seen is not None

    def claim_request(
        self, request_id: str, owner: str, lease_until: datetime, policy_version: str = ""
    ) -> Request | None:
        """Take a request for planning: new, or with an expired lease. The first claim also
        writes the request's `request.received` audit row (see `accept_request`)."""
        now = utcnow()
        with self.db.write() as s:
            result = s.exec(
                update(Request)
                .where(col(Request.id) == request_id)
                .where(
                    or_(
                        col(Request.status) == RequestStatus.RECEIVED,
                        and_(
                            col(Request.status) == RequestStatus.PLANNING,
                            col(Request.lease_until) < now,
                        ),
                    )
                )
                .values(
                    status=RequestStatus.PLANNING,
                    owner=owner,
                    lease_until=lease_until,
                    attempts=Request.attempts + 1,
                    updated_at=now,
                )
            )
            if result.rowcount != 1:
                return None
            req = s.get(Request, request_id)
            assert req is not None
            if req.attempts == 1:
                self._audit(
                    s,
                    Audit(
                        actor=req.requester,
                        kind="request.received",
                        trace_id=req.trace_id,
                        policy_version=policy_version,
                        # The text itself stays in the request row (which a forgotten fact
                        # scrubs); the chain keeps its hash, never a transcript.
                        data={
                            "channel": req.channel,
                            "text_sha256": hashlib.sha256(req.text.encode()).hexdigest(),
                            "received_at": req.created_at.isoformat(),
                        },
                    ),
                    subject=req.id,
                    before=None,
                    after=RequestStatus.RECEIVED,
                )
            return req

    def retry_request(self, request_id: str, actor: str) -> bool:
        """Put a failed request back in the queue (the requester asked again)."""
        with self.db.write() as s:
            result = s.exec(
                update(Request)
                .where(col(Request.id) == request_id, col(Request.status) == RequestStatus.FAILED)
                .values(
                    status=RequestStatus.RECEIVED, owner=None, lease_until=None, updated_at=utcnow()
                )
            )
            if result.rowcount != 1:
                return False
            req = s.get(Request, request_id)
            assert req is not None
            self._audit(
                s,
                Audit(actor=actor, kind="request.retry", trace_id=req.trace_id),
                subject=request_id,
                before=RequestStatus.FAILED,
                after=RequestStatus.RECEIVED,
            )
            return True

    def finish_planning(
        self,
        request_id: str,
        owner: str,
        status: RequestStatus,
        *,
        answer: str | None,
        actions: Sequence[Action] = (),
        usage: dict[str, Any] | None = None,
        audit_: Audit,
        action_audits: Sequence[Audit] = (),
        notices: Sequence[Notice] = (),
    ) -> bool:
        """Store the plan's outcome, if this worker still holds the request's lease, with the
        messages it owes (answers, cards, escalations) in the same transaction."""
        usage = usage or {}
        with self.db.write() as s:
            values: dict[str, Any] = {
                "status": status,
                "answer": answer,
                "owner": None,
                "lease_until": None,
                "updated_at": utcnow(),
            }
            for key in (
                "input_tokens",
                "output_tokens",
                "cache_read_tokens",
                "cache_write_tokens",
                "cost_usd",
            ):
                if key in usage:
                    values[key] = getattr(Request, key) + usage[key]
            result = s.exec(
                update(Request)
                .where(
                    col(Request.id) == request_id,
                    col(Request.status) == RequestStatus.PLANNING,
                    col(Request.owner) == owner,
                )
                .values(**values)
            )
            if result.rowcount != 1:
                return False
            self._audit(s, audit_, subject=request_id, before=RequestStatus.PLANNING, after=status)
            for action, a_audit in zip(actions, action_audits, strict=True):
                if action.status not in INITIAL:
                    raise IllegalTransition(f"a new action cannot start as {action.status}")
                if action.status == ActionStatus.APPROVED and action.decided_at is None:
                    action.decided_at = action.created_at  # the gate let it run at once
                s.add(action)
                s.flush()
                self._audit(s, a_audit, subject=action.id, before=None, after=action.status)
            self._enqueue(s, notices)
            return True

    def get_request(self, request_id: str) -> Request | None:
        with self.db.read() as s:
            return s.get(Request, request_id)

    def requests_to_plan(self, limit: int = 500) -> list[tuple[str, str]]:
        """(id, requester) of requests nobody is planning: new ones and those whose worker's
        lease ran out."""
        now = utcnow()
        with self.db.read() as s:
            rows = s.exec(
                select(Request.id, Request.requester)
                .where(
                    or_(
                        col(Request.status) == RequestStatus.RECEIVED,
                        and_(
                            col(Request.status) == RequestStatus.PLANNING,
                            col(Request.lease_until) < now,
                        ),
                    )
                )
                .order_by(col(Request.created_at))
                .limit(limit)
            ).all()
            return [(str(i), str(r)) for i, r in rows]

    def latest_request_in_thread(self, channel: str, thread_ts: str) -> Request | None:
        with self.db.read() as s:
            return s.exec(
                select(Request)
                .where(Request.channel == channel, Request.thread_ts == thread_ts)
                .order_by(col(Request.created_at).desc())
                .limit(1)
            ).first()

    def latest_request_by(self, channel: str, requester: str) -> Request | None:
        with self.db.read() as s:
            return s.exec(
                select(Request)
                .where(Request.channel == channel, Request.requester == requester)
                .order_by(col(Request.created_at).desc())
                .limit(1)
            ).first()

    def thread_requests(self, channel: str, thread_ts: str) -> list[Request]:
        with self.db.read() as s:
            return list(
                s.exec(
                    select(Request)
                    .where(Request.channel == channel, Request.thread_ts == thread_ts)
                    .order_by(col(Request.created_at))
                ).all()
            )

    # -- actions ---------------------------------------------------------------------------

    def get_action(self, action_id: str) -> Action | None:
        with self.db.read() as s:
            return s.get(Action, action_id)

    def actions_for_request(self, request_id: str) -> list[Action]:
        with self.db.read() as s:
            return list(
                s.exec(
                    select(Action)
                    .where(Action.request_id == request_id)
                    .order_by(col(Action.created_at))
                ).all()
            )

    def actions_in_thread(self, channel: str, thread_ts: str) -> list[Action]:
        with self.db.read() as s:
            return list(
                s.exec(
                    select(Action)
                    .where(Action.channel == channel, Action.thread_ts == thread_ts)
                    .order_by(col(Action.created_at))
                ).all()
            )

    def actions_with_status(self, statuses: Iterable[str], limit: int = 200) -> list[Action]:
        with self.db.read() as s:
            return list(
                s.exec(
                    select(Action)
                    .where(col(Action.status).in_(list(statuses)))
                    .order_by(col(Action.created_at))
                    .limit(limit)
                ).all()
            )

    def transition(
        self,
        action_id: str,
        from_states: Iterable[str],
        to_state: str,
        audit_: Audit,
        *,
        revision: int | None = None,
        values: dict[str, Any] | None = None,
        unless_paused: bool = False,
        where: Sequence[Any] = (),
        notices: Sequence[Notice] = (),
        then: Move | None = None,
    ) -> Action | None:
        """Move an action between states atomically; return it if this caller won, else None.

        Only moves `ACTION_GRAPH` allows are made (anything else raises IllegalTransition).
        `unless_paused` adds "and no pause holds it" (the global pause, or a scope naming its
        tool, channel or tier: `storage.pauses.held_by_a_pause`) to the same statement, so a
        pause that committed first always wins over a claim. `notices` are the Slack messages the
        change owes, stored in the same transaction (the action's own card is always one).
        `then`: a second move made by the same statement (`to_state → then.status`, e.g. an
        approval and the executor's claim of the run), audited as a move of its own.
        """
        froms = list(from_states)
        with self.db.write() as s:
            if len(froms) == 1 and self._legal(froms[0], to_state, then):
                # One state it may move from, by a legal move: the conditional update alone
                # decides the race (it locks the row), and returns the row as it left it.
                current = froms[0]
            else:
                # Lock the row and learn its real status, so the audit row records it; the
                # update below is still conditioned on that status; its row count decides.
                locked = s.exec(
                    select(Action.status).where(col(Action.id) == action_id).with_for_update()
                ).first()
                if locked is None or locked not in froms:
                    return None
                current = locked
                if not self._legal(current, to_state, then):
                    last = then.status if then is not None else to_state
                    raise IllegalTransition(f"{current} → {last} is not a lifecycle transition")
            now = utcnow()
            moves = [(ActionStatus(current), ActionStatus(to_state), audit_, values or {})]
            if then is not None:
                moves.append((ActionStatus(to_state), then.status, then.audit, then.values))
            changes: dict[str, Any] = {}
            for before, after, _audit, more in moves:
                changes.update(_stamps(before, after, now), **more)
            stmt = (
                update(Action)
                .where(col(Action.id) == action_id, col(Action.status) == current, *where)
                .values(status=moves[-1][1], updated_at=now, **changes)
            )
            if revision is not None:
                stmt = stmt.where(col(Action.revision) == revision)
            if unless_paused:
                stmt = stmt.where(~held_by_a_pause())
            action: Action | None = (
                s.exec(stmt.returning(Action).execution_options(synchronize_session=False))
                .scalars()
                .first()
            )
            if action is None:
                return None
            for before, after, audit_of_move, _more in moves:
                self._audit(
                    s,
                    audit_of_move,
                    subject=action_id,
                    before=before,
                    after=after,
                    extra={"revision": action.revision},
                )
            self._enqueue(s, [Notice(action_id=action_id), *notices])
            return action

    @staticmethod
    def _legal(current: str, to_state: str, then: Move | None) -> bool:
        if ActionStatus(to_state) not in ACTION_GRAPH[ActionStatus(current)]:
            return False
        return then is None or then.status in ACTION_GRAPH[ActionStatus(to_state)]

    # -- live runs and Cancel ----------------------------------------------------------------

    def live_progress(self, action_id: str, owner: str, progress: str | None) -> bool:
        """Store a running action's latest output (`owner`'s run, still executing) and owe its
        card a refresh, unless a refresh is already owed or on its way: never more than one
        update of a card in flight, and that one renders the card as it is when delivered.
        False: the run has ended or is not `owner`'s (nothing written)."""
        with self.db.write() as s:
            r = s.exec(
                update(Action)
                .where(
                    col(Action.id) == action_id,
                    col(Action.status) == ActionStatus.EXECUTING,
                    col(Action.owner) == owner,
                )
                .values(progress=progress)
            )
            if r.rowcount != 1:
                return False
            owed = s.exec(
                select(Outbox.id)
                .where(
                    col(Outbox.kind) == "card",
                    col(Outbox.action_id) == action_id,
                    col(Outbox.delivered_at).is_(None),
                )
                .limit(1)
            ).first()
            if owed is None:
                self._enqueue(s, [Notice(action_id=action_id)])
            return True

    def request_cancel(self, action_id: str, user: str, at: datetime, audit_: Audit) -> bool:
        """Ask for a running action to be stopped: set once (the first asker wins), only while
        it is still executing, audited and its card owed in the same transaction. The
        replica running it reads `cancel_requested` and stops its process group."""
        with self.db.write() as s:
            r = s.exec(
                update(Action)
                .where(
                    col(Action.id) == action_id,
                    col(Action.status) == ActionStatus.EXECUTING,
                    col(Action.cancel_requested_by).is_(None),
                )
                .values(cancel_requested_by=user, cancel_requested_at=at, updated_at=utcnow())
            )
            if r.rowcount != 1:
                return False
            # Not an `action.*` row: asking changes no status (the run's end is the move).
            self._audit(s, audit_, subject=action_id, before=None, after=None)
            self._enqueue(s, [Notice(action_id=action_id)])
            return True

    def cancel_requested(self, action_id: str) -> str | None:
        """Who asked to stop this action's run (None: nobody): what the running replica's
        watch reads every second."""
        with self.db.read() as s:
            return s.exec(
                select(Action.cancel_requested_by).where(col(Action.id) == action_id)
            ).first()

    def set_card(self, action_id: str, ts: str) -> None:
        with self.db.write() as s:
            s.exec(update(Action).where(col(Action.id) == action_id).values(card_ts=ts))

    def record_approval(
        self,
        action: Action,
        approver: str,
        audit_: Audit,
        notices: Sequence[Notice] = (),
        via_grant: int | None = None,
        approvals: list[Approval] | None = None,
    ) -> int | None:
        """Add one approval of the action's current revision; None if already given.

        Returns the number of distinct approvals of that revision, counted in the same
        transaction, so the caller can decide whether the requirement is met. `via_grant`:
        the approver's 30-minute grant gave it (they did not click). `approvals`, if given,
        receives that revision's approvals as read in the same transaction (what
        `approvals()` would answer right after it), so the caller need not read them again.
        """
        try:
            with self.db.write() as s:
                # Lock the action first: concurrent approvals of one action then count each
                # other's rows (READ COMMITTED), and the audit row records its real status.
                status = s.exec(
                    select(Action.status).where(col(Action.id) == action.id).with_for_update()
                ).first()
                if status is None:
                    return None
                s.add(
                    Approval(
                        action_id=action.id,
                        revision=action.revision,
                        approver=approver,
                        policy_version=action.policy_version,
                        args_json=action.args_json,
                        via_grant=via_grant,
                    )
                )
                s.flush()
                self._audit(
                    s,
                    audit_,
                    subject=action.id,
                    before=status,
                    after=status,
                    extra={"revision": action.revision},
                )
                rows = s.exec(self._approvals_of(action.id, action.revision)).all()
                self._enqueue(s, [Notice(action_id=action.id), *notices])
                if approvals is not None:
                    approvals[:] = rows
                return len(
                    [
                        a
                        for a in rows
                        if a.policy_version == action.policy_version
                        and a.args_json == action.args_json
                    ]
                )
        except IntegrityError:
            return None

    def approvals(self, action_id: str, revision: int) -> list[Approval]:
        with self.db.read() as s:
            return list(s.exec(self._approvals_of(action_id, revision)).all())

    @staticmethod
    def _approvals_of(action_id: str, revision: int) -> Any:
        return (
            select(Approval)
            .where(Approval.action_id == action_id, Approval.revision == revision)
            .order_by(col(Approval.created_at), col(Approval.id))
        )

    def action_and_approvals(self, action_id: str) -> tuple[Action | None, list[Approval]]:
        """An action and the approvals of its current revision, read together (one read)."""
        with self.db.read() as s:
            action = s.get(Action, action_id)
            if action is None:
                return None, []
            return action, list(s.exec(self._approvals_of(action_id, action.revision)).all())

    def expired_awaiting(self, now: datetime, limit: int = 200) -> list[str]:
        with self.db.read() as s:
            return list(
                s.exec(
                    select(Action.id)
                    .where(
                        col(Action.status).in_(
                            [ActionStatus.AWAITING_APPROVAL, ActionStatus.APPROVED]
                        ),
                        col(Action.expires_at) < now,
                    )
                    .limit(limit)
                ).all()
            )

    def interrupted(self, now: datetime, me: str, limit: int = 200) -> list[str]:
        """Executing or undoing actions whose run was interrupted: the worker's lease ran out,
        or its owner is not alive — no `instance` heartbeat within `OWNER_DEAD_AFTER` of `now`
        (a crashed process, or one that stopped and removed its row). `me`, the caller's own
        owner id, is alive by definition; its stuck runs are found by their leases."""
        live = select(Instance.owner).where(col(Instance.heartbeat_at) >= now - OWNER_DEAD_AFTER)
        with self.db.read() as s:
            return list(
                s.exec(
                    select(Action.id)
                    .where(
                        col(Action.status).in_([ActionStatus.EXECUTING, ActionStatus.UNDOING]),
                        or_(
                            col(Action.lease_until) < now,
                            col(Action.owner).is_(None),
                            and_(col(Action.owner) != me, col(Action.owner).not_in(live)),
                        ),
                    )
                    .order_by(col(Action.updated_at))
                    .limit(limit)
                ).all()
            )

    def undo_window_closed(self, now: datetime, limit: int = 200) -> list[str]:
        with self.db.read() as s:
            return list(
                s.exec(
                    select(Action.id)
                    .where(col(Action.status).in_(UNDOABLE), col(Action.undo_until) < now)
                    .limit(limit)
                ).all()
            )

    def close_undo_window(self, action_id: str) -> bool:
        with self.db.write() as s:
            r = s.exec(
                update(Action)
                .where(col(Action.id) == action_id, col(Action.undo_until).is_not(None))
                .values(undo_until=None)
            )
            return bool(r.rowcount)

    def cards_missing(self, older_than: datetime, limit: int = 100) -> list[str]:
        with self.db.read() as s:
            return list(
                s.exec(
                    select(Action.id)
                    .where(
                        or_(col(Action.card_ts).is_(None), col(Action.card_ts) == UNSURE),
                        col(Action.created_at) < older_than,
                    )
                    .limit(limit)
                ).all()
            )

    def claim_card(self, action_id: str, owner: str) -> bool | None:
        """Reserve the right to post an action's first card (so two workers don't both post).

        None: someone else holds it. False: nobody tried before. True: an earlier attempt was
        given up (`UNSURE`), so the card may already be in Slack and must be looked for."""
        with self.db.write() as s:
            for before, unsure in ((None, False), (UNSURE, True)):
                r = s.exec(
                    update(Action)
                    .where(
                        col(Action.id) == action_id,
                        col(Action.card_ts).is_(None)
                        if before is None
                        else col(Action.card_ts) == before,
                    )
                    .values(card_ts=f"pending:{owner}"[:64])
                )
                if r.rowcount == 1:
                    return unsure
            return None

    def release_card(self, action_id: str, owner: str) -> None:
        """Give up a card reservation after a failed post, so the card sweep posts it later
        (the failed post may still have reached Slack: the next attempt looks first)."""
        with self.db.write() as s:
            s.exec(
                update(Action)
                .where(col(Action.id) == action_id, col(Action.card_ts) == f"pending:{owner}"[:64])
                .values(card_ts=UNSURE)
            )

    def release_dead_card_reservations(self, now: datetime, me: str) -> int:
        """Card reservations held by a process that is no longer alive (it crashed between
        reserving a card and posting it) are released, so the card sweep posts the card."""
        with self.db.read() as s:
            held = s.exec(
                select(Action.id, Action.card_ts).where(col(Action.card_ts).like("pending:%"))
            ).all()
            if not held:
                return 0
            live = s.exec(
                select(Instance.owner).where(col(Instance.heartbeat_at) >= now - OWNER_DEAD_AFTER)
            ).all()
        alive = {f"pending:{owner}"[:64] for owner in [*live, me]}
        released = 0
        for action_id, marker in held:
            if marker in alive:
                continue
            with self.db.write() as s:
                r = s.exec(
                    update(Action)
                    .where(col(Action.id) == action_id, col(Action.card_ts) == marker)
                    .values(card_ts=UNSURE)
                )
                released += r.rowcount
        return released

    def status_counts(self, statuses: Iterable[str]) -> dict[str, int]:
        """How many actions are in each of `statuses` (one grouped query)."""
        with self.db.read() as s:
            return self._counts(s, statuses)

    @staticmethod
    def _counts(s: Session, statuses: Iterable[str]) -> dict[str, int]:
        rows = s.connection().execute(
            _prebuilt("counts", _counts_statement), {"statuses": [str(x) for x in statuses]}
        )
        return {str(status): int(n) for status, n in rows}

    def requests_in_flight(self) -> int:
        with self.db.read() as s:
            return int(
                s.exec(
                    select(func.count())
                    .select_from(Request)
                    .where(col(Request.status).in_(list(IN_FLIGHT)))
                ).one()
            )

    def thread_requesters(self, channel: str, thread_ts: str) -> set[str]:
        """Who has asked Warden something in this thread."""
        with self.db.read() as s:
            return set(
                s.exec(
                    select(Request.requester).where(
                        Request.channel == channel, Request.thread_ts == thread_ts
                    )
                ).all()
            )

    def approvals_for(self, action_ids: Sequence[str]) -> dict[str, list[Approval]]:
        """Approvals of many actions at once (any revision), by action id."""
        out: dict[str, list[Approval]] = {a: [] for a in action_ids}
        if not action_ids:
            return out
        with self.db.read() as s:
            for row in s.exec(
                select(Approval)
                .where(col(Approval.action_id).in_(list(action_ids)))
                .order_by(col(Approval.created_at))
            ).all():
                out[row.action_id].append(row)
        return out

    # -- running instances -----------------------------------------------------------------

    def heartbeat(self, owner: str, now: datetime) -> None:
        """Register a running Warden or refresh its heartbeat (one upsert, no read)."""
        with self.db.write() as s:
            s.execute(
                self._insert(Instance)
                .values(owner=owner, started_at=now, heartbeat_at=now)
                .on_conflict_do_update(index_elements=["owner"], set_={"heartbeat_at": now})
            )

    def forget_instance(self, owner: str) -> None:
        """A Warden that stopped cleanly removes its row: its owner id is no longer alive."""
        with self.db.write() as s:
            s.exec(delete(Instance).where(col(Instance.owner) == owner))

    def instances(self) -> list[Instance]:
        with self.db.read() as s:
            return list(s.exec(select(Instance).order_by(col(Instance.started_at))).all())

    # -- pause -----------------------------------------------------------------------------

    def pause_state(self) -> PauseState:
        with self.db.read() as s:
            return self._pause(s)

    @staticmethod
    def _pause(s: Session) -> PauseState:
        row = s.connection().execute(_prebuilt("pause", _pause_statement)).first()
        if row is None:
            return PauseState(paused=False, reason="", changed_by="", changed_at=None)
        return PauseState(
            paused=row.paused,
            reason=row.reason,
            changed_by=row.changed_by,
            changed_at=row.changed_at,
            until=row.until,
        )

    def pauses(self) -> tuple[PauseState, list[PauseScope]]:
        """The global pause and the scoped pauses in force, read in one session."""
        with self.db.read() as s:
            return self._pause(s), self._active_scopes(s)

    def overview(
        self, statuses: Iterable[str]
    ) -> tuple[PauseState, dict[str, int], dict[str, Any]]:
        """What `/warden status` shows, read in one session: pause, action counts, usage."""
        with self.db.read() as s:
            return self._pause(s), self._counts(s, statuses), self._usage(s)

    def set_paused(
        self,
        paused: bool,
        reason: str,
        by: str,
        audit_: Audit,
        notices: Sequence[Notice] = (),
        until: datetime | None = None,
    ) -> bool:
        """Pause or resume; False if it already was in that state. Audited in the same step.
        `until`: a pause that ends by itself then (the auto-resume job ends it)."""
        changed = {
            "paused": paused,
            "reason": reason,
            "changed_by": by,
            "changed_at": utcnow(),
            "until": until,
        }
        with self.db.write() as s:
            r = s.exec(
                update(Control)
                .where(col(Control.id) == 1, col(Control.paused) != paused)
                .values(**changed)
            )
            if r.rowcount != 1 and s.get(Control, 1) is None:
                # Migration 0002 seeds the row; should it have been removed, the kill switch
                # must still work, and concurrent writers must not collide creating it.
                s.execute(
                    self._insert(Control)
                    .values(id=1, paused=False, reason="", changed_by="", changed_at=utcnow())
                    .on_conflict_do_nothing(index_elements=["id"])
                )
                r = s.exec(
                    update(Control)
                    .where(col(Control.id) == 1, col(Control.paused) != paused)
                    .values(**changed)
                )
            if r.rowcount != 1:
                return False
            self._audit(
                s,
                audit_,
                subject="control",
                before="paused" if not paused else "running",
                after="paused" if paused else "running",
                extra={"reason": reason},
            )
            self._enqueue(s, notices)
            return True

    # -- autonomy --------------------------------------------------------------------------

    def autonomy_overrides(self) -> dict[str, str]:
        with self.db.read() as s:
            return {r.tool: r.autonomy for r in s.exec(select(AutonomySetting)).all()}

    def autonomy_setting(self, tool: str) -> AutonomySetting | None:
        """A tool's run-time autonomy override (who set it, when), if any."""
        with self.db.read() as s:
            return s.get(AutonomySetting, tool)

    def autonomy_settings(self) -> dict[str, AutonomySetting]:
        with self.db.read() as s:
            return {r.tool: r for r in s.exec(select(AutonomySetting)).all()}

    def last_autonomy_audit(self, tool: str, kind: str) -> AuditEvent | None:
        """The newest audit row of `kind` about `tool`'s autonomy (e.g. why it was demoted)."""
        with self.db.read() as s:
            return s.exec(
                select(AuditEvent)
                .where(col(AuditEvent.subject) == f"tool:{tool}"[:64], col(AuditEvent.kind) == kind)
                .order_by(col(AuditEvent.seq).desc())
                .limit(1)
            ).first()

    def set_autonomy(
        self,
        tool: str,
        autonomy: str,
        by: str,
        audit_: Audit,
        notices: Sequence[Notice] = (),
        *,
        expect: AutonomySetting | Literal[True] | None = True,
    ) -> bool:
        """Set a tool's run-time autonomy, audited, with `notices`, in one transaction.

        `expect` True: unconditionally (an admin's command). Otherwise only if the override is
        still what the caller read — `expect` None: there is none; a row: the same stage set
        at the same time — so two replicas acting on the same reading change it once (False
        for the one that lost, which writes nothing)."""
        with self.db.write() as s:
            now = utcnow()
            before = None
            created = None
            if not isinstance(expect, AutonomySetting):
                created = s.execute(
                    self._insert(AutonomySetting)
                    .values(tool=tool, autonomy=autonomy, changed_by=by, changed_at=now)
                    .on_conflict_do_nothing(index_elements=["tool"])
                    .returning(col(AutonomySetting.tool))
                ).first()
            if created is None:  # the row exists: lock it, remember the old stage, change it
                if expect is None:
                    return False
                before = s.exec(
                    select(AutonomySetting.autonomy)
                    .where(col(AutonomySetting.tool) == tool)
                    .with_for_update()
                ).first()
                stmt = (
                    update(AutonomySetting)
                    .where(col(AutonomySetting.tool) == tool)
                    .values(autonomy=autonomy, changed_by=by, changed_at=now)
                )
                if isinstance(expect, AutonomySetting):
                    stmt = stmt.where(
                        col(AutonomySetting.autonomy) == expect.autonomy,
                        col(AutonomySetting.changed_at) == expect.changed_at,
                    )
                if before is None or s.exec(stmt).rowcount != 1:
                    return False
            self._audit(s, audit_, subject=f"tool:{tool}", before=before, after=autonomy)
            self._enqueue(s, notices)
            return True

    # -- audit -----------------------------------------------------------------------------

    def audit(self, audit_: Audit, subject: str = "", notices: Sequence[Notice] = ()) -> None:
        with self.db.write() as s:
            self._audit(s, audit_, subject=subject, before=None, after=None)
            self._enqueue(s, notices)

    def notify(self, notices: Sequence[Notice]) -> None:
        """Owe Slack messages that no state change caused (e.g. refreshing cards after a
        restart); most notices are written by the change that caused them."""
        with self.db.write() as s:
            self._enqueue(s, notices)

    def audit_rows(
        self, subject: str | None = None, trace_id: str | None = None, limit: int = 1000
    ) -> list[AuditEvent]:
        with self.db.read() as s:
            stmt = select(AuditEvent)
            if subject is not None:
                stmt = stmt.where(AuditEvent.subject == subject)
            if trace_id is not None:
                stmt = stmt.where(AuditEvent.trace_id == trace_id)
            return list(s.exec(stmt.order_by(col(AuditEvent.seq)).limit(limit)).all())

    def verify_audit(self, anchors: Sequence[tuple[int, str]] = ()) -> tuple[int, list[Problem]]:
        with self.db.read() as s:
            return audit.verify(s, anchors)

    def audit_tip(self) -> tuple[int, str]:
        with self.db.read() as s:
            return audit.tip(s)

    def _insert(self, table: Any) -> Any:
        return insert_for(self.db, table)

    @staticmethod
    def _audit(
        s: Session,
        a: Audit,
        *,
        subject: str,
        before: str | None,
        after: str | None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        data = {**(a.data or {}), **(extra or {})}
        audit.append(
            s,
            actor=a.actor,
            kind=a.kind,
            subject=subject,
            trace_id=a.trace_id,
            policy_version=a.policy_version,
            before=before,
            after=after,
            data=data,
        )

    def usage_totals(self) -> dict[str, Any]:
        with self.db.read() as s:
            return self._usage(s)

    @staticmethod
    def _usage(s: Session) -> dict[str, Any]:
        row = s.connection().execute(_prebuilt("usage", _usage_statement)).one()
        keys = (
            "requests",
            "input_tokens",
            "output_tokens",
            "cache_read_tokens",
            "cache_write_tokens",
            "cost_usd",
        )
        return {
            k: (float(v) if k == "cost_usd" else int(v)) for k, v in zip(keys, row, strict=True)
        }

    # -- housekeeping ----------------------------------------------------------------------

    def forget_events_before(self, cutoff: datetime) -> int:
        with self.db.write() as s:
            r = s.exec(delete(SlackEvent).where(col(SlackEvent.received_at) < cutoff))
            return int(r.rowcount or 0)
