"""Memory rules: what a `remember` call may store (`may_remember`) and who may forget a fact
(`may_forget`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bot.gate_types import Origin
from bot.memory import REMEMBER, grounded
from bot.policy import Policy
from bot.tools import Tool
from storage.models import Fact


def may_remember(
    policy: Policy,
    tool: Tool[Any],
    parsed: Any,
    origin: Origin,
    is_approver: Callable[[str], bool],
) -> str | None:
    """What may be remembered: only what a person wrote (a proposed fact's words must be
    in the requester's message, so nothing is lifted from a tool's output or from
    recalled memory), never a decision (those come from outcomes), and workspace-wide
    facts only from approvers (`is_approver`) and admins."""
    if tool.name != REMEMBER:
        return None
    if parsed.about == "workspace" and not (
        origin.requester in policy.access.admins or is_approver(origin.requester)
    ):
        return "only approvers and admins may set facts for the whole workspace"
    human = origin.edited_by is not None or origin.on_card
    if not human and not grounded(f"{parsed.subject} {parsed.text}", origin.said):
        return (
            "a fact must come from what the requester wrote, and this one is not in their message"
        )
    return None


def may_forget(policy: Policy, fact: Fact, user: str) -> str | None:
    """Who may forget a fact: whoever it is about (a user fact), its author, an admin."""
    if user in policy.access.admins:
        return None
    if (fact.scope == "user" and fact.scope_id == user) or fact.author == user:
        return None
    return "only the person it is about, its author or an admin may forget it"
