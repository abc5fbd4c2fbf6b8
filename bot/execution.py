"""Execution: the one executor that calls tool code, and the run of an approved action.

`Executor` is the only code in Warden that calls a tool's functions — run, undo, dry run,
a runbook's outcome check (`verify`) and the agent loop's read-only lookups are five faces of
it — so timeouts, redaction, truncation and auditing happen once, here. `Execution` claims an
approved action (asking the gate again first), runs it through the executor and records how
it ended, exactly once; it claims and records due outcome checks the same way.
"""

from __future__ import annotations

import contextvars
import json
import logging
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

from sqlmodel import col

from bot.core import Core, new_id
from bot.errors import WardenError
from bot.gate import EXPIRED, Verdict
from bot.logcontext import bind, scoped
from bot.pii import PLACEHOLDER
from bot.redact import redact
from bot.runbooks import truncate_middle, verify_runner
from bot.tools import Tool, ToolContext, ToolResult, canonical_json
from storage.checks import cancel_open_check
from storage.models import Action, ActionStatus, VerifyStatus
from storage.outbox import Notice

log = logging.getLogger(__name__)

LEASE_GRACE = timedelta(seconds=30)
RESULT_KEEP = 4000  # characters kept from each end of a stored result
PREVIEW_KEEP = 1500
LOOKUP_KEEP = 2000
CALL_GRACE_S = 5.0  # beyond a tool's timeout: time for a runbook to kill its process group
CHECK_ATTEMPTS = 3  # interrupted outcome-check attempts before it is given up as "error"
CHECK_NOTE_KEEP = 150  # characters kept from each end of a check's output on the card
NOT_RUN = "not run in evaluation"
NO_DATA = "(no data)"


@dataclass(kw_only=True, frozen=True)
class Preview:
    """A dry run's output; `ok` False: it failed (shown, but never counts as a preview)."""

    text: str | None
    ok: bool
    problem: str = ""


class Executor:
    """The only caller of tool code.

    `evaluation` (`warden eval`, bot/evaluation.py): no tool code runs at all. Lookups answer
    with the case's recorded outputs (`NO_DATA` for a tool it does not list), a dry run is a
    stand-in preview when the tool declares one (so the preview rule decides as it would),
    and every run, undo and outcome check fails with `NOT_RUN`.
    """

    def __init__(self, core: Core, evaluation: Mapping[str, str] | None = None) -> None:
        self.core = core
        self.evaluation = evaluation
        # Python tools run here so a hung one can be timed out (runbooks kill their own
        # process group on timeout).
        self._threads = ThreadPoolExecutor(max_workers=8, thread_name_prefix="warden-tool")

    def shutdown(self) -> None:
        self._threads.shutdown(wait=False, cancel_futures=True)

    def _context(self, action_id: str, trace_id: str, requester: str, **where: Any) -> ToolContext:
        return ToolContext(
            action_id=action_id,
            trace_id=trace_id,
            requester=requester,
            channel=where.get("channel"),
            thread_ts=where.get("thread_ts"),
            chat=self.core.chat,
        )

    def _call(self, tool: Tool[Any], fn: Callable[[], ToolResult]) -> ToolResult:
        """Call tool code with its timeout; exceptions and timeouts become failed results and
        output is redacted and bounded."""
        if self.evaluation is not None:
            return ToolResult(ok=False, output=f"{tool.name}: {NOT_RUN}")
        try:
            # The tool's thread logs with the ids of the action it runs for.
            future = self._threads.submit(contextvars.copy_context().run, fn)
            result = future.result(timeout=tool.timeout_s + CALL_GRACE_S)
        except FutureTimeout:
            return ToolResult(
                ok=False,
                output=f"{tool.name} did not finish within {tool.timeout_s:g}s; "
                "its outcome is unknown",
                unknown=True,
            )
        except Exception as exc:
            log.warning("tool %s raised %s", tool.name, type(exc).__name__)
            result = ToolResult(ok=False, output=f"{type(exc).__name__}: {exc}")
        return ToolResult(
            ok=result.ok,
            output=truncate_middle(redact(result.output), RESULT_KEEP),
            note=result.note,
            undo_data=result.undo_data,
            unknown=result.unknown,
        )

    def _real_args(self, action: Action) -> tuple[Tool[Any], Any]:
        """The tool and its validated arguments, personal data put back from the request's
        seal (the stored arguments hold placeholders). Raises WardenError / ValueError."""
        tool = self.core.registry.get(action.tool)
        masker = self.core.privacy.for_request(action.request_id)
        raw = masker.reveal_value(json.loads(action.args_json))
        if PLACEHOLDER.search(canonical_json(raw)):
            raise WardenError("personal data it needs is no longer available")
        args = tool.validate(raw)
        if tool.canonical(args) != canonical_json(raw):
            raise WardenError("arguments are not canonical")
        return tool, args

    @scoped
    def run(self, action: Action) -> ToolResult:
        """Run an action's call: its arguments re-validated and checked canonical first."""
        _bind_action(action, self.core.owner)
        try:
            tool, args = self._real_args(action)
        except (WardenError, ValueError) as exc:
            return ToolResult(ok=False, output=f"not run: {exc}")
        ctx = self._context(
            action.id,
            action.trace_id,
            action.requester,
            channel=action.channel,
            thread_ts=action.thread_ts,
        )
        return self._call(tool, lambda: tool.run(args, ctx))

    @scoped
    def undo(self, action: Action) -> ToolResult:
        _bind_action(action, self.core.owner)
        try:
            tool, args = self._real_args(action)
            data = json.loads(action.undo_data) if action.undo_data else {}
        except (WardenError, ValueError) as exc:
            return ToolResult(ok=False, output=f"not undone: {exc}")
        undo = tool.undo
        if undo is None:
            return ToolResult(ok=False, output="this tool has no undo")
        ctx = self._context(
            action.id,
            action.trace_id,
            action.requester,
            channel=action.channel,
            thread_ts=action.thread_ts,
        )
        return self._call(tool, lambda: undo(args, ctx, data))

    @scoped
    def dry_run(
        self, tool_name: str, args: dict[str, Any], requester: str, trace_id: str
    ) -> Preview:
        """A call's dry-run preview. None runs while Warden is paused (it is still a command)."""
        bind(trace_id=trace_id, owner=self.core.owner)
        tool = self.core.registry.get(tool_name)
        preview = tool.dry_run
        if preview is None:
            return Preview(text=None, ok=False, problem="dry-run preview, and this tool has none")
        if self.core.paused:
            return Preview(
                text=None, ok=False, problem="dry-run preview, and none runs while paused"
            )
        if self.evaluation is not None:
            return Preview(text=f"(dry run of {tool_name}: {NOT_RUN})", ok=True)
        ctx = self._context(f"dryrun-{new_id()[:12]}", trace_id, requester)

        def call() -> ToolResult:
            return ToolResult(ok=True, output=preview(tool.validate(dict(args)), ctx))

        result = self._call(tool, call)
        self.core.store.audit(
            self.core.audit("warden", "tool.dry_run", trace_id, tool=tool_name, ok=result.ok)
        )
        if not result.ok:
            text = truncate_middle(f"(dry run failed: {result.output})", PREVIEW_KEEP)
            return Preview(text=text, ok=False, problem="dry-run preview, and the dry run failed")
        return Preview(text=truncate_middle(result.output, PREVIEW_KEEP), ok=True)

    @scoped
    def verify(self, action: Action) -> ToolResult:
        """Run a succeeded runbook action's outcome check (`verify`) with the run's own
        arguments (personal data put back, as for the run). A timeout is a failed check.
        Raises WardenError when there is nothing it can check: no check declared, or the
        arguments can no longer be rebuilt."""
        _bind_action(action, self.core.owner)
        runbook = self.core.policy.runbooks.get(action.tool)
        check = verify_runner(runbook) if runbook is not None else None
        if check is None:
            raise WardenError(f"{action.tool} declares no outcome check")
        try:
            tool, args = self._real_args(action)
        except ValueError as exc:
            raise WardenError(f"its arguments are no longer valid ({exc})") from None
        ctx = self._context(
            action.id,
            action.trace_id,
            action.requester,
            channel=action.channel,
            thread_ts=action.thread_ts,
        )
        result = self._call(tool, lambda: check(args, ctx))
        return replace(result, unknown=False) if result.unknown else result

    def lookup(
        self,
        tool_name: str,
        args: dict[str, Any],
        *,
        request_id: str,
        trace_id: str,
        requester: str,
        channel: str,
        thread_ts: str | None,
        reveal: Callable[[Any], Any] | None = None,
    ) -> str:
        """Run a read-only tool for the agent loop; its output goes back to the model.
        `reveal` puts personal data back into the model's arguments (the caller masks the
        output again)."""
        tool = self.core.registry.get(tool_name)
        if not tool.read_only:
            raise WardenError(f"{tool_name} has side effects; it must be proposed")
        if tool.source in ("runbook", "endpoint") and self.core.paused:
            # Lookups that reach outside Warden (a command, an HTTP call) stop with everything.
            raise WardenError("Warden is paused: lookups that run commands or call out are off")
        parsed = tool.validate(reveal(args) if reveal else args)
        ctx = self._context(
            f"lookup-{new_id()[:12]}", trace_id, requester, channel=channel, thread_ts=thread_ts
        )
        if self.evaluation is not None:
            shown = redact(self.evaluation.get(tool_name, NO_DATA))
            result = ToolResult(ok=True, output=truncate_middle(shown, RESULT_KEEP))
        else:
            result = self._call(tool, lambda: tool.run(parsed, ctx))
        self.core.store.audit(
            self.core.audit(
                "warden",
                "lookup",
                trace_id,
                tool=tool_name,
                args=canonical_json(args),  # as the model wrote them: placeholders
                ok=result.ok,
            ),
            subject=request_id,
        )
        return truncate_middle(result.output, LOOKUP_KEEP)


class Execution:
    """Claiming and running approved actions, and undoing them, exactly once."""

    def __init__(self, core: Core, executor: Executor) -> None:
        self.core = core
        self.executor = executor

    def submit(self, action_id: str) -> None:
        self.core.workers.executors.submit(self.execute, action_id)

    def _lease(self, action: Action) -> Any:
        try:
            timeout = self.core.registry.get(action.tool).timeout_s
        except WardenError:
            timeout = 60.0
        return self.core.clock() + timedelta(seconds=timeout) + LEASE_GRACE

    @scoped
    def execute(self, action_id: str) -> None:
        """Claim an approved action and run it once (executor worker). The gate is asked
        again first; while paused the action stays approved and runs after /resume."""
        core = self.core
        bind(action_id=action_id, owner=core.owner)
        action = core.store.get_action(action_id)
        if action is None or action.status != ActionStatus.APPROVED:
            return
        _bind_action(action, core.owner)
        now = core.now()
        why_not = core.gate.runnable(action, core.store.approvals(action.id, action.revision), now)
        if why_not and not now.paused:
            self._not_runnable(action, why_not)
            return
        if why_not:
            return  # paused: `Sweeps.after_resume` starts it again
        claimed = core.store.transition(
            action_id,
            [ActionStatus.APPROVED],
            ActionStatus.EXECUTING,
            core.audit("warden", "action.executing", action.trace_id),
            unless_paused=True,
            revision=action.revision,
            values={"owner": core.owner, "lease_until": self._lease(action)},
        )
        core.kick()
        if claimed is None:
            return
        log.info("running %s", claimed.tool)
        result = self.executor.run(claimed)
        undo_until = None
        tool = core.registry.get(claimed.tool) if claimed.tool in core.registry else None
        if result.ok and tool is not None and tool.reversible:
            undo_until = core.clock() + core.policy.gate.undo_window
        self._outcome(
            claimed,
            ActionStatus.EXECUTING,
            result,
            undo_until=undo_until,
            undo_data=json.dumps(result.undo_data) if result.undo_data else None,
            **self._check_due(claimed, result),
        )

    def _check_due(self, action: Action, result: ToolResult) -> dict[str, Any]:
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

    def _not_runnable(self, action: Action, why_not: str) -> None:
        """The rules changed between approval and start: the action goes back to people."""
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
            if decision is not None:
                values.update(
                    policy_version=decision.policy_version,
                    risk=decision.risk.value,
                    required_approvals=decision.required_approvals,
                )
            core.store.transition(
                action.id,
                [ActionStatus.APPROVED],
                ActionStatus.AWAITING_APPROVAL,
                core.audit("warden", "action.held", action.trace_id, reason=why_not),
                revision=action.revision,
                values=values,
            )
        core.kick()

    def _outcome(
        self, action: Action, before: ActionStatus, result: ToolResult, **values: Any
    ) -> ActionStatus:
        """Record how a run (`executing`) or an undo (`undoing`) ended, and say so."""
        core = self.core
        ok_state, bad_state = (
            (ActionStatus.SUCCEEDED, ActionStatus.FAILED)
            if before == ActionStatus.EXECUTING
            else (ActionStatus.UNDONE, ActionStatus.UNDO_FAILED)
        )
        final = ok_state if result.ok else bad_state
        if result.unknown and not result.ok:
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
        if before == ActionStatus.EXECUTING:
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
            core.audit("warden", f"action.{final.value}", action.trace_id, output=output[:500]),
            values={
                "result": output,
                "result_note": result.note or None,
                "lease_until": None,
                **values,
            },
            where=[col(Action.owner) == core.owner],
            notices=notices,
        )
        if row is None:
            log.error("action %s finished but its row was no longer ours", action.id)
        else:
            log.info("action %s: %s", final.value, action.tool)
            by = row.decided_by if before == ActionStatus.UNDOING else None
            core.record_outcome(row, final.value, by, None)
        core.kick()
        return final

    def start_undo(self, action: Action, user: str) -> bool:
        """Move a succeeded action to `undoing` (the gate has allowed it) and run the undo."""
        core = self.core
        now = core.clock()
        won = core.store.transition(
            action.id,
            [ActionStatus.SUCCEEDED],
            ActionStatus.UNDOING,
            core.audit(user, "action.undo_requested", action.trace_id),
            revision=action.revision,
            unless_paused=True,
            values={
                "decided_by": user,
                "owner": core.owner,
                "lease_until": self._lease(action),
                # Its outcome check, if not done yet, has nothing left to check.
                **cancel_open_check("not run: the action was undone first"),
            },
            where=[col(Action.undo_until).is_not(None), col(Action.undo_until) > now],
        )
        core.kick()
        if won is None:
            return False
        core.workers.executors.submit(self._undo, action.id)
        return True

    @scoped
    def _undo(self, action_id: str) -> None:
        bind(action_id=action_id, owner=self.core.owner)
        action = self.core.store.get_action(action_id)
        if action is None or action.status != ActionStatus.UNDOING:
            return
        _bind_action(action, self.core.owner)
        log.info("undoing %s", action.tool)
        result = self.executor.undo(action)
        self._outcome(action, ActionStatus.UNDOING, result, undo_until=None)

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
        _bind_action(action, core.owner)
        claimed = core.store.claim_check(
            action_id,
            core.owner,
            core.clock(),
            self._lease(action),
            core.audit("warden", "action.verify_started", action.trace_id),
        )
        if claimed is None:
            return
        try:
            result = self.executor.verify(claimed)
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


def _bind_action(action: Action, owner: str) -> None:
    """Log lines from here on (to the end of the scoped call) carry the action's ids."""
    bind(action_id=action.id, request_id=action.request_id, trace_id=action.trace_id, owner=owner)
