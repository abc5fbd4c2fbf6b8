"""Sweeps: scheduled repairs that make the database's truth happen, whatever crashed.

Each is idempotent and safe on every replica at once (conditional transitions and leases
decide): approvals that outlived `approval_ttl` expire; closed undo windows lose their
button; runs whose process died become `needs_review` (never re-run silently); requests
nobody is planning are queued again; undelivered outbox rows are delivered; approved actions
nobody started are started; due outcome checks run; cards left waiting remind their
approvers, then reach the admin channel (`bot/attention.py`); timed pauses whose time is up
end (each once, announced once); after a resume, what waited on the pause continues.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from bot.approvals import Approvals
from bot.attention import escalate_waiting, remind_waiting
from bot.control import scope_label
from bot.core import Core
from bot.delivery import Delivery
from bot.execution import Execution
from bot.gate_text import span_text, until_text
from bot.gate_types import Pause
from bot.intake import Intake
from bot.planning import Planning
from bot.policy_types import Risk
from storage.models import Action, ActionStatus, PauseKind
from storage.outbox import Notice

STALE = timedelta(seconds=30)
PII_GRACE = timedelta(minutes=10)  # a finished request's sealed values outlive it this long
FACT_RETENTION = timedelta(days=365)  # expired and superseded facts are kept as history
CHECKS = "warden:checks"  # the planner pool's queue key for outcome checks (no user id has ":")


class Sweeps:
    def __init__(
        self,
        core: Core,
        intake: Intake,
        planning: Planning,
        approvals: Approvals,
        execution: Execution,
        delivery: Delivery,
    ) -> None:
        self.core = core
        self.intake = intake
        self.planning = planning
        self.approvals = approvals
        self.execution = execution
        self.delivery = delivery

    def expired(self) -> int:
        core = self.core
        return sum(self.approvals.expire(i) for i in core.store.expired_awaiting(core.clock()))

    def waiting_cards(self) -> int:
        """Cards waiting past `gate.remind_after` remind their approvers by DM; past
        `gate.escalate_after` they are posted to the admin channel — each once per card,
        however many replicas sweep (see `bot.attention`)."""
        return remind_waiting(self.core) + escalate_waiting(self.core)

    def undo_windows(self) -> int:
        core = self.core
        closed = 0
        for action_id in core.store.undo_window_closed(core.clock()):
            if core.store.close_undo_window(action_id):
                closed += 1
                core.store.notify([Notice(action_id=action_id)])
        core.kick()
        return closed

    def interrupted(self) -> int:
        """Executions whose worker vanished become `needs_review` — never silently re-run.

        Vanished: its lease ran out, or its owner is dead (no recent heartbeat in `instance`,
        or no row at all). The same rule holds at start-up and in the periodic sweep.
        """
        core = self.core
        found = 0
        for action_id in core.store.interrupted(core.clock(), core.owner):
            action = core.store.get_action(action_id)
            if action is None:
                continue
            won = core.store.transition(
                action_id,
                [ActionStatus.EXECUTING, ActionStatus.UNDOING],
                ActionStatus.NEEDS_REVIEW,
                core.audit("warden", "action.needs_review", action.trace_id, was=action.status),
                values={
                    "status_note": "Warden stopped while this was running, so whether it "
                    "finished is unknown. Check by hand; it will not be re-run automatically.",
                    "lease_until": None,
                },
                notices=[
                    core.to_admins(
                        f":warning: *{action.tool}* (action `{action.id}`, trace "
                        f"`{action.trace_id}`) was interrupted while "
                        f"{action.status.replace('_', ' ')}; its outcome is unknown and it "
                        "needs review."
                    )
                ],
            )
            if won is not None:
                found += 1
        core.kick()
        return found

    def requests(self) -> int:
        return self.intake.requeue_waiting()

    def outbox(self) -> int:
        return self.delivery.drain()

    def cards(self) -> int:
        """Card reservations of dead processes are released (the outbox then posts them);
        approved actions nobody started (their executor's queue was lost) are started, and
        critical ones whose dry run was lost get it (`previews`)."""
        core = self.core
        released = core.store.release_dead_card_reservations(core.clock(), core.owner)
        if not core.paused:
            for action in core.store.actions_with_status([ActionStatus.APPROVED]):
                if action.updated_at < core.clock() - STALE:
                    self.execution.submit(action.id)
            self.previews(before=core.clock() - STALE)
        return released

    def checks(self) -> int:
        """Outcome checks (a runbook's `verify`): those whose process died go back to pending,
        and due ones are handed to the planner pool's fair queue under their own key — work
        that waits for Slack's acks and takes its turn with people's requests, never their
        place. None is started while paused (the claim checks it again)."""
        core = self.core
        self.execution.requeue_stale_checks()
        if core.paused:
            return 0
        due = core.store.due_checks(core.clock())
        for action_id in due:
            core.workers.planners.submit_fair(CHECKS, self.execution.check, action_id)
        return len(due)

    def auto_resume(self) -> int:
        """Timed pauses whose `until` has passed end by themselves: the global one and each
        scope, each once however many replicas run this (a conditional update's row count
        decides who audits it, as "warden", and announces "Auto-resumed: …" in the admin
        channel, in the same transaction). Then the cards they held are refreshed and what
        waited on them continues (`after_resume`)."""
        core = self.core
        now = core.clock()
        pause, scopes = core.store.pauses()
        ended: list[Pause] = []
        everything = False
        if pause.paused and pause.until is not None and pause.until <= now:
            why = f": {core.safe(pause.reason, 300)}" if pause.reason else ""
            everything = core.store.end_expired_global_pause(
                now,
                core.audit("warden", "control.resumed", auto=True, paused_by=pause.changed_by),
                notices=[
                    core.to_admins(
                        f":arrow_forward: Auto-resumed: Warden's pause by <@{pause.changed_by}>"
                        f" ended at {until_text(pause.until, now)}{why}. Approved actions "
                        "can run again."
                    )
                ],
            )
        for scope in scopes:
            if scope.id is None or scope.until is None or scope.until > now:
                continue
            why = f": {core.safe(scope.reason, 300)}" if scope.reason else ""
            lasted = span_text(scope.until - scope.started_at)
            if core.store.end_pause_scope(
                scope.id,
                "warden",
                now,
                core.audit(
                    "warden",
                    "control.scope_resumed",
                    scope=scope.kind,
                    value=scope.value,
                    auto=True,
                    paused_by=scope.paused_by,
                ),
                notices=[
                    core.to_admins(
                        f":arrow_forward: Auto-resumed: {scope_label(scope.kind, scope.value)}, "
                        f"paused by <@{scope.paused_by}> for {lasted}{why}. Its approved "
                        "actions can run again."
                    )
                ],
                expired=True,
            ):
                ended.append(
                    Pause(kind=PauseKind(scope.kind), value=scope.value, by=scope.paused_by)
                )
        if not everything and not ended:
            return 0
        open_cards = core.store.actions_with_status(
            [ActionStatus.AWAITING_APPROVAL, ActionStatus.APPROVED], 100
        )
        core.store.notify(
            [
                Notice(action_id=a.id)
                for a in open_cards
                if everything or any(p.holds(a.tool, a.channel, a.risk) for p in ended)
            ]
        )
        core.workers.executors.submit(self.after_resume)
        core.kick()
        return len(ended) + everything

    def after_resume(self) -> int:
        """What waited on the pause continues, each asked of the gate again: approved actions
        start; waiting ones whose approvals on record meet their rule start; critical ones
        held for their dry run get it."""
        core = self.core
        if core.paused:
            return 0
        started = 0
        for action in core.store.actions_with_status([ActionStatus.APPROVED], 500):
            self.execution.submit(action.id)
            started += 1
        waiting = core.store.actions_with_status([ActionStatus.AWAITING_APPROVAL], 500)
        approvals = core.store.approvals_for([a.id for a in waiting])
        now = core.clock()
        for action in waiting:
            if action.expires_at is not None and action.expires_at <= now:
                self.approvals.expire(action.id)
                continue
            if self._owes_preview(action):
                continue
            if core.gate.met(action, approvals[action.id], now):
                self.approvals.start(action, "warden")
                started += 1
        self.checks()  # outcome checks that fell due while paused
        return started

    def previews(self, before: datetime | None = None) -> int:
        """Critical calls waiting without their dry run get it: the revision (an Edit, a
        re-check, a run sent back) was committed and its dry run, queued in memory, was lost
        with its process or failed to be stored. At start-up all of them; in the periodic
        sweep (`cards`) those unchanged since `before`, so a dry run under way is left to
        finish. Paused, they wait for `/resume` (`after_resume`)."""
        if self.core.paused:
            return 0
        waiting = self.core.store.actions_with_status([ActionStatus.AWAITING_APPROVAL], 500)
        return sum(
            self._owes_preview(a) for a in waiting if before is None or a.updated_at < before
        )

    def _owes_preview(self, action: Action) -> bool:
        """Queue `action`'s dry run if it is critical and has none; whether it was queued."""
        if Risk(action.risk) is not Risk.CRITICAL or action.preview:
            return False
        self.core.workers.planners.submit_fair(
            action.requester, self.planning.fill_preview, action.id, action.revision
        )
        return True

    def personal_data(self) -> int:
        """See `bot.jobs.forget_personal_data`."""
        core = self.core
        now = core.clock()
        cleared = core.store.clear_finished_pii(now - PII_GRACE, now)
        return cleared + core.store.purge_expired_facts(now - FACT_RETENTION)

    def publish_audit_anchor(self) -> tuple[int, str]:
        """Post the audit chain's tip to the admin channel: a copy outside the database that
        `warden audit verify --anchor SEQ:HASH` checks, so a rewritten chain is caught."""
        core = self.core
        seq, digest = core.store.audit_tip()
        if seq:
            core.store.notify(
                [
                    core.to_admins(
                        f":lock: Audit anchor: row {seq}, hash `{digest}`. "
                        f"`warden audit verify --anchor {seq}:{digest}` proves the trail up to "
                        "here was not rewritten."
                    )
                ]
            )
            core.kick()
        return seq, digest

    def recover(self) -> None:
        """At start-up: register this process as alive, flag runs interrupted by dead ones,
        pick up requests accepted before a crash and deliver what is owed."""
        core = self.core
        core.store.heartbeat(core.owner, core.clock())
        self.interrupted()
        self.requests()
        self.cards()
        self.previews()
        core.kick()
