"""Outcomes: how a run or an undo ended, and whether a run's outcome held.

`Outcomes.record` writes how a run (`executing`) or an undo (`undoing`) ended — succeeded,
failed, cancelled by whoever clicked Cancel, or needs review when its outcome is unknown —
with its audit row, its result (redacted, masked) and the messages it owes, in one
transition, and tells the outcome listeners (the governor, memory). A succeeded runbook call
with a `verify` owes an outcome check `verify_after` later (`due`, stored with the success);
`check` claims a due check and runs it once through the executor (`bot.execution`, the only
caller of tool code), and records its result the same way.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlmodel import col

from bot.core import Core
from bot.errors import WardenError
from bot.escalation import needs_new_preview, raised_to_critical
from bot.gate_types import EXPIRED, Verdict
from bot.logcontext import bind, scoped
from bot.runbooks import truncate_middle
from bot.tools import ToolResult
from storage.models import Action, ActionStatus, VerifyStatus
from storage.outbox import Notice

# Lines about runs keep the logger they always had (log filters and tests name it).
log = logging.getLogger("bot.execution")

CHECK_ATTEMPTS = 3  # interrupted outcome-check attempts before it is given up as "error"
CHECK_NOTE_KEEP = 150  # characters kept from each end of a check's output on the card


class Outcomes:
    """Recording how runs and undos ended, and the outcome checks that follow a run.

    `verify`: the executor's outcome check of an action (`Executor.verify`); `lease`: how
    long a claim of the action's tool code may hold it (`Execution`'s lease);
    `fill_preview`: make a waiting revision's dry run (`Planning.fill_preview`)."""

    def __init__(
        self,
        core: Core,
        verify: Callable[[Action], ToolResult],
        lease: Callable[[Action], datetime],
        fill_preview: Callable[[str, int], None],
    ) -> None:
        self.core = core
        self.verify = verify
        self.lease = lease
        self.fill_preview = fill_preview

    def due(self, action: Action, result: ToolResult) -> dict[str, Any]:
        """A succeeded runbook call with a `verify` owes an outcome check `verify_after` from
        now: stored with the success, in the same transition."""
        runbook = self.core.policy.runbooks.get(action.tool)
        if not result.ok or runbook is None or runbook.verify is None:
            return {}
        return {
            "verify_status": VerifyStatus.PENDING.value,
            "verify_at": self.core.clock() + runbook.verify_after,
            "verify_note": None,
        }

    def not_runnable(self, action: Action, why_not: str) -> None:
        """The rules changed between approval and start (`why_not`, the gate's words): the
        approved action expires, is refused or only suggested, or goes back to its approvers
        — escalated if that makes it critical, and given the dry run it then needs."""
        core = self.core
        if why_not == EXPIRED:
            core.store.transition(
                action.id,
                [ActionStatus.APPROVED],
                ActionStatus.EXPIRED,
                core.audit("warden", "action.expired", action.trace_id),
                revision=action.revision,
            )
            core.kick()
            return
        decision = core.gate.recheck(action, core.now())
        if decision is not None and decision.verdict in (Verdict.REFUSE, Verdict.SUGGEST):
            core.store.transition(
                action.id,
                [ActionStatus.APPROVED],
                decision.status,
                core.audit(
                    "warden", f"action.{decision.status.value}", action.trace_id, reason=why_not
                ),
                revision=action.revision,
                values={
                    "status_note": f"Not run: {why_not}.",
                    "policy_version": decision.policy_version,
                },
            )
        else:
            values: dict[str, Any] = {
                "revision": action.revision + 1,
                "decided_by": None,
                "expires_at": core.clock() + core.policy.gate.approval_ttl,
                "status_note": f"Not run: {why_not}. It needs an approval again.",
            }
            if action.break_glass_by and action.decided_by == action.break_glass_by:
                # The review list keeps the flag; the card must not read as if it ran.
                values["status_note"] = (
                    f"The break glass did not run: {why_not}. It needs an approval again."
                )
            notices: list[Notice] = []
            dry_run = False
            if decision is not None:
                values.update(
                    policy_version=decision.policy_version,
                    risk=decision.risk.value,
                    required_approvals=decision.required_approvals,
                )
                notices = raised_to_critical(core, action, decision, "raised by a policy change")
                dry_run = needs_new_preview(action, decision)
                if dry_run:
                    values["preview"] = None
            won = core.store.transition(
                action.id,
                [ActionStatus.APPROVED],
                ActionStatus.AWAITING_APPROVAL,
                core.audit("warden", "action.held", action.trace_id, reason=why_not),
                revision=action.revision,
                values=values,
                notices=notices,
            )
            if won is not None and dry_run:
                core.workers.planners.submit(self.fill_preview, action.id, won.revision)
        core.kick()

    def record(
        self,
        action: Action,
        before: ActionStatus,
        result: ToolResult,
        stopped_by: str | None = None,
        **values: Any,
    ) -> ActionStatus:
        """Record how a run (`executing`) or an undo (`undoing`) ended, and say so.
        `stopped_by`: the run was stopped because this person clicked Cancel."""
        core = self.core
        ok_state, bad_state = (
            (ActionStatus.SUCCEEDED, ActionStatus.FAILED)
            if before == ActionStatus.EXECUTING
            else (ActionStatus.UNDONE, ActionStatus.UNDO_FAILED)
        )
        final = ok_state if result.ok else bad_state
        actor = "warden"
        if stopped_by is not None and before == ActionStatus.EXECUTING:
            final, actor = ActionStatus.CANCELLED, stopped_by
        elif result.unknown and not result.ok:
            final = ActionStatus.NEEDS_REVIEW
            values.setdefault(
                "status_note", "Cut off by its timeout: it may have done part of its work."
            )
            values["undo_until"] = None
        # Output is stored and audited with the request's placeholders (the card shows it).
        output = core.privacy.masking(
            action.request_id, lambda m: core.privacy.mask_output(m, result.output)
        )
        notices = []
        if final == ActionStatus.CANCELLED:
            notices.append(
                Notice(
                    channel=action.channel,
                    thread_ts=action.thread_ts,
                    text=f":octagonal_sign: *{action.tool}* cancelled by <@{actor}> (action "
                    f"`{action.id[:8]}`); it may have done part of its work.",
                )
            )
        elif before == ActionStatus.EXECUTING:
            icon = (
                ":white_check_mark:"
                if result.ok
                else (":warning:" if final == ActionStatus.NEEDS_REVIEW else ":x:")
            )
            notices.append(
                Notice(
                    channel=action.channel,
                    thread_ts=action.thread_ts,
                    text=f"{icon} *{action.tool}* {final.value} (action `{action.id[:8]}`).",
                )
            )
        row = core.store.transition(
            action.id,
            [before],
            final,
            core.audit(actor, f"action.{final.value}", action.trace_id, output=output[:500]),
            values={
                "result": output,
                "result_note": result.note or None,
                "lease_until": None,
                "progress": None,
                **values,
            },
            where=[col(Action.owner) == core.owner],
            notices=notices,
        )
        if row is None:
            log.error("action %s finished but its row was no longer ours", action.id)
        else:
            log.info("action %s: %s", final.value, action.tool)
            by = row.decided_by if before == ActionStatus.UNDOING else stopped_by
            core.record_outcome(row, final.value, by, None)
        core.kick()
        return final

    # -- outcome checks (a runbook's `verify`) -----------------------------------------------

    @scoped
    def check(self, action_id: str) -> None:
        """Claim a due outcome check and run it once (a background worker). The claim fails
        while Warden is paused (a check is tool code), once the action was undone, or when
        another replica took it. The result is recorded with its audit row and the card's
        refresh; a failed check also alerts the admin channel in the same transaction and
        is told to the outcome listeners (the governor, memory) as "verify_failed"."""
        core = self.core
        bind(action_id=action_id, owner=core.owner)
        action = core.store.get_action(action_id)
        if action is None or action.verify_status != VerifyStatus.PENDING:
            return
        bind(request_id=action.request_id, trace_id=action.trace_id)
        claimed = core.store.claim_check(
            action_id,
            core.owner,
            core.clock(),
            self.lease(action),
            core.audit("warden", "action.verify_started", action.trace_id),
        )
        if claimed is None:
            return
        try:
            result = self.verify(claimed)
        except WardenError as exc:
            self._checked(claimed, VerifyStatus.ERROR, str(exc))
            return
        output = core.privacy.masking(
            claimed.request_id, lambda m: core.privacy.mask_output(m, result.output)
        )
        self._checked(claimed, VerifyStatus.PASSED if result.ok else VerifyStatus.FAILED, output)

    def requeue_stale_checks(self) -> int:
        """Checks whose process died while running them (the lease ran out) go back to
        pending; after `CHECK_ATTEMPTS` interrupted attempts one is given up as "error"."""
        core = self.core
        now = core.clock()
        requeued = 0
        for action in core.store.stale_checks(now):
            if core.store.check_attempts(action.id) >= CHECK_ATTEMPTS:
                self._checked(
                    action,
                    VerifyStatus.ERROR,
                    f"interrupted {CHECK_ATTEMPTS} times",
                    expired=True,
                )
            elif core.store.requeue_check(
                action.id, now, core.audit("warden", "action.verify_interrupted", action.trace_id)
            ):
                requeued += 1
        core.kick()
        return requeued

    def _checked(
        self, action: Action, status: VerifyStatus, output: str, *, expired: bool = False
    ) -> None:
        """Record a check's result (`output` already redacted and masked) and say so."""
        core = self.core
        note = truncate_middle(output.strip(), CHECK_NOTE_KEEP) or "(no output)"
        where = f"*{action.tool}* (action `{action.id}`, trace `{action.trace_id}`)"
        notices: list[Notice] = []
        if status is VerifyStatus.FAILED:
            shown = core.safe(note, 600)
            notices += [
                core.to_admins(
                    f":x: Outcome check failed: {where} succeeded, but its check says the "
                    f"outcome is not right:\n{shown}"
                ),
                Notice(
                    channel=action.channel,
                    thread_ts=action.thread_ts,
                    text=f":x: *{action.tool}* succeeded, but its outcome check failed "
                    f"(action `{action.id[:8]}`); the card has the details.",
                ),
            ]
        elif status is VerifyStatus.ERROR:
            notices.append(
                core.to_admins(
                    f":warning: {where}: its outcome could not be checked "
                    f"({core.safe(note, 300)}). Check it by hand."
                )
            )
        kind = {
            VerifyStatus.PASSED: "action.verified",
            VerifyStatus.FAILED: "action.verify_failed",
        }.get(status, "action.verify_error")
        row = core.store.finish_check(
            action.id,
            core.owner,
            status,
            note,
            core.audit("warden", kind, action.trace_id, note=note[:500]),
            now=core.clock(),
            expired=expired,
            notices=notices,
        )
        core.kick()
        if row is None:
            log.info("the outcome check of %s was canceled or taken over meanwhile", action.id)
        elif status is VerifyStatus.FAILED:
            core.record_outcome(row, "verify_failed", None, None)
