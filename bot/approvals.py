"""Approvals: what people's clicks on a card do — Approve (and approve identical calls for
30 minutes), Edit, Reject, Undo, Cancel, and an admin's Break glass with its Acknowledge.

Every click asks the gate again against the state now (`Core.now`): who may, four eyes,
two-of-N, previews, autonomy, pause, expiry, a changed policy. This module only carries out
what the gate rules, each change a conditional transition that writes its audit row and
the card update it owes in one transaction. Called on Slack's ack path: database work only;
runs and dry runs are handed to worker pools.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlmodel import col

from bot.attention import args_digest
from bot.core import Core, Reply
from bot.errors import ToolArgumentsError
from bot.escalation import needs_new_preview, raised_to_critical
from bot.execution import Execution
from bot.gate_grants import GRANT_SPAN
from bot.gate_types import Decision, Origin, Ruling, Step, Verdict
from bot.handoffs import Judged
from bot.logcontext import bind, scoped
from bot.planning import mask_json
from bot.redact import redact
from storage.models import Action, ActionStatus, Approval, ApprovalGrant

log = logging.getLogger(__name__)

STALE = (
    "This card changed since you looked at it (it was edited or re-checked). "
    "Look at the updated card and click again."
)


@dataclass(kw_only=True, frozen=True)
class EditForm:
    """What the Edit modal shows: the tool, its current arguments and their allowed values."""

    action_id: str
    revision: int
    tool: str
    args: dict[str, str]
    choices: dict[str, list[str]]
    hints: dict[str, str]


class Approvals:
    def __init__(
        self, core: Core, execution: Execution, fill_preview: Callable[[str, int], None]
    ) -> None:
        self.core = core
        self.execution = execution
        self.fill_preview = fill_preview

    def _clicked(
        self,
        action_id: str,
        revision: int,
        rule: Callable[[Action], str | None] | None = None,
        verb: str = "",
        approvals: list[Approval] | None = None,
    ) -> Action | Reply:
        """The clicked action as it is now, if the click saw its current revision and the
        gate's `rule` for this click allows it; otherwise the reply saying why not.
        `approvals`, if given, receives its current revision's approvals (read with it)."""
        bind(action_id=action_id, owner=self.core.owner)  # the click handler's log lines
        if approvals is None:
            action = self.core.store.get_action(action_id)
        else:
            action, approvals[:] = self.core.store.action_and_approvals(action_id)
        if action is None:
            return Reply(ok=False, text="I can't find that action any more.")
        bind(trace_id=action.trace_id, request_id=action.request_id)
        if action.revision != revision:
            return Reply(ok=False, text=STALE)
        why_not = rule(action) if rule is not None else None
        if why_not:
            return Reply(ok=False, text=f"You can't {verb} this: {why_not}.")
        return action

    # -- Approve ----------------------------------------------------------------------------

    @scoped
    def approve(self, action_id: str, revision: int, user: str) -> Reply:
        """An Approve click: the gate rules; record the approval; start if the rule is met."""
        core = self.core
        approvals: list[Approval] = []
        found = self._clicked(action_id, revision, approvals=approvals)
        if isinstance(found, Reply):
            return found
        action = found
        now = core.now()
        ruling: Ruling = core.gate.approve(action, approvals, user, now)
        if ruling.step is Step.DENY:
            core.store.audit(
                core.audit(user, "approval.denied", action.trace_id, reason=ruling.reason),
                subject=action.id,
            )
            return Reply(ok=False, text=f"You can't approve this: {ruling.reason}.")
        if ruling.step is Step.EXPIRE:
            self.expire(action.id)
            return Reply(ok=False, text="This approval request has expired; it can no longer run.")
        if ruling.step is Step.RECHECK:
            assert ruling.decision is not None
            self.apply_recheck(action, ruling.decision, user)
            return Reply(
                ok=False,
                text=(
                    f"The rules changed since this card was posted ({ruling.reason}), so it was "
                    "re-checked and your click changed nothing. Look at the updated card."
                ),
            )
        if ruling.step is Step.RECORD:
            count = core.store.record_approval(
                action,
                user,
                core.audit(user, "approval.given", action.trace_id, revision=action.revision),
                approvals=approvals,  # now as the recording transaction read them
            )
            if count is None:
                core.kick()
                return Reply(ok=False, text="You already approved this.")
            log.info("approval recorded (%d of %d)", count, action.required_approvals)
        lacking = core.gate.missing(action, approvals, now.at)
        held = core.gate.paused_for(action.tool, action.channel, action.risk, now)
        if lacking or held:
            core.kick()  # the card shows the approval (a run's start updates it otherwise)
        if lacking:
            paused = f" {held}." if held else ""
            return Reply(ok=True, text=f"Approval recorded; it needs {lacking}.{paused}")
        if held:
            return Reply(
                ok=True,
                text=(
                    f":double_vertical_bar: Your approval is recorded. {held}; it starts once "
                    "the pause is lifted, if it is still valid then."
                ),
            )
        return self.start(action, user, Judged(approvals=approvals, now=now))

    def start(self, action: Action, user: str, judged: Judged | None = None) -> Reply:
        """The approval rule is met: approve (unless paused) and hand the run to an executor.
        `judged`: what the gate judged this click against (`Execution.start_approved`)."""
        core = self.core
        if self.execution.start_approved(action, user, judged):
            return Reply(ok=True)
        held = core.gate.paused_for(action.tool, action.channel, action.risk, core.now())
        if held:
            return Reply(
                ok=True,
                text=(
                    f":double_vertical_bar: Your approval is recorded, but a pause came first. "
                    f"{held}; it starts once the pause is lifted, if it is still valid then."
                ),
            )
        return Reply(ok=True, text="Your approval is recorded; the action has already started.")

    # -- Approve identical calls for 30 minutes ----------------------------------------------

    @scoped
    def grant(self, action_id: str, revision: int, user: str) -> Reply:
        """Approve identical calls for 30 minutes: the gate rules it as an Approve click (and
        never for a critical call); once their approval is recorded, so is their grant
        (`approval.granted`), bound to this exact call."""
        core = self.core
        found = self._clicked(action_id, revision)
        if isinstance(found, Reply):
            return found
        action = found
        now = core.now()
        ruling = core.gate.grant(
            action, core.store.approvals(action.id, action.revision), user, now
        )
        if ruling.step is Step.DENY:
            core.store.audit(
                core.audit(user, "approval.denied", action.trace_id, reason=ruling.reason),
                subject=action.id,
            )
            return Reply(ok=False, text=f"You can't approve this: {ruling.reason}.")
        if ruling.step not in (Step.RECORD, Step.START):
            return self.approve(action_id, revision, user)  # expired or re-checked: as Approve
        reply = self.approve(action_id, revision, user)
        if not reply.ok:
            return reply  # the approval itself did not go through: no grant either
        at = now.at or core.clock()
        grant = core.store.record_grant(
            ApprovalGrant(
                approver=user,
                action_id=action.id,
                tool=action.tool,
                args_digest=args_digest(core, action),
                risk=action.risk,
                policy_version=action.policy_version,
                created_at=at,
                until=at + GRANT_SPAN,
            ),
            core.audit(user, "approval.granted", action.trace_id, revision=action.revision),
        )
        until = f"{grant.until:%H:%M} UTC"
        said = (
            f"Identical calls of {action.tool} (same arguments, {action.risk} risk, this "
            f"policy) count your approval until {until}."
        )
        return Reply(ok=reply.ok, text=f"{reply.text} {said}".strip())

    def apply_recheck(self, action: Action, decision: Decision, actor: str) -> None:
        """Apply a re-check's decision to a waiting action: refused, suggestion only, or
        waiting again under the new rules (a new revision, so earlier approvals no longer
        count)."""
        core = self.core
        if decision.verdict in (Verdict.REFUSE, Verdict.SUGGEST):
            core.store.transition(
                action.id,
                [ActionStatus.AWAITING_APPROVAL],
                decision.status,
                core.audit(
                    actor,
                    f"action.{decision.status.value}",
                    action.trace_id,
                    reason=decision.reason,
                ),
                revision=action.revision,
                values={
                    "status_note": f"The rules changed: {decision.reason}.",
                    "policy_version": decision.policy_version,
                },
            )
            core.kick()
            return
        values: dict[str, Any] = {
            "revision": action.revision + 1,
            "policy_version": decision.policy_version,
            "risk": decision.risk.value,
            "required_approvals": decision.required_approvals,
            "status_note": "The policy changed since this was proposed; earlier approvals "
            "no longer count.",
        }
        dry_run = needs_new_preview(action, decision)
        if dry_run:
            values["preview"] = None
        won = core.store.transition(
            action.id,
            [ActionStatus.AWAITING_APPROVAL],
            ActionStatus.AWAITING_APPROVAL,
            core.audit(actor, "action.rechecked", action.trace_id),
            revision=action.revision,
            values=values,
            notices=raised_to_critical(core, action, decision, "raised by a policy change"),
        )
        if won is None:
            return  # another click re-checked (or changed) it first; it owed what it did
        core.kick()
        if dry_run:
            core.workers.planners.submit(self.fill_preview, action.id, action.revision + 1)

    def expire(self, action_id: str) -> bool:
        core = self.core
        action = core.store.get_action(action_id)
        if action is None:
            return False
        won = core.store.transition(
            action_id,
            [ActionStatus.AWAITING_APPROVAL, ActionStatus.APPROVED],
            ActionStatus.EXPIRED,
            core.audit("warden", "action.expired", action.trace_id),
            where=[col(Action.expires_at) <= core.clock()],
        )
        core.kick()
        return won is not None

    # -- Break glass ------------------------------------------------------------------------

    def may_break_glass(self, action_id: str, user: str) -> str | None:
        """Why `user` may not break the glass here (checked before the reason modal opens;
        the gate rules again, with the reason, when it is submitted)."""
        core = self.core
        action = core.store.get_action(action_id)
        if action is None:
            return "I can't find that action any more."
        why_not = core.gate.break_glass(action, user, "(asked when the modal opens)", core.now())
        return f"You can't break the glass on this: {why_not}." if why_not else None

    @scoped
    def break_glass(self, action_id: str, revision: int, user: str, reason: str) -> Reply:
        """An admin runs a high-risk action alone, with a reason: the gate rules; the card is
        flagged, the admin channel told (same transaction), and it runs; it stays listed for
        review until another approver acknowledges it."""
        core = self.core
        found = self._clicked(action_id, revision)
        if isinstance(found, Reply):
            return found
        action = found
        written = redact(reason.strip())
        reason = core.privacy.masking(action.request_id, lambda m: m.mask(written))[:500]
        why_not = core.gate.break_glass(action, user, reason, core.now())
        if why_not:
            core.store.audit(
                core.audit(user, "action.break_glass_denied", action.trace_id, reason=why_not),
                subject=action.id,
            )
            return Reply(ok=False, text=f"You can't break the glass on this: {why_not}.")
        where = "a DM" if action.channel.startswith("D") else f"<#{action.channel}>"
        won = core.store.transition(
            action.id,
            [ActionStatus.AWAITING_APPROVAL],
            ActionStatus.APPROVED,
            core.audit(user, "action.break_glass", action.trace_id, reason=reason),
            revision=revision,
            values={
                "decided_by": user,
                "break_glass_by": user,
                "break_glass_reason": reason,
            },
            unless_paused=True,
            notices=[
                core.to_admins(
                    f":rotating_light: *Break glass*: <@{user}> ran *{action.tool}* "
                    f"({action.risk} risk, requested by <@{action.requester}> in {where}) "
                    f"without a second approver. Reason: {core.safe(reason, 500)} — action "
                    f"`{action.id}`, trace `{action.trace_id}`. It stays listed in "
                    "`/warden status` until another approver acknowledges it."
                )
            ],
        )
        core.kick()
        if won is None:
            return Reply(ok=False, text="This action changed before your click; look again.")
        self.execution.submit(action.id)
        return Reply(
            ok=True,
            text="Break glass recorded; it runs now. The card is flagged and an approver "
            "will be asked to acknowledge it.",
        )

    @scoped
    def acknowledge(self, action_id: str, revision: int, user: str) -> Reply:
        """An approver other than the admin who broke the glass reviewed it: it leaves the
        review list (audited)."""
        core = self.core
        found = self._clicked(action_id, revision)
        if isinstance(found, Reply):
            return found
        action = found
        why_not = core.gate.may_acknowledge(action, user)
        if why_not:
            core.store.audit(
                core.audit(user, "action.acknowledge_denied", action.trace_id, reason=why_not),
                subject=action.id,
            )
            return Reply(ok=False, text=f"You can't acknowledge this: {why_not}.")
        if not core.store.acknowledge_break_glass(
            action.id,
            user,
            core.clock(),
            core.audit(user, "action.break_glass_acknowledged", action.trace_id),
        ):
            return Reply(ok=False, text="Someone acknowledged it just before you.")
        core.kick()
        return Reply(ok=True, text="Acknowledged: it is no longer listed for review.")

    # -- Reject -----------------------------------------------------------------------------

    def may_reject(self, action_id: str, user: str) -> str | None:
        """Why `user` may not reject this action (checked before the Reject modal opens)."""
        action = self.core.store.get_action(action_id)
        if action is None:
            return "I can't find that action any more."
        why_not = self.core.gate.may_reject(action, user)
        return f"You can't reject this: {why_not}." if why_not else None

    @scoped
    def reject(self, action_id: str, revision: int, user: str, reason: str) -> Reply:
        """Reject (approvers) or withdraw (the requester) an action awaiting approval."""
        core = self.core
        found = self._clicked(
            action_id, revision, lambda a: core.gate.may_reject(a, user), "reject"
        )
        if isinstance(found, Reply):
            return found
        action = found
        # A reason is stored and audited with the request's placeholders, as its text was.
        written = redact(reason.strip())
        reason = core.privacy.masking(action.request_id, lambda m: m.mask(written))[:500]
        won = core.store.transition(
            action.id,
            [ActionStatus.AWAITING_APPROVAL, ActionStatus.SUGGESTED],
            ActionStatus.REJECTED,
            core.audit(user, "action.rejected", action.trace_id, reason=reason),
            revision=revision,
            values={"decided_by": user, "status_note": f"Reason: {reason}" if reason else None},
        )
        core.kick()
        if won is None:
            return Reply(ok=False, text="This action changed before your click; look again.")
        core.record_outcome(won, "rejected", user, reason or None)
        return Reply(ok=True)

    # -- Edit -------------------------------------------------------------------------------

    @scoped
    def edit_form(
        self, action_id: str, revision: int, user: str, where: str = ""
    ) -> EditForm | Reply:
        """The Edit modal's fields. Personal data is shown as written only to someone who
        clicked in the action's own channel (they can read it there); from the App Home the
        fields keep their placeholders, and placeholders left as they are keep their values."""
        core = self.core
        found = self._clicked(action_id, revision, lambda a: core.gate.may_edit(a, user), "edit")
        if isinstance(found, Reply):
            return found
        action = found
        stored = json.loads(action.args_json)
        if where == action.channel:
            stored = core.privacy.for_request(action.request_id).reveal_value(stored)
        args = {k: str(v) for k, v in stored.items()}
        choices: dict[str, list[str]] = {}
        hints: dict[str, str] = {}
        runbook = core.policy.runbooks.get(action.tool)
        if runbook is not None:
            for name, spec in runbook.params.items():
                if spec.choices:
                    choices[name] = list(spec.choices)
                hints[name] = spec.description or (
                    f"must match {spec.pattern}" if spec.pattern else ""
                )
                args.setdefault(name, "")
        return EditForm(
            action_id=action.id,
            revision=action.revision,
            tool=action.tool,
            args=args,
            choices=choices,
            hints=hints,
        )

    @scoped
    def edit(
        self, action_id: str, revision: int, user: str, raw_args: Mapping[str, Any]
    ) -> dict[str, str] | Reply:
        """Apply an Edit: validate, re-gate with `user` as the arguments' author (four eyes),
        void approvals. Returns field errors for the modal, or a reply."""
        core = self.core
        found = self._clicked(action_id, revision, lambda a: core.gate.may_edit(a, user), "edit")
        if isinstance(found, Reply):
            return found
        action = found
        tool = core.registry.get(action.tool)
        # Placeholders the editor left as they were (App Home) stand for their values.
        raw_args = core.privacy.for_request(action.request_id).reveal_value(dict(raw_args))
        try:
            tool.validate(dict(raw_args))
        except ToolArgumentsError as exc:
            return _field_errors(str(exc), action.tool, list(raw_args))
        decision = core.gate.decide(
            tool=action.tool,
            args=dict(raw_args),
            confidence=action.confidence,
            origin=Origin(
                requester=action.requester,
                channel=action.channel,
                thread_ts=action.thread_ts,
                taint=action.taint,
                edited_by=user,
            ),
            now=core.now(),
        )
        if decision.verdict is Verdict.REFUSE:
            return {"_": decision.reason}
        # Stored and audited with placeholders, as the proposal was.
        real_json = decision.args_json or "{}"
        args_json = core.privacy.masking(action.request_id, lambda m: mask_json(core, m, real_json))
        if args_json == action.args_json:
            return Reply(ok=True, text="Nothing changed.")
        has_dry_run = tool.dry_run is not None
        if decision.needs_preview and not has_dry_run:
            return {"_": "critical actions need a dry-run preview, and this tool has none"}
        to_state = (
            ActionStatus.SUGGESTED
            if decision.verdict is Verdict.SUGGEST
            else ActionStatus.AWAITING_APPROVAL
        )
        notices = raised_to_critical(core, action, decision, f"raised by an edit by <@{user}>")
        won = core.store.transition(
            action.id,
            [ActionStatus.AWAITING_APPROVAL],
            to_state,
            core.audit(
                user,
                "action.edited",
                action.trace_id,
                before=action.args_json,
                after=args_json,
                risk=decision.risk.value,
            ),
            revision=revision,
            values={
                "revision": revision + 1,
                "args_json": args_json,
                "risk": decision.risk.value,
                "required_approvals": max(1, decision.required_approvals),
                "policy_version": decision.policy_version,
                "preview": None,
                "edited_by": user,
                "expires_at": core.clock() + core.policy.gate.approval_ttl,
                "status_note": None,
            },
            notices=notices,
        )
        if won is None:
            return Reply(
                ok=False,
                text="This action changed before your edit was saved; look at the card again.",
            )
        core.kick()
        if has_dry_run:
            core.workers.planners.submit(self.fill_preview, action.id, revision + 1)
        return Reply(ok=True)

    # -- Undo -------------------------------------------------------------------------------

    @scoped
    def undo(self, action_id: str, revision: int, user: str) -> Reply:
        core = self.core
        found = self._clicked(
            action_id, revision, lambda a: core.gate.may_undo(a, user, core.now()), "undo"
        )
        if isinstance(found, Reply):
            return found
        action = found
        if not self.execution.start_undo(action, user):
            return Reply(
                ok=False,
                text="This can't be undone any more (the undo window closed, or it was "
                "already undone).",
            )
        return Reply(ok=True)

    # -- Cancel -----------------------------------------------------------------------------

    @scoped
    def cancel(self, action_id: str, revision: int, user: str) -> Reply:
        """A Cancel click on a running command: the gate rules who may; the request is
        recorded in the database (the first click wins), and whichever replica runs the
        command stops its process group within a second or so. A click that arrives after
        the run ended changes nothing and says so."""
        core = self.core
        found = self._clicked(
            action_id, revision, lambda a: core.gate.may_cancel(a, user, core.now()), "cancel"
        )
        if isinstance(found, Reply):
            return found
        action = found
        if self.execution.request_cancel(action, user):
            return Reply(
                ok=True,
                text=f"Stopping *{action.tool}*: SIGTERM now, SIGKILL if it is still running "
                "a few seconds later. The card says when it has stopped.",
            )
        now = core.store.get_action(action.id)
        if now is not None and now.status == ActionStatus.EXECUTING and now.cancel_requested_by:
            return Reply(
                ok=False, text=f"<@{now.cancel_requested_by}> already cancelled it; it is stopping."
            )
        ended = now.status.replace("_", " ") if now is not None else "gone"
        return Reply(
            ok=False,
            text=f"It had already ended ({ended}) when your click arrived, so nothing was stopped.",
        )


def _field_errors(message: str, tool: str, fields: list[str]) -> dict[str, str]:
    """Map "tool: field: problem; field2: problem" onto the modal's fields."""
    errors: dict[str, str] = {}
    body = message.removeprefix(f"{tool}: ")
    for part in body.split("; "):
        name, _, problem = part.partition(": ")
        errors[name if name in fields else "_"] = problem or part
    return errors
