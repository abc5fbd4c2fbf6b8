"""What `/warden status|pending|autonomy|audit|help` and the App Home say, as plain data.

Texts are Slack mrkdwn strings (a message's text); views (Block Kit) are rendered from the
data here by `handlers/blocks.py`.
"""

from __future__ import annotations

from dataclasses import dataclass

from bot.lifecycle import Lifecycle
from bot.memory import line as memory_line
from storage.models import Action, ActionStatus

HELP = """*Warden* plans with an LLM and asks before it acts.
• Mention me with a request: `@warden restart checkout-api`
• Approvers click *Approve*, *Edit* or *Reject* on the card (or in my App Home); *Undo* after
• `/pause [reason]` stops everything at once (admins); `/resume` lifts it
• `/warden status` — paused?, what is waiting, usage
• `/warden pending` — actions waiting for your approval
• `/warden autonomy [tool] [suggest|approve|auto]` — show or change a tool's stage (admins)
• `/warden audit [verify|trace-id]` — check the audit chain or show one request's trail (admins)
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
    state = (
        f":double_vertical_bar: *Paused* by <@{pause.changed_by}>"
        + (f": {core.safe(pause.reason, 300)}" if pause.reason else "")
        if pause.paused
        else ":large_green_circle: *Running*"
    )
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
    return "\n".join(lines)


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


@dataclass(kw_only=True, frozen=True)
class HomeItem:
    """One action waiting for the viewer, with what its buttons need."""

    action: Action
    why: str  # neutralised rationale
    where: str


@dataclass(kw_only=True, frozen=True)
class Home:
    """The App Home: pause state and what waits for this person, approvable from here."""

    paused_by: str | None
    waiting: tuple[HomeItem, ...]
    remembered: tuple[tuple[int, str], ...] = ()  # (fact id, line) about the viewer


def home(lc: Lifecycle, user: str) -> Home:
    core = lc.core
    pause = core.store.pause_state()
    items = tuple(
        HomeItem(
            action=a,
            why=core.safe(a.rationale, 300),
            where="a DM" if a.channel.startswith("D") else f"<#{a.channel}>",
        )
        for a in awaiting_for(lc, user, limit=20)
    )
    remembered = tuple(
        (f.id, core.safe(memory_line(f), 300)) for f in lc.memory.about(user) if f.id is not None
    )
    return Home(
        paused_by=pause.changed_by if pause.paused else None,
        waiting=items,
        remembered=remembered,
    )
