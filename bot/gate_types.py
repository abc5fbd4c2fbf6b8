"""The gate's data: what a proposal brings (`Origin`), the state every rule is checked
against (`Now`, `Pause`), and what the gate answers (`Decision`, `Ruling`, `Demotion`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from bot.gate_text import until_text
from bot.policy_types import Autonomy, Risk
from storage.models import Action, ActionStatus, PauseKind

EXPIRED = "its approval request expired"

GATE = "gate"
"""`Action.decided_by` for a call the gate let run at once (low risk, autonomy auto)."""

FEEDBACK_ON = frozenset(
    {
        ActionStatus.SUCCEEDED,
        ActionStatus.FAILED,
        ActionStatus.UNDONE,
        ActionStatus.UNDO_FAILED,
        ActionStatus.NEEDS_REVIEW,
        ActionStatus.CANCELLED,
    }
)
"""The ends of an action that ask for feedback (👍 / 👎): it ran (or was stopped), or its run
was undone."""


class Verdict(StrEnum):
    REFUSE = "refuse"
    RUN_NOW = "run_now"
    AWAIT = "await"
    SUGGEST = "suggest"
    CLARIFY = "clarify"


VERDICT_STATUS = {
    Verdict.REFUSE: ActionStatus.REFUSED,
    Verdict.RUN_NOW: ActionStatus.APPROVED,
    Verdict.AWAIT: ActionStatus.AWAITING_APPROVAL,
    Verdict.SUGGEST: ActionStatus.SUGGESTED,
}


@dataclass(kw_only=True, frozen=True)
class Origin:
    """Where a call comes from: who asked, where, and what entered the loop that made it."""

    requester: str
    channel: str
    thread_ts: str | None = None
    taint: str | None = None
    edited_by: str | None = None
    on_card: bool = False  # already shown to people (a re-check): confidence no longer asks
    same_tool_earlier: int = 0
    said: str = ""  # what the requester wrote (a `remember` must come from it)


def origin_of(action: Action) -> Origin:
    """Where a stored action came from, as a re-check sees it: already on a card."""
    return Origin(
        requester=action.requester,
        channel=action.channel,
        thread_ts=action.thread_ts,
        taint=action.taint,
        edited_by=action.edited_by,
        on_card=True,
    )


@dataclass(kw_only=True, frozen=True)
class Pause:
    """A scoped pause in force (`/pause tool:NAME`, `channel:C…`, `tier:high`): what it
    holds, who paused it, why (already safe to post) and when it ends by itself, if timed."""

    kind: PauseKind
    value: str  # a tool's name, a channel id, or the lowest tier held
    by: str
    reason: str = ""
    until: datetime | None = None

    def holds(self, tool: str, channel: str, risk: Risk | str) -> bool:
        """Whether this pause holds a call of `tool` asked in `channel` at tier `risk`. The
        same rule in SQL is `storage.pauses.held_by_a_pause` (a tier scope stores the tiers
        it holds, `held_tiers`); tests/test_scoped_pause.py checks the two agree."""
        if self.kind is PauseKind.TOOL:
            return self.value == tool
        if self.kind is PauseKind.CHANNEL:
            return self.value == channel
        return Risk(risk).rank >= Risk(self.value).rank

    def text(self, at: datetime | None) -> str:
        """What a held card says: "Paused for this tool by @x until 14:30 UTC: reason"."""
        if self.kind is PauseKind.TIER:
            what = (
                "critical actions"
                if self.value == Risk.CRITICAL
                else f"{self.value}-risk actions and above"
            )
        else:
            what = f"this {self.kind.value}"
        said = f"Paused for {what} by <@{self.by}>"
        if self.until is not None:
            said += f" until {until_text(self.until, at)}"
        return f"{said}: {self.reason}" if self.reason else said


@dataclass(kw_only=True, frozen=True)
class Now:
    """The state every rule is checked against: read fresh for each decision and click.
    `paused` is the global pause (`paused_until`: when it ends by itself, if timed);
    `pauses` the scoped pauses in force."""

    paused: bool
    autonomy: Mapping[str, str] = field(default_factory=dict)
    at: datetime | None = None
    paused_until: datetime | None = None
    pauses: tuple[Pause, ...] = ()


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
    needs_preview: bool = False
    escalate: bool = False
    reason: str = ""
    policy_version: str = ""
    # A human checkpoint that holds a call which would otherwise run at once (unusual
    # usage): what its card says about why it waits.
    checkpoint: str = ""

    @property
    def status(self) -> ActionStatus:
        return VERDICT_STATUS[self.verdict]


@dataclass(kw_only=True, frozen=True)
class Demotion:
    """Why a tool's record calls for taking it off `auto` (the governor's rule)."""

    rule: str  # "failure rate", "override rate", "👎 rate"
    rate: float
    limit: float
    count: int  # failures, overrides or 👎 …
    volume: int  # … out of outcomes, decided cards or votes
    window: str  # "24h", or "since its autonomy last changed"
    reason: str  # "failure rate 60% (3/5) over 24h"


class Step(StrEnum):
    """What an Approve click does, as the gate rules it."""

    DENY = "deny"  # nothing changes; `reason` says why
    EXPIRE = "expire"  # the card outlived approval_ttl
    RECHECK = "recheck"  # the rules changed since the card was posted: apply `decision`
    RECORD = "record"  # record the approval; then start if `Gate.met` and not paused
    START = "start"  # the approvals on record already meet the rule: start it


@dataclass(kw_only=True, frozen=True)
class Ruling:
    step: Step
    reason: str = ""
    decision: Decision | None = None
