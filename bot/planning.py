"""Planning: a stored request becomes proposals, a question, or an answer.

The planner (aliases, then Claude) only proposes. Each proposed call goes to the gate with
its `Origin` — who asked, where, and whether anything not written by the requester (thread
history, a lookup's output) entered the loop (taint) — and becomes an action row whose
status is the gate's verdict. The answer, the cards and any escalation are owed to Slack in
the same transaction (the outbox), so a crash after planning loses no message.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import replace
from datetime import datetime
from typing import Any

from bot.attention import cover_by_grants
from bot.core import Core, new_id
from bot.errors import PlannerUnavailable
from bot.escalation import critical_notice
from bot.execution import LEASE_GRACE, Execution, Executor
from bot.gate_types import Decision, Origin, Verdict
from bot.logcontext import bind, bound, scoped
from bot.memory import REMEMBER, Memory
from bot.pii import Masker
from bot.planner import (
    Clarify,
    Plan,
    Planner,
    PlanRequest,
    Proposals,
    Turn,
    Usage,
    clean_text,
)
from bot.policy_types import Risk
from bot.redact import redact
from bot.tools import canonical_json
from storage.models import Action, ActionStatus, Request, RequestStatus
from storage.outbox import Notice
from storage.repo import Audit

log = logging.getLogger(__name__)

MAX_CALLS = 10


class Planning:
    def __init__(
        self,
        core: Core,
        planner: Planner,
        executor: Executor,
        execution: Execution,
        memory: Memory,
    ) -> None:
        self.core = core
        self.planner = planner
        self.executor = executor
        self.execution = execution
        self.memory = memory

    @scoped
    def plan(self, request_id: str) -> None:
        """Plan one request (planner worker). Safe to call twice: the lease decides."""
        core = self.core
        bind(request_id=request_id, owner=core.owner)
        agent = core.policy.agent
        # A planner may overrun max_seconds by one model call (see bot/claude.py).
        lease = core.clock() + agent.max_seconds + agent.call_timeout + LEASE_GRACE
        req = core.store.claim_request(request_id, core.owner, lease, core.policy.version)
        if req is None:
            return
        bind(trace_id=req.trace_id)
        log.info("planning the request")
        # One masker for the whole loop: earlier messages, lookup outputs and previews get
        # this request's placeholders, so the model can refer to them consistently.
        masker = core.privacy.masker(req.pii_sealed)
        known = len(masker.mapping)
        history = self._history(req, masker)
        recall = self.memory.recall(clean_text(req.text), req.requester, req.channel)
        lookups: list[str] = []

        def run_read_only(tool: str, args: dict[str, Any]) -> str:
            lookups.append(tool)
            output = self.executor.lookup(
                tool,
                core.privacy.mask_value(masker, args),  # audited as placeholders
                request_id=req.id,
                trace_id=req.trace_id,
                requester=req.requester,
                channel=req.channel,
                thread_ts=req.thread_ts,
                reveal=masker.reveal_value,
            )
            return core.privacy.mask_output(masker, output)

        plan_request = PlanRequest(
            request_id=req.id,
            trace_id=req.trace_id,
            text=req.text,
            requester=req.requester,
            channel=req.channel,
            thread_ts=req.thread_ts,
            history=history,
            run_read_only=run_read_only,
            reveal=masker.reveal_value,
            mask=masker.mask,
            memory=recall.text,
        )
        core.workers.outbox.submit(core.chat.set_status, req.channel, req.thread_ts, "is thinking…")
        try:
            plan: Plan = self.planner.plan(plan_request)
        except PlannerUnavailable as exc:
            core.privacy.save(req.id, masker, known)
            spent = exc.usage if isinstance(exc.usage, Usage) else Usage()
            self._finish(req, RequestStatus.FAILED, unavailable_text(str(exc)), spent)
            return
        except Exception as exc:  # a planner bug must not lose the request
            core.privacy.save(req.id, masker, known)
            log.exception("planner crashed on request %s", req.id)
            why = f"the planner failed ({type(exc).__name__})"
            self._finish(req, RequestStatus.FAILED, unavailable_text(why), Usage())
            return
        if isinstance(plan, Proposals):
            taint = taint_of(history, lookups, recall.others)
            self._propose(req, plan, taint, masker, known)
            return
        # Everything said back is masked, and the mapping saved, before the answer is owed.
        if isinstance(plan, Clarify):
            asked = core.privacy.mask_model_text(masker, plan.question)
            status, text = RequestStatus.PLANNED, f":thinking_face: {core.safe(asked)}"
        else:
            status = RequestStatus.FAILED if plan.retryable else RequestStatus.DONE
            said = core.privacy.mask_model_text(masker, plan.message)
            text = unavailable_text(said) if plan.retryable else core.safe(said)
        core.privacy.save(req.id, masker, known)
        self._finish(req, status, text, plan.usage)

    def _finish(self, req: Request, status: RequestStatus, answer: str, usage: Usage) -> None:
        core = self.core
        if core.store.finish_planning(
            req.id,
            core.owner,
            status,
            answer=answer,
            usage=usage_dict(usage),
            audit_=core.audit("warden", f"request.{status.value}", req.trace_id),
            notices=[
                Notice(channel=req.channel, thread_ts=req.thread_ts, text=answer, request_id=req.id)
            ],
        ):
            log.info("request %s without an action", status.value)
            core.kick()
            core.workers.outbox.submit(core.chat.unreact, req.channel, req.message_ts, "eyes")

    def _history(self, req: Request, masker: Masker) -> tuple[Turn, ...]:
        """Earlier requests in the thread and what came of them, re-masked with this
        request's placeholders (each earlier request numbered its own)."""
        core = self.core
        turns: list[Turn] = []
        for earlier in core.store.thread_requests(req.channel, req.thread_ts):
            if earlier.id == req.id:
                break
            theirs = core.privacy.masker(earlier.pii_sealed)

            def again(text: str, theirs: Masker = theirs) -> str:
                # Stored answers hold placeholders escaped (`&lt;EMAIL_1&gt;`): both forms.
                return masker.mask(core.privacy.reveal_posted(theirs, text, lambda v: v))

            role = "requester" if earlier.requester == req.requester else "other"
            turns.append(Turn(role=role, author=earlier.requester, text=again(earlier.text)))
            if earlier.answer:
                turns.append(Turn(role="warden", author="warden", text=again(earlier.answer)))
            for a in core.store.actions_for_request(earlier.id):
                if a.tool == REMEMBER:
                    continue  # facts reach the model only through memory (and can be forgotten)
                turns.append(
                    Turn(
                        role="warden",
                        author="warden",
                        text=again(
                            f"proposed {a.tool} {a.args_json} — now {a.status}"
                            + (f"; result: {a.result[:500]}" if a.result else "")
                        ),
                    )
                )
        return tuple(turns)

    def _propose(
        self, req: Request, plan: Proposals, taint: str | None, masker: Masker, known: int
    ) -> None:
        core = self.core
        now = core.now()
        actions: list[Action] = []
        audits: list[Audit] = []
        notices: list[Notice] = []
        questions = 0
        per_tool: dict[str, int] = {}
        at = core.clock()
        for call in plan.calls[:MAX_CALLS]:
            name = str(call.tool)
            origin = Origin(
                requester=req.requester,
                channel=req.channel,
                thread_ts=req.thread_ts,
                taint=taint,
                same_tool_earlier=per_tool.get(name, 0),
                # The gate sees real values, so it grounds facts in the real message.
                said=masker.reveal(clean_text(req.text)),
            )
            # The gate judges the real call (patterns, risk from arguments); what is stored
            # holds placeholders again.
            decision = core.gate.decide(
                tool=call.tool,
                args=masker.reveal_value(call.args),
                confidence=call.confidence,
                origin=origin,
                now=now,
            )
            per_tool[name] = per_tool.get(name, 0) + 1
            if decision.verdict is Verdict.CLARIFY:
                questions += 1
                continue
            action = self._action(req, call.rationale, call.confidence, decision, taint, at, masker)
            actions.append(action)
            audits.append(
                core.audit(
                    "planner",
                    "action.proposed",
                    req.trace_id,
                    tool=action.tool,
                    # A fact to remember is audited as a hash: forgetting it must leave no text.
                    args=action.args_json if action.tool != REMEMBER else None,
                    args_sha256=hashlib.sha256(action.args_json.encode()).hexdigest()
                    if action.tool == REMEMBER
                    else None,
                    pii=core.privacy.digests(masker, action.args_json) or None,
                    risk=action.risk,
                    verdict=decision.verdict.value,
                    reason=decision.reason,
                    confidence=call.confidence,
                    taint=taint,
                )
            )
            notices.append(Notice(action_id=action.id))
            if decision.escalate and action.status == ActionStatus.AWAITING_APPROVAL:
                notices.append(critical_notice(core, action, "awaiting two approvals"))
        answer = (
            core.safe(core.privacy.mask_model_text(masker, plan.message), 1500)
            if plan.message
            else None
        )
        if questions and not actions:
            answer = (
                "I'm not confident enough to propose anything yet. Could you say more "
                "precisely what you want done?"
            )
        if answer:
            notices.insert(
                0,
                Notice(
                    channel=req.channel, thread_ts=req.thread_ts, text=answer, request_id=req.id
                ),
            )
        status = RequestStatus.PLANNED if actions or answer else RequestStatus.DONE
        core.privacy.save(req.id, masker, known)
        if not core.store.finish_planning(
            req.id,
            core.owner,
            status,
            answer=answer,
            actions=actions,
            usage=usage_dict(plan.usage),
            action_audits=audits,
            audit_=core.audit("warden", "request.planned", req.trace_id, actions=len(actions)),
            notices=notices,
        ):
            return
        log.info("request planned: %d action(s)", len(actions))
        for action in actions:
            with bound(action_id=action.id):
                log.info("action %s: %s (%s risk)", action.status, action.tool, action.risk)
        core.kick()
        core.workers.outbox.submit(core.chat.unreact, req.channel, req.message_ts, "eyes")
        for action in actions:
            if action.status == ActionStatus.APPROVED:
                self.execution.submit(action.id)
            elif action.status == ActionStatus.AWAITING_APPROVAL:
                # Approvers' 30-minute grants for this exact call, if the gate counts them.
                cover_by_grants(core, self.execution, action)

    def _action(
        self,
        req: Request,
        rationale: str,
        confidence: float,
        decision: Decision,
        taint: str | None,
        now: datetime,
        masker: Masker,
    ) -> Action:
        core = self.core
        status = decision.status
        preview = None
        # A refusal says why; a call held by a human checkpoint (unusual usage) says why too.
        note = decision.reason if status == ActionStatus.REFUSED else decision.checkpoint or None
        if decision.verdict in (Verdict.AWAIT, Verdict.SUGGEST):
            held = core.gate.paused_for(decision.tool, req.channel, decision.risk, core.now())
            if decision.needs_preview and held:
                note = (
                    f"Held: {held}. The dry-run preview runs once the pause is lifted; "
                    "then this can be approved."
                )
            else:
                shown = self.executor.dry_run(
                    decision.tool,
                    decision.args,
                    req.requester,
                    req.trace_id,
                    channel=req.channel,
                    risk=decision.risk.value,
                )
                preview = core.privacy.mask_output(masker, shown.text) if shown.text else shown.text
                if decision.needs_preview and not shown.ok:
                    status = ActionStatus.REFUSED
                    note = f"Critical actions need a {shown.problem}."
        return Action(
            id=new_id(),
            request_id=req.id,
            trace_id=req.trace_id,
            tool=decision.tool,
            args_json=mask_json(core, masker, decision.args_json or "{}"),
            policy_version=decision.policy_version,
            risk=decision.risk.value,
            autonomy=decision.autonomy.value,
            confidence=float(confidence) if isinstance(confidence, int | float) else 0.0,
            rationale=core.privacy.mask_model_text(masker, redact(str(rationale)))[:4000],
            preview=preview,
            required_approvals=decision.required_approvals,
            requester=req.requester,
            channel=req.channel,
            thread_ts=req.thread_ts,
            status=status,
            status_note=note,
            taint=taint if status != ActionStatus.REFUSED else None,
            expires_at=now + core.policy.gate.approval_ttl
            if status == ActionStatus.AWAITING_APPROVAL
            else None,
            decided_by="gate" if status == ActionStatus.APPROVED else None,
        )

    @scoped
    def fill_preview(self, action_id: str, revision: int) -> None:
        """Run a waiting action's dry run (after an Edit, or after /resume for a critical
        action held while paused) off the ack path, and show it on the card."""
        core = self.core
        bind(action_id=action_id, owner=core.owner)
        action = core.store.get_action(action_id)
        if action is None or action.revision != revision:
            return
        bind(trace_id=action.trace_id, request_id=action.request_id)
        if action.status not in (ActionStatus.AWAITING_APPROVAL, ActionStatus.SUGGESTED):
            return
        if Risk(action.risk) is Risk.CRITICAL and core.gate.paused_for(
            action.tool, action.channel, action.risk, core.now()
        ):
            return  # held: its dry run runs once the pause is lifted (`Sweeps.after_resume`)
        shown = self.executor.dry_run(
            action.tool,
            core.privacy.real_args(action),
            action.requester,
            action.trace_id,
            channel=action.channel,
            risk=action.risk,
        )
        if shown.text:
            text = shown.text
            shown = replace(
                shown,
                text=core.privacy.masking(
                    action.request_id, lambda m: core.privacy.mask_output(m, text)
                ),
            )
        if not shown.ok and Risk(action.risk) is Risk.CRITICAL:
            if core.gate.paused_for(action.tool, action.channel, action.risk, core.now()):
                return  # paused since the check above: held until the pause is lifted
            core.store.transition(
                action.id,
                [action.status],
                ActionStatus.REFUSED,
                core.audit("warden", "action.refused", action.trace_id, reason=shown.problem),
                revision=revision,
                values={
                    "preview": shown.text,
                    "status_note": f"Critical actions need a {shown.problem}.",
                },
            )
        else:
            core.store.transition(
                action.id,
                [action.status],
                ActionStatus(action.status),
                core.audit("warden", "action.previewed", action.trace_id),
                revision=revision,
                values={"preview": shown.text, "status_note": None},
            )
        core.kick()


def mask_json(core: Core, masker: Masker, args_json: str) -> str:
    """A call's canonical arguments (JSON) with personal data as this request's
    placeholders (the gate saw the real values; storage and the audit get these)."""
    return canonical_json(core.privacy.mask_value(masker, json.loads(args_json)))


def taint_of(
    history: tuple[Turn, ...], lookups: list[str], memory_by_others: bool = False
) -> str | None:
    """What, not written by the requester, entered a request's loop (None: nothing)."""
    sources = []
    if lookups:
        sources.append("output of " + ", ".join(sorted(set(lookups))))
    if any(t.role != "requester" for t in history):
        sources.append("earlier messages in the thread")
    if memory_by_others:
        sources.append("remembered facts not written by the requester")
    return "; ".join(sources) or None


def unavailable_text(why: str) -> str:
    return (
        f":warning: I couldn't plan this right now: {why}. Your request is saved — "
        "reply `retry` in this thread to try again."
    )


def usage_dict(usage: Usage) -> dict[str, Any]:
    return {
        "input_tokens": usage.input_tokens,
        "output_tokens": usage.output_tokens,
        "cache_read_tokens": usage.cache_read_tokens,
        "cache_write_tokens": usage.cache_write_tokens,
        "cost_usd": usage.cost_usd,
    }
