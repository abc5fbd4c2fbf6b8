"""The lifecycle, assembled: one object holding each step of a request's path.

    intake.Intake        a message becomes a stored request (dedupe, continuation, fairness)
    planning.Planning    the planner proposes; the gate decides; actions and cards are owed
    approvals.Approvals  Approve / Edit / Reject / Undo, each asked of the gate again
    execution.Execution  claim an approved action and run it once through the one Executor
    control.Control      /pause, /resume, run-time autonomy
    governor.Governor    demotes an `auto` tool whose failure, override or 👎 rate turns bad
    alerts.Alerts        [alerts] evaluated each minute, posted to the admin channel
    feedback.Feedback    👍 / 👎 (buttons, reactions, a comment) on actions that have ended
    sweeps.Sweeps        scheduled repairs (expiry, undo windows, interrupted runs, resume)
    delivery.Delivery    the outbox worker that brings Slack up to date

`handlers/` calls these; they share a `Core` (policy, tools, gate, store, pools, clock).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime

from bot.alerts import Alerts
from bot.approvals import Approvals
from bot.chat import Chat
from bot.control import Control
from bot.core import Core
from bot.delivery import Delivery
from bot.execution import Execution, Executor
from bot.feedback import Feedback
from bot.governor import Governor
from bot.intake import Intake
from bot.memory import Memory
from bot.planner import Planner
from bot.planning import Planning
from bot.policy import Policy
from bot.settings import insecure_dev_data_key
from bot.sweeps import Sweeps
from bot.tools import ToolRegistry
from bot.workers import Workers
from storage.models import utcnow
from storage.repo import Store


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
        data_key: bytes | None = None,
        evaluation: Mapping[str, str] | None = None,
    ) -> None:
        """`evaluation`: lookup outputs for `warden eval`; no tool code runs (`Executor`)."""
        self.core = core = Core(
            policy=policy,
            registry=registry,
            store=store,
            chat=chat,
            workers=workers,
            clock=clock,
            data_key=data_key or insecure_dev_data_key(),
        )
        self.planner = planner
        self.memory = Memory(core)
        self.governor = Governor(core)  # after memory: told of outcomes once stored
        self.alerts = Alerts(core)
        self.delivery = Delivery(core, self.memory)
        self.executor = Executor(core, evaluation)
        # A run sent back to its approvers may need a dry run, which planning makes (it is
        # built next, so the call is looked up when it happens).
        self.execution = Execution(
            core, self.executor, lambda action_id, rev: self.planning.fill_preview(action_id, rev)
        )
        self.planning = Planning(core, planner, self.executor, self.execution, self.memory)
        self.intake = Intake(core, self.planning.plan)
        self.approvals = Approvals(core, self.execution, self.planning.fill_preview)
        self.sweeps = Sweeps(
            core, self.intake, self.planning, self.approvals, self.execution, self.delivery
        )
        self.control = Control(core, self.sweeps.after_resume)
        self.feedback = Feedback(core)

    @property
    def policy(self) -> Policy:
        return self.core.policy

    @property
    def store(self) -> Store:
        return self.core.store

    @property
    def owner(self) -> str:
        return self.core.owner

    @property
    def workers(self) -> Workers:
        return self.core.workers

    def stop(self) -> None:
        self.executor.shutdown()
