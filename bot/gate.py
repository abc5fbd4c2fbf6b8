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
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from datetime import datetime
from typing import Any

from bot.errors import ToolArgumentsError, UnknownTool
from bot.gate_approvers import (
    bound,
    every_approver_source,
    excluded,
    excluded_for,
    freeze_text,
    frozen,
    people,
    rank_reminded,
    rule_text,
)
from bot.gate_autonomy import demotion, may_set_autonomy, suggest_instead
from bot.gate_clicks import expired, not_stoppable, not_waiting, undo_closed
from bot.gate_grants import break_glass_refusal, grant_mismatch, grant_refusal
from bot.gate_memory import may_forget, may_remember
from bot.gate_pauses import may_pause_tool, paused_for, reaches_out
from bot.gate_proposals import (
    UsageCounts,
    confidence_floors,
    hold_reason,
    precondition,
    scope,
    unusual,
    valid_confidence,
)
from bot.gate_text import words
from bot.gate_types import (
    EXPIRED,
    FEEDBACK_ON,
    GATE,
    Decision,
    Demotion,
    Now,
    Origin,
    Ruling,
    Step,
    Verdict,
    origin_of,
)
from bot.memory import REMEMBER
from bot.metrics import Stats
from bot.policy import Policy
from bot.policy_types import ONCALL_SOURCE, Autonomy, Risk
from bot.tools import Tool, ToolRegistry
from storage.models import Action, ActionStatus, Approval, ApprovalGrant, Fact, utcnow


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
        """Whether an `auto` tool's record calls for demoting it (`gate_autonomy.demotion`)."""
        return demotion(self.policy, stats, now)

    def may_set_autonomy(self, tool: str, stage: Autonomy) -> str | None:
        """Why an admin may not set `tool` to `stage` (None: they may)."""
        return may_set_autonomy(self.registry, tool, stage)

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
        return people(self.policy, self.groups, self.clock(), sources)

    def excluded(self, action: Action) -> set[str]:
        """Who may not approve an action of its tier (four eyes, `gate_approvers.excluded`)."""
        return excluded(action)

    def counted(self, action: Action, approvals: Iterable[Approval]) -> set[str]:
        """Approvers whose approval counts: bound to this exact call (revision, arguments,
        policy version), by a current approver, not excluded by four eyes."""
        allowed = set(
            self.approvers(action.tool, action.requester, action.channel)
        ) - self.excluded(action)
        return bound(action, approvals, allowed)

    def missing(self, action: Action, approvals: Iterable[Approval], at: datetime | None) -> str:
        """What the approvals on record still lack, in words ("" when the rule is met)."""
        approvals = list(approvals)
        have = len(self.counted(action, approvals))
        need = max(1, action.required_approvals)
        if have < need:
            return f"another approver ({have} of {need} so far)"
        freeze = frozen(self.policy, action.risk, at)
        if freeze is not None:
            admins = set(self.policy.access.admins) - self.excluded(action)
            if not bound(action, approvals, admins):
                return f"an admin's approval: a {freeze_text(freeze)} is in force"
        return ""

    def met(
        self, action: Action, approvals: Iterable[Approval], at: datetime | None = None
    ) -> bool:
        """Whether the approvals on record meet the action's rule at `at` (a change freeze
        in force then also asks for an admin)."""
        return not self.missing(action, approvals, at)

    def rule_text(self, action: Action, at: datetime | None = None) -> str:
        """The approval rule in plain words, for the card."""
        return rule_text(action, frozen(self.policy, action.risk, at))

    # -- proposals --------------------------------------------------------------------------

    # Why a call needs a click (`gate_proposals.hold_reason`); tests mutate it here.
    _hold = staticmethod(hold_reason)

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
        if not valid_confidence(confidence):
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
            precondition(t, parsed)
            or scope(self.policy, t, parsed, origin)
            or may_remember(
                self.policy,
                t,
                parsed,
                origin,
                lambda u: u in self.people(self.policy.access.approvers),
            )
        )
        if problem:
            return Decision(verdict=Verdict.REFUSE, reason=problem, **base)
        clarify_below, min_confidence = confidence_floors(self.policy, tool)
        human = origin.edited_by is not None or origin.on_card
        if not human and confidence < clarify_below:
            return Decision(verdict=Verdict.CLARIFY, reason="confidence too low to propose", **base)
        if autonomy is Autonomy.SUGGEST:
            return Decision(
                verdict=Verdict.SUGGEST, reason="this tool's autonomy is 'suggest'", **base
            )
        paused = self.paused_for(tool, origin.channel, risk, now)
        hold = self._hold(risk, autonomy, confidence, min_confidence, origin, paused, human)
        checkpoint = ""
        if hold is None:
            hold = unusual(self.policy, self.usage, tool, origin, now)
            checkpoint = hold or ""
        freeze = frozen(self.policy, risk, now.at)
        if freeze is not None:
            note = f"a {freeze_text(freeze)} is in force, so an admin must approve too"
            checkpoint = hold = f"{hold}; {note}" if hold else note
        if hold is None:
            return Decision(verdict=Verdict.RUN_NOW, required_approvals=0, **base)
        required = 2 if risk is Risk.CRITICAL else 1
        four_eyes = excluded_for(risk, origin.requester, origin.edited_by)
        eligible = set(self.approvers(tool, origin.requester, origin.channel)) - four_eyes
        if len(eligible) < required:
            who = "approvers other than the requester" if four_eyes else "approvers"
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

    def may_forget(self, fact: Fact, user: str) -> str | None:
        """Who may forget a fact (`gate_memory.may_forget`)."""
        return may_forget(self.policy, fact, user)

    def may_give_feedback(
        self, action: Action, user: str, approved_by: Iterable[str] = ()
    ) -> str | None:
        """Who may give 👍 / 👎 on an action, once it has ended: its requester, the tool's
        approvers, anyone who approved it (`approved_by`, any revision) and admins."""
        if action.status not in FEEDBACK_ON:
            return f"this action is {words(action.status)}; feedback opens once it has ended"
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
        sources = every_approver_source(self.policy)
        if user in self.policy.access.admins or user in self.people(sources):
            return None
        return "only Warden's approvers and admins can see its stats"

    def recheck(self, action: Action, now: Now) -> Decision | None:
        """The decision a waiting or approved action would get now, if the rules changed
        under it (a new policy version, its tool set to `suggest`); None if it stands."""
        if action.policy_version == self.policy.version:
            if self.autonomy(action.tool, now.autonomy) is not Autonomy.SUGGEST:
                return None
            return suggest_instead(action)
        try:
            args = self.real_args(action)
        except ValueError:
            args = None
        decision = self.decide(
            tool=action.tool,
            args=args,
            confidence=action.confidence,
            origin=origin_of(action),
            now=now,
        )
        if decision.verdict in (Verdict.RUN_NOW, Verdict.CLARIFY):
            # A call already on a card is never promoted to run unattended by a re-check.
            decision = replace(decision, verdict=Verdict.AWAIT, required_approvals=1)
        return decision

    # -- clicks -----------------------------------------------------------------------------

    def approve(self, action: Action, approvals: list[Approval], user: str, now: Now) -> Ruling:
        """What an Approve click by `user` does to `action` now."""
        mine = any(a.approver == user and a.revision == action.revision for a in approvals)
        stale = not_waiting(action, mine, now)
        if stale is not None:
            return stale
        changed = self.recheck(action, now)
        if changed is not None:
            return Ruling(step=Step.RECHECK, decision=changed, reason=changed.reason)
        freeze_admin = (
            frozen(self.policy, action.risk, now.at) is not None
            and user in self.policy.access.admins
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
        if expired(action, now):
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
                and frozen(self.policy, action.risk, now.at) is None
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
        """Why a pause holds a call now (`gate_pauses.paused_for`; None: none holds it)."""
        return paused_for(tool, channel, risk, now)

    def may_pause_tool(self, tool: str) -> str | None:
        """Why `/pause tool:NAME` can't pause `tool` (`gate_pauses.may_pause_tool`)."""
        return may_pause_tool(self.registry, tool)

    @staticmethod
    def reaches_out(tool: Tool[Any]) -> bool:
        """Whether a pause stops running `tool` (`gate_pauses.reaches_out`)."""
        return reaches_out(tool)

    # -- attention: reminders, grants, break glass -----------------------------------------

    def to_remind(self, action: Action, approvals: list[Approval], now: Now) -> list[str]:
        """Who a waiting card's reminder goes to: everyone whose Approve click would be
        recorded now — its approvers (and, inside a change freeze, the admins), less those
        four eyes excludes and those who already approved this revision."""
        if action.status != ActionStatus.AWAITING_APPROVAL:
            return []
        candidates = set(self.approvers(action.tool, action.requester, action.channel))
        if frozen(self.policy, action.risk, now.at) is not None:
            candidates |= set(self.policy.access.admins)
        eligible = [
            u for u in candidates if self.approve(action, approvals, u, now).step is Step.RECORD
        ]
        sources = self.policy.approvers_for(action.tool, action.channel)
        on_call = self.people(s for s in sources if ONCALL_SOURCE.match(s))
        return rank_reminded(eligible, sources, on_call)

    def grant(self, action: Action, approvals: list[Approval], user: str, now: Now) -> Ruling:
        """What "Approve identical calls for 30 min" by `user` does: exactly what their
        Approve click does (the grant is recorded with an approval they may give now, or
        already gave), and never for a critical call."""
        return grant_refusal(action) or self.approve(action, approvals, user, now)

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
        mismatch = grant_mismatch(action, grant, args_digest, self.policy.version, now)
        if mismatch is not None:
            return mismatch
        risk = Risk(action.risk)
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
        refused = break_glass_refusal(action, user in self.policy.access.admins, reason)
        if refused is not None:
            return refused
        paused = self.paused_for(action.tool, action.channel, action.risk, now)
        if paused:
            return f"{paused} — not even by breaking the glass"
        if expired(action, now):
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
            return f"this action is {words(action.status)}; it can't be edited now"
        return None

    def may_reject(self, action: Action, user: str) -> str | None:
        if user != action.requester and user not in self.approvers(
            action.tool, action.requester, action.channel
        ):
            return "only approvers or the requester may reject this"
        if action.status not in (ActionStatus.AWAITING_APPROVAL, ActionStatus.SUGGESTED):
            return f"this action is {words(action.status)}; it can't be rejected now"
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
        return undo_closed(action, now)

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
        return not_stoppable(action, self.registry)
