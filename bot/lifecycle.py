"""The lifecycle of requests and actions: Warden's brain, with no Slack listener API in it.

    request stored → planner → gate → action rows → card → click → executor → audit

Every state change is a conditional update in `storage/repo.py` that writes its audit row in
the same transaction; the return value says whether this caller won the race. Methods called
from Slack's ack path (`accept`, `approve`, `reject`, `edit`, `undo`, `pause`, `resume`) only
touch the database and hand slow work (planning, running, posting to Slack) to `Workers`.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlmodel import col

from bot.cards import CardContext, render_card
from bot.chat import Chat
from bot.errors import PlannerUnavailable, ToolArgumentsError, WardenError
from bot.gate import ActionView, Decision, Gate, Verdict
from bot.planner import Clarify, Plan, Planner, PlanRequest, Proposals, Turn, Usage
from bot.policy import Policy, Risk
from bot.redact import redact
from bot.runbooks import command_preview, truncate_middle
from bot.sanitize import neutralise
from bot.tools import ToolContext, ToolRegistry, ToolResult
from bot.workers import Workers
from storage.models import TERMINAL, Action, ActionStatus, Request, RequestStatus, utcnow
from storage.repo import Audit, Store

log = logging.getLogger(__name__)

LEASE_GRACE = timedelta(seconds=30)
RESULT_KEEP = 8000
DM_QUESTION_OPEN = timedelta(minutes=30)


def new_id() -> str:
    return uuid.uuid4().hex


def new_trace() -> str:
    return uuid.uuid4().hex[:16]


@dataclass(kw_only=True, frozen=True)
class Incoming:
    """A message addressed to Warden (a mention, a DM, or a reply in one of its threads)."""

    event_id: str | None
    team_id: str = ""
    channel: str
    user: str
    text: str
    ts: str
    thread_ts: str | None = None


@dataclass(kw_only=True, frozen=True)
class Reply:
    """What to tell the person who clicked or typed (privately). Empty text: say nothing."""

    ok: bool
    text: str = ""


@dataclass(kw_only=True, frozen=True)
class EditForm:
    """What the Edit modal shows: the tool, its current arguments and their allowed values."""

    action_id: str
    revision: int
    tool: str
    args: dict[str, str]
    choices: dict[str, list[str]]
    hints: dict[str, str]


class Lifecycle:
    """Requests, actions, approvals, execution, undo and the kill switch."""

    def __init__(
        self,
        *,
        policy: Policy,
        registry: ToolRegistry,
        store: Store,
        chat: Chat,
        planner: Planner,
        workers: Workers,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.policy = policy
        self.registry = registry
        self.gate = Gate(policy, registry)
        self.store = store
        self.chat = chat
        self.planner = planner
        self.workers = workers
        self.clock = clock
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"[:64]
        self._card_locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()
        self._queued: set[str] = set()

    # -- helpers ---------------------------------------------------------------------------

    def _audit(self, actor: str, kind: str, trace_id: str = "", **data: Any) -> Audit:
        return Audit(
            actor=actor,
            kind=kind,
            trace_id=trace_id,
            policy_version=self.policy.version,
            data=data or None,
        )

    def _safe(self, text: str, limit: int = 3000) -> str:
        return neutralise(text, allowed_domains=list(self.policy.agent.link_domains), limit=limit)

    def _post(self, channel: str, text: str, thread_ts: str | None = None) -> None:
        self.workers.outbox.submit(self.chat.post, channel, text, None, thread_ts)

    def _ephemeral(self, channel: str, user: str, text: str, thread_ts: str | None = None) -> None:
        self.workers.replies.submit(self.chat.ephemeral, channel, user, text, thread_ts)

    @property
    def paused(self) -> bool:
        return self.store.pause_state().paused

    # -- requests --------------------------------------------------------------------------

    def accept(self, msg: Incoming) -> bool:
        """Store a request (once per Slack event id) and queue it for planning.

        Runs on the ack path: one database transaction, then hand-off. False for a retry of
        an event already accepted.
        """
        text = redact(msg.text)
        request = Request(
            id=new_id(),
            trace_id=new_trace(),
            event_id=msg.event_id,
            team_id=msg.team_id,
            channel=msg.channel,
            thread_ts=msg.thread_ts or msg.ts,
            message_ts=msg.ts,
            requester=msg.user,
            text=text,
        )
        accepted = self.store.accept_request(
            request,
            self._audit(
                msg.user, "request.received", request.trace_id, channel=msg.channel, text=text[:500]
            ),
        )
        if accepted:
            self.workers.outbox.submit(self.chat.react, msg.channel, msg.ts, "eyes")
            self._queue_plan(request.id)
        return accepted

    def _queue_plan(self, request_id: str) -> None:
        """Hand a request to the planners once: the sweep finds a backlog's requests again
        every minute, and each would otherwise take another place in the queue."""
        with self._locks_guard:
            if request_id in self._queued:
                return
            self._queued.add(request_id)
        if self.workers.planners.submit(self._plan_queued, request_id) is None:
            with self._locks_guard:
                self._queued.discard(request_id)

    def _plan_queued(self, request_id: str) -> None:
        try:
            self.plan(request_id)
        finally:
            with self._locks_guard:
                self._queued.discard(request_id)

    def open_question(self, channel: str, user: str) -> str | None:
        """The thread of `user`'s latest request in a DM if Warden asked them a question there
        (or could not plan it) within the last 30 minutes: a top-level DM reply continues it,
        since people rarely reply in a DM's thread."""
        req = self.store.latest_request_by(channel, user)
        if (
            req is None
            or req.status not in (RequestStatus.PLANNED, RequestStatus.FAILED)
            or not req.answer
            or req.created_at < self.clock() - DM_QUESTION_OPEN
            or self.store.actions_for_request(req.id)
        ):
            return None
        return req.thread_ts

    def plan(self, request_id: str) -> None:
        """Plan one request (planner worker). Safe to call twice: the lease decides."""
        # A planner may overrun max_seconds by one model call (see bot/claude.py).
        agent = self.policy.agent
        lease = self.clock() + agent.max_seconds + agent.call_timeout + LEASE_GRACE
        req = self.store.claim_request(request_id, self.owner, lease)
        if req is None:
            return
        plan_request = PlanRequest(
            request_id=req.id,
            trace_id=req.trace_id,
            text=req.text,
            requester=req.requester,
            channel=req.channel,
            thread_ts=req.thread_ts,
            history=self._history(req),
            run_read_only=self._read_only_runner(req),
        )
        self.workers.outbox.submit(self.chat.set_status, req.channel, req.thread_ts, "is thinking…")
        try:
            plan: Plan = self.planner.plan(plan_request)
        except PlannerUnavailable as exc:
            spent = exc.usage if isinstance(exc.usage, Usage) else Usage()
            self._finish(req, RequestStatus.FAILED, self._unavailable_text(str(exc)), spent)
            return
        except Exception as exc:  # a planner bug must not lose the request
            log.exception("planner crashed on request %s", req.id)
            self._finish(
                req,
                RequestStatus.FAILED,
                self._unavailable_text(f"the planner failed ({type(exc).__name__})"),
                Usage(),
            )
            return
        if isinstance(plan, Proposals):
            self._propose(req, plan)
        elif isinstance(plan, Clarify):
            self._finish(
                req,
                RequestStatus.PLANNED,
                f":thinking_face: {self._safe(plan.question)}",
                plan.usage,
            )
        else:
            status = RequestStatus.FAILED if plan.retryable else RequestStatus.DONE
            text = self._safe(plan.message)
            if plan.retryable:
                text = self._unavailable_text(plan.message)
            self._finish(req, status, text, plan.usage)

    @staticmethod
    def _unavailable_text(why: str) -> str:
        return (
            f":warning: I couldn't plan this right now: {why}. Your request is saved — "
            "reply `retry` in this thread to try again."
        )

    def _finish(self, req: Request, status: RequestStatus, answer: str, usage: Usage) -> None:
        if self.store.finish_planning(
            req.id,
            self.owner,
            status,
            answer=answer,
            usage=_usage_dict(usage),
            audit_=self._audit("warden", f"request.{status.value}", req.trace_id),
        ):
            self._post(req.channel, answer, req.thread_ts)
            self.workers.outbox.submit(self.chat.unreact, req.channel, req.message_ts, "eyes")

    def _history(self, req: Request) -> tuple[Turn, ...]:
        turns: list[Turn] = []
        for earlier in self.store.thread_requests(req.channel, req.thread_ts):
            if earlier.id == req.id:
                break
            role = "requester" if earlier.requester == req.requester else "other"
            turns.append(Turn(role=role, author=earlier.requester, text=earlier.text))
            if earlier.answer:
                turns.append(Turn(role="warden", author="warden", text=earlier.answer))
            for a in self.store.actions_for_request(earlier.id):
                turns.append(
                    Turn(
                        role="warden",
                        author="warden",
                        text=(
                            f"proposed {a.tool} {a.args_json} — now {a.status}"
                            + (f"; result: {a.result[:500]}" if a.result else "")
                        ),
                    )
                )
        return tuple(turns)

    def _read_only_runner(self, req: Request) -> Callable[[str, dict[str, Any]], str]:
        def run(tool_name: str, args: dict[str, Any]) -> str:
            tool = self.registry.get(tool_name)
            if not tool.read_only:
                raise WardenError(f"{tool_name} has side effects; it must be proposed")
            if tool_name in self.policy.runbooks and self.paused:
                raise WardenError("Warden is paused: lookups that run commands are off")
            parsed = tool.validate(args)
            ctx = ToolContext(
                action_id=f"lookup-{new_id()[:12]}",
                trace_id=req.trace_id,
                requester=req.requester,
                channel=req.channel,
                thread_ts=req.thread_ts,
                chat=self.chat,
            )
            result = tool.run(parsed, ctx)
            self.store.audit(
                self._audit(
                    "warden",
                    "lookup",
                    req.trace_id,
                    tool=tool_name,
                    args=tool.canonical(parsed),
                    ok=result.ok,
                ),
                subject=req.id,
            )
            return truncate_middle(redact(result.output), 4000)

        return run

    def _propose(self, req: Request, plan: Proposals) -> None:
        paused = self.paused
        overrides = self.store.autonomy_overrides()
        actions: list[Action] = []
        audits: list[Audit] = []
        questions: list[str] = []
        now = self.clock()
        for call in plan.calls[:10]:
            decision = self.gate.decide(
                tool=call.tool,
                args=call.args,
                confidence=call.confidence,
                requester=req.requester,
                paused=paused,
                autonomy_overrides=overrides,
            )
            if decision.verdict is Verdict.CLARIFY:
                questions.append(call.rationale or call.tool)
                continue
            action = self._action_from(req, call.rationale, call.confidence, decision, now)
            actions.append(action)
            audits.append(
                self._audit(
                    "planner",
                    "action.proposed",
                    req.trace_id,
                    tool=action.tool,
                    args=action.args_json,
                    risk=action.risk,
                    verdict=decision.verdict.value,
                    reason=decision.reason,
                    confidence=call.confidence,
                )
            )
        answer = self._safe(plan.message, 1500) if plan.message else None
        if questions and not actions:
            answer = (
                "I'm not confident enough to propose anything yet. Could you say more "
                "precisely what you want done?"
            )
        status = RequestStatus.PLANNED if actions or answer else RequestStatus.DONE
        if not self.store.finish_planning(
            req.id,
            self.owner,
            status,
            answer=answer,
            actions=actions,
            usage=_usage_dict(plan.usage),
            action_audits=audits,
            audit_=self._audit("warden", "request.planned", req.trace_id, actions=len(actions)),
        ):
            return
        self.workers.outbox.submit(self.chat.unreact, req.channel, req.message_ts, "eyes")
        if answer:
            self._post(req.channel, answer, req.thread_ts)
        for action in actions:
            self.refresh_card(action.id)
            if action.status == ActionStatus.APPROVED:
                self.workers.executors.submit(self.execute, action.id)
            if action.risk == Risk.CRITICAL and action.status == ActionStatus.AWAITING_APPROVAL:
                self._post(
                    self.policy.access.admin_channel,
                    (
                        f":rotating_light: Critical action awaiting two approvals: *{action.tool}* "
                        f"requested by <@{action.requester}> in <#{action.channel}> "
                        f"(trace `{action.trace_id}`)."
                    ),
                )

    def _action_from(
        self, req: Request, rationale: str, confidence: float, decision: Decision, now: datetime
    ) -> Action:
        status = {
            Verdict.REFUSE: ActionStatus.REFUSED,
            Verdict.RUN_NOW: ActionStatus.APPROVED,
            Verdict.AWAIT: ActionStatus.AWAITING_APPROVAL,
            Verdict.SUGGEST: ActionStatus.SUGGESTED,
        }[decision.verdict]
        preview = None
        if decision.verdict in (Verdict.AWAIT, Verdict.SUGGEST):
            preview, problem = self._dry_run(
                decision.tool, decision.args, req.requester, req.trace_id
            )
            if decision.needs_preview and problem:
                status = ActionStatus.REFUSED
                decision = Decision(
                    **{**decision.__dict__, "reason": f"critical actions need a {problem}"}
                )
        return Action(
            id=new_id(),
            request_id=req.id,
            trace_id=req.trace_id,
            tool=decision.tool,
            args_json=decision.args_json or json.dumps({}),
            policy_version=decision.policy_version,
            risk=decision.risk.value,
            autonomy=decision.autonomy.value,
            confidence=float(confidence) if isinstance(confidence, int | float) else 0.0,
            rationale=redact(str(rationale))[:4000],
            preview=preview,
            required_approvals=decision.required_approvals,
            requester=req.requester,
            channel=req.channel,
            thread_ts=req.thread_ts,
            status=status,
            status_note=decision.reason if status == ActionStatus.REFUSED else None,
            expires_at=now + self.policy.gate.approval_ttl
            if status == ActionStatus.AWAITING_APPROVAL
            else None,
            decided_by="gate" if status == ActionStatus.APPROVED else None,
        )

    def _dry_run(
        self, tool_name: str, args: Mapping[str, Any], requester: str, trace_id: str
    ) -> tuple[str | None, str]:
        """The dry-run preview, and what went wrong ("" if nothing did).

        A preview that fails is shown as such but never counts as the preview a critical
        action needs, and no dry run runs while Warden is paused (it is still a command).
        """
        tool = self.registry.get(tool_name)
        if tool.dry_run is None:
            return None, "dry-run preview, and this tool has none"
        if self.paused:
            return None, "dry-run preview, and none runs while Warden is paused"
        ctx = ToolContext(
            action_id=f"dryrun-{new_id()[:12]}", trace_id=trace_id, requester=requester, chat=None
        )
        try:
            text = tool.dry_run(tool.validate(dict(args)), ctx)
        except Exception as exc:
            failed = truncate_middle(f"(dry run failed: {exc})", 3000)
            return failed, "dry-run preview, and the dry run failed"
        return truncate_middle(text, 3000), ""

    def fill_preview(self, action_id: str, revision: int) -> None:
        """Run an edited action's dry run (planner worker, off the ack path) and show it."""
        action = self.store.get_action(action_id)
        if action is None or action.revision != revision:
            return
        if action.status not in (ActionStatus.AWAITING_APPROVAL, ActionStatus.SUGGESTED):
            return
        preview, problem = self._dry_run(
            action.tool, json.loads(action.args_json), action.requester, action.trace_id
        )
        if problem and Risk(action.risk) is Risk.CRITICAL:
            self.store.transition(
                action.id,
                [action.status],
                ActionStatus.REFUSED,
                self._audit("warden", "action.refused", action.trace_id, reason=problem),
                revision=revision,
                values={"preview": preview, "status_note": f"Critical actions need a {problem}."},
            )
        else:
            self.store.transition(
                action.id,
                [action.status],
                ActionStatus(action.status),
                self._audit("warden", "action.previewed", action.trace_id),
                revision=revision,
                values={"preview": preview},
            )
        self.refresh_card(action.id)

    def retry(self, channel: str, thread_ts: str, user: str) -> bool:
        """Re-queue the thread's failed request (the requester replied `retry`)."""
        req = self.store.latest_request_in_thread(channel, thread_ts)
        if req is None or req.status != RequestStatus.FAILED:
            return False
        if self.store.retry_request(req.id, user):
            self._queue_plan(req.id)
            return True
        return False

    # -- cards -----------------------------------------------------------------------------

    def _lock(self, action_id: str) -> threading.Lock:
        with self._locks_guard:
            lock = self._card_locks.get(action_id)
            if lock is None:
                if len(self._card_locks) > 10_000:
                    self._card_locks.clear()
                lock = self._card_locks[action_id] = threading.Lock()
            return lock

    def refresh_card(self, action_id: str) -> None:
        """Post or update an action's card from its current row (outbox worker)."""
        self.workers.outbox.submit(self._publish_card, action_id)

    def card_context(self, action: Action) -> CardContext:
        approvals = self.store.approvals(action.id, action.revision)
        decision_rule = self._rule(action)
        command = None
        if action.tool in self.policy.runbooks:
            try:
                command = command_preview(
                    self.policy.runbooks[action.tool], json.loads(action.args_json)
                )
            except (KeyError, ValueError):
                command = None
        return CardContext(
            rule=decision_rule,
            approvers=self.policy.approvers_for(action.tool),
            approved_by=[
                a.approver
                for a in approvals
                if a.args_json == action.args_json and a.policy_version == action.policy_version
            ],
            allowed_domains=self.policy.agent.link_domains,
            paused=self.paused,
            command=command,
        )

    def _rule(self, action: Action) -> str:
        if action.status == ActionStatus.SUGGESTED:
            return "suggestion only"
        if action.decided_by == "gate":
            return "ran at once (low risk, autonomy auto)"
        risk = Risk(action.risk)
        if risk is Risk.CRITICAL:
            return "two approvers, neither the requester"
        if risk is Risk.HIGH:
            return "one approver who is not the requester"
        return "one approver"

    def render(self, action: Action) -> tuple[str, list[dict[str, Any]]]:
        return render_card(action, self.card_context(action), self.clock())

    def _publish_card(self, action_id: str) -> None:
        with self._lock(action_id):
            action = self.store.get_action(action_id)
            if action is None:
                return
            text, blocks = self.render(action)
            if action.card_ts is None or action.card_ts.startswith("pending:"):
                # Only the worker holding the reservation posts the first card; if the post
                # fails the reservation is released and the card sweep tries again.
                if action.card_ts is None:
                    if not self.store.claim_card(action_id, self.owner):
                        return
                elif action.card_ts != f"pending:{self.owner}"[:64]:
                    return
                try:
                    ts = self.chat.post(action.channel, text, blocks, action.thread_ts)
                except Exception:
                    self.store.release_card(action_id, self.owner)
                    raise
                self.store.set_card(action_id, ts)
            else:
                self.chat.update(action.channel, action.card_ts, text, blocks)

    # -- clicks ----------------------------------------------------------------------------

    def _clicked(self, action_id: str, revision: int) -> Action | Reply:
        action = self.store.get_action(action_id)
        if action is None:
            return Reply(ok=False, text="I can't find that action any more.")
        if action.revision != revision:
            return Reply(
                ok=False,
                text=(
                    "This card changed since you looked at it (it was edited or re-checked). "
                    "Look at the updated card and click again."
                ),
            )
        return action

    def approve(self, action_id: str, revision: int, user: str) -> Reply:
        """An Approve click: record the approval; if the rule is met, start the run."""
        found = self._clicked(action_id, revision)
        if isinstance(found, Reply):
            return found
        action = found
        if action.status != ActionStatus.AWAITING_APPROVAL:
            return Reply(
                ok=False,
                text=f"This action is {_words(action.status)}; there is nothing to approve.",
            )
        if action.expires_at is not None and action.expires_at <= self.clock():
            self.expire(action.id)
            return Reply(ok=False, text="This approval request has expired; it can no longer run.")
        if action.policy_version != self.policy.version:
            return self._recheck(action, user)
        if Risk(action.risk) is Risk.CRITICAL and not action.preview:
            return Reply(
                ok=False,
                text="The dry-run preview is not on the card yet; approve once it shows.",
            )
        approved_by = [a.approver for a in self.store.approvals(action.id, action.revision)]
        if user in approved_by and len(self._bound_approvers(action)) >= max(
            1, action.required_approvals
        ):
            # Enough approvals are on record but the action never left awaiting_approval
            # (a /pause committed between the approval and the transition): this click
            # finishes the job instead of being told it already approved.
            return self._start(action, user, len(approved_by))
        why_not = self.gate.may_approve(
            ActionView(
                tool=action.tool,
                requester=action.requester,
                risk=Risk(action.risk),
                status=action.status,
                exclude_requester=Risk(action.risk) in (Risk.HIGH, Risk.CRITICAL),
                already_approved_by=approved_by,
            ),
            user,
        )
        if why_not:
            self.store.audit(
                self._audit(user, "approval.denied", action.trace_id, reason=why_not),
                subject=action.id,
            )
            return Reply(ok=False, text=f"You can't approve this: {why_not}.")
        pause = self.store.pause_state()
        if pause.paused:
            return Reply(
                ok=False,
                text=(
                    ":double_vertical_bar: Warden is paused "
                    f"({pause.reason or 'no reason given'}), "
                    "so nothing runs. The card stays approvable: approve again after /resume."
                ),
            )
        count = self.store.record_approval(
            action,
            user,
            self._audit(user, "approval.given", action.trace_id, revision=action.revision),
        )
        if count is None:
            return Reply(ok=False, text="You have already approved this.")
        if count < action.required_approvals:
            self.refresh_card(action.id)
            return Reply(
                ok=True,
                text=(
                    f"Approval recorded ({count} of "
                    f"{action.required_approvals}); it needs another "
                    "approver."
                ),
            )
        return self._start(action, user, count)

    def _start(self, action: Action, user: str, count: int) -> Reply:
        """The approval rule is met: approve (unless paused) and hand the run to an executor."""
        pause = self.store.pause_state()
        if pause.paused:
            self.refresh_card(action.id)
            return Reply(
                ok=False,
                text=(
                    ":double_vertical_bar: Warden is paused "
                    f"({pause.reason or 'no reason given'}); your approval is recorded. "
                    "Click Approve again after /resume to run it."
                ),
            )
        won = self.store.transition(
            action.id,
            [ActionStatus.AWAITING_APPROVAL],
            ActionStatus.APPROVED,
            self._audit(user, "action.approved", action.trace_id, approvals=count),
            revision=action.revision,
            values={"decided_by": user},
            unless_paused=True,
        )
        if won is None:
            self.refresh_card(action.id)
            if self.paused:
                return Reply(
                    ok=False,
                    text=(
                        ":double_vertical_bar: Warden was paused just now; "
                        "approve again after /resume."
                    ),
                )
            return Reply(ok=False, text="Someone else decided this action first.")
        self.workers.executors.submit(self.execute, action.id)
        self.refresh_card(action.id)
        return Reply(ok=True)

    def _recheck(self, action: Action, user: str) -> Reply:
        """The policy changed since the card was posted: re-gate, voiding earlier approvals."""
        decision = self.gate.decide(
            tool=action.tool,
            args=json.loads(action.args_json),
            confidence=action.confidence,
            requester=action.requester,
            paused=False,
            human_edited=True,
        )
        if decision.verdict is Verdict.REFUSE:
            self.store.transition(
                action.id,
                [ActionStatus.AWAITING_APPROVAL],
                ActionStatus.REFUSED,
                self._audit(user, "action.refused", action.trace_id, reason=decision.reason),
                revision=action.revision,
                values={
                    "status_note": f"The policy changed: {decision.reason}",
                    "policy_version": decision.policy_version,
                },
            )
            self.refresh_card(action.id)
            return Reply(
                ok=False, text=f"The policy changed and now refuses this: {decision.reason}."
            )
        self.store.transition(
            action.id,
            [ActionStatus.AWAITING_APPROVAL],
            ActionStatus.AWAITING_APPROVAL,
            self._audit(user, "action.rechecked", action.trace_id),
            revision=action.revision,
            values={
                "revision": action.revision + 1,
                "policy_version": decision.policy_version,
                "risk": decision.risk.value,
                "required_approvals": decision.required_approvals,
                "status_note": "The policy changed since this was proposed; "
                "earlier approvals no longer count.",
            },
        )
        self.refresh_card(action.id)
        return Reply(
            ok=False,
            text="The policy changed since this card was posted, so it was "
            "re-checked. Look at the updated card and approve again.",
        )

    def may_reject(self, action_id: str, user: str) -> str | None:
        """Why `user` may not reject this action (checked before the Reject modal opens)."""
        action = self.store.get_action(action_id)
        if action is None:
            return "I can't find that action any more."
        if user != action.requester and user not in self.policy.approvers_for(action.tool):
            return "You can't reject this: only approvers or the requester may."
        return None

    def reject(self, action_id: str, revision: int, user: str, reason: str) -> Reply:
        """Reject (approvers) or withdraw (the requester) an action awaiting approval."""
        found = self._clicked(action_id, revision)
        if isinstance(found, Reply):
            return found
        action = found
        why_not = self.may_reject(action.id, user)
        if why_not:
            return Reply(ok=False, text=why_not)
        reason = redact(reason.strip())[:500]
        won = self.store.transition(
            action.id,
            [ActionStatus.AWAITING_APPROVAL, ActionStatus.SUGGESTED],
            ActionStatus.REJECTED,
            self._audit(user, "action.rejected", action.trace_id, reason=reason),
            revision=revision,
            values={"decided_by": user, "status_note": f"Reason: {reason}" if reason else None},
        )
        if won is None:
            return Reply(
                ok=False, text=f"This action is {_words(action.status)}; it can't be rejected now."
            )
        self.refresh_card(action.id)
        return Reply(ok=True)

    def edit_form(self, action_id: str, revision: int, user: str) -> EditForm | Reply:
        found = self._clicked(action_id, revision)
        if isinstance(found, Reply):
            return found
        action = found
        why_not = self.gate.may_edit(action.tool, action.requester, user)
        if why_not:
            return Reply(ok=False, text=f"You can't edit this: {why_not}.")
        if action.status != ActionStatus.AWAITING_APPROVAL:
            return Reply(
                ok=False, text=f"This action is {_words(action.status)}; it can't be edited now."
            )
        args = {k: str(v) for k, v in json.loads(action.args_json).items()}
        choices: dict[str, list[str]] = {}
        hints: dict[str, str] = {}
        runbook = self.policy.runbooks.get(action.tool)
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

    def edit(
        self, action_id: str, revision: int, user: str, raw_args: Mapping[str, Any]
    ) -> dict[str, str] | Reply:
        """Apply an Edit: validate, re-gate, void approvals. Returns field errors or a reply."""
        found = self._clicked(action_id, revision)
        if isinstance(found, Reply):
            return found
        action = found
        why_not = self.gate.may_edit(action.tool, action.requester, user)
        if why_not:
            return Reply(ok=False, text=f"You can't edit this: {why_not}.")
        tool = self.registry.get(action.tool)
        try:
            tool.validate(dict(raw_args))
        except ToolArgumentsError as exc:
            return _field_errors(str(exc), action.tool, list(raw_args))
        decision = self.gate.decide(
            tool=action.tool,
            args=dict(raw_args),
            confidence=action.confidence,
            requester=action.requester,
            paused=self.paused,
            autonomy_overrides=self.store.autonomy_overrides(),
            human_edited=True,
        )
        if decision.verdict is Verdict.REFUSE:
            return {"_": decision.reason}
        if decision.args_json == action.args_json:
            return Reply(ok=True, text="Nothing changed.")
        # The dry run is a command: it runs on a worker after the ack (fill_preview); until
        # its preview is on the card, a critical action cannot be approved.
        has_dry_run = self.registry.get(action.tool).dry_run is not None
        if decision.needs_preview and not has_dry_run:
            return {"_": "critical actions need a dry-run preview, and this tool has none"}
        to_state = (
            ActionStatus.SUGGESTED
            if decision.verdict is Verdict.SUGGEST
            else ActionStatus.AWAITING_APPROVAL
        )
        won = self.store.transition(
            action.id,
            [ActionStatus.AWAITING_APPROVAL],
            to_state,
            self._audit(
                user,
                "action.edited",
                action.trace_id,
                before=action.args_json,
                after=decision.args_json,
            ),
            revision=revision,
            values={
                "revision": revision + 1,
                "args_json": decision.args_json,
                "risk": decision.risk.value,
                "required_approvals": max(1, decision.required_approvals),
                "policy_version": decision.policy_version,
                "preview": None,
                "expires_at": self.clock() + self.policy.gate.approval_ttl,
                "status_note": f"Edited by <@{user}>; earlier approvals no longer count.",
            },
        )
        if won is None:
            return Reply(
                ok=False,
                text="This action changed before your edit was saved; look at the card again.",
            )
        self.refresh_card(action.id)
        if has_dry_run:
            self.workers.planners.submit(self.fill_preview, action.id, revision + 1)
        return Reply(ok=True)

    def undo(self, action_id: str, revision: int, user: str) -> Reply:
        found = self._clicked(action_id, revision)
        if isinstance(found, Reply):
            return found
        action = found
        why_not = self.gate.may_undo(action.tool, Risk(action.risk), action.requester, user)
        if why_not:
            return Reply(ok=False, text=f"You can't undo this: {why_not}.")
        if self.paused:
            return Reply(
                ok=False,
                text=":double_vertical_bar: Warden is paused, so nothing runs "
                "— not even an undo. Try again after /resume.",
            )
        now = self.clock()
        won = self.store.transition(
            action.id,
            [ActionStatus.SUCCEEDED],
            ActionStatus.UNDOING,
            self._audit(user, "action.undo_requested", action.trace_id),
            revision=revision,
            unless_paused=True,
            values={
                "decided_by": user,
                "owner": self.owner,
                "lease_until": now + timedelta(seconds=self._timeout(action)) + LEASE_GRACE,
            },
            where=[col(Action.undo_until).is_not(None), col(Action.undo_until) > now],
        )
        if won is None:
            return Reply(
                ok=False,
                text="This can't be undone any more (the undo window closed, "
                "or it was already undone).",
            )
        self.workers.executors.submit(self._run_undo, action.id)
        self.refresh_card(action.id)
        return Reply(ok=True)

    # -- execution -------------------------------------------------------------------------

    def _timeout(self, action: Action) -> float:
        try:
            return self.registry.get(action.tool).timeout_s
        except WardenError:
            return 60.0

    def execute(self, action_id: str) -> None:
        """Claim an approved action and run it once (executor worker)."""
        action = self.store.get_action(action_id)
        if action is None:
            return
        now = self.clock()
        claimed = self.store.transition(
            action_id,
            [ActionStatus.APPROVED],
            ActionStatus.EXECUTING,
            self._audit("warden", "action.executing", action.trace_id),
            unless_paused=True,
            values={
                "owner": self.owner,
                "lease_until": now + timedelta(seconds=self._timeout(action)) + LEASE_GRACE,
            },
        )
        if claimed is None:
            self._held_by_pause(action_id)
            return
        self.refresh_card(action_id)  # "running…" while it runs
        result = self._run(claimed)
        undo_until = None
        tool = self.registry.get(claimed.tool) if claimed.tool in self.registry else None
        if result.ok and tool is not None and tool.reversible:
            undo_until = self.clock() + self.policy.gate.undo_window
        final, done = self._outcome(
            claimed,
            ActionStatus.EXECUTING,
            result,
            undo_until=undo_until,
            undo_data=json.dumps(result.undo_data) if result.undo_data else None,
        )
        if done is None:
            log.error("action %s finished but its row was no longer ours", action_id)
        self.refresh_card(action_id)
        icon = ":white_check_mark:" if result.ok else ":x:"
        self._post(
            claimed.channel,
            f"{icon} *{claimed.tool}* {final.value} (action `{claimed.id[:8]}`).",
            claimed.thread_ts,
        )

    def _held_by_pause(self, action_id: str) -> None:
        action = self.store.get_action(action_id)
        if action is None or action.status != ActionStatus.APPROVED or not self.paused:
            return
        if action.decided_by == "gate":
            self.store.transition(
                action_id,
                [ActionStatus.APPROVED],
                ActionStatus.AWAITING_APPROVAL,
                self._audit("warden", "action.held", action.trace_id, reason="paused"),
                values={
                    "revision": action.revision + 1,
                    "decided_by": None,
                    "required_approvals": 1,
                    "expires_at": self.clock() + self.policy.gate.approval_ttl,
                    "status_note": "Warden was paused before this ran; it now needs an "
                    "approval after /resume.",
                },
            )
        else:
            self.store.transition(
                action_id,
                [ActionStatus.APPROVED],
                ActionStatus.AWAITING_APPROVAL,
                self._audit("warden", "action.held", action.trace_id, reason="paused"),
                values={
                    "revision": action.revision + 1,
                    "decided_by": None,
                    "status_note": "Warden was paused before this ran; approve again "
                    "after /resume.",
                },
            )
        self.refresh_card(action_id)

    def _bound_approvers(self, action: Action) -> set[str]:
        """Who approved this exact call (revision, arguments, policy) and counts for its tier."""
        approvers = {
            a.approver
            for a in self.store.approvals(action.id, action.revision)
            if a.args_json == action.args_json and a.policy_version == action.policy_version
        }
        if Risk(action.risk) in (Risk.HIGH, Risk.CRITICAL):
            approvers.discard(action.requester)
        return approvers

    def _check_bound(self, action: Action) -> str | None:
        """Re-check at run time that the approval binds this exact call (defence in depth)."""
        if action.policy_version != self.policy.version:
            return "the policy changed after approval"
        if action.decided_by == "gate":
            return None
        if len(self._bound_approvers(action)) < max(1, action.required_approvals):
            return "the approvals on record do not cover this exact call"
        return None

    def _context(self, action: Action) -> ToolContext:
        return ToolContext(
            action_id=action.id,
            trace_id=action.trace_id,
            requester=action.requester,
            channel=action.channel,
            thread_ts=action.thread_ts,
            chat=self.chat,
        )

    def _outcome(
        self, action: Action, before: ActionStatus, result: ToolResult, **values: Any
    ) -> tuple[ActionStatus, Action | None]:
        """Record how a run (`executing`) or an undo (`undoing`) ended, output redacted."""
        ok_state, bad_state = (
            (ActionStatus.SUCCEEDED, ActionStatus.FAILED)
            if before == ActionStatus.EXECUTING
            else (ActionStatus.UNDONE, ActionStatus.UNDO_FAILED)
        )
        final = ok_state if result.ok else bad_state
        output = redact(result.output)
        where = [col(Action.owner) == self.owner] if before == ActionStatus.EXECUTING else []
        row = self.store.transition(
            action.id,
            [before],
            final,
            self._audit("warden", f"action.{final.value}", action.trace_id, output=output[:500]),
            values={
                "result": truncate_middle(output, RESULT_KEEP // 2),
                "lease_until": None,
                **values,
            },
            where=where,
        )
        return final, row

    def _run(self, action: Action) -> ToolResult:
        try:
            tool = self.registry.get(action.tool)
            problem = self._check_bound(action)
            if problem:
                return ToolResult(ok=False, output=f"not run: {problem}")
            args = tool.validate(json.loads(action.args_json))
            if tool.canonical(args) != action.args_json:
                return ToolResult(ok=False, output="not run: arguments are not canonical")
            return tool.run(args, self._context(action))
        except Exception as exc:
            log.exception("action %s raised", action.id)
            return ToolResult(ok=False, output=f"{type(exc).__name__}: {exc}")

    def _run_undo(self, action_id: str) -> None:
        action = self.store.get_action(action_id)
        if action is None or action.status != ActionStatus.UNDOING:
            return
        try:
            tool = self.registry.get(action.tool)
            assert tool.undo is not None
            ctx = self._context(action)
            data = json.loads(action.undo_data) if action.undo_data else {}
            result = tool.undo(tool.validate(json.loads(action.args_json)), ctx, data)
        except Exception as exc:
            result = ToolResult(ok=False, output=f"{type(exc).__name__}: {exc}")
        self._outcome(action, ActionStatus.UNDOING, result, undo_until=None)
        self.refresh_card(action_id)

    # -- kill switch -----------------------------------------------------------------------

    def is_admin(self, user: str) -> bool:
        return user in self.policy.access.admins

    def pause(self, user: str, reason: str) -> Reply:
        if not self.is_admin(user):
            return Reply(ok=False, text="Only Warden admins can /pause.")
        reason = redact(reason.strip())[:300]
        if not self.store.set_paused(
            True, reason, user, self._audit(user, "control.paused", reason=reason)
        ):
            return Reply(ok=True, text="Warden is already paused.")
        self._post(
            self.policy.access.admin_channel,
            f":double_vertical_bar: <@{user}> paused Warden"
            + (f": {self._safe(reason, 300)}." if reason else ".")
            + " Nothing will run until /resume.",
        )
        self._refresh_open_cards()
        return Reply(ok=True, text=":double_vertical_bar: Paused. Nothing will run until /resume.")

    def resume(self, user: str) -> Reply:
        if not self.is_admin(user):
            return Reply(ok=False, text="Only Warden admins can /resume.")
        if not self.store.set_paused(False, "", user, self._audit(user, "control.resumed")):
            return Reply(ok=True, text="Warden is not paused.")
        self._post(
            self.policy.access.admin_channel,
            f":arrow_forward: <@{user}> resumed Warden. Approved actions can run again.",
        )
        self._refresh_open_cards()
        return Reply(ok=True, text=":arrow_forward: Resumed.")

    def _refresh_open_cards(self) -> None:
        """Cards awaiting a decision show whether Warden is paused."""
        self.workers.outbox.submit(self._refresh_open_cards_now)

    def _refresh_open_cards_now(self) -> None:
        for action in self.store.actions_with_status([ActionStatus.AWAITING_APPROVAL], 100):
            self._publish_card(action.id)

    def set_autonomy(self, tool: str, stage: str, user: str) -> None:
        self.store.set_autonomy(
            tool, stage, user, self._audit(user, "tool.autonomy", tool=tool, autonomy=stage)
        )

    # -- sweeps (scheduled) ----------------------------------------------------------------

    def expire(self, action_id: str) -> bool:
        action = self.store.get_action(action_id)
        if action is None:
            return False
        won = self.store.transition(
            action_id,
            [ActionStatus.AWAITING_APPROVAL, ActionStatus.APPROVED],
            ActionStatus.EXPIRED,
            self._audit("warden", "action.expired", action.trace_id),
            where=[col(Action.expires_at) <= self.clock()],
        )
        if won is not None:
            self.refresh_card(action_id)
        return won is not None

    def publish_audit_anchor(self) -> tuple[int, str]:
        """Post the audit chain's tip to the admin channel: a copy outside the database that
        `warden audit verify --anchor SEQ:HASH` checks, so a rewritten chain is caught."""
        seq, digest = self.store.audit_tip()
        if seq:
            self._post(
                self.policy.access.admin_channel,
                f":lock: Audit anchor: row {seq}, hash `{digest}`. "
                f"`warden audit verify --anchor {seq}:{digest}` proves the trail up to here "
                "was not rewritten.",
            )
        return seq, digest

    def sweep_expired(self) -> int:
        return sum(self.expire(i) for i in self.store.expired_awaiting(self.clock()))

    def sweep_undo_windows(self) -> int:
        closed = 0
        for action_id in self.store.undo_window_closed(self.clock()):
            if self.store.close_undo_window(action_id):
                closed += 1
                self.refresh_card(action_id)
        return closed

    def sweep_interrupted(self) -> int:
        """Executions whose worker vanished become `needs_review` — never silently re-run.

        Vanished: its lease ran out, or its owner is dead (no recent heartbeat in `instance`,
        or no row at all). The same rule holds at start-up and in the periodic sweep.
        """
        found = 0
        for action_id in self.store.interrupted(self.clock(), self.owner):
            action = self.store.get_action(action_id)
            if action is None:
                continue
            won = self.store.transition(
                action_id,
                [ActionStatus.EXECUTING, ActionStatus.UNDOING],
                ActionStatus.NEEDS_REVIEW,
                self._audit("warden", "action.needs_review", action.trace_id, was=action.status),
                values={
                    "status_note": "Warden stopped while this was running, so whether it "
                    "finished is unknown. Check by hand; it will not be "
                    "re-run automatically.",
                    "lease_until": None,
                },
            )
            if won is not None:
                found += 1
                self.refresh_card(action_id)
                self._post(
                    self.policy.access.admin_channel,
                    (
                        f":warning: *{action.tool}* (action `{action.id}`, trace "
                        f"`{action.trace_id}`) was interrupted while {_words(action.status)}; "
                        "its outcome is unknown and it needs review."
                    ),
                )
        return found

    def sweep_requests(self) -> int:
        ids = self.store.requests_to_plan()
        for request_id in ids:
            self._queue_plan(request_id)
        return len(ids)

    def sweep_cards(self) -> int:
        self.store.release_dead_card_reservations(self.clock(), self.owner)
        ids = self.store.cards_missing(self.clock() - timedelta(seconds=30))
        for action_id in ids:
            self.refresh_card(action_id)
        for action in self.store.actions_with_status([ActionStatus.APPROVED]):
            if action.updated_at < self.clock() - timedelta(seconds=30):
                self.workers.executors.submit(self.execute, action.id)
        return len(ids)

    def recover(self) -> None:
        """At start-up: register this process as alive, flag runs interrupted by dead ones
        and pick up requests accepted before a crash."""
        self.store.heartbeat(self.owner, self.clock())
        self.sweep_interrupted()
        self.sweep_requests()
        self.sweep_cards()

    # -- views -----------------------------------------------------------------------------

    def awaiting_for(self, user: str) -> list[Action]:
        """Actions the user could approve now (or that they requested and are waiting)."""
        out = []
        for action in self.store.actions_with_status([ActionStatus.AWAITING_APPROVAL]):
            approved = [a.approver for a in self.store.approvals(action.id, action.revision)]
            may = (
                self.gate.may_approve(
                    ActionView(
                        tool=action.tool,
                        requester=action.requester,
                        risk=Risk(action.risk),
                        status=action.status,
                        exclude_requester=Risk(action.risk) in (Risk.HIGH, Risk.CRITICAL),
                        already_approved_by=approved,
                    ),
                    user,
                )
                is None
            )
            if may:
                out.append(action)
        return out


def _usage_dict(usage: Usage) -> dict[str, Any]:
    return {
        "input_tokens": usage.input_tokens,
        "output_tokens": usage.output_tokens,
        "cache_read_tokens": usage.cache_read_tokens,
        "cache_write_tokens": usage.cache_write_tokens,
        "cost_usd": usage.cost_usd,
    }


def _words(status: str) -> str:
    return status.replace("_", " ")


def _field_errors(message: str, tool: str, fields: list[str]) -> dict[str, str]:
    """Map "tool: field: problem; field2: problem" onto the modal's fields."""
    errors: dict[str, str] = {}
    body = message.removeprefix(f"{tool}: ")
    for part in body.split("; "):
        name, _, problem = part.partition(": ")
        errors[name if name in fields else "_"] = problem or part
    return errors


__all__ = ["TERMINAL", "EditForm", "Incoming", "Lifecycle", "Reply"]
