"""A Hypothesis state machine over the lifecycle: random clicks, edits, pauses and clock jumps.

Invariants checked after every step: each action ran at most once; nothing ran while paused;
high and critical actions ran only with approvals from people other than the requester;
every audited transition is an edge of the lifecycle graph; the audit chain verifies.
"""

from __future__ import annotations

import tempfile
from datetime import timedelta
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from bot.app import Warden
from bot.policy import parse_policy
from storage.models import ActionStatus, utcnow
from tests.conftest import (
    ADMIN,
    APPROVER,
    APPROVER2,
    REQUESTER,
    STRANGER,
    RecordingChat,
    policy_data,
)
from tests.harness import mention, warden

USERS = [REQUESTER, APPROVER, APPROVER2, ADMIN, STRANGER]
REQUESTS = [
    "restart web",
    "scale api in prod",
    "scale api in staging",
    "flush pages",
    "announce hello",
]

# The lifecycle graph. `None` is "not yet stored": only creation edges start there.
EDGES = {
    (None, "awaiting_approval"),
    (None, "approved"),
    (None, "refused"),
    (None, "suggested"),
    ("awaiting_approval", "approved"),
    ("awaiting_approval", "rejected"),
    ("awaiting_approval", "expired"),
    ("awaiting_approval", "awaiting_approval"),
    ("awaiting_approval", "refused"),
    ("approved", "executing"),
    ("approved", "expired"),
    ("approved", "awaiting_approval"),
    ("executing", "succeeded"),
    ("executing", "failed"),
    ("executing", "needs_review"),
    ("succeeded", "undoing"),
    ("undoing", "undone"),
    ("undoing", "undo_failed"),
    ("undoing", "needs_review"),
    ("suggested", "rejected"),
}


class LifecycleMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.tmp = Path(tempfile.mkdtemp())
        self.offset = timedelta(0)
        self.policy = parse_policy(policy_data(self.tmp))
        self.ctx = warden(
            f"sqlite:///{self.tmp / 'w.db'}",
            self.policy,
            RecordingChat(),
            clock=lambda: utcnow() + self.offset,
        )
        self.w: Warden = self.ctx.__enter__()
        self.actions: list[str] = []

    def teardown(self) -> None:
        self.ctx.__exit__(None, None, None)

    @initialize()
    def first_request(self) -> None:
        self.request(REQUESTS[0], REQUESTER)

    @rule(text=st.sampled_from(REQUESTS), user=st.sampled_from([REQUESTER, APPROVER]))
    def request(self, text: str, user: str) -> None:
        action = mention(self.w, text, user)
        if action is not None:
            self.actions.append(action.id)

    def _pick(self, i: int) -> Any:
        return self.w.store.get_action(self.actions[i % len(self.actions)])

    @rule(i=st.integers(0, 20), user=st.sampled_from(USERS), stale=st.booleans())
    def approve(self, i: int, user: str, stale: bool) -> None:
        a = self._pick(i)
        self.w.lifecycle.approvals.approve(a.id, a.revision - 1 if stale else a.revision, user)
        assert self.w.workers.wait_idle(30)

    @rule(i=st.integers(0, 20), user=st.sampled_from(USERS))
    def reject(self, i: int, user: str) -> None:
        a = self._pick(i)
        self.w.lifecycle.approvals.reject(a.id, a.revision, user, "because")

    @rule(
        i=st.integers(0, 20),
        user=st.sampled_from(USERS),
        service=st.sampled_from(["web", "api", "BAD!"]),
    )
    def edit(self, i: int, user: str, service: str) -> None:
        a = self._pick(i)
        if a.tool in ("restart_service",):
            self.w.lifecycle.approvals.edit(a.id, a.revision, user, {"service": service})

    @rule(i=st.integers(0, 20), user=st.sampled_from(USERS))
    def undo(self, i: int, user: str) -> None:
        a = self._pick(i)
        self.w.lifecycle.approvals.undo(a.id, a.revision, user)
        assert self.w.workers.wait_idle(30)

    @rule(user=st.sampled_from([ADMIN, APPROVER]))
    def pause(self, user: str) -> None:
        self.w.lifecycle.control.pause(user, "machine")

    @rule(user=st.sampled_from([ADMIN, APPROVER]))
    def resume(self, user: str) -> None:
        self.w.lifecycle.control.resume(user)

    @rule(hours=st.sampled_from([0.5, 2]))
    def time_passes(self, hours: float) -> None:
        self.offset += timedelta(hours=hours)
        self.w.lifecycle.sweeps.expired()
        self.w.lifecycle.sweeps.undo_windows()
        assert self.w.workers.wait_idle(30)

    @invariant()
    def ran_at_most_once_and_never_while_paused(self) -> None:
        rows = self.w.store.audit_rows(limit=100_000)
        paused = False
        executed: dict[str, int] = {}
        for r in rows:
            if r.kind == "control.paused":
                paused = True
            elif r.kind == "control.resumed":
                paused = False
            elif r.after == "executing":
                assert not paused, "an action started while Warden was paused"
                executed[r.subject] = executed.get(r.subject, 0) + 1
            if r.kind.startswith("action.") and r.subject in self.actions:
                assert (r.before, r.after) in EDGES, (r.kind, r.before, r.after)
        assert all(n == 1 for n in executed.values())
        log = self.tmp / "runbook.log"
        lines = log.read_text().splitlines() if log.exists() else []
        ran = [ln for ln in lines if not ln.startswith("undo")]
        side_effect_runs = sum(
            1 for a in map(self.w.store.get_action, executed) if a and a.tool != "post_message"
        )
        assert len(ran) == side_effect_runs

    @invariant()
    def four_eyes_held(self) -> None:
        for action_id in self.actions:
            a = self.w.store.get_action(action_id)
            assert a is not None
            if a.status in (
                ActionStatus.SUCCEEDED,
                ActionStatus.FAILED,
                ActionStatus.UNDONE,
                ActionStatus.UNDOING,
                ActionStatus.UNDO_FAILED,
            ):
                if a.decided_by == "gate":
                    assert a.risk == "low"
                    continue
                approvers = {x.approver for x in self.w.store.approvals(a.id, a.revision)}
                if a.risk in ("high", "critical"):
                    approvers.discard(a.requester)
                assert len(approvers) >= a.required_approvals

    @invariant()
    def audit_verifies(self) -> None:
        assert self.w.store.verify_audit()[1] == []


LifecycleMachine.TestCase.settings = settings(
    max_examples=25,
    stateful_step_count=20,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestLifecycleMachine = LifecycleMachine.TestCase
