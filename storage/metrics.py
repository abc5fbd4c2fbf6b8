"""What metrics read (part of `storage.repo.Store`): the rows behind every rate, computed from
the database so every replica reports the same numbers.

Rates are defined once, in `bot/metrics.py`; the queries here only fetch the facts they are
computed from — one row per action proposed in a window (with its request's arrival time),
the model's usage and cost of the requests that arrived in it, and the 👍 / 👎 given on those
actions, and the approvals people clicked on them (how soon after the card: the rubber-stamp
measure) — plus the call counts the gate's unusual-usage rule compares, the all-time totals
`GET /metrics` exports as Prometheus counters (group-by queries, one row per label set), and
the schema revision `GET /readyz` compares with the code's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import ColumnElement, case, func
from sqlalchemy import select as sa_select
from sqlmodel import col

from storage.db import Database
from storage.models import Action, ActionStatus, Approval, Feedback, Request, RequestStatus


@dataclass(frozen=True, slots=True)
class ActionRow:
    """The facts about one action that the rates are computed from."""

    id: str
    tool: str
    risk: str
    status: str
    confidence: float
    revision: int
    edited: bool
    required_approvals: int
    requester: str
    request_id: str
    requested_at: datetime
    created_at: datetime
    decided_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    verify_status: str | None


@dataclass(frozen=True, slots=True)
class UsageRow:
    """The model's usage by the requests that arrived in a window."""

    requests: int = 0
    failed: int = 0  # the planner gave up on them
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cost_usd: float = 0.0


@dataclass(frozen=True, slots=True)
class VoteRow:
    action_id: str
    tool: str
    vote: int


@dataclass(frozen=True, slots=True)
class ApprovalRow:
    """One approval a person gave by clicking (not by a 30-minute grant) on an action
    proposed in a window, and how long after the card's proposal it came."""

    action_id: str
    approver: str
    tool: str
    risk: str  # the tier the action was proposed at
    after_seconds: float


@dataclass(frozen=True, slots=True)
class ApprovalCount:
    """Approvals people clicked (of all time) for one tool and tier at proposal, and how
    many of them came within the fast-approval threshold of their card."""

    tool: str
    proposed_risk: str
    approvals: int
    fast: int


@dataclass(frozen=True, slots=True)
class CallCounts:
    """How often one tool was proposed: in the recent window and in the baseline before it."""

    recent_by_requester: int
    recent_overall: int
    baseline_by_requester: int
    baseline_overall: int


@dataclass(frozen=True, slots=True)
class ActionCount:
    """How many actions (of all time) share one tool, tier at proposal, tier now, status and
    outcome check."""

    tool: str
    proposed_risk: str  # the tier it was proposed at (what counters count by: it never changes)
    risk: str  # the tier now (an edit can raise it)
    status: str
    verify_status: str | None
    finished: bool  # the tool call finished (succeeded, failed or cut off)
    edited: bool
    count: int


@dataclass(frozen=True, slots=True)
class ConfidenceCount:
    """The confidence of one tool's and tier's proposals (refused ones excluded), of all time:
    `buckets[i]` counts confidences <= `bounds[i]` (cumulative, as Prometheus histograms are).
    The tier is the one they were proposed at."""

    tool: str
    proposed_risk: str
    buckets: tuple[int, ...]
    total: float
    count: int


@dataclass(frozen=True, slots=True)
class VoteCount:
    tool: str
    vote: int
    count: int


MAX_ROWS = 200_000
"""At most this many actions are read for one window (the newest): a bound on memory."""


class MetricsQueries:
    db: Database

    def action_rows(
        self, since: datetime, until: datetime, tool: str | None = None
    ) -> list[ActionRow]:
        """Every action proposed in [since, until), newest first, at most `MAX_ROWS`."""
        stmt = (
            sa_select(
                col(Action.id),
                col(Action.tool),
                col(Action.risk),
                col(Action.status),
                col(Action.confidence),
                col(Action.revision),
                col(Action.edited_by).is_not(None),
                col(Action.required_approvals),
                col(Action.requester),
                col(Action.request_id),
                col(Request.created_at),
                col(Action.created_at),
                col(Action.decided_at),
                col(Action.started_at),
                col(Action.finished_at),
                col(Action.verify_status),
            )
            .join(Request, col(Request.id) == col(Action.request_id))
            .where(col(Action.created_at) >= since, col(Action.created_at) < until)
        )
        if tool is not None:
            stmt = stmt.where(col(Action.tool) == tool)
        stmt = stmt.order_by(col(Action.created_at).desc()).limit(MAX_ROWS)
        with self.db.read() as s:
            rows = s.connection().execute(stmt).all()
            return [ActionRow(*cast(tuple[Any, ...], row)) for row in rows]

    def usage_between(self, since: datetime, until: datetime) -> UsageRow:
        """Requests that arrived in [since, until), their token usage and cost."""
        return self._usage_rows((since, until))

    def _usage_rows(self, between: tuple[datetime, datetime] | None) -> UsageRow:
        stmt = sa_select(
            func.count(),
            _count_if(col(Request.status) == RequestStatus.FAILED.value),
            func.coalesce(func.sum(Request.input_tokens), 0),
            func.coalesce(func.sum(Request.output_tokens), 0),
            func.coalesce(func.sum(Request.cache_read_tokens), 0),
            func.coalesce(func.sum(Request.cache_write_tokens), 0),
            func.coalesce(func.sum(Request.cost_usd), 0.0),
        )
        if between is not None:
            since, until = between
            stmt = stmt.where(col(Request.created_at) >= since, col(Request.created_at) < until)
        with self.db.read() as s:
            row = s.connection().execute(stmt).one()
        return UsageRow(
            requests=int(row[0]),
            failed=int(row[1]),
            input_tokens=int(row[2]),
            output_tokens=int(row[3]),
            cache_read_tokens=int(row[4]),
            cache_write_tokens=int(row[5]),
            cost_usd=float(row[6]),
        )

    def request_costs(self, request_ids: Sequence[str]) -> dict[str, float]:
        """Each request's model cost (what a tool's cost per successful task shares out)."""
        out: dict[str, float] = {}
        ids = list(dict.fromkeys(request_ids))
        with self.db.read() as s:
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                for rid, cost in s.connection().execute(
                    sa_select(col(Request.id), col(Request.cost_usd)).where(
                        col(Request.id).in_(chunk)
                    )
                ):
                    out[str(rid)] = float(cost)
        return out

    def votes_between(
        self, since: datetime, until: datetime, tool: str | None = None
    ) -> list[VoteRow]:
        """The 👍 (+1) and 👎 (-1) on actions proposed in [since, until)."""
        stmt = (
            sa_select(col(Feedback.action_id), col(Feedback.tool), col(Feedback.vote))
            .join(Action, col(Action.id) == col(Feedback.action_id))
            .where(col(Action.created_at) >= since, col(Action.created_at) < until)
        )
        if tool is not None:
            stmt = stmt.where(col(Feedback.tool) == tool)
        with self.db.read() as s:
            return [VoteRow(str(a), str(t), int(v)) for a, t, v in s.connection().execute(stmt)]

    def approval_rows(
        self, since: datetime, until: datetime, tool: str | None = None
    ) -> list[ApprovalRow]:
        """Approvals people clicked (grants excluded) on actions proposed in [since, until),
        at most `MAX_ROWS`, with the seconds from each card's proposal to the approval."""
        stmt = (
            sa_select(
                col(Approval.action_id),
                col(Approval.approver),
                col(Action.tool),
                col(Action.proposed_risk),
                col(Approval.created_at),
                col(Action.created_at),
            )
            .join(Action, col(Action.id) == col(Approval.action_id))
            .where(
                col(Action.created_at) >= since,
                col(Action.created_at) < until,
                col(Approval.via_grant).is_(None),
            )
        )
        if tool is not None:
            stmt = stmt.where(col(Action.tool) == tool)
        stmt = stmt.order_by(col(Approval.created_at).desc()).limit(MAX_ROWS)
        with self.db.read() as s:
            return [
                ApprovalRow(
                    action_id=str(a),
                    approver=str(who),
                    tool=str(t),
                    risk=str(r),
                    after_seconds=max(0.0, (approved - proposed).total_seconds()),
                )
                for a, who, t, r, approved, proposed in s.connection().execute(stmt)
            ]

    def approval_counts(self, fast_seconds: float) -> list[ApprovalCount]:
        """Every approval people clicked (grants excluded), counted per tool and tier at
        proposal, with those given less than `fast_seconds` after the card's proposal."""
        approved, proposed = col(Approval.created_at), col(Action.created_at)
        if self.db.is_sqlite:  # datetimes are text there: compare them as Julian days
            after = (func.julianday(approved) - func.julianday(proposed)) * 86400.0
        else:
            after = func.extract("epoch", approved - proposed)
        stmt = (
            sa_select(
                col(Action.tool),
                col(Action.proposed_risk),
                func.count(),
                _count_if(after < fast_seconds),
            )
            .join(Action, col(Action.id) == col(Approval.action_id))
            .where(col(Approval.via_grant).is_(None))
            .group_by(col(Action.tool), col(Action.proposed_risk))
        )
        with self.db.read() as s:
            return [
                ApprovalCount(str(t), str(r), int(n), int(f))
                for t, r, n, f in s.connection().execute(stmt)
            ]

    def call_counts(
        self, tool: str, requester: str, recent_since: datetime, baseline_since: datetime
    ) -> CallCounts:
        """Proposals of `tool` since `recent_since`, and in [baseline_since, recent_since);
        each overall and by `requester`. Refused proposals count too: asking is usage."""
        recent = col(Action.created_at) >= recent_since
        mine = col(Action.requester) == requester
        stmt = sa_select(
            _count_if(recent & mine),
            _count_if(recent),
            _count_if(~recent & mine),
            func.count(),
        ).where(col(Action.tool) == tool, col(Action.created_at) >= baseline_since)
        with self.db.read() as s:
            a, b, c, total = s.connection().execute(stmt).one()
        return CallCounts(
            recent_by_requester=int(a),
            recent_overall=int(b),
            baseline_by_requester=int(c),
            baseline_overall=int(total) - int(b),
        )

    # -- all-time totals (Prometheus counters) ---------------------------------------------

    def action_counts(self) -> list[ActionCount]:
        """Every action ever proposed, counted by tool, tier at proposal, tier now, status,
        outcome check, whether the call finished and whether a person edited it."""
        finished = col(Action.finished_at).is_not(None)
        edited = col(Action.edited_by).is_not(None)
        stmt = sa_select(
            col(Action.tool),
            col(Action.proposed_risk),
            col(Action.risk),
            col(Action.status),
            col(Action.verify_status),
            finished,
            edited,
            func.count(),
        ).group_by(
            col(Action.tool),
            col(Action.proposed_risk),
            col(Action.risk),
            col(Action.status),
            col(Action.verify_status),
            finished,
            edited,
        )
        with self.db.read() as s:
            return [
                ActionCount(str(t), str(p), str(r), str(st), v, bool(f), bool(e), int(n))
                for t, p, r, st, v, f, e, n in s.connection().execute(stmt)
            ]

    def confidence_counts(self, bounds: Sequence[float]) -> list[ConfidenceCount]:
        """The planner's confidence per tool and tier at proposal, bucketed by `bounds` (upper
        bounds)."""
        conf = col(Action.confidence)
        stmt = (
            sa_select(
                col(Action.tool),
                col(Action.proposed_risk),
                func.coalesce(func.sum(conf), 0.0),
                func.count(),
                *(_count_if(conf <= bound) for bound in bounds),
            )
            .where(col(Action.status) != ActionStatus.REFUSED.value)
            .group_by(col(Action.tool), col(Action.proposed_risk))
        )
        with self.db.read() as s:
            return [
                ConfidenceCount(
                    tool=str(row[0]),
                    proposed_risk=str(row[1]),
                    total=float(row[2]),
                    count=int(row[3]),
                    buckets=tuple(int(n) for n in row[4:]),
                )
                for row in s.connection().execute(stmt)
            ]

    def vote_counts(self) -> list[VoteCount]:
        """Every 👍 (+1) and 👎 (-1) standing now, counted per tool."""
        stmt = sa_select(col(Feedback.tool), col(Feedback.vote), func.count()).group_by(
            col(Feedback.tool), col(Feedback.vote)
        )
        with self.db.read() as s:
            return [VoteCount(str(t), int(v), int(n)) for t, v, n in s.connection().execute(stmt)]

    def usage_all_time(self) -> UsageRow:
        """Every request's token usage and cost, of all time."""
        return self._usage_rows(None)

    def schema_revisions(self) -> tuple[str | None, str | None]:
        """The database's Alembic revision and the code's newest (what `/readyz` compares)."""
        from alembic.runtime.migration import MigrationContext
        from alembic.script import ScriptDirectory

        head = ScriptDirectory.from_config(self.db.alembic_config()).get_current_head()
        with self.db.read() as s:
            current = MigrationContext.configure(s.connection()).get_current_revision()
        return current, head


def _count_if(condition: ColumnElement[bool]) -> ColumnElement[int]:
    return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)
