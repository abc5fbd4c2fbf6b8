"""An Approve click that meets the rule claims the run in the statement that approves it —
but only when an executor thread is already waiting for that run. A run that must wait for
a thread is only approved, and its executor asks the gate again when it claims: a pause (or
any change of the rules) that comes meanwhile still holds it."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.app import Warden
from bot.policy import Policy
from storage.models import Action, ActionStatus
from tests.conftest import ADMIN, APPROVER, REQUESTER, RecordingChat
from tests.harness import mention, warden


def runs(tmp_path: Path) -> list[str]:
    log = tmp_path / "runbook.log"
    return log.read_text().splitlines() if log.exists() else []


@pytest.fixture
def waiting(
    database_url: str, policy: Policy, chat: RecordingChat
) -> Iterator[tuple[Warden, Action]]:
    """A Warden and a high-risk card waiting for one approval."""
    with warden(database_url, policy, chat) as w:
        action = mention(w, "restart web", REQUESTER)
        assert action is not None and action.status == ActionStatus.AWAITING_APPROVAL
        yield w, action


def test_a_click_with_a_free_executor_approves_and_claims_in_one_statement(
    waiting: tuple[Warden, Action], tmp_path: Path
) -> None:
    w, action = waiting
    assert w.lifecycle.approvals.approve(action.id, action.revision, APPROVER).ok
    assert w.workers.wait_idle(30)
    assert runs(tmp_path) == [f"restart web {action.id}"]
    done = w.store.get_action(action.id)
    assert done is not None and done.status == ActionStatus.SUCCEEDED
    assert done.decided_at == done.started_at  # approved and claimed by one statement
    moves = [
        (r.kind, r.actor, r.before, r.after)
        for r in w.store.audit_rows(subject=action.id)
        if r.kind in ("action.approved", "action.executing")
    ]
    assert moves == [
        ("action.approved", APPROVER, "awaiting_approval", "approved"),
        ("action.executing", "warden", "approved", "executing"),
    ]
    assert w.store.verify_audit()[1] == []


def test_a_run_queued_behind_busy_executors_is_held_by_a_pause_that_comes_meanwhile(
    waiting: tuple[Warden, Action], tmp_path: Path
) -> None:
    w, action = waiting
    pool = w.workers.executors
    release = threading.Event()
    busy = [pool.submit(release.wait, 30) for _ in range(pool.size)]
    assert all(busy) and pool.saturated
    try:
        reply = w.lifecycle.approvals.approve(action.id, action.revision, APPROVER)
        assert reply.ok, reply.text
        queued = w.store.get_action(action.id)
        assert queued is not None and queued.status == ActionStatus.APPROVED  # not claimed
        assert w.lifecycle.control.pause(ADMIN, "hold everything").ok
    finally:
        release.set()
    assert w.workers.wait_idle(30)
    held = w.store.get_action(action.id)
    assert held is not None and held.status == ActionStatus.APPROVED
    assert runs(tmp_path) == []
    kinds = [r.kind for r in w.store.audit_rows(subject=action.id)]
    assert "action.executing" not in kinds
    w.lifecycle.control.resume(ADMIN, "")
    assert w.workers.wait_idle(30)
    assert runs(tmp_path) == [f"restart web {action.id}"]
