"""Hostile review of the session's changes: the inbox's fair pool with commands going first,
and the path that sends an approved run back to its approvers as a critical call
(`Outcomes.not_runnable`) or re-checks a waiting one to critical (`Approvals.apply_recheck`).

Each test here shows a defect; see the test's docstring for the cause.
"""

from __future__ import annotations

import copy
from datetime import timedelta
from pathlib import Path
from typing import Any

from bot.policy import Policy, parse_policy
from bot.workers import FairPool
from storage.models import ActionStatus
from tests.conftest import ADMIN, APPROVER, APPROVER2, policy_data
from tests.slack_fixtures import CHANNEL, Slack, SlackFactory

# -- the fair pool -------------------------------------------------------------------------


class Slots:
    """The pool's thread pool, made explicit: each submitted slot runs when the test says,
    on the test's thread (a slot run from inside another's work stands for a second thread
    taking work while the first is still busy)."""

    def __init__(self) -> None:
        self.queued: list[tuple[Any, tuple[Any, ...]]] = []

    def submit(self, fn: Any, *args: Any) -> None:
        self.queued.append((fn, args))

    def run_one(self) -> None:
        fn, args = self.queued.pop(0)
        fn(*args)

    def drain(self) -> None:
        while self.queued:
            self.run_one()

    def shutdown(self, wait: bool = True, cancel_futures: bool = False) -> None:
        self.queued.clear()


def explicit_pool(serial: bool) -> tuple[FairPool, Slots]:
    pool = FairPool("inbox", 4, serial=serial)
    pool._executor.shutdown()
    slots = Slots()
    pool._executor = slots  # type: ignore[assignment]
    return pool, slots


def test_a_persons_second_command_does_not_start_while_their_first_still_runs() -> None:
    """The inbox pool is serial: a person's work is handled one item at a time, in order.
    Since this session a person's second command, submitted while their first waits ahead,
    joins their line "in the order it came" — but the first command, taken from the
    `first` queue, never marks its key busy (`FairPool._next` sets `_busy` only for line
    items), so the next free thread takes the second command while the first is still
    being handled: `/warden pause` and the `/warden resume` typed after it run at the same
    time, and either may land last."""
    pool, slots = explicit_pool(serial=True)
    order: list[str] = []

    def first_command() -> None:
        order.append("pause: start")
        slots.run_one()  # another inbox thread becomes free meanwhile
        order.append("pause: end")

    def second_command() -> None:
        order.append("resume")

    assert pool.submit_fair("U0REQ", first_command, first=True)
    assert pool.submit_fair("U0REQ", second_command, first=True)
    slots.run_one()
    slots.drain()
    assert order == ["pause: start", "pause: end", "resume"], order
    assert pool.pending == 0


# -- a call raised to critical keeps a failed dry run as its preview -------------------------


def failing_dry_run_policy(tmp_path: Path, risk: str, timeout: str = "10s") -> Policy:
    """The test policy whose restart_service dry run fails (exit 3), at `risk`."""
    data: dict[str, Any] = policy_data(tmp_path)
    runbook = data["runbooks"]["restart_service"]
    runbook["dry_run"] = ["sh", "-c", "echo cannot reach {service} >&2; exit 3"]
    runbook["risk"] = risk
    runbook["timeout"] = timeout
    return parse_policy(data)


def click(slack: Slack, user: str, card: dict[str, Any], revision: int, action_id: str) -> None:
    delivery = slack.ws.click(
        user, CHANNEL, card["ts"], "warden_approve", seen=card, value=f"{action_id}:{revision}"
    )
    assert delivery.status == 200, delivery.body
    slack.idle()


def slash(slack: Slack, user: str, command: str, text: str = "") -> str:
    delivery = slack.ws.slash(user, CHANNEL, command, text)
    assert delivery.status == 200, delivery.body
    slack.idle()
    return str(delivery.body)


def high_call_with_a_failed_dry_run(slack: Slack) -> tuple[Any, dict[str, Any]]:
    action, card = slack.mention_and_card("restart web")
    assert action.risk == "high" and action.status == ActionStatus.AWAITING_APPROVAL
    # A high call may wait with a failed dry run: its card shows the failure.
    assert action.preview and "dry run failed" in action.preview, action.preview
    return action, copy.deepcopy(card)


def test_a_run_sent_back_as_critical_does_not_count_a_failed_dry_run_as_its_preview(
    slack_factory: SlackFactory, tmp_path: Path
) -> None:
    """A critical call needs a dry run that worked: planning refuses one whose dry run
    failed, and `Preview.ok` False "never counts as a preview". `Outcomes.not_runnable`
    (new this session) makes a fresh dry run only `if ... not action.preview`: a high call
    that waited with a failed dry run's text as its preview keeps that text when the policy
    raises it to critical, so Approve shows (`build_card`, `Gate.approve` only ask whether
    `preview` is set) and two approvals run a critical command whose dry run failed."""
    slack = slack_factory(policy_=failing_dry_run_policy(tmp_path, "high"))
    action, card = high_call_with_a_failed_dry_run(slack)
    assert "Paused" in slash(slack, ADMIN, "/pause", "change freeze")
    click(slack, APPROVER, card, action.revision, action.id)  # recorded, held by the pause
    approved = slack.store.transition(
        action.id,
        [ActionStatus.AWAITING_APPROVAL],
        ActionStatus.APPROVED,
        slack.bot.warden.lifecycle.core.audit(APPROVER, "action.approved", action.trace_id),
        revision=action.revision,
        values={"decided_by": APPROVER},
    )
    assert approved is not None
    slack.bot.stop()
    again = slack_factory(policy_=failing_dry_run_policy(tmp_path, "critical"))

    assert "Resumed" in slash(again, ADMIN, "/resume")  # the held run is sent back
    row = again.store.get_action(action.id)
    assert row is not None and row.risk == "critical"
    for approver in (APPROVER, APPROVER2):
        click(again, approver, card, row.revision, action.id)
    assert again.runs() == [], "a critical call ran although its dry run failed"
    row = again.store.get_action(action.id)
    assert row is not None and row.status == ActionStatus.REFUSED, row.status


def test_a_recheck_to_critical_does_not_count_a_failed_dry_run_as_its_preview(
    slack_factory: SlackFactory, tmp_path: Path
) -> None:
    """The same rule on the click's re-check (`Approvals.apply_recheck`, which now shares
    `raised_to_critical` with `not_runnable`): `decision.needs_preview and not
    action.preview` skips the dry run when the high revision's failed one is on the row."""
    slack = slack_factory(policy_=failing_dry_run_policy(tmp_path, "high"))
    action, card = high_call_with_a_failed_dry_run(slack)
    slack.bot.stop()
    again = slack_factory(policy_=failing_dry_run_policy(tmp_path, "critical"))

    click(again, APPROVER, card, action.revision, action.id)  # re-checked to critical
    row = again.store.get_action(action.id)
    assert row is not None and row.risk == "critical" and row.revision == action.revision + 1
    for approver in (APPROVER, APPROVER2):
        click(again, approver, card, row.revision, action.id)
    assert again.runs() == [], "a critical call ran although its dry run failed"
    row = again.store.get_action(action.id)
    assert row is not None and row.status == ActionStatus.REFUSED, row.status


# -- a critical call whose dry-run hand-off was lost waits without one for good -------------


def test_a_critical_call_whose_dry_run_died_with_its_replica_gets_it_from_the_sweeps(
    slack_factory: SlackFactory, tmp_path: Path
) -> None:
    """`Outcomes.not_runnable` commits the critical revision, then hands its dry run to its
    own planner pool. A pool's queue may be lost in a crash because "start-up recovery and
    the scheduled sweeps pick it up again" (`bot/workers.py`): with two replicas, one that
    dies between the commit and the dry run and does not come back must not leave the
    critical call waiting with no preview and no Approve button until it expires — the
    replica still running makes it in its periodic sweep (`Sweeps.cards` → `previews`),
    once the revision is older than a dry run under way would be."""
    data: dict[str, Any] = policy_data(tmp_path)
    slack = slack_factory(policy_=parse_policy(data))
    action, card = slack.mention_and_card("restart web")
    assert "Paused" in slash(slack, ADMIN, "/pause", "change freeze")
    click(slack, APPROVER, card, action.revision, action.id)
    approved = slack.store.transition(
        action.id,
        [ActionStatus.AWAITING_APPROVAL],
        ActionStatus.APPROVED,
        slack.bot.warden.lifecycle.core.audit(APPROVER, "action.approved", action.trace_id),
        revision=action.revision,
        values={"decided_by": APPROVER, "preview": None},
    )
    assert approved is not None
    slack.bot.stop()
    data["runbooks"]["restart_service"]["risk"] = "critical"
    critical = parse_policy(data)
    dying = slack_factory(policy_=critical)
    survivor = slack_factory(policy_=critical)  # the other replica, up all along
    # `dying` stops right after the commit: whatever dry run it handed to its pool is lost.
    dying.bot.warden.lifecycle.planning.fill_preview = lambda *_: None  # type: ignore[method-assign]
    assert "Resumed" in slash(dying, ADMIN, "/resume")
    row = dying.store.get_action(action.id)
    assert row is not None and row.risk == "critical" and not row.preview
    assert row.status == ActionStatus.AWAITING_APPROVAL
    dying.bot.stop()

    sweeps = survivor.bot.warden.lifecycle.sweeps
    core = survivor.bot.warden.lifecycle.core
    real = core.clock
    core.clock = lambda: real() + timedelta(minutes=1)  # the sweeps run a minute later
    for sweep in (  # every scheduled sweep of `bot.jobs.JOBS` that concerns actions
        sweeps.expired,
        sweeps.waiting_cards,
        sweeps.undo_windows,
        sweeps.interrupted,
        sweeps.requests,
        sweeps.outbox,
        sweeps.cards,
        sweeps.checks,
        sweeps.auto_resume,
    ):
        sweep()
    survivor.idle()
    row = survivor.store.get_action(action.id)
    assert row is not None and row.status == ActionStatus.AWAITING_APPROVAL
    assert row.preview, "the critical call still has no dry run, so nobody can approve it"
