"""The gate: the one place that decides what may happen to a proposed tool call.

Every proposal, whoever made it (alias, Claude, an Edit), passes `Gate.decide`; every click
passes `Gate.may_approve`. The gate fails closed: an unknown tool, invalid arguments, a failed
precondition or an approval rule nobody can satisfy is a refusal with a reason. The planner's
confidence can only *add* requirements (below `min_confidence` a low-risk call needs approval;
below `clarify_below` Warden asks instead); it never lowers what a risk tier demands.

| tier     | gate                                                                  |
|----------|-----------------------------------------------------------------------|
| low      | runs at once if autonomy is auto, confidence ≥ min, not paused; else 1 |
| medium   | one approver (the requester may approve if they are an approver)      |
| high     | one approver who is not the requester                                 |
| critical | dry-run preview, escalated, two distinct approvers, neither requester |
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from bot.errors import PreconditionFailed, ToolArgumentsError, UnknownTool
from bot.policy import Autonomy, Policy, Risk
from bot.tools import Tool, ToolRegistry


class Verdict(StrEnum):
    REFUSE = "refuse"
    RUN_NOW = "run_now"
    AWAIT = "await"
    SUGGEST = "suggest"
    CLARIFY = "clarify"


@dataclass(kw_only=True, frozen=True)
class Decision:
    """The gate's answer for one proposed call."""

    verdict: Verdict
    tool: str
    args_json: str = ""
    args: dict[str, Any] = field(default_factory=dict)
    risk: Risk = Risk.LOW
    autonomy: Autonomy = Autonomy.APPROVE
    required_approvals: int = 1
    approvers: tuple[str, ...] = ()
    exclude_requester: bool = False
    needs_preview: bool = False
    escalate: bool = False
    reason: str = ""
    policy_version: str = ""

    @property
    def rule(self) -> str:
        """The approval rule in plain words, for the card."""
        if self.verdict is Verdict.RUN_NOW:
            return "runs at once (low risk, autonomy auto)"
        if self.verdict is Verdict.SUGGEST:
            return "suggestion only: nobody can approve it from here"
        who = "approvers other than the requester" if self.exclude_requester else "an approver"
        if self.required_approvals == 1:
            return f"one approval from {who}"
        return f"{self.required_approvals} approvals from distinct {who}"


@dataclass(kw_only=True, frozen=True)
class ActionView:
    """What `may_approve` needs to know about an action (independent of storage)."""

    tool: str
    requester: str
    risk: Risk
    status: str
    exclude_requester: bool
    already_approved_by: Sequence[str] = ()


class Gate:
    """Decisions for one policy version and tool registry."""

    def __init__(self, policy: Policy, registry: ToolRegistry) -> None:
        self.policy = policy
        self.registry = registry

    def tool(self, name: str) -> Tool[Any]:
        return self.registry.get(name)

    def autonomy(self, tool: str, overrides: Mapping[str, str]) -> Autonomy:
        raw = overrides.get(tool)
        if raw in {a.value for a in Autonomy}:
            return Autonomy(raw)
        return self.policy.override(tool).autonomy

    def decide(
        self,
        *,
        tool: str,
        args: Any,
        confidence: float,
        requester: str,
        paused: bool,
        autonomy_overrides: Mapping[str, str] | None = None,
        human_edited: bool = False,
    ) -> Decision:
        """Decide one proposed call. Never raises for bad input: bad input is a refusal."""
        version = self.policy.version
        try:
            t = self.registry.get(tool)
        except UnknownTool as exc:
            return Decision(
                verdict=Verdict.REFUSE, tool=str(tool)[:64], reason=str(exc), policy_version=version
            )
        if (
            not isinstance(confidence, int | float)
            or isinstance(confidence, bool)
            or (math.isnan(confidence) or not 0.0 <= confidence <= 1.0)
        ):
            return Decision(
                verdict=Verdict.REFUSE,
                tool=tool,
                policy_version=version,
                reason="the planner gave no valid confidence (0–1)",
            )
        try:
            parsed = t.validate(args)
        except ToolArgumentsError as exc:
            return Decision(
                verdict=Verdict.REFUSE,
                tool=tool,
                policy_version=version,
                reason=f"invalid arguments — {exc}",
            )
        try:
            failed = t.failed_precondition(parsed)
        except PreconditionFailed as exc:
            failed = str(exc)
        canonical = t.canonical(parsed)
        plain = parsed.model_dump(mode="json")
        risk = t.risk_for(parsed)
        autonomy = self.autonomy(tool, autonomy_overrides or {})
        base = {
            "tool": tool,
            "args_json": canonical,
            "args": plain,
            "risk": risk,
            "autonomy": autonomy,
            "policy_version": version,
        }
        if failed:
            return Decision(
                verdict=Verdict.REFUSE, reason=f"precondition failed — {failed}", **base
            )
        if not human_edited and confidence < self.policy.gate.clarify_below:
            return Decision(verdict=Verdict.CLARIFY, reason="confidence too low to propose", **base)
        approvers = tuple(self.policy.approvers_for(tool))
        if autonomy is Autonomy.SUGGEST:
            return Decision(
                verdict=Verdict.SUGGEST,
                approvers=approvers,
                reason="this tool's autonomy is 'suggest'",
                **base,
            )
        if (
            risk is Risk.LOW
            and autonomy is Autonomy.AUTO
            and confidence >= self.policy.gate.min_confidence
            and not paused
            and not human_edited
        ):
            return Decision(
                verdict=Verdict.RUN_NOW, required_approvals=0, approvers=approvers, **base
            )
        required = 2 if risk is Risk.CRITICAL else 1
        exclude = risk in (Risk.HIGH, Risk.CRITICAL)
        eligible = [a for a in approvers if not (exclude and a == requester)]
        if len(set(eligible)) < required:
            who = "approvers other than the requester" if exclude else "approvers"
            return Decision(
                verdict=Verdict.REFUSE,
                approvers=approvers,
                reason=(
                    f"{risk.value} risk needs {required} {who}, but only "
                    f"{len(set(eligible))} may approve {tool}; ask an admin to add approvers"
                ),
                **base,
            )
        return Decision(
            verdict=Verdict.AWAIT,
            required_approvals=required,
            approvers=approvers,
            exclude_requester=exclude,
            needs_preview=risk is Risk.CRITICAL,
            escalate=risk is Risk.CRITICAL,
            **base,
        )

    def may_approve(self, action: ActionView, user: str) -> str | None:
        """None if `user` may approve this action now; otherwise the reason they may not."""
        approvers = self.policy.approvers_for(action.tool)
        if user not in approvers:
            return "you are not an approver for this action, so your click changed nothing"
        if action.exclude_requester and user == action.requester:
            return (
                f"this is a {action.risk.value}-risk action you requested; it needs an "
                "approver other than you (four eyes)"
            )
        if user in action.already_approved_by:
            return "you have already approved this; it needs another approver"
        return None

    def may_undo(self, tool: str, risk: Risk, requester: str, user: str) -> str | None:
        """Undo runs a compensating command: the requester or an approver may undo low and
        medium actions; high and critical ones need an approver who is not the requester."""
        approver = user in self.policy.approvers_for(tool)
        if risk in (Risk.HIGH, Risk.CRITICAL):
            if approver and user != requester:
                return None
            return f"undoing a {risk.value}-risk action needs an approver other than the requester"
        if approver or user == requester:
            return None
        return "only approvers or the requester may undo this"

    def may_edit(self, tool: str, requester: str, user: str) -> str | None:
        if user == requester or user in self.policy.approvers_for(tool):
            return None
        return "only the requester or an approver may edit this action"
