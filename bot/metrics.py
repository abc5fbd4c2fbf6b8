"""Every rate Warden reports, defined once: `/warden stats`, the App Home, `GET /metrics`, the
alerts and the autonomy governor all read `Stats` from here.

A window's stats are computed from the actions *proposed* in it (a cohort), so a number
never changes meaning with the time an outcome arrived, and from the database, so every
replica reports the same. Definitions (each per tool and overall):

- **outcomes**: runs that finished — the tool call succeeded, failed, was cut off with its
  outcome unknown (`needs_review`), or was stopped by a person (`cancelled`).
- **task success rate**: outcomes that succeeded, were not undone, and did not fail their
  outcome check (`verify`), over outcomes (a cancelled run is not a success, nor a failure
  of the tool).
- **tool failure rate**: outcomes where the tool call failed or was cut off, over outcomes.
- **error rate**: tool failures plus failed outcome checks (plus, overall, requests the
  planner gave up on), over outcomes (plus those requests).
- **override rate**: cards people decided (approved or rejected, having needed a click) that
  were edited or rejected, over decided cards.
- **manual correction rate**: actions edited, undone or cancelled (a person stopped the run),
  over actions decided (by a person or the gate).
- **time to recovery**: from a tool's failed outcome to its next successful one (median).
- **cost per successful task**: the model's cost of the requests that arrived in the window,
  over successful tasks (per tool: each request's cost shared among its actions).
- **latency**: request → card (the action's proposal), and approve → done (median, p95).
- **approval wait**: card → a person's decision (median, p95).
- **confidence**: the planner's confidence at proposal (median, and a histogram).
- **👍 / 👎**: feedback on those actions; **cache share**: input tokens read from the prompt
  cache over all input tokens.
- **fast approvals** (the rubber-stamp measure): approvals people clicked less than
  `FAST_APPROVAL` after the card was proposed, over the approvals they clicked (approvals a
  30-minute grant gave are nobody's click and count in neither); per approver in
  `/warden stats` for admins, never in Prometheus labels.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

from storage.metrics import ActionRow, ApprovalRow, UsageRow, VoteRow
from storage.models import ActionStatus, VerifyStatus

TOOL_FAILED = frozenset({ActionStatus.FAILED.value, ActionStatus.NEEDS_REVIEW.value})
UNDONE = frozenset(
    {ActionStatus.UNDOING.value, ActionStatus.UNDONE.value, ActionStatus.UNDO_FAILED.value}
)
CANCELLED = ActionStatus.CANCELLED.value
CONFIDENCE_BUCKETS = (0.5, 0.7, 0.8, 0.9, 0.95, 1.0)
"""Upper bounds of the confidence histogram (Prometheus `le` labels)."""

WINDOWS = {"1h": timedelta(hours=1), "24h": timedelta(hours=24), "7d": timedelta(days=7)}

FAST_APPROVAL = timedelta(seconds=5)
"""An approval clicked sooner than this after its card was proposed is a fast approval: too
soon to have read the card (the rubber-stamp measure)."""


class MetricsSource(Protocol):
    """What stats are read from (`storage.repo.Store`)."""

    def action_rows(
        self, since: datetime, until: datetime, tool: str | None = None
    ) -> list[ActionRow]: ...

    def usage_between(self, since: datetime, until: datetime) -> UsageRow: ...

    def request_costs(self, request_ids: Sequence[str]) -> dict[str, float]: ...

    def votes_between(
        self, since: datetime, until: datetime, tool: str | None = None
    ) -> list[VoteRow]: ...

    def approval_rows(
        self, since: datetime, until: datetime, tool: str | None = None
    ) -> list[ApprovalRow]: ...


def _median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def _p95(values: Sequence[float]) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]


def _rate(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def _seconds(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return max(0.0, (end - start).total_seconds())


@dataclass(frozen=True)
class Latency:
    median: float | None = None  # seconds
    p95: float | None = None
    count: int = 0

    @classmethod
    def of(cls, values: Iterable[float | None]) -> Latency:
        seen = [v for v in values if v is not None]
        return cls(median=_median(seen), p95=_p95(seen), count=len(seen))


@dataclass(frozen=True)
class Stats:
    """One tool's (or everything's) numbers for one window."""

    tool: str | None  # None: all tools
    since: datetime
    until: datetime
    proposed: int = 0
    refused: int = 0
    cards: int = 0  # proposals that needed a person's click
    decided_cards: int = 0
    overrides: int = 0
    decided: int = 0  # by a person or the gate
    corrections: int = 0
    runs: int = 0
    outcomes: int = 0
    successes: int = 0
    tool_failures: int = 0
    verify_failures: int = 0
    planner_failures: int = 0
    undone: int = 0
    thumbs_up: int = 0
    thumbs_down: int = 0
    cost_usd: float = 0.0
    input_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    requests: int = 0
    to_card: Latency = Latency()
    approve_to_done: Latency = Latency()
    approval_wait: Latency = Latency()
    recovery: Latency = Latency()
    confidence_median: float | None = None
    confidence_histogram: tuple[int, ...] = field(default=(0,) * len(CONFIDENCE_BUCKETS))
    approvals: int = 0  # approvals people clicked (not given by a 30-minute grant)
    fast_approvals: int = 0  # … of which sooner than FAST_APPROVAL after the card

    @property
    def task_success_rate(self) -> float | None:
        return _rate(self.successes, self.outcomes)

    @property
    def tool_failure_rate(self) -> float | None:
        return _rate(self.tool_failures, self.outcomes)

    @property
    def error_rate(self) -> float | None:
        return _rate(
            self.tool_failures + self.verify_failures + self.planner_failures,
            self.outcomes + self.planner_failures,
        )

    @property
    def override_rate(self) -> float | None:
        return _rate(self.overrides, self.decided_cards)

    @property
    def correction_rate(self) -> float | None:
        return _rate(self.corrections, self.decided)

    @property
    def downvote_rate(self) -> float | None:
        return _rate(self.thumbs_down, self.thumbs_up + self.thumbs_down)

    @property
    def failure_rate(self) -> float | None:
        """Failed outcomes (the call or its outcome check) over outcomes: what the governor
        and the error-rate alert watch."""
        return _rate(self.tool_failures + self.verify_failures, self.outcomes)

    @property
    def fast_approval_rate(self) -> float | None:
        """Approvals clicked within `FAST_APPROVAL` of the card, over approvals clicked."""
        return _rate(self.fast_approvals, self.approvals)

    @property
    def cost_per_success(self) -> float | None:
        return self.cost_usd / self.successes if self.successes else None

    @property
    def cache_share(self) -> float | None:
        whole = self.input_tokens + self.cache_read_tokens + self.cache_write_tokens
        return _rate(self.cache_read_tokens, whole)


@dataclass(frozen=True)
class Report:
    """Stats for a window: overall, per tool, and the same for the window before (trend)."""

    overall: Stats
    tools: dict[str, Stats]
    previous: Stats


@dataclass(frozen=True)
class ApproverPace:
    """How fast one approver approves: their clicked approvals in a window, and how many
    came within `FAST_APPROVAL` of the card (admins' view in `/warden stats`)."""

    approver: str
    approvals: int
    fast: int

    @property
    def fast_rate(self) -> float:
        return self.fast / self.approvals if self.approvals else 0.0


def is_fast(row: ApprovalRow) -> bool:
    return row.after_seconds < FAST_APPROVAL.total_seconds()


def approver_pace(rows: Iterable[ApprovalRow]) -> list[ApproverPace]:
    """Each approver's approvals and fast approvals, the most fast approvals first."""
    totals: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for row in rows:
        totals[row.approver][0] += 1
        totals[row.approver][1] += is_fast(row)
    paces = [ApproverPace(approver=a, approvals=n, fast=f) for a, (n, f) in totals.items()]
    paces.sort(key=lambda p: (-p.fast, -p.fast_rate, p.approver))
    return paces


def _succeeded(row: ActionRow) -> bool:
    return (
        row.finished_at is not None
        and row.status not in TOOL_FAILED
        and row.status not in UNDONE
        and row.status != CANCELLED
        and row.verify_status != VerifyStatus.FAILED.value
    )


def _failed(row: ActionRow) -> bool:
    return row.finished_at is not None and (
        row.status in TOOL_FAILED or row.verify_status == VerifyStatus.FAILED.value
    )


def recoveries(rows: Iterable[ActionRow]) -> list[float]:
    """Seconds from each tool's failed outcome to its next successful one."""
    by_tool: dict[str, list[ActionRow]] = defaultdict(list)
    for row in rows:
        if row.finished_at is not None:
            by_tool[row.tool].append(row)
    out: list[float] = []
    for finished in by_tool.values():
        finished.sort(key=lambda r: r.finished_at or r.created_at)
        failed_since: datetime | None = None
        for row in finished:
            if _failed(row):
                failed_since = failed_since or row.finished_at
            elif _succeeded(row) and failed_since is not None:
                seconds = _seconds(failed_since, row.finished_at)
                if seconds is not None:
                    out.append(seconds)
                failed_since = None
    return out


def compute(
    rows: Sequence[ActionRow],
    votes: Sequence[VoteRow],
    *,
    tool: str | None,
    since: datetime,
    until: datetime,
    usage: UsageRow | None = None,
    costs: dict[str, float] | None = None,
    approvals: Sequence[ApprovalRow] = (),
) -> Stats:
    """The stats of `rows` (actions proposed in the window); `usage` for the overall row,
    `costs` (request id → cost) to share a request's cost among its actions for a tool row;
    `approvals`, the approvals people clicked on them."""
    histogram = [0] * len(CONFIDENCE_BUCKETS)
    confidences: list[float] = []
    counts: dict[str, int] = defaultdict(int)
    per_request: dict[str, int] = defaultdict(int)
    for row in rows:
        per_request[row.request_id] += 1
    cost = 0.0
    for row in rows:
        counts["proposed"] += 1
        if row.status == ActionStatus.REFUSED.value:
            counts["refused"] += 1
            continue
        confidences.append(row.confidence)
        for index, bound in enumerate(CONFIDENCE_BUCKETS):
            if row.confidence <= bound:
                histogram[index] += 1
                break
        card = row.required_approvals > 0
        counts["cards"] += card
        rejected = row.status == ActionStatus.REJECTED.value
        # A person's edit sets `edited`; a revision also moves on when the rules change under
        # a waiting card (re-check, hold), which is nobody's override.
        edited = row.edited
        if row.decided_at is not None:
            counts["decided"] += 1
            counts["corrections"] += edited or row.status in UNDONE or row.status == CANCELLED
            if card:
                counts["decided_cards"] += 1
                counts["overrides"] += edited or rejected
        counts["runs"] += row.started_at is not None
        counts["undone"] += row.status in UNDONE
        if row.finished_at is not None:
            counts["outcomes"] += 1
            counts["successes"] += _succeeded(row)
            counts["tool_failures"] += row.status in TOOL_FAILED
            counts["verify_failures"] += row.verify_status == VerifyStatus.FAILED.value
        if costs is not None:
            cost += costs.get(row.request_id, 0.0) / per_request[row.request_id]
    live = [r for r in rows if r.status != ActionStatus.REFUSED.value]
    extra: dict[str, float | int] = {}
    if usage is not None:
        extra = {
            "cost_usd": usage.cost_usd,
            "input_tokens": usage.input_tokens,
            "cache_read_tokens": usage.cache_read_tokens,
            "cache_write_tokens": usage.cache_write_tokens,
            "requests": usage.requests,
            "planner_failures": usage.failed,
        }
    elif costs is not None:
        extra = {"cost_usd": cost, "requests": len(per_request)}
    return Stats(
        tool=tool,
        since=since,
        until=until,
        thumbs_up=sum(1 for v in votes if v.vote > 0),
        thumbs_down=sum(1 for v in votes if v.vote < 0),
        to_card=Latency.of(_seconds(r.requested_at, r.created_at) for r in live),
        approve_to_done=Latency.of(
            _seconds(r.decided_at, r.finished_at) for r in live if r.started_at is not None
        ),
        approval_wait=Latency.of(
            _seconds(r.created_at, r.decided_at) for r in live if r.required_approvals > 0
        ),
        recovery=Latency.of(recoveries(rows)),
        confidence_median=_median(confidences),
        confidence_histogram=tuple(histogram),
        approvals=len(approvals),
        fast_approvals=sum(1 for a in approvals if is_fast(a)),
        **counts,
        **extra,  # type: ignore[arg-type]
    )


def window_stats(
    source: MetricsSource, since: datetime, until: datetime, tool: str | None = None
) -> Stats:
    """One tool's (or, with `tool` None, everything's) stats for [since, until)."""
    rows = source.action_rows(since, until, tool)
    votes = source.votes_between(since, until, tool)
    approvals = source.approval_rows(since, until, tool)
    if tool is None:
        return compute(
            rows,
            votes,
            tool=None,
            since=since,
            until=until,
            usage=source.usage_between(since, until),
            approvals=approvals,
        )
    costs = source.request_costs([r.request_id for r in rows])
    return compute(
        rows, votes, tool=tool, since=since, until=until, costs=costs, approvals=approvals
    )


def report(source: MetricsSource, until: datetime, span: timedelta) -> Report:
    """Stats for [until − span, until) overall and per tool, and overall for the span before."""
    overall, tools = breakdown(source, until, span)
    previous = window_stats(source, until - 2 * span, until - span)
    return Report(overall=overall, tools=tools, previous=previous)


def breakdown(
    source: MetricsSource, until: datetime, span: timedelta
) -> tuple[Stats, dict[str, Stats]]:
    """Stats for [until − span, until): overall, and per tool (one read of each kind)."""
    since = until - span
    rows = source.action_rows(since, until)
    votes = source.votes_between(since, until)
    usage = source.usage_between(since, until)
    approvals = source.approval_rows(since, until)
    overall = compute(
        rows, votes, tool=None, since=since, until=until, usage=usage, approvals=approvals
    )
    costs = source.request_costs([r.request_id for r in rows])
    by_tool: dict[str, list[ActionRow]] = defaultdict(list)
    for row in rows:
        by_tool[row.tool].append(row)
    tools = {
        name: compute(
            tool_rows,
            [v for v in votes if v.tool == name],
            tool=name,
            since=since,
            until=until,
            costs=costs,
            approvals=[a for a in approvals if a.tool == name],
        )
        for name, tool_rows in sorted(by_tool.items())
    }
    return overall, tools


def worst(tools: dict[str, Stats], limit: int = 3, min_outcomes: int = 1) -> list[Stats]:
    """The tools with the highest failure rate (then override rate), worst first."""
    ranked = [s for s in tools.values() if s.outcomes >= min_outcomes or s.decided_cards]
    ranked.sort(
        key=lambda s: (-(s.failure_rate or 0.0), -(s.override_rate or 0.0), s.tool or ""),
    )
    return [s for s in ranked if (s.failure_rate or 0.0) > 0 or (s.override_rate or 0.0) > 0][
        :limit
    ]
