"""Autonomy rules: which stage a tool may be set to, and when its record calls for
demoting it from `auto` (the governor's rule)."""

from __future__ import annotations

from datetime import datetime

from bot.gate_text import span_text
from bot.gate_types import Decision, Demotion, Verdict
from bot.metrics import Stats
from bot.policy import Policy
from bot.policy_types import Autonomy, Risk
from bot.tools import ToolRegistry
from storage.models import Action, ActionStatus


def demotion(policy: Policy, stats: Stats, now: datetime) -> Demotion | None:
    """Whether an `auto` tool's record over the governor's window (`stats`, counted from
    its last autonomy change at most) calls for demoting it to `approve`: its failure,
    override or 👎 rate above `[governor]`'s limit, with at least `min_volume` behind it.
    None: it keeps its stage."""
    governor = policy.governor
    if not governor.enabled:
        return None
    clipped = stats.since > now - governor.window
    window = "since its autonomy last changed" if clipped else span_text(governor.window)
    checks = (
        ("failure rate", stats.failure_rate, stats.outcomes, governor.max_failure_rate),
        (
            "override rate",
            stats.override_rate,
            stats.decided_cards,
            governor.max_override_rate,
        ),
        (
            "👎 rate",
            stats.downvote_rate,
            stats.thumbs_up + stats.thumbs_down,
            governor.max_downvote_rate,
        ),
    )
    for rule, rate, volume, limit in checks:
        if rate is None or volume < governor.min_volume or rate <= limit:
            continue
        count = round(rate * volume)
        over = window if clipped else f"over {window}"
        return Demotion(
            rule=rule,
            rate=rate,
            limit=limit,
            count=count,
            volume=volume,
            window=window,
            reason=f"{rule} {rate:.0%} ({count}/{volume}) {over}",
        )
    return None


def may_set_autonomy(registry: ToolRegistry, tool: str, stage: Autonomy) -> str | None:
    """Why an admin may not set `tool` to `stage` (None: they may)."""
    if tool not in registry:
        return f"there is no tool called `{tool[:64]}`"
    t = registry.get(tool)
    if t.read_only:
        return f"`{tool}` is a read-only lookup; it has no autonomy stage"
    if stage is Autonomy.AUTO and not (t.risk is Risk.LOW and t.risk_from_args is None):
        return f"`{tool}` is not low risk, so it can't be `auto`"
    return None


def suggest_instead(action: Action) -> Decision | None:
    """The decision for a waiting or approved `action` whose tool was set to `suggest` under
    it (None: it is already only a suggestion)."""
    if action.status == ActionStatus.SUGGESTED:
        return None
    return Decision(
        verdict=Verdict.SUGGEST,
        tool=action.tool,
        args_json=action.args_json,
        risk=Risk(action.risk),
        autonomy=Autonomy.SUGGEST,
        reason="this tool's autonomy was changed to 'suggest'",
        policy_version=action.policy_version,
    )
