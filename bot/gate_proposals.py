"""The checks a proposed call passes on its way through `Gate.decide`: a valid confidence,
its precondition, where it may reach (`scope`), whether it needs a click (`hold_reason`) and the
unusual-usage checkpoint (`unusual`, `[usage]`)."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from datetime import datetime
from typing import Any

from bot.errors import PreconditionFailed
from bot.gate_text import span_text
from bot.gate_types import Now, Origin
from bot.policy import Policy
from bot.policy_types import Autonomy, Risk
from bot.tools import Tool
from storage.metrics import CallCounts
from storage.models import utcnow

log = logging.getLogger("bot.gate")

UsageCounts = Callable[[str, str, datetime, datetime], CallCounts]
"""(tool, requester, recent since, baseline since) → how often the tool was proposed."""


def confidence_floors(policy: Policy, tool: str) -> tuple[float, float]:
    """`tool`'s (clarify_below, min_confidence): its own, else the `[gate]` defaults."""
    override = policy.override(tool)
    clarify_below = (
        override.clarify_below if override.clarify_below is not None else policy.gate.clarify_below
    )
    min_confidence = (
        override.min_confidence
        if override.min_confidence is not None
        else policy.gate.min_confidence
    )
    return clarify_below, min_confidence


def valid_confidence(confidence: Any) -> bool:
    """Whether the planner's confidence is a number from 0 to 1."""
    return not (
        not isinstance(confidence, int | float)
        or isinstance(confidence, bool)
        or (math.isnan(confidence) or not 0.0 <= confidence <= 1.0)
    )


def hold_reason(
    risk: Risk,
    autonomy: Autonomy,
    confidence: float,
    min_confidence: float,
    origin: Origin,
    paused: str | None,
    human: bool,
) -> str | None:
    """Why a call needs a click (None: it may run at once)."""
    if risk is not Risk.LOW or autonomy is not Autonomy.AUTO:
        return ""
    if human:
        return "a person has already seen or edited it, so it runs on a click"
    if origin.taint:
        return (
            f"the plan read text not written by the requester ({origin.taint}), "
            "so it never runs unattended"
        )
    if confidence < min_confidence:
        return f"confidence is below {min_confidence:.0%}"
    if paused:
        return paused
    return None


def unusual(
    policy: Policy, usage: UsageCounts | None, tool: str, origin: Origin, now: Now
) -> str | None:
    """The unusual-usage checkpoint (`[usage]`), for a new call that would otherwise run
    at once: more calls of `tool` in the last `window` (counting this one and the plan's
    earlier ones) than `min_calls` and than `factor` times the tool's average per window
    over the `baseline` before — by this requester, or by everyone — need a click. A
    failure to count fails closed."""
    rule = policy.usage
    if not rule.enabled:
        return None
    at = now.at or utcnow()
    recent_since = at - rule.window
    if usage is None:
        counts = CallCounts(0, 0, 0, 0)
    else:
        try:
            baseline_since = recent_since - rule.baseline
            counts = usage(tool, origin.requester, recent_since, baseline_since)
        except Exception:
            log.exception("could not count recent calls of %s", tool)
            return "its recent usage could not be counted, so it waits for a click"
    this = origin.same_tool_earlier + 1  # not stored yet
    windows = rule.baseline / rule.window
    for who, recent, baseline in (
        ("by the requester", counts.recent_by_requester, counts.baseline_by_requester),
        ("by everyone", counts.recent_overall, counts.baseline_overall),
    ):
        usual = baseline / windows
        if recent + this > max(rule.min_calls, rule.factor * usual):
            shown = round(usual, 1) if usual >= 1 else round(usual, 2)
            return (
                f"unusual usage: {recent + this} calls of {tool} {who} in the last "
                f"{span_text(rule.window)}; usual ≈ {shown:g}"
            )
    return None


def precondition(tool: Tool[Any], parsed: Any) -> str | None:
    try:
        failed = tool.failed_precondition(parsed)
    except PreconditionFailed as exc:
        failed = str(exc)
    return f"precondition failed — {failed}" if failed else None


def scope(policy: Policy, tool: Tool[Any], parsed: Any, origin: Origin) -> str | None:
    """Where a call may reach: a tool that posts may post only in the request's own
    channel or the channels its policy lists, never in the admin channel; and a request
    may call one tool only `max_per_request` times."""
    override = policy.override(tool.name)
    if origin.same_tool_earlier >= override.max_per_request:
        return f"{tool.name} may be called at most {override.max_per_request} times per request"
    if tool.target_channel is None:
        return None
    target = tool.target_channel(parsed)
    if target == policy.access.admin_channel:
        return "Warden's admin channel is not a place a tool may post or act in"
    if target != origin.channel and target not in (override.channels or []):
        return (
            f"{tool.name} may reach only the channel it was asked in"
            + (f" or in {', '.join(override.channels)}" if override.channels else "")
            + f" (tools.{tool.name}.channels lists others)"
        )
    return None
