"""Execution: the one executor that calls tool code, and the run of an approved action.

`Executor` is the only code in Warden that calls a tool's functions — run, undo, dry run,
a runbook's outcome check (`verify`) and the agent loop's read-only lookups are five faces of
it — so timeouts, redaction, truncation and auditing happen once, here. `Execution` claims an
approved action (asking the gate again first), runs it through the executor and records how
it ended (`bot.outcomes`), exactly once; it claims and records due outcome checks the same
way. While a run lasts, its card is kept live and its Cancel heard (`bot.live_card`).
"""

from __future__ import annotations

import contextvars
import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

from sqlmodel import col

from bot.core import Core, new_id
from bot.errors import WardenError
from bot.handoffs import Handoffs, Judged, may_claim
from bot.live_card import LiveCard
from bot.logcontext import bind, scoped
from bot.outcomes import Outcomes
from bot.pii import PLACEHOLDER
from bot.redact import redact
from bot.runbooks import LIVE_RUN, LiveRun, truncate_middle, verify_runner
from bot.tools import Tool, ToolContext, ToolResult, canonical_json
from storage.checks import cancel_open_check
from storage.models import UNDOABLE, Action, ActionStatus
from storage.repo import Move

log = logging.getLogger(__name__)

LEASE_GRACE = timedelta(seconds=30)
RESULT_KEEP = 4000  # characters kept from each end of a stored result
PREVIEW_KEEP = 1500
LOOKUP_KEEP = 2000
CALL_GRACE_S = 5.0  # beyond a tool's timeout: time for a runbook to kill its process group
NOT_RUN = "not run in evaluation"
NO_DATA = "(no data)"
WATCH_EVERY = 1.0  # seconds between looks at a running action's Cancel request


START_WAIT_S = 10.0  # a tool call's thread must start within this, or it was not run


def _not_a_result(value: object) -> str:
    """Why a tool's return value is not a usable ToolResult ("" when it is)."""
    if not isinstance(value, ToolResult):
        return type(value).__name__
    if not isinstance(value.ok, bool) or not isinstance(value.unknown, bool):
        return "a ToolResult whose ok or unknown is not a bool"
    if not isinstance(value.output, str) or not isinstance(value.note, str):
        return "a ToolResult whose output or note is not text"
    try:
        json.dumps(value.undo_data)
    except (TypeError, ValueError):
        return "a ToolResult whose undo_data is not JSON"
    if not isinstance(value.undo_data, dict):
        return "a ToolResult whose undo_data is not a dict"
    return ""


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

    def shutdown(self) -> None:
        """Nothing to stop: each tool call has its own daemon thread (`_call`)."""

    def _context(self, action_id: str, trace_id: str, requester: str, **where: Any) -> ToolContext:
        return ToolContext(
            action_id=action_id,
            trace_id=trace_id,
            requester=requester,
            channel=where.get("channel"),
            thread_ts=where.get("thread_ts"),
            chat=self.core.chat,
        )

    def _call(
        self,
        tool: Tool[Any],
        fn: Callable[[], ToolResult],
        *,
        live: LiveRun | None = None,
        watch: Callable[[], None] | None = None,
    ) -> ToolResult:
        """Call tool code with its timeout; exceptions and timeouts become failed results and
        output is redacted and bounded. `live`: the run's output and stop switch (a runbook
        feeds and obeys it); `watch`: called every `WATCH_EVERY` seconds while it runs."""
        if self.evaluation is not None:
            return ToolResult(ok=False, output=f"{tool.name}: {NOT_RUN}")
        # The tool's thread logs with the ids of the action it runs for, and sees its live run
        # (set in the copy only: this thread's own context is left as it was).
        context = contextvars.copy_context()
        context.run(LIVE_RUN.set, live)
        # One daemon thread a call, not a shared pool: a tool that hangs past its timeout
        # (Python cannot stop a thread) keeps only its own thread, never another tool's turn.
        box: dict[str, Any] = {}
        started, done = threading.Event(), threading.Event()

        def work() -> None:
            started.set()
            try:
                box["result"] = context.run(fn)
            except BaseException as exc:  # SystemExit too: a tool never ends Warden's thread
                box["error"] = exc
            finally:
                done.set()

        try:
            threading.Thread(target=work, name=f"warden-tool-{tool.name}", daemon=True).start()
        except RuntimeError as exc:  # no thread to be had: it never started
            return ToolResult(ok=False, output=f"{tool.name} was not run: {exc}")
        if not started.wait(START_WAIT_S):
            return ToolResult(ok=False, output=f"{tool.name} was not run: it could not start")
        # The timeout counts from the moment the tool started, not from when it was asked for.
        deadline = time.monotonic() + tool.timeout_s + CALL_GRACE_S
        while not done.wait(max(0.0, min(deadline - time.monotonic(), WATCH_EVERY))):
            if time.monotonic() >= deadline:
                log.error("tool %s is still running past its timeout; left behind", tool.name)
                return ToolResult(
                    ok=False,
                    output=f"{tool.name} did not finish within {tool.timeout_s:g}s; "
                    "its outcome is unknown",
                    unknown=True,
                )
            if watch is not None:
                try:
                    watch()
                except Exception:  # a watch never fails the run it watches
                    log.exception("watching the run of %s failed", tool.name)
        if "error" in box:
            raised: BaseException = box["error"]
            log.warning("tool %s raised %s", tool.name, type(raised).__name__)
            result = ToolResult(ok=False, output=f"{type(raised).__name__}: {raised}")
        else:
            returned: object = box.get("result")
            why = _not_a_result(returned)
            if why or not isinstance(returned, ToolResult):
                # The tool ran and said something Warden cannot read: what it did is unknown.
                log.warning("tool %s returned %s", tool.name, why)
                return ToolResult(
                    ok=False, unknown=True, output=f"{tool.name} returned {why}, not a ToolResult"
                )
            result = returned
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
    def run(
        self,
        action: Action,
        live: LiveRun | None = None,
        watch: Callable[[], None] | None = None,
    ) -> ToolResult:
        """Run an action's call: its arguments re-validated and checked canonical first.
        `live` and `watch`: see `_call` (how `Execution` keeps the card live)."""
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
        return self._call(tool, lambda: tool.run(args, ctx), live=live, watch=watch)

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
        self,
        tool_name: str,
        args: dict[str, Any],
        requester: str,
        trace_id: str,
        *,
        channel: str = "",
        risk: str | None = None,
    ) -> Preview:
        """A call's dry-run preview (of a call asked in `channel` at tier `risk`). None runs
        while a pause holds the call (it is still a command): the gate says."""
        bind(trace_id=trace_id, owner=self.core.owner)
        tool = self.core.registry.get(tool_name)
        preview = tool.dry_run
        if preview is None:
            return Preview(text=None, ok=False, problem="dry-run preview, and this tool has none")
        if self.core.gate.paused_for(tool_name, channel, risk or tool.risk, self.core.now()):
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
        held = (
            self.core.gate.paused_for(tool_name, channel, tool.risk, self.core.now())
            if self.core.gate.reaches_out(tool)
            else None
        )
        if held:
            # Lookups that reach outside Warden (a command, an HTTP call) stop with the pauses
            # that hold them, as actions do.
            raise WardenError(f"{held} (lookups that run commands or call out stop too)")
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

    def __init__(
        self, core: Core, executor: Executor, fill_preview: Callable[[str, int], None]
    ) -> None:
        self.core = core
        self.executor = executor
        self.outcomes = Outcomes(core, executor.verify, self._lease, fill_preview)
        self.handoffs = Handoffs()  # runs that clicks are handing to an executor thread

    def check(self, action_id: str) -> None:
        """Run a due outcome check once (a background worker): `Outcomes.check`."""
        self.outcomes.check(action_id)

    def requeue_stale_checks(self) -> int:
        """Interrupted outcome checks go back to pending: `Outcomes.requeue_stale_checks`."""
        return self.outcomes.requeue_stale_checks()

    def submit(self, action_id: str) -> bool:
        """Hand a run to an executor; True if one takes it at once (it then brings the card
        up to date after its claim), False if it must wait for a free one (or is refused)."""
        pool = self.core.workers.executors
        at_once = not pool.saturated
        return pool.submit(self.execute, action_id) is not None and at_once

    def start_approved(self, action: Action, user: str, judged: Judged | None = None) -> bool:
        """An action's approval rule is met (by clicks or grants): approve it — unless a pause
        came first, checked in the same statement — and hand the run to an executor. False if
        the action moved first or a pause won.

        `judged`: what the gate just judged a click against. With it, and an executor thread
        free, the thread is reserved first (`bot.handoffs`) and the statement that approves
        the action also claims its run (`approved → executing`) if the gate says it may run
        on that same state (`Gate.runnable`, as the executor would ask): one transaction, and
        the run starts without reading it all again. A run that must wait for a thread is
        only approved; its executor asks the gate again when it claims."""
        core = self.core
        pool = core.workers.executors
        handoff = None
        if judged is not None and not pool.saturated:
            handoff = self.handoffs.offer(action.id)
            self.submit(action.id)  # `execute` takes the hand-off
        then: Move | None = None
        won: Action | None = None
        try:
            if handoff is not None and judged is not None:
                # The click's state was read before its approval was recorded (on SQLite,
                # maybe after a wait for the write lock): what the claim's statement does not
                # check itself (a pause it does) is read again, as the executor would.
                judged = Judged(
                    approvals=judged.approvals,
                    now=replace(
                        judged.now, autonomy=core.store.autonomy_overrides(), at=core.clock()
                    ),
                )
            if (
                handoff is not None
                and judged is not None
                and may_claim(core.gate, action, user, judged)
                and handoff.reserve()
            ):
                then = Move(
                    status=ActionStatus.EXECUTING,
                    audit=core.audit("warden", "action.executing", action.trace_id),
                    values={"owner": core.owner, "lease_until": self._lease(action)},
                )
            won = core.store.transition(
                action.id,
                [ActionStatus.AWAITING_APPROVAL],
                ActionStatus.APPROVED,
                core.audit(user, "action.approved", action.trace_id),
                revision=action.revision,
                values={"decided_by": user},
                unless_paused=True,
                then=then,
            )
        finally:
            if handoff is not None:
                handoff.resolve(approved=won is not None, claimed=won if then else None)
                self.handoffs.withdraw(action.id, handoff)
        if won is None:
            core.kick()
            return False
        if handoff is not None:
            return True  # its executor brings the card up to date when it claims or runs
        # The executor's claim, a moment later, brings the card up to date: one update
        # instead of two, none of them competing with the run's start. If the run must wait
        # for a free executor, the card says "approved" now.
        if not self.submit(action.id):
            core.kick()
        return True

    def _lease(self, action: Action) -> Any:
        try:
            timeout = self.core.registry.get(action.tool).timeout_s
        except WardenError:
            timeout = 60.0
        return self.core.clock() + timedelta(seconds=timeout) + LEASE_GRACE

    @scoped
    def execute(self, action_id: str) -> None:
        """Claim an approved action and run it once (executor worker). The gate is asked
        again first; while paused the action stays approved and runs after /resume. A run a
        click is handing over (`start_approved`) is taken first: claimed by the click, it
        runs at once; only approved, it is claimed here as any other."""
        core = self.core
        bind(action_id=action_id, owner=core.owner)
        handoff = self.handoffs.take(action_id)
        if handoff is not None:
            approved, claimed = handoff.take()  # a click's: it may claim the run for us
            if claimed is not None:
                core.kick()  # the card: approved and running, in one update
                _bind_action(claimed, core.owner)
                self._run(claimed)
                return
            if not approved:
                return  # the click lost to a pause or a move, and owed the card its update
        action = core.store.get_action(action_id)
        if action is None or action.status != ActionStatus.APPROVED:
            core.kick()  # whatever moved it owes the card its update
            return
        _bind_action(action, core.owner)
        now = core.now()
        why_not = core.gate.runnable(action, core.store.approvals(action.id, action.revision), now)
        held = core.gate.paused_for(action.tool, action.channel, action.risk, now)
        if why_not and not held:
            self._not_runnable(action, why_not)
            return
        if why_not:
            core.kick()  # the card shows the approval and the pause that holds it
            return  # held by a pause: `Sweeps.after_resume` starts it again
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
        if claimed is not None:
            self._run(claimed)

    def _run(self, claimed: Action) -> None:
        """Run a claimed action through the executor and record how it ended."""
        core = self.core
        log.info("running %s", claimed.tool)
        tool = core.registry.get(claimed.tool) if claimed.tool in core.registry else None
        # Commands (runbooks) show their output live and can be stopped; other tools' cards
        # show how long they have been running.
        live = LiveRun() if tool is not None and tool.source == "runbook" else None
        result = self.executor.run(claimed, live, LiveCard(core, claimed, live))
        stopped_by = None
        if live is not None and live.stopped:
            stopped_by = core.store.cancel_requested(claimed.id) or "warden"
        undo_until = None
        if (result.ok or stopped_by) and tool is not None and tool.reversible:
            # A stopped command may have done part of its work: its undo is the way back.
            undo_until = core.clock() + core.policy.gate.undo_window
        self.outcomes.record(
            claimed,
            ActionStatus.EXECUTING,
            result,
            undo_until=undo_until,
            undo_data=json.dumps(result.undo_data) if result.undo_data else None,
            stopped_by=stopped_by,
            **self.outcomes.due(claimed, result),
        )

    def request_cancel(self, action: Action, user: str) -> bool:
        """Ask for a running action's command to be stopped (the gate has allowed it): a
        conditional update any replica can make; the replica running it acts on it within
        `WATCH_EVERY`. False: it was no longer running, or someone asked already."""
        core = self.core
        asked = core.store.request_cancel(
            action.id,
            user,
            core.clock(),
            core.audit(user, "cancel.requested", action.trace_id),
        )
        core.kick()
        return asked

    def _not_runnable(self, action: Action, why_not: str) -> None:
        """The rules changed between approval and start: `Outcomes.not_runnable`."""
        self.outcomes.not_runnable(action, why_not)

    def start_undo(self, action: Action, user: str) -> bool:
        """Move a succeeded action to `undoing` (the gate has allowed it) and run the undo."""
        core = self.core
        now = core.clock()
        won = core.store.transition(
            action.id,
            list(UNDOABLE),
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
        self.outcomes.record(action, ActionStatus.UNDOING, result, undo_until=None)


def _bind_action(action: Action, owner: str) -> None:
    """Log lines from here on (to the end of the scoped call) carry the action's ids."""
    bind(action_id=action.id, request_id=action.request_id, trace_id=action.trace_id, owner=owner)
