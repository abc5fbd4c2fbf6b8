"""State changes record what they replaced, and concurrent writers still have one winner."""

from __future__ import annotations

import itertools
import threading
from concurrent.futures import ThreadPoolExecutor

from storage.db import Database
from storage.models import Action, ActionStatus, Request, utcnow
from storage.repo import Audit, Store

THREADS = 8


def _action(db: Database, status: str, required_approvals: int = 1) -> str:
    with db.write() as s:
        s.add(
            Request(
                id="r1",
                trace_id="t1",
                channel="C0GENERAL",
                thread_ts="1.000001",
                message_ts="1.000001",
                requester="U0REQ",
                text="restart web",
            )
        )
        s.flush()
        s.add(
            Action(
                id="a1",
                request_id="r1",
                trace_id="t1",
                tool="restart_service",
                args_json='{"service":"web"}',
                policy_version="v1",
                risk="high",
                requester="U0REQ",
                channel="C0GENERAL",
                thread_ts="1.000001",
                status=status,
                required_approvals=required_approvals,
            )
        )
    return "a1"


def _edges(store: Store, action_id: str) -> list[tuple[str | None, str | None]]:
    return [(r.before, r.after) for r in store.audit_rows(subject=action_id)]


def test_transition_from_several_states_records_the_real_one(db: Database) -> None:
    store = Store(db)
    action_id = _action(db, ActionStatus.APPROVED)
    won = store.transition(
        action_id,
        [ActionStatus.AWAITING_APPROVAL, ActionStatus.APPROVED],
        ActionStatus.EXPIRED,
        Audit(actor="warden", kind="action.expired"),
    )
    assert won is not None and won.status == ActionStatus.EXPIRED
    assert _edges(store, action_id) == [("approved", "expired")]
    assert store.verify_audit()[1] == []


def test_transition_not_from_a_listed_state_or_failing_a_condition_changes_nothing(
    db: Database,
) -> None:
    store = Store(db)
    action_id = _action(db, ActionStatus.SUCCEEDED)
    audit = Audit(actor="warden", kind="action.expired")
    froms = [ActionStatus.AWAITING_APPROVAL, ActionStatus.APPROVED]
    assert store.transition(action_id, froms, ActionStatus.EXPIRED, audit) is None
    assert store.transition("nope", froms, ActionStatus.EXPIRED, audit) is None
    froms = [ActionStatus.SUCCEEDED, ActionStatus.APPROVED]
    assert store.transition(action_id, froms, ActionStatus.UNDOING, audit, revision=2) is None
    assert _edges(store, action_id) == []
    row = store.get_action(action_id)
    assert row is not None and row.status == ActionStatus.SUCCEEDED


def test_concurrent_transitions_have_one_winner_and_one_true_audit_row(db: Database) -> None:
    store = Store(db)
    action_id = _action(db, ActionStatus.AWAITING_APPROVAL)
    barrier = threading.Barrier(THREADS)
    # Each racer asks only for moves the lifecycle graph holds: a reject or an approval of
    # a waiting action, an expiry of a waiting or approved one.
    targets = [
        (ActionStatus.REJECTED, [ActionStatus.AWAITING_APPROVAL]),
        (ActionStatus.EXPIRED, [ActionStatus.AWAITING_APPROVAL, ActionStatus.APPROVED]),
        (ActionStatus.APPROVED, [ActionStatus.AWAITING_APPROVAL]),
    ]

    def race(i: int) -> Action | None:
        to_state, froms = targets[i % 3]
        barrier.wait(timeout=30)
        return store.transition(
            action_id, froms, to_state, Audit(actor=f"U{i}", kind="action.race")
        )

    with ThreadPoolExecutor(THREADS) as pool:
        results = list(pool.map(race, range(THREADS)))
    winners = [r for r in results if r is not None]
    edges = _edges(store, action_id)
    # approved → expired may follow awaiting → approved: both are true edges, in order.
    assert 1 <= len(winners) == len(edges) <= 2
    assert edges[0][0] == "awaiting_approval"
    for (_, after), (before, _) in itertools.pairwise(edges):
        assert before == after
    row = store.get_action(action_id)
    assert row is not None and row.status == edges[-1][1]
    assert store.verify_audit()[1] == []


def test_concurrent_approvals_each_count_the_others(db: Database) -> None:
    """Approvers clicking at once: the counts are 1..n, so the last one sees them all."""
    store = Store(db)
    action_id = _action(db, ActionStatus.AWAITING_APPROVAL, required_approvals=2)
    action = store.get_action(action_id)
    assert action is not None
    barrier = threading.Barrier(THREADS)

    def approve(i: int) -> int | None:
        barrier.wait(timeout=30)
        return store.record_approval(action, f"U0APPR{i}", Audit(actor="x", kind="approval.given"))

    with ThreadPoolExecutor(THREADS) as pool:
        counts = list(pool.map(approve, range(THREADS)))
    assert sorted(c for c in counts if c is not None) == list(range(1, THREADS + 1))
    assert set(_edges(store, action_id)) == {("awaiting_approval", "awaiting_approval")}


def test_concurrent_cancels_have_one_winner_and_only_the_run_moves_the_status(
    db: Database,
) -> None:
    """Cancel clicks on several replicas at once: the first asker is recorded, once; asking
    changes no status (the run's end, `executing → cancelled`, is the move); a cancelled
    action may then be undone, and nobody can ask to cancel it any more."""
    store = Store(db)
    action_id = _action(db, ActionStatus.EXECUTING)
    barrier = threading.Barrier(THREADS)
    at = utcnow()

    def cancel(i: int) -> bool:
        barrier.wait(timeout=30)
        return store.request_cancel(
            action_id, f"U0APPR{i}", at, Audit(actor=f"U0APPR{i}", kind="cancel.requested")
        )

    with ThreadPoolExecutor(THREADS) as pool:
        won = list(pool.map(cancel, range(THREADS)))
    assert won.count(True) == 1
    winner = f"U0APPR{won.index(True)}"
    assert store.cancel_requested(action_id) == winner
    rows = store.audit_rows(subject=action_id)
    assert [(r.kind, r.actor, r.before, r.after) for r in rows] == [
        ("cancel.requested", winner, None, None)
    ]
    row = store.get_action(action_id)
    assert row is not None and row.status == ActionStatus.EXECUTING
    assert store.transition(
        action_id,
        [ActionStatus.EXECUTING],
        ActionStatus.CANCELLED,
        Audit(actor=winner, kind="action.cancelled"),
    )
    assert not store.request_cancel(action_id, "U0LATE", at, Audit(actor="U0LATE", kind="x"))
    undo = Audit(actor=winner, kind="action.undo_requested")
    assert store.transition(action_id, [ActionStatus.CANCELLED], ActionStatus.UNDOING, undo)
    assert _edges(store, action_id)[1:] == [("executing", "cancelled"), ("cancelled", "undoing")]
    assert store.verify_audit()[1] == []


def test_first_autonomy_changes_for_a_tool_at_once_all_succeed(db: Database) -> None:
    store = Store(db)
    barrier = threading.Barrier(THREADS)
    stages = ["suggest", "approve"]

    def change(i: int) -> None:
        barrier.wait(timeout=30)
        store.set_autonomy(
            "flush_cache", stages[i % 2], "U0ADMIN", Audit(actor="U0ADMIN", kind="t")
        )

    with ThreadPoolExecutor(THREADS) as pool:
        list(pool.map(change, range(THREADS)))  # re-raises any failure
    edges = _edges(store, "tool:flush_cache")
    assert len(edges) == THREADS
    assert edges[0][0] is None and all(before is not None for before, _ in edges[1:])
    for (_, after), (before, _) in itertools.pairwise(edges):
        assert before == after
    assert store.autonomy_overrides() == {"flush_cache": edges[-1][1]}
