"""Runs left `executing` by a dead process are found from heartbeats, not only from leases."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

from bot import jobs
from bot.app import Warden
from bot.policy import Policy
from storage.models import Action, ActionStatus, utcnow
from storage.outbox import OWNER_DEAD_AFTER
from tests.conftest import APPROVER, REQUESTER, RecordingChat
from tests.harness import mention, warden


def _executing(w: Warden, owner: str, lease_until: datetime) -> Action:
    """A proposed action, approved, that some process claimed and is (or was) running."""
    action = mention(w, "restart web", REQUESTER)
    assert action is not None
    approved = w.store.transition(
        action.id,
        [ActionStatus.AWAITING_APPROVAL],
        ActionStatus.APPROVED,
        w.lifecycle.core.audit(APPROVER, "action.approved"),
        values={"decided_by": APPROVER},
    )
    assert approved is not None
    claimed = w.store.transition(
        action.id,
        [ActionStatus.APPROVED],
        ActionStatus.EXECUTING,
        w.lifecycle.core.audit("warden", "action.executing"),
        values={"owner": owner, "lease_until": lease_until},
    )
    assert claimed is not None
    return claimed


def _status(w: Warden, action: Action) -> str:
    row = w.store.get_action(action.id)
    assert row is not None
    return row.status


def _review_alerts(chat: RecordingChat, action: Action) -> list[str]:
    return [
        p["text"]
        for p in chat.posts
        if p["channel"] == "C0OPS" and "needs review" in p["text"] and action.id in p["text"]
    ]


def test_run_of_a_dead_owner_is_flagged_at_start_up_and_a_live_one_is_left_alone(
    database_url: str, policy: Policy, chat: RecordingChat, tmp_path: Path
) -> None:
    lease = utcnow() + timedelta(hours=1)  # no lease has run out: only heartbeats tell
    with warden(database_url, policy, chat) as w:
        w.store.heartbeat("dead-replica", utcnow() - OWNER_DEAD_AFTER - timedelta(seconds=5))
        w.store.heartbeat("live-replica", utcnow())
        dead = _executing(w, "dead-replica", lease)
        unknown = _executing(w, "never-registered", lease)
        live = _executing(w, "live-replica", lease)

    with warden(database_url, policy, chat) as w2:
        w2.start()
        try:
            assert w2.workers.wait_idle(30)
            assert _status(w2, dead) == ActionStatus.NEEDS_REVIEW
            assert _status(w2, unknown) == ActionStatus.NEEDS_REVIEW
            assert _status(w2, live) == ActionStatus.EXECUTING
            assert len(_review_alerts(chat, dead)) == 1
            assert len(_review_alerts(chat, unknown)) == 1
            assert _review_alerts(chat, live) == []
            assert w2.lifecycle.owner in {i.owner for i in w2.store.instances()}
            rows = w2.store.audit_rows(subject=dead.id)
            assert (rows[-1].before, rows[-1].after) == ("executing", "needs_review")
            assert not (tmp_path / "runbook.log").exists()  # nothing was re-run
        finally:
            w2.jobs.stop()


def test_periodic_sweep_flags_an_owner_whose_heartbeat_stopped(
    database_url: str, policy: Policy, chat: RecordingChat
) -> None:
    # Warden's clock stands still but for `offset`, so a slow machine cannot age the other
    # replica's heartbeat past the margin this test sets.
    offset, base = [timedelta(0)], utcnow()
    with warden(database_url, policy, chat, clock=lambda: base + offset[0]) as w:
        w.lifecycle.sweeps.recover()
        lease = base + timedelta(hours=1)
        w.store.heartbeat("other-replica", base)
        other = _executing(w, "other-replica", lease)
        mine = _executing(w, w.lifecycle.owner, lease)
        assert w.lifecycle.sweeps.interrupted() == 0

        # This process keeps beating; the other one died just now.
        offset[0] = OWNER_DEAD_AFTER - timedelta(seconds=1)
        jobs.heartbeat(w.jobs.instance)
        assert w.lifecycle.sweeps.interrupted() == 0
        offset[0] = OWNER_DEAD_AFTER + timedelta(seconds=1)
        assert w.lifecycle.sweeps.interrupted() == 1
        assert w.workers.wait_idle(30)
        assert _status(w, other) == ActionStatus.NEEDS_REVIEW
        assert len(_review_alerts(chat, other)) == 1
        # Its own run is never judged by its own heartbeat, only by its lease.
        offset[0] = timedelta(hours=2)
        assert _status(w, mine) == ActionStatus.EXECUTING
        assert w.lifecycle.sweeps.interrupted() == 1
        assert _status(w, mine) == ActionStatus.NEEDS_REVIEW
        w.jobs.stop()


def test_heartbeat_job_refreshes_and_clean_stop_removes_the_instance(
    database_url: str, policy: Policy, chat: RecordingChat
) -> None:
    offset = [timedelta(0)]
    with warden(database_url, policy, chat, clock=lambda: utcnow() + offset[0]) as w:
        w.lifecycle.sweeps.recover()
        (row,) = w.store.instances()
        assert row.owner == w.lifecycle.owner
        assert any(j.func == "bot.jobs:heartbeat" and j.seconds <= 10 for j in jobs.JOBS)
        offset[0] = timedelta(minutes=5)
        jobs.heartbeat(w.jobs.instance)
        (later,) = w.store.instances()
        assert later.started_at == row.started_at
        assert later.heartbeat_at - row.heartbeat_at >= timedelta(minutes=5)
        w.stop()
        w.db = type(w.db)(database_url)  # stop() disposed the engines; look with fresh ones
        w.store.db = w.db
        assert w.store.instances() == []
