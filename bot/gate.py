"""The gate: the only place that decides what may happen to a proposed tool call.

Every proposal, whoever made it (alias, Claude, an Edit, a re-check after a policy change),
passes `Gate.decide`; every click passes `Gate.approve`, `may_edit`, `may_reject` or
`may_undo`, asked again against the state *now* (`Now`: pause, run-time autonomy, the clock);
the executor asks `Gate.runnable` before it claims a run. Nothing else in `bot/` decides.

The gate fails closed: an unknown tool, invalid arguments, a failed precondition or an
approval rule nobody can satisfy is a refusal with a reason. The planner's confidence can
only *add* requirements (below a tool's `min_confidence` a low-risk call needs approval;
below its `clarify_below` Warden asks instead); it never lowers what a risk tier demands.

| tier     | gate                                                                    |
|----------|-------------------------------------------------------------------------|
| low      | runs at once if autonomy is auto, confidence ≥ min, untainted, not paused, |
|          | and the tool's recent usage is usual (`[usage]`)                         |
| medium   | one approver (the requester may approve if they are an approver)        |
| high     | one approver who is neither the requester nor the arguments' editor     |
| critical | dry-run preview, escalated, two such approvers                          |

Taint: once text not written by the requester (a lookup's output, thread history, another
person's message) has entered the loop that proposed a call, it never runs without a click.

Change freezes (`[[freeze]]`): while one is in force, a call of its tiers or above never runs
unattended and also needs an admin's approval (beside what its tier needs); the card says so.

Pauses (`/pause`): the global pause holds every call; a scoped pause holds only the calls of
its tool, asked in its channel, or of its tier and above (`Gate.paused_for`, whose other face
is the claim's SQL guard, `storage/pauses.py`). A held call waits; it never runs unattended.

Unusual usage: a new call of a tool proposed far more often lately than usual — by its
requester or by everyone, against the tool's own baseline (`[usage]`) — waits for a click
even if the tool is `auto`; its card says why (`Decision.checkpoint`).

Fatigue: a waiting card reminds the people whose click would count (`to_remind`); an
approver's 30-minute grant counts as their approval of an identical new call only if their
click would count on it now (`grant_counts`), never for critical calls; an admin may break
the glass on a high-risk call alone, with a reason, to be acknowledged by another approver
(`break_glass`, `may_acknowledge`).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from bot.errors import PreconditionFailed, ToolArgumentsError, UnknownTool
from bot.memory import REMEMBER, grounded
from bot.metrics import Stats
from bot.policy import ONCALL_SOURCE, SLACK_GROUP_ID, Autonomy, FreezeWindow, Policy, Risk
from bot.tools import Tool, ToolRegistry
from storage.metrics import CallCounts
from storage.models import (
    UNDOABLE,
    Action,
    ActionStatus,
    Approval,
    ApprovalGrant,
    Fact,
    PauseKind,
    utcnow,
)

log = logging.getLogger(__name__)

EXPIRED = "its approval request expired"
MAX_REMINDED = 10
"""The most people one waiting card's reminder DMs (on call first, then named, then groups)."""

GRANT_SPAN = timedelta(minutes=30)
"""How long an approver's "approve identical calls" grant lasts."""

UsageCounts = Callable[[str, str, datetime, datetime], CallCounts]
"""(tool, requester, recent since, baseline since) → how often the tool was proposed."""

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


def held_tiers(lowest: Risk) -> str:
    """The tiers a `tier:` scope holds, as its row stores them for the SQL guard
    (",high,critical,"): `lowest` and every tier above it."""
    return "," + ",".join(r.value for r in Risk if r.rank >= lowest.rank) + ","


def until_text(until: datetime, at: datetime | None) -> str:
    """When a pause ends, in UTC: "14:30 UTC" today, "Tue 15 Dec 14:30 UTC" another day."""
    until = until if until.tzinfo is not None else until.replace(tzinfo=UTC)
    until = until.astimezone(UTC)
    today = (at if at is not None else utcnow()).astimezone(UTC).date()
    return until.strftime("%H:%M UTC" if until.date() == today else "%a %d %b %H:%M UTC")


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


def span_text(span: timedelta) -> str:
    """A window in words: "10m", "1h", "24h", "7d"."""
    seconds = int(span.total_seconds())
    if seconds % 86400 == 0 and seconds > 86400:
        return f"{seconds // 86400}d"
    if seconds % 3600 == 0:
        return f"{seconds // 3600}h"
    if seconds % 60 == 0:
        return f"{seconds // 60}m"
    return f"{seconds}s"


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


class Gate:
    """Decisions for one policy version and tool registry."""

    def __init__(
        self,
        policy: Policy,
        registry: ToolRegistry,
        real_args: Callable[[Action], Any] | None = None,
        usage: UsageCounts | None = None,
        groups: Callable[[str], frozenset[str]] | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.policy = policy
        self.registry = registry
        # A Slack user group's members (cached, `bot/directory.py`); None (no Slack, e.g.
        # `warden check`): a group approves nothing — fail closed.
        self.groups = groups or (lambda group: frozenset())
        self.clock = clock
        # How often a tool was proposed lately and before (`Store.call_counts`), for the
        # unusual-usage checkpoint; None (no database, e.g. `warden eval`): the only history
        # is the plan's own earlier calls.
        self.usage = usage
        # A stored action's arguments with personal data put back (they are stored with
        # placeholders); a re-check judges the real call, as the first decision did.
        self.real_args = real_args or (lambda action: json.loads(action.args_json))

    # -- autonomy and approvers -----------------------------------------------------------

    def autonomy(self, tool: str, overrides: Mapping[str, str]) -> Autonomy:
        raw = overrides.get(tool)
        if raw in {a.value for a in Autonomy}:
            return Autonomy(raw)
        return self.policy.override(tool).autonomy

    def autonomy_label(self, tool: str, overrides: Mapping[str, str]) -> str:
        """A tool's stage as `/warden autonomy` shows it: read-only lookups have none."""
        if tool in self.registry and self.registry.get(tool).read_only:
            return "read-only (the agent may run it to look things up)"
        return self.autonomy(tool, overrides).value

    def demotion(self, stats: Stats, now: datetime) -> Demotion | None:
        """Whether an `auto` tool's record over the governor's window (`stats`, counted from
        its last autonomy change at most) calls for demoting it to `approve`: its failure,
        override or 👎 rate above `[governor]`'s limit, with at least `min_volume` behind it.
        None: it keeps its stage."""
        governor = self.policy.governor
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

    def may_set_autonomy(self, tool: str, stage: Autonomy) -> str | None:
        """Why an admin may not set `tool` to `stage` (None: they may)."""
        if tool not in self.registry:
            return f"there is no tool called `{tool[:64]}`"
        t = self.registry.get(tool)
        if t.read_only:
            return f"`{tool}` is a read-only lookup; it has no autonomy stage"
        if stage is Autonomy.AUTO and not (t.risk is Risk.LOW and t.risk_from_args is None):
            return f"`{tool}` is not low risk, so it can't be `auto`"
        return None

    def approvers(self, tool: str, requester: str = "", channel: str = "") -> list[str]:
        """Who may approve a call of `tool` asked in `channel`, as people: its policy
        approvers (the tool's, else the channel's, else everyone's), user groups expanded to
        their members and rotations to whoever is on call now — except `remember`, which only
        its author may confirm (a fact about what they said, in their name)."""
        if tool == REMEMBER:
            return [requester] if requester else []
        return sorted(self.people(self.policy.approvers_for(tool, channel)))

    def people(self, sources: Iterable[str]) -> set[str]:
        """Approver sources as the people they name at this moment."""
        found: set[str] = set()
        for source in sources:
            if SLACK_GROUP_ID.match(source):
                found |= self.groups(source)
            elif (rotation := ONCALL_SOURCE.match(source)) is not None:
                found.add(self.policy.oncall[rotation.group(1)].on_call(self.clock()))
            else:
                found.add(source)
        return found

    def excluded(self, action: Action) -> set[str]:
        """Who may not approve an action of its tier: for high and critical, the requester
        and whoever wrote its current arguments (four eyes)."""
        if Risk(action.risk) in (Risk.HIGH, Risk.CRITICAL):
            return {u for u in (action.requester, action.edited_by) if u}
        return set()

    def _bound(self, action: Action, approvals: Iterable[Approval], allowed: set[str]) -> set[str]:
        return {
            a.approver
            for a in approvals
            if a.revision == action.revision
            and a.args_json == action.args_json
            and a.policy_version == action.policy_version
            and a.approver in allowed
        }

    def counted(self, action: Action, approvals: Iterable[Approval]) -> set[str]:
        """Approvers whose approval counts: bound to this exact call (revision, arguments,
        policy version), by a current approver, not excluded by four eyes."""
        allowed = set(
            self.approvers(action.tool, action.requester, action.channel)
        ) - self.excluded(action)
        return self._bound(action, approvals, allowed)

    def frozen(self, risk: Risk | str, at: datetime | None) -> FreezeWindow | None:
        """The change freeze in force at `at` for calls of `risk`, if any."""
        if at is None:
            return None
        aware = at if at.tzinfo is not None else at.replace(tzinfo=UTC)
        return next(
            (
                f
                for f in self.policy.freeze
                if Risk(risk).at_least(f.tiers) is Risk(risk) and f.covers(aware)
            ),
            None,
        )

    def freeze_text(self, freeze: FreezeWindow) -> str:
        why = f" ({freeze.reason})" if freeze.reason else ""
        return f"change freeze “{freeze.name}”{why} until {freeze.until_text()}"

    def missing(self, action: Action, approvals: Iterable[Approval], at: datetime | None) -> str:
        """What the approvals on record still lack, in words ("" when the rule is met)."""
        approvals = list(approvals)
        have = len(self.counted(action, approvals))
        need = max(1, action.required_approvals)
        if have < need:
            return f"another approver ({have} of {need} so far)"
        freeze = self.frozen(action.risk, at)
        if freeze is not None:
            admins = set(self.policy.access.admins) - self.excluded(action)
            if not self._bound(action, approvals, admins):
                return f"an admin's approval: a {self.freeze_text(freeze)} is in force"
        return ""

    def met(
        self, action: Action, approvals: Iterable[Approval], at: datetime | None = None
    ) -> bool:
        """Whether the approvals on record meet the action's rule at `at` (a change freeze
        in force then also asks for an admin)."""
        return not self.missing(action, approvals, at)

    def rule_text(self, action: Action, at: datetime | None = None) -> str:
        """The approval rule in plain words, for the card."""
        if action.status == ActionStatus.SUGGESTED:
            return "suggestion only: nobody can approve it from here"
        if action.decided_by == GATE:
            return "ran at once (low risk, autonomy auto)"
        risk = Risk(action.risk)
        editor = " or the arguments' editor" if action.edited_by else ""
        if risk is Risk.CRITICAL:
            rule = f"two approvers, neither the requester{editor}"
        elif risk is Risk.HIGH:
            rule = f"one approver who is not the requester{editor}"
        else:
            rule = "one approver"
        freeze = self.frozen(risk, at) if action.status == ActionStatus.AWAITING_APPROVAL else None
        if freeze is not None:
            rule += f", and an admin — {self.freeze_text(freeze)}"
        return rule

    # -- proposals --------------------------------------------------------------------------

    def decide(
        self,
        *,
        tool: str,
        args: Any,
        confidence: float,
        origin: Origin,
        now: Now,
    ) -> Decision:
        """Decide one proposed call. Never raises for bad input: bad input is a refusal."""
        version = self.policy.version
        try:
            t = self.registry.get(tool)
        except UnknownTool as exc:
            return Decision(
                verdict=Verdict.REFUSE, tool=str(tool)[:64], reason=str(exc), policy_version=version
            )
        if t.read_only:
            return Decision(
                verdict=Verdict.REFUSE,
                tool=tool,
                policy_version=version,
                reason=f"{tool} is a read-only lookup, not an action",
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
        risk = t.risk_for(parsed)
        autonomy = self.autonomy(tool, now.autonomy)
        base: dict[str, Any] = {
            "tool": tool,
            "args_json": t.canonical(parsed),
            "args": parsed.model_dump(mode="json"),
            "risk": risk,
            "autonomy": autonomy,
            "policy_version": version,
        }
        problem = (
            self._precondition(t, parsed)
            or self._scope(t, parsed, origin)
            or self._memory(t, parsed, origin)
        )
        if problem:
            return Decision(verdict=Verdict.REFUSE, reason=problem, **base)
        override = self.policy.override(tool)
        human = origin.edited_by is not None or origin.on_card
        clarify_below = (
            override.clarify_below
            if override.clarify_below is not None
            else self.policy.gate.clarify_below
        )
        if not human and confidence < clarify_below:
            return Decision(verdict=Verdict.CLARIFY, reason="confidence too low to propose", **base)
        if autonomy is Autonomy.SUGGEST:
            return Decision(
                verdict=Verdict.SUGGEST, reason="this tool's autonomy is 'suggest'", **base
            )
        min_confidence = (
            override.min_confidence
            if override.min_confidence is not None
            else self.policy.gate.min_confidence
        )
        paused = self.paused_for(tool, origin.channel, risk, now)
        hold = self._hold(risk, autonomy, confidence, min_confidence, origin, paused, human)
        checkpoint = ""
        if hold is None:
            hold = self._unusual(tool, origin, now)
            checkpoint = hold or ""
        freeze = self.frozen(risk, now.at)
        if freeze is not None:
            note = f"a {self.freeze_text(freeze)} is in force, so an admin must approve too"
            checkpoint = hold = f"{hold}; {note}" if hold else note
        if hold is None:
            return Decision(verdict=Verdict.RUN_NOW, required_approvals=0, **base)
        required = 2 if risk is Risk.CRITICAL else 1
        excluded = (
            {u for u in (origin.requester, origin.edited_by) if u}
            if risk in (Risk.HIGH, Risk.CRITICAL)
            else set()
        )
        eligible = set(self.approvers(tool, origin.requester, origin.channel)) - excluded
        if len(eligible) < required:
            who = "approvers other than the requester" if excluded else "approvers"
            return Decision(
                verdict=Verdict.REFUSE,
                reason=(
                    f"{risk.value} risk needs {required} {who}, but only "
                    f"{len(eligible)} may approve {tool}; ask an admin to add approvers"
                ),
                **base,
            )
        return Decision(
            verdict=Verdict.AWAIT,
            required_approvals=required,
            needs_preview=risk is Risk.CRITICAL,
            escalate=risk is Risk.CRITICAL,
            reason=hold,
            checkpoint=checkpoint,
            **base,
        )

    @staticmethod
    def _hold(
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

    def _unusual(self, tool: str, origin: Origin, now: Now) -> str | None:
        """The unusual-usage checkpoint (`[usage]`), for a new call that would otherwise run
        at once: more calls of `tool` in the last `window` (counting this one and the plan's
        earlier ones) than `min_calls` and than `factor` times the tool's average per window
        over the `baseline` before — by this requester, or by everyone — need a click. A
        failure to count fails closed."""
        rule = self.policy.usage
        if not rule.enabled:
            return None
        at = now.at or utcnow()
        recent_since = at - rule.window
        if self.usage is None:
            counts = CallCounts(0, 0, 0, 0)
        else:
            try:
                baseline_since = recent_since - rule.baseline
                counts = self.usage(tool, origin.requester, recent_since, baseline_since)
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

    @staticmethod
    def _precondition(tool: Tool[Any], parsed: Any) -> str | None:
        try:
            failed = tool.failed_precondition(parsed)
        except PreconditionFailed as exc:
            failed = str(exc)
        return f"precondition failed — {failed}" if failed else None

    def _scope(self, tool: Tool[Any], parsed: Any, origin: Origin) -> str | None:
        """Where a call may reach: a tool that posts may post only in the request's own
        channel or the channels its policy lists, never in the admin channel; and a request
        may call one tool only `max_per_request` times."""
        override = self.policy.override(tool.name)
        if origin.same_tool_earlier >= override.max_per_request:
            return f"{tool.name} may be called at most {override.max_per_request} times per request"
        if tool.target_channel is None:
            return None
        target = tool.target_channel(parsed)
        if target == self.policy.access.admin_channel:
            return "Warden's admin channel is not a place a tool may post or act in"
        if target != origin.channel and target not in (override.channels or []):
            return (
                f"{tool.name} may reach only the channel it was asked in"
                + (f" or in {', '.join(override.channels)}" if override.channels else "")
                + f" (tools.{tool.name}.channels lists others)"
            )
        return None

    def _memory(self, tool: Tool[Any], parsed: Any, origin: Origin) -> str | None:
        """What may be remembered: only what a person wrote (a proposed fact's words must be
        in the requester's message, so nothing is lifted from a tool's output or from
        recalled memory), never a decision (those come from outcomes), and workspace-wide
        facts only from approvers and admins."""
        if tool.name != REMEMBER:
            return None
        if parsed.about == "workspace" and not (
            origin.requester in self.policy.access.admins
            or origin.requester in self.people(self.policy.access.approvers)
        ):
            return "only approvers and admins may set facts for the whole workspace"
        human = origin.edited_by is not None or origin.on_card
        if not human and not grounded(f"{parsed.subject} {parsed.text}", origin.said):
            return (
                "a fact must come from what the requester wrote, and this one is not in "
                "their message"
            )
        return None

    def may_forget(self, fact: Fact, user: str) -> str | None:
        """Who may forget a fact: whoever it is about (a user fact), its author, an admin."""
        if user in self.policy.access.admins:
            return None
        if (fact.scope == "user" and fact.scope_id == user) or fact.author == user:
            return None
        return "only the person it is about, its author or an admin may forget it"

    def may_give_feedback(
        self, action: Action, user: str, approved_by: Iterable[str] = ()
    ) -> str | None:
        """Who may give 👍 / 👎 on an action, once it has ended: its requester, the tool's
        approvers, anyone who approved it (`approved_by`, any revision) and admins."""
        if action.status not in FEEDBACK_ON:
            return f"this action is {_words(action.status)}; feedback opens once it has ended"
        if (
            user == action.requester
            or user in self.approvers(action.tool, action.requester, action.channel)
            or user in set(approved_by)
            or user in self.policy.access.admins
        ):
            return None
        return "only the requester, its approvers and admins may give feedback on this action"

    def may_see_stats(self, user: str) -> str | None:
        """Who may read Warden's stats in Slack (`/warden stats`): admins and approvers. They
        hold no personal data, but they are the operators' view of how Warden is doing."""
        access = self.policy.access
        sources = [*access.approvers, *(s for c in access.channels.values() for s in c.approvers)]
        sources += [s for o in self.policy.tools.values() for s in o.approvers or ()]
        if user in access.admins or user in self.people(sources):
            return None
        return "only Warden's approvers and admins can see its stats"

    def recheck(self, action: Action, now: Now) -> Decision | None:
        """The decision a waiting or approved action would get now, if the rules changed
        under it (a new policy version, its tool set to `suggest`); None if it stands."""
        if action.policy_version == self.policy.version:
            if (
                self.autonomy(action.tool, now.autonomy) is Autonomy.SUGGEST
                and action.status != ActionStatus.SUGGESTED
            ):
                return Decision(
                    verdict=Verdict.SUGGEST,
                    tool=action.tool,
                    args_json=action.args_json,
                    risk=Risk(action.risk),
                    autonomy=Autonomy.SUGGEST,
                    reason="this tool's autonomy was changed to 'suggest'",
                    policy_version=action.policy_version,
                )
            return None
        try:
            args = self.real_args(action)
        except ValueError:
            args = None
        decision = self.decide(
            tool=action.tool,
            args=args,
            confidence=action.confidence,
            origin=self.origin_of(action),
            now=now,
        )
        if decision.verdict in (Verdict.RUN_NOW, Verdict.CLARIFY):
            # A call already on a card is never promoted to run unattended by a re-check.
            decision = replace(decision, verdict=Verdict.AWAIT, required_approvals=1)
        return decision

    @staticmethod
    def origin_of(action: Action) -> Origin:
        return Origin(
            requester=action.requester,
            channel=action.channel,
            thread_ts=action.thread_ts,
            taint=action.taint,
            edited_by=action.edited_by,
            on_card=True,
        )

    # -- clicks -----------------------------------------------------------------------------

    def approve(self, action: Action, approvals: list[Approval], user: str, now: Now) -> Ruling:
        """What an Approve click by `user` does to `action` now."""
        mine = any(a.approver == user and a.revision == action.revision for a in approvals)
        if action.status != ActionStatus.AWAITING_APPROVAL:
            if mine:
                return Ruling(
                    step=Step.DENY,
                    reason=f"you already approved this; it is now {_words(action.status)}",
                )
            return Ruling(
                step=Step.DENY,
                reason=f"this action is {_words(action.status)}; there is nothing to approve",
            )
        if action.expires_at is not None and now.at is not None and action.expires_at <= now.at:
            return Ruling(step=Step.EXPIRE, reason="this approval request has expired")
        changed = self.recheck(action, now)
        if changed is not None:
            return Ruling(step=Step.RECHECK, decision=changed, reason=changed.reason)
        freeze_admin = (
            self.frozen(action.risk, now.at) is not None and user in self.policy.access.admins
        )
        if (
            user not in self.approvers(action.tool, action.requester, action.channel)
            and not freeze_admin
        ):
            return Ruling(
                step=Step.DENY,
                reason="you are not an approver for this action, so your click changed nothing",
            )
        if user in self.excluded(action):
            role = "requested" if user == action.requester else "edited"
            return Ruling(
                step=Step.DENY,
                reason=(
                    f"this is a {action.risk}-risk action you {role}; it needs an approver "
                    "other than you (four eyes)"
                ),
            )
        if Risk(action.risk) is Risk.CRITICAL and not action.preview:
            return Ruling(
                step=Step.DENY,
                reason="the dry-run preview is not on the card yet; approve once it shows",
            )
        if mine:
            lacking = self.missing(action, approvals, now.at)
            if not lacking:
                return Ruling(step=Step.START)
            return Ruling(step=Step.DENY, reason=f"you already approved this; it needs {lacking}")
        return Ruling(step=Step.RECORD)

    def runnable(self, action: Action, approvals: list[Approval], now: Now) -> str | None:
        """Why an approved action may not start now (None: it may). The executor asks this
        right before it claims the run."""
        paused = self.paused_for(action.tool, action.channel, action.risk, now)
        if paused:
            return paused
        if action.expires_at is not None and now.at is not None and action.expires_at <= now.at:
            return EXPIRED
        if action.policy_version != self.policy.version:
            return "the policy changed after approval"
        if self.autonomy(action.tool, now.autonomy) is Autonomy.SUGGEST:
            return "this tool's autonomy was changed to 'suggest'"
        if action.break_glass_by and action.decided_by == action.break_glass_by:
            # Only the run the break glass approved; a flag left from an earlier revision
            # (the card went back to its approvers) excuses nothing.
            if (
                action.break_glass_by in self.policy.access.admins
                and Risk(action.risk) is Risk.HIGH
            ):
                return None
            return "the break glass no longer holds (only an admin, only for a high-risk call)"
        if action.decided_by == GATE:
            if (
                Risk(action.risk) is Risk.LOW
                and self.autonomy(action.tool, now.autonomy) is Autonomy.AUTO
                and not action.taint
                and self.frozen(action.risk, now.at) is None
            ):
                return None
            return "it no longer qualifies to run without an approval"
        if not self.counted(action, approvals):
            return "the approvals on record do not cover this exact call"
        lacking = self.missing(action, approvals, now.at)
        if lacking:
            return f"it needs {lacking}"
        return None

    def paused_for(self, tool: str, channel: str, risk: Risk | str, now: Now) -> str | None:
        """Why a call of `tool` asked in `channel` at tier `risk` is held by a pause now, in
        the words its card shows (None: no pause holds it). The global pause holds every
        call; a scoped pause only its own (`Pause.holds`). The executor's claim carries the
        same rule in its SQL (`storage.pauses.held_by_a_pause`), so a pause that committed
        first wins over a claim even when this answer was read just before it."""
        if now.paused:
            if now.paused_until is None:
                return "Warden is paused: nothing runs until /resume"
            ends = until_text(now.paused_until, now.at)
            return f"Warden is paused until {ends}: nothing runs until then or /resume"
        for pause in now.pauses:
            if pause.holds(tool, channel, risk):
                return pause.text(now.at)
        return None

    def may_pause_tool(self, tool: str) -> str | None:
        """Why `/pause tool:NAME` can't pause `tool` (None: it can): an unknown tool, or a
        read-only lookup that no pause stops (`reaches_out`)."""
        if tool not in self.registry:
            return f"there is no tool called `{tool[:64]}` (`/warden autonomy` lists them)"
        if not self.reaches_out(self.registry.get(tool)):
            return (
                f"`{tool}` is a read-only lookup that runs no command and calls no endpoint, "
                "so a pause would hold nothing"
            )
        return None

    @staticmethod
    def reaches_out(tool: Tool[Any]) -> bool:
        """Whether running `tool` can touch anything outside Warden: every tool with side
        effects, and read-only lookups that run a command or call an endpoint. Pauses stop
        these; other lookups (memory, tasks, Slack's directory) are never paused."""
        return not tool.read_only or tool.source in ("runbook", "endpoint")

    # -- attention: reminders, grants, break glass -----------------------------------------

    def to_remind(self, action: Action, approvals: list[Approval], now: Now) -> list[str]:
        """Who a waiting card's reminder goes to: everyone whose Approve click would be
        recorded now — its approvers (and, inside a change freeze, the admins), less those
        four eyes excludes and those who already approved this revision."""
        if action.status != ActionStatus.AWAITING_APPROVAL:
            return []
        candidates = set(self.approvers(action.tool, action.requester, action.channel))
        if self.frozen(action.risk, now.at) is not None:
            candidates |= set(self.policy.access.admins)
        eligible = [
            u for u in candidates if self.approve(action, approvals, u, now).step is Step.RECORD
        ]
        # A card whose approvers are a big group does not DM all of them: whoever is on call
        # first, then people named by id, then group members, at most MAX_REMINDED.
        sources = self.policy.approvers_for(action.tool, action.channel)
        on_call = self.people(s for s in sources if ONCALL_SOURCE.match(s))
        named = {s for s in sources if not SLACK_GROUP_ID.match(s) and not ONCALL_SOURCE.match(s)}
        ranked = sorted(eligible, key=lambda u: (u not in on_call, u not in named, u))
        return ranked[:MAX_REMINDED]

    def grant(self, action: Action, approvals: list[Approval], user: str, now: Now) -> Ruling:
        """What "Approve identical calls for 30 min" by `user` does: exactly what their
        Approve click does (the grant is recorded with an approval they may give now, or
        already gave), and never for a critical call."""
        if Risk(action.risk) is Risk.CRITICAL:
            return Ruling(
                step=Step.DENY,
                reason="a 30-minute grant is never given for critical actions",
            )
        if action.tool == REMEMBER:
            return Ruling(step=Step.DENY, reason="facts are confirmed one at a time")
        return self.approve(action, approvals, user, now)

    def grant_counts(
        self,
        action: Action,
        approvals: list[Approval],
        grant: ApprovalGrant,
        args_digest: str,
        now: Now,
    ) -> str | None:
        """Why `grant` does not count as its approver's approval of `action` now (None: it
        does). It covers only the same tool with the same canonical arguments (`args_digest`
        of the action's real arguments), at the same tier, under the same policy version,
        until it runs out; never a critical call nor a tainted one (it would run unattended);
        and only where the approver's own click would be recorded now (still an approver, not
        excluded by four eyes, …).

        The reason is shown on the new card after "<approver>'s 30-minute approval doesn't
        cover this: " (`handlers.blocks`), in the channel the call was asked in: short words
        about this call and the grant's approver, nothing about where the grant was given or
        who else may approve."""
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
        if not grant.policy_version == action.policy_version == self.policy.version:
            return "Warden's policy changed since it was given"
        ruling = self.approve(action, approvals, grant.approver, now)
        if ruling.step is Step.RECORD:
            return None
        if grant.approver in self.excluded(action):
            role = "asked for" if grant.approver == action.requester else "edited"
            return f"they {role} this {risk.value}-risk call, and four eyes needs someone else"
        if grant.approver not in self.approvers(action.tool, action.requester, action.channel):
            return "they are not an approver of this call here"
        return "their click would not count on this card now"

    def break_glass(self, action: Action, user: str, reason: str, now: Now) -> str | None:
        """Why `user` may not break the glass on `action` now (None: they may): an admin may
        run a high-risk call alone — four eyes' one exception — with a reason, while it
        waits, is not expired and is the call the card shows (the rules unchanged); never a
        critical call, never while a pause holds it."""
        if user not in self.policy.access.admins:
            return "only Warden admins may break the glass"
        risk = Risk(action.risk)
        if risk is Risk.CRITICAL:
            return "break glass is never allowed for critical actions: they need two approvers"
        if risk is not Risk.HIGH:
            return (
                f"break glass is for high-risk actions; a {risk.value}-risk one needs an approval"
            )
        if not reason.strip():
            return "breaking the glass needs a reason"
        if action.status != ActionStatus.AWAITING_APPROVAL:
            return f"this action is {_words(action.status)}; there is nothing to run"
        paused = self.paused_for(action.tool, action.channel, action.risk, now)
        if paused:
            return f"{paused} — not even by breaking the glass"
        if action.expires_at is not None and now.at is not None and action.expires_at <= now.at:
            return "this approval request has expired"
        if self.recheck(action, now) is not None:
            return "the rules changed since this card was posted; look at the card again"
        return None

    def may_acknowledge(self, action: Action, user: str) -> str | None:
        """Who may acknowledge a break glass (end its review): one of the action's approvers
        other than the admin who broke it, and — the review being the second pair of eyes
        the admin skipped — not whoever four eyes kept from approving it (its requester, the
        arguments' editor)."""
        if not action.break_glass_by:
            return "nobody broke the glass on this action"
        if action.acknowledged_by:
            return "it was already acknowledged"
        if user == action.break_glass_by:
            return "you broke the glass; another approver must review it"
        if user in self.excluded(action):
            role = "asked for" if user == action.requester else "edited"
            return f"you {role} this call; another approver must review the break glass"
        if user not in self.approvers(action.tool, action.requester, action.channel):
            return "only this action's approvers may acknowledge a break glass"
        return None

    def may_edit(self, action: Action, user: str) -> str | None:
        if user != action.requester and user not in self.approvers(
            action.tool, action.requester, action.channel
        ):
            return "only the requester or an approver may edit this action"
        if action.status != ActionStatus.AWAITING_APPROVAL:
            return f"this action is {_words(action.status)}; it can't be edited now"
        return None

    def may_reject(self, action: Action, user: str) -> str | None:
        if user != action.requester and user not in self.approvers(
            action.tool, action.requester, action.channel
        ):
            return "only approvers or the requester may reject this"
        if action.status not in (ActionStatus.AWAITING_APPROVAL, ActionStatus.SUGGESTED):
            return f"this action is {_words(action.status)}; it can't be rejected now"
        return None

    def may_undo(self, action: Action, user: str, now: Now) -> str | None:
        """Undo runs a compensating command: the requester or an approver may undo low and
        medium actions; high and critical ones need an approver who is neither the
        requester nor the arguments' editor. Never while paused, only within the window."""
        risk = Risk(action.risk)
        approver = user in self.approvers(action.tool, action.requester, action.channel)
        if risk in (Risk.HIGH, Risk.CRITICAL):
            if not approver or user in self.excluded(action):
                return (
                    f"undoing a {risk.value}-risk action needs an approver other than the requester"
                )
        elif not (approver or user == action.requester):
            return "only approvers or the requester may undo this"
        if now.paused:
            return "Warden is paused, so nothing runs — not even an undo. Try after /resume"
        paused = self.paused_for(action.tool, action.channel, action.risk, now)
        if paused:
            return f"{paused}. Nothing it holds runs — not even an undo. Try after /resume"
        if (
            action.status not in UNDOABLE
            or action.undo_until is None
            or (now.at is not None and action.undo_until <= now.at)
        ):
            return "this can't be undone any more (the undo window closed, or it was undone)"
        return None

    def may_cancel(self, action: Action, user: str, now: Now) -> str | None:
        """Cancel stops a running command: the tool's approvers (as people now) and
        admins may, and the requester too for a low- or medium-risk action (as for Undo).
        Four eyes does not apply — stopping is never the step that needs a second person —
        and neither does a pause. Only commands (runbooks) can be stopped: their process
        group is signalled; a Python tool or an HTTP call cannot be interrupted safely."""
        risk = Risk(action.risk)
        if not (
            user in self.policy.access.admins
            or user in self.approvers(action.tool, action.requester, action.channel)
            or (user == action.requester and risk in (Risk.LOW, Risk.MEDIUM))
        ):
            if user == action.requester:
                return f"a {risk.value}-risk action is cancelled by its approvers or an admin"
            return "only its approvers, an admin or the requester may cancel it"
        if action.status != ActionStatus.EXECUTING:
            if action.status in (ActionStatus.AWAITING_APPROVAL, ActionStatus.APPROVED):
                return f"it is {_words(action.status)}, not running yet"
            return (
                f"it had already ended ({_words(action.status)}) when your click arrived, "
                "so nothing was stopped"
            )
        tool = self.registry.get(action.tool) if action.tool in self.registry else None
        if tool is None or tool.source != "runbook":
            return "only commands (runbooks) can be stopped; this call can't be cut off safely"
        return None


def _words(status: str) -> str:
    return status.replace("_", " ")
