"""Grant and break-glass rules, the pure parts: when an approver's 30-minute grant can't
cover a call (`grant_refusal`, `grant_mismatch`) and when an admin can't break the glass
(`break_glass_refusal`). Whether the approver's own click would count is `Gate`'s to ask."""

from __future__ import annotations

from datetime import timedelta

from bot.gate_text import words
from bot.gate_types import Now, Ruling, Step
from bot.memory import REMEMBER
from bot.policy_types import Risk
from storage.models import Action, ActionStatus, ApprovalGrant, utcnow

GRANT_SPAN = timedelta(minutes=30)
"""How long an approver's "approve identical calls" grant lasts."""


def grant_refusal(action: Action) -> Ruling | None:
    """Why "Approve identical calls for 30 min" is refused outright: never for a critical
    call, and facts are confirmed one at a time (None: it is an Approve click)."""
    if Risk(action.risk) is Risk.CRITICAL:
        return Ruling(
            step=Step.DENY,
            reason="a 30-minute grant is never given for critical actions",
        )
    if action.tool == REMEMBER:
        return Ruling(step=Step.DENY, reason="facts are confirmed one at a time")
    return None


def grant_mismatch(
    action: Action, grant: ApprovalGrant, args_digest: str, policy_version: str, now: Now
) -> str | None:
    """Why `grant` can't cover `action` whoever gave it (None: ask whether its approver's
    click would count): never a critical call nor a tainted one (it would run unattended);
    only the same tool with the same canonical arguments (`args_digest`), at the same
    tier, under the same policy version (`policy_version`: the one in force), until it
    runs out."""
    risk = Risk(action.risk)
    if risk is Risk.CRITICAL:
        return "a critical call always needs people to click Approve"
    if action.taint:
        # Text not written by the requester shaped this plan: it never runs unattended,
        # and a grant would let an injection repeat the call with nobody looking.
        return "this call was planned from text its requester did not write"
    at = now.at or utcnow()
    if grant.until <= at:
        return "it ran out"
    if grant.tool != action.tool or grant.args_digest != args_digest:
        return "it was given for another call"
    if grant.risk != action.risk:
        return f"it was given at {grant.risk} risk, and this call is {risk.value} risk"
    if not grant.policy_version == action.policy_version == policy_version:
        return "Warden's policy changed since it was given"
    return None


def break_glass_refusal(action: Action, admin: bool, reason: str) -> str | None:
    """Why a break glass is refused whatever the state now: only an admin (`admin`), only
    for a high-risk call, only with a reason, only while it waits."""
    if not admin:
        return "only Warden admins may break the glass"
    risk = Risk(action.risk)
    if risk is Risk.CRITICAL:
        return "break glass is never allowed for critical actions: they need two approvers"
    if risk is not Risk.HIGH:
        return f"break glass is for high-risk actions; a {risk.value}-risk one needs an approval"
    if not reason.strip():
        return "breaking the glass needs a reason"
    if action.status != ActionStatus.AWAITING_APPROVAL:
        return f"this action is {words(action.status)}; there is nothing to run"
    return None
