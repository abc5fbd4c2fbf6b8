"""What `/warden status|pending|autonomy|audit|stats|help` and the App Home say, as plain data.

Texts are Slack mrkdwn strings (a message's text); views (Block Kit) are rendered from the
data here by `handlers/blocks.py`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from bot.cards import Card, build_card
from bot.control import scope_label
from bot.gate_text import until_text
from bot.lifecycle import Lifecycle
from bot.memory import line as memory_line
from bot.metrics import (
    FAST_APPROVAL,
    WINDOWS,
    Latency,
    Stats,
    approver_pace,
    report,
    window_stats,
    worst,
)
from storage.models import Action, ActionStatus

HELP = """*Warden* plans with an LLM and asks before it acts.
• Mention me with a request: `@warden restart checkout-api`
• Approvers click *Approve*, *Edit* or *Reject* on the card (or in my App Home); *Undo* after
• `/pause [30m] [reason]` stops everything at once (admins); `/resume` lifts it
• `/pause [30m] tool:NAME|channel:#channel|tier:high [reason]` holds only that; `/resume
  tool:NAME` (…) lifts it, `/resume all` lifts every pause
• `/warden status` — paused?, what is waiting, usage
• `/warden pending` — actions waiting for your approval
• `/warden autonomy [tool] [suggest|approve|auto]` — show or change a tool's stage (admins)
• `/warden audit [verify|trace-id]` — check the audit chain or show one request's trail (admins)
• `/warden stats [tool] [24h|7d]` — success, error, override and correction rates with their
  trend, latency, cost, 👍/👎 (approvers and admins)
• `/warden memory [query]` — what I remember about you and this channel
• `/warden forget ID|all` — forget a fact, or all about you: it never reaches the model again"""


def status_text(lc: Lifecycle) -> str:
    core = lc.core
    pause, counts, usage = core.store.overview(
        [
            ActionStatus.AWAITING_APPROVAL,
            ActionStatus.APPROVED,
            ActionStatus.EXECUTING,
            ActionStatus.NEEDS_REVIEW,
        ]
    )
    now = core.clock()
    state = (
        f":double_vertical_bar: *Paused* by <@{pause.changed_by}>"
        + (f" until {until_text(pause.until, now)}" if pause.until else "")
        + (f": {core.safe(pause.reason, 300)}" if pause.reason else "")
        if pause.paused
        else ":large_green_circle: *Running*"
    )
    scoped = scope_lines(lc)
    if scoped:
        state += f"\n*Scoped pauses* ({len(scoped)}):\n" + "\n".join(scoped)
    running = counts.get(ActionStatus.EXECUTING, 0) + counts.get(ActionStatus.APPROVED, 0)
    lines = [
        state,
        f"Awaiting approval: {counts.get(ActionStatus.AWAITING_APPROVAL, 0)} · "
        f"running: {running} · needs review: {counts.get(ActionStatus.NEEDS_REVIEW, 0)}",
        f"Policy `{core.policy.version}` · {len(core.registry.names())} tools · "
        f"queued for planning: {lc.workers.planners.pending}",
        f"Model usage: {usage['requests']} requests, {usage['input_tokens']} in / "
        f"{usage['output_tokens']} out tokens, cache read {usage['cache_read_tokens']} / "
        f"write {usage['cache_write_tokens']}, ${usage['cost_usd']:.4f}",
    ]
    lines += break_glass_lines(lc)
    return "\n".join(lines)


def scope_lines(lc: Lifecycle) -> list[str]:
    """The scoped pauses in force, one line each: what, who, until when, why."""
    core = lc.core
    now = core.clock()
    return [
        f"• {scope_label(s.kind, s.value)} — by <@{s.paused_by}>"
        + (f" until {until_text(s.until, now)}" if s.until else "")
        + (f": {core.safe(s.reason, 300)}" if s.reason else "")
        for s in core.store.active_pause_scopes()
    ]


def break_glass_lines(lc: Lifecycle, limit: int = 10) -> list[str]:
    """Break glass awaiting review, for `/warden status`: each action an admin ran alone
    that no approver has acknowledged yet."""
    core = lc.core
    found = core.store.unacknowledged_break_glass(limit + 1)
    if not found:
        return []
    lines = [
        f":warning: *Break glass to review* ({len(found[:limit])}"
        + ("+" if len(found) > limit else "")
        + "):"
    ]
    for a in found[:limit]:
        where = "a DM" if a.channel.startswith("D") else f"<#{a.channel}>"
        reason = core.safe(a.break_glass_reason or "", 200)
        lines.append(
            f"• *{a.tool}* run alone by <@{a.break_glass_by}> in {where}: {reason} — action "
            f"`{a.id[:8]}`; an approver acknowledges it on the card or in my App Home"
        )
    return lines


def awaiting_for(lc: Lifecycle, user: str, limit: int = 100) -> list[Action]:
    """Actions `user` could approve now, asked of the gate (approvals read in one query)."""
    core = lc.core
    waiting = core.store.actions_with_status([ActionStatus.AWAITING_APPROVAL], 500)
    approvals = core.store.approvals_for([a.id for a in waiting])
    now = core.now()
    out = []
    for action in waiting:
        ruling = core.gate.approve(action, approvals[action.id], user, now)
        if ruling.step.value in ("record", "start", "recheck"):
            out.append(action)
        if len(out) >= limit:
            break
    return out


def pending_text(lc: Lifecycle, user: str) -> str:
    actions = awaiting_for(lc, user)
    if not actions:
        return "Nothing is waiting for your approval."
    lines = [f"*{len(actions)} waiting for your approval* (approve them in my App Home):"]
    for a in actions[:20]:
        where = "a DM" if a.channel.startswith("D") else f"<#{a.channel}>"
        lines.append(
            f"• *{a.tool}* ({a.risk}) requested by <@{a.requester}> in {where}"
            f" — action `{a.id[:8]}`"
        )
    return "\n".join(lines)


def autonomy_text(lc: Lifecycle, user: str, args: list[str]) -> str:
    if not args:
        return lc.control.autonomy_listing()
    if len(args) != 2:
        return "Usage: `/warden autonomy TOOL suggest|approve|auto`"
    return lc.control.set_autonomy(args[0][:64], args[1], user).text


def audit_text(lc: Lifecycle, user: str, args: list[str]) -> str:
    core = lc.core
    if not core.is_admin(user):
        return "Only Warden admins can read the audit trail here."
    if not args or args[0] == "verify":
        count, problems = core.store.verify_audit()
        if not problems:
            return f":white_check_mark: Audit chain verifies ({count} rows)."
        return ":x: Audit chain broken:\n" + "\n".join(f"• {p.message}" for p in problems[:10])
    rows = core.store.audit_rows(trace_id=args[0][:32], limit=40)
    if not rows:
        return f"No audit rows for trace `{core.safe(args[0], 32)}`."
    return "\n".join(
        f"`{r.seq}` {r.at:%H:%M:%S} {r.kind} by {r.actor}"
        + (f" ({r.before} → {r.after})" if r.after else "")
        for r in rows
    )


# -- stats (every number from bot/metrics.py) ------------------------------------------------

STATS_USAGE = "Usage: `/warden stats [tool] [1h|24h|7d]` (default 24h)"


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value:.0%}"


def _usd(value: float | None) -> str:
    if value is None:
        return "—"
    return f"${value:.2f}" if value >= 1 else f"${value:.4f}"


def _num(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


def _secs(value: float | None) -> str:
    if value is None:
        return "—"
    if value < 1:
        return f"{value * 1000:.0f} ms"
    if value < 60:
        return f"{value:.1f} s"
    minutes = int(value // 60)
    if minutes < 60:
        return f"{minutes}m {int(value % 60)}s"
    return f"{minutes // 60}h {minutes % 60}m"


def _latency(lat: Latency) -> str:
    if not lat.count:
        return "—"
    return f"median {_secs(lat.median)}, p95 {_secs(lat.p95)} ({lat.count})"


def trend(now: float | None, before: float | None, show: str = "pct") -> str:
    """A value with its change against the previous window: "40% (↑ from 20%)"."""
    fmt: Callable[[float | None], str] = {"pct": _pct, "usd": _usd, "num": _num}[show]
    if now is None:
        return fmt(now)
    if before is None:
        return f"{fmt(now)} (none before)"
    if abs(now - before) < 1e-9:
        return f"{fmt(now)} (= {fmt(before)} before)"
    arrow = "↑" if now > before else "↓"
    return f"{fmt(now)} ({arrow} from {fmt(before)})"


def _has_data(stats: Stats) -> bool:
    return bool(stats.proposed or stats.requests or stats.thumbs_up or stats.thumbs_down)


def rate_lines(now: Stats, before: Stats) -> list[str]:
    """The rates, each with its trend against `before`."""
    return [
        f"Task success: {trend(now.task_success_rate, before.task_success_rate)}",
        f"Error rate: {trend(now.error_rate, before.error_rate)}",
        f"Override rate: {trend(now.override_rate, before.override_rate)}",
        f"Manual correction rate: {trend(now.correction_rate, before.correction_rate)}",
        f"Tool failure rate: {trend(now.tool_failure_rate, before.tool_failure_rate)}",
        f"Cost per successful task: {trend(now.cost_per_success, before.cost_per_success, 'usd')}",
        f"Median confidence: {trend(now.confidence_median, before.confidence_median, 'num')}",
        f"👎 share: {trend(now.downvote_rate, before.downvote_rate)}",
        f"Fast approvals (within {FAST_APPROVAL.total_seconds():g} s of the card): "
        f"{trend(now.fast_approval_rate, before.fast_approval_rate)}"
        f" ({now.fast_approvals}/{now.approvals})",
    ]


def stats_lines(now: Stats, before: Stats) -> list[str]:
    """Everything `/warden stats` says about one window (overall or one tool's)."""
    lines = [
        f"*Counts*: {now.proposed} proposed ({now.refused} refused) · {now.cards} cards, "
        f"{now.decided_cards} decided by people ({now.overrides} edited or rejected) · "
        f"{now.outcomes} runs finished: {now.successes} succeeded, {now.tool_failures} failed, "
        f"{now.verify_failures} failed their check, {now.undone} undone",
        *(f"• {line}" for line in rate_lines(now, before)),
        f"*Latency*: request → card {_latency(now.to_card)} · approve → done "
        f"{_latency(now.approve_to_done)}",
        f"*Approval wait*: {_latency(now.approval_wait)} · *time to recovery*: "
        f"{_latency(now.recovery)}",
        f"*Cost*: {_usd(now.cost_usd)} over {now.requests} requests"
        + (f" ({now.planner_failures} the planner gave up on)" if now.planner_failures else ""),
        f"*Feedback*: 👍 {now.thumbs_up} · 👎 {now.thumbs_down}",
    ]
    if now.tool is None:
        lines.append(
            f"*Prompt cache*: {trend(now.cache_share, before.cache_share)} of input tokens "
            f"read from the cache"
        )
    return lines


def pace_lines(
    lc: Lifecycle, since: datetime, until: datetime, tool: str | None = None
) -> list[str]:
    """Fast approvals per approver (admins only: these are people's numbers, never a
    Prometheus label)."""
    paces = approver_pace(lc.core.store.approval_rows(since, until, tool))
    if not paces:
        return []
    shown = " · ".join(
        f"<@{p.approver}> {p.fast}/{p.approvals} ({p.fast_rate:.0%})" for p in paces[:15]
    )
    return [
        f"*Fast approvals by approver* (within {FAST_APPROVAL.total_seconds():g} s of the "
        f"card; admins only): {shown}"
    ]


def _worst_line(stats: Stats) -> str:
    return (
        f"*{stats.tool}*: {_pct(stats.failure_rate)} failed outcomes "
        f"({stats.tool_failures + stats.verify_failures}/{stats.outcomes}), "
        f"{_pct(stats.override_rate)} overridden ({stats.overrides}/{stats.decided_cards})"
    )


def stats_text(lc: Lifecycle, user: str, args: list[str]) -> str:
    """`/warden stats [tool] [1h|24h|7d]`: the window's rates with their trend, per tool when
    one is named (approvers and admins: stats hold no personal data, but they are the
    operators' view)."""
    core = lc.core
    refusal = core.gate.may_see_stats(user)
    if refusal:
        return f"Sorry, {refusal}."
    windows = [a for a in args if a.lower() in WINDOWS]
    tools = [a for a in args if a.lower() not in WINDOWS]
    if len(windows) > 1 or len(tools) > 1:
        return STATS_USAGE
    window = windows[0].lower() if windows else "24h"
    span = WINDOWS[window]
    until = core.clock()
    if tools:
        tool = tools[0][:64]
        now = window_stats(core.store, until - span, until, tool)
        if not _has_data(now) and tool not in core.registry:
            return f"There is no tool called `{core.safe(tool, 64)}`.\n{STATS_USAGE}"
        before = window_stats(core.store, until - 2 * span, until - span, tool)
        head = f"*Stats for `{tool}`, last {window}* (trend against the {window} before)"
        if not _has_data(now):
            return f"{head}\nNo data yet: `{tool}` was not proposed in the last {window}."
        lines = [head, *stats_lines(now, before)]
        if core.is_admin(user):
            lines += pace_lines(lc, until - span, until, tool)
        return "\n".join(lines)
    rep = report(core.store, until, span)
    head = f"*Warden stats, last {window}* (trend against the {window} before)"
    if not _has_data(rep.overall):
        return f"{head}\nNo data yet: nothing was asked or proposed in the last {window}."
    lines = [head, *stats_lines(rep.overall, rep.previous)]
    if core.is_admin(user):
        lines += pace_lines(lc, until - span, until)
    bad = worst(rep.tools)
    if bad:
        lines.append("*Worst tools*: " + " · ".join(_worst_line(s) for s in bad))
    if len(rep.tools) > 1:
        lines.append(
            "*Per tool*: "
            + " · ".join(f"`{name}` {s.successes}/{s.outcomes} ok" for name, s in rep.tools.items())
            + f"\n_`/warden stats TOOL {window}` for one tool's numbers._"
        )
    return "\n".join(lines)


@dataclass(kw_only=True, frozen=True)
class HomeStats:
    """The App Home's admin section: the main rates with their trend, and the worst tools."""

    window: str
    rates: tuple[str, ...]  # "Task success: 80% (↑ from 60%)"
    summary: str  # counts and cost
    worst: tuple[str, ...]  # one line per tool, worst first
    empty: bool = False


HOME_WINDOW = "24h"


def home_stats(lc: Lifecycle, window: str = HOME_WINDOW) -> HomeStats:
    core = lc.core
    span: timedelta = WINDOWS[window]
    rep = report(core.store, core.clock(), span)
    now = rep.overall
    return HomeStats(
        window=window,
        rates=tuple(rate_lines(now, rep.previous)),
        summary=(
            f"{now.proposed} proposed · {now.outcomes} runs finished · "
            f"{now.requests} requests · {_usd(now.cost_usd)} · 👍 {now.thumbs_up} 👎 "
            f"{now.thumbs_down} · cache {_pct(now.cache_share)}"
        ),
        worst=tuple(_worst_line(s) for s in worst(rep.tools)),
        empty=not _has_data(now) and not _has_data(rep.previous),
    )


@dataclass(kw_only=True, frozen=True)
class HomeItem:
    """One action waiting for the viewer, with what its buttons need.

    `card` is the action's card as a reminder DM shows it (`bot.cards.build_card`, personal
    data kept as placeholders: the App Home is not the channel it was asked in), so the Home
    says what the card says — what will run, the planner's rationale and confidence, the
    dry-run preview, who edited the arguments — from the same data; its untrusted fields are
    neutralised when rendered, as on the card.
    """

    action: Action
    card: Card
    where: str


@dataclass(kw_only=True, frozen=True)
class HomeTask:
    """One open task on the viewer's App Home: given to them, or one they created."""

    task_id: int
    title: str  # neutralised
    where: str
    assignee: str | None
    due: str | None  # YYYY-MM-DD
    overdue: bool = False


HOME_TASKS = 15  # one section block; the Home holds 100 blocks in all
HOME_WAITING = 20  # three blocks each (the call, its buttons, its ids)


@dataclass(kw_only=True, frozen=True)
class HomeBreakGlass:
    """A break glass awaiting review on the viewer's App Home."""

    action: Action
    reason: str  # neutralised
    where: str
    may_acknowledge: bool  # the gate would take this viewer's Acknowledge


@dataclass(kw_only=True, frozen=True)
class Home:
    """The App Home: pause state and what waits for this person, approvable from here."""

    paused_by: str | None
    waiting: tuple[HomeItem, ...]
    paused_until: str = ""  # when the global pause ends by itself ("14:30 UTC"), if timed
    scoped_pauses: tuple[str, ...] = ()  # one line per scoped pause in force (safe mrkdwn)
    remembered: tuple[tuple[int, str], ...] = ()  # (fact id, line) about the viewer
    stats: HomeStats | None = None  # admins only
    tasks: tuple[HomeTask, ...] = ()  # open tasks given to the viewer, then ones they created
    # Break glass awaiting review: for admins, and for approvers who may acknowledge it.
    break_glass: tuple[HomeBreakGlass, ...] = ()


def home_tasks(lc: Lifecycle, user: str) -> tuple[HomeTask, ...]:
    """The viewer's open tasks: assigned to them (wherever they were made: being given a
    task is being told of it) or created by them, theirs first."""
    core = lc.core
    today = core.clock().date()
    return tuple(
        HomeTask(
            task_id=int(t.id or 0),
            title=core.safe(t.title, 200),
            where="a DM" if t.channel.startswith("D") else f"<#{t.channel}>",
            assignee=t.assignee,
            due=t.due.isoformat() if t.due else None,
            overdue=t.due is not None and t.due < today,
        )
        for t in core.store.tasks_of_person(user, HOME_TASKS)
    )


def home(lc: Lifecycle, user: str) -> Home:
    core = lc.core
    pause = core.store.pause_state()
    now = core.clock()
    items = tuple(
        HomeItem(
            action=a,
            card=build_card(a, lc.delivery.facts(a), now),
            where="a DM" if a.channel.startswith("D") else f"<#{a.channel}>",
        )
        for a in awaiting_for(lc, user, limit=HOME_WAITING)
    )
    remembered = tuple(
        (f.id, core.safe(memory_line(f), 300)) for f in lc.memory.about(user) if f.id is not None
    )
    return Home(
        paused_by=pause.changed_by if pause.paused else None,
        paused_until=until_text(pause.until, core.clock()) if pause.paused and pause.until else "",
        scoped_pauses=tuple(scope_lines(lc)),
        waiting=items,
        remembered=remembered,
        stats=home_stats(lc) if core.is_admin(user) else None,
        tasks=home_tasks(lc, user),
        break_glass=home_break_glass(lc, user),
    )


def home_break_glass(lc: Lifecycle, user: str) -> tuple[HomeBreakGlass, ...]:
    """Break glass awaiting review that the viewer may acknowledge (the gate says), or,
    for admins, all of it."""
    core = lc.core
    out = []
    for a in core.store.unacknowledged_break_glass(10):
        may = core.gate.may_acknowledge(a, user) is None
        if may or core.is_admin(user):
            out.append(
                HomeBreakGlass(
                    action=a,
                    reason=core.safe(a.break_glass_reason or "", 300),
                    where="a DM" if a.channel.startswith("D") else f"<#{a.channel}>",
                    may_acknowledge=may,
                )
            )
    return tuple(out)
