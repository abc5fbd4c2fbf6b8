"""The lifecycle on SQLite and PostgreSQL: exactly once, the kill switch, audit, recovery."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

from bot.core import Reply
from bot.gate_types import Now
from bot.policy import Policy
from storage.models import Action, ActionStatus, AuditEvent, utcnow
from storage.repo import UNSURE
from tests.conftest import (
    ADMIN,
    APPROVER,
    APPROVER2,
    APPROVER3,
    REQUESTER,
    STRANGER,
    RecordingChat,
)
from tests.harness import mention, warden


def runs(tmp_path: Path, word: str = "restart") -> list[str]:
    log = tmp_path / "runbook.log"
    if not log.exists():
        return []
    return [line for line in log.read_text().splitlines() if line.startswith(word)]


def test_fifty_concurrent_approvals_run_once(
    database_url: str, policy: Policy, chat: RecordingChat, tmp_path: Path
) -> None:
    with warden(database_url, policy, chat) as w:
        action = mention(w, "restart checkout-api", REQUESTER)
        assert action is not None and action.status == ActionStatus.AWAITING_APPROVAL
        barrier = threading.Barrier(50)

        def click(i: int) -> Reply:
            barrier.wait()
            return w.lifecycle.approvals.approve(
                action.id, action.revision, APPROVER if i % 2 else APPROVER2
            )

        with ThreadPoolExecutor(50) as pool:
            results = list(pool.map(click, range(50)))
        assert w.workers.wait_idle(30)
        # Exactly one click started it; an approval recorded as it started is told so.
        started = [r for r in results if r.ok and not r.text]
        assert len(started) == 1
        assert all("already started" in r.text for r in results if r.ok and r.text)
        final = w.store.get_action(action.id)
        assert final is not None and final.status == ActionStatus.SUCCEEDED
        lines = runs(tmp_path)
        assert lines == [f"restart checkout-api {action.id}"]
        kinds = [r.kind for r in w.store.audit_rows(subject=action.id)]
        assert kinds.count("action.approved") == kinds.count("action.executing") == 1
        count, problems = w.store.verify_audit()
        assert problems == [] and count > 4


def test_four_eyes_and_wrong_user(
    database_url: str, policy: Policy, chat: RecordingChat, tmp_path: Path
) -> None:
    with warden(database_url, policy, chat) as w:
        action = mention(w, "restart web", REQUESTER)
        assert action is not None
        own = w.lifecycle.approvals.approve(action.id, 1, REQUESTER)
        assert not own.ok and "four eyes" in own.text
        stranger = w.lifecycle.approvals.approve(action.id, 1, STRANGER)
        assert not stranger.ok and "not an approver" in stranger.text
        assert w.workers.wait_idle(10)
        assert runs(tmp_path) == []
        assert w.lifecycle.approvals.approve(action.id, 1, APPROVER).ok
        assert w.workers.wait_idle(30)
        assert len(runs(tmp_path)) == 1


def test_critical_needs_two_distinct_approvers(
    database_url: str, policy: Policy, chat: RecordingChat, tmp_path: Path
) -> None:
    with warden(database_url, policy, chat) as w:
        action = mention(w, "scale api in prod", REQUESTER)
        assert action is not None and action.required_approvals == 2
        assert action.preview and "would scale api in prod" in action.preview
        assert any(p["channel"] == "C0OPS" and "Critical" in p["text"] for p in chat.posts)
        first = w.lifecycle.approvals.approve(action.id, 1, APPROVER)
        assert first.ok and "1 of 2" in first.text
        again = w.lifecycle.approvals.approve(action.id, 1, APPROVER)
        assert not again.ok
        assert w.workers.wait_idle(10) and runs(tmp_path, "scale") == []
        assert w.lifecycle.approvals.approve(action.id, 1, APPROVER2).ok
        assert w.workers.wait_idle(30)
        assert runs(tmp_path, "scale") == ["scale api prod"]


def test_pause_blocks_execution_and_card_stays_approvable(
    database_url: str, policy: Policy, chat: RecordingChat, tmp_path: Path
) -> None:
    with warden(database_url, policy, chat) as w:
        action = mention(w, "restart web", REQUESTER)
        assert action is not None
        assert not w.lifecycle.control.pause(APPROVER, "nope").ok  # not an admin
        assert w.lifecycle.control.pause(ADMIN, "incident 42").ok
        assert w.workers.wait_idle(10)
        assert any(
            p["channel"] == "C0OPS" and "paused Warden" in p["text"] and "incident 42" in p["text"]
            for p in chat.posts
        )
        # While paused an approval is recorded, and nothing runs.
        reply = w.lifecycle.approvals.approve(action.id, 1, APPROVER)
        assert reply.ok and "paused" in reply.text and "/resume" in reply.text
        assert w.workers.wait_idle(10) and runs(tmp_path) == []
        row = w.store.get_action(action.id)
        assert row is not None and row.status == ActionStatus.AWAITING_APPROVAL
        assert [a.approver for a in w.store.approvals(action.id, 1)] == [APPROVER]
        card = chat.updates[-1]["card"]
        assert card.paused and card.approved_by == (APPROVER,)
        # /resume starts what was approved while paused, once, without another click.
        assert w.lifecycle.control.resume(ADMIN).ok
        assert w.workers.wait_idle(30) and len(runs(tmp_path)) == 1
        again = w.lifecycle.approvals.approve(action.id, 1, APPROVER)
        assert not again.ok and "already approved" in again.text
        assert w.workers.wait_idle(30) and len(runs(tmp_path)) == 1
        kinds = [r.kind for r in w.store.audit_rows(subject="control")]
        assert kinds == ["control.paused", "control.resumed"]


def test_pause_committed_before_claim_wins(
    database_url: str, policy: Policy, chat: RecordingChat, tmp_path: Path
) -> None:
    with warden(database_url, policy, chat) as w:
        action = mention(w, "restart web", REQUESTER)
        assert action is not None
        # Approved, then paused before the executor claims it.
        core = w.lifecycle.core
        assert w.store.record_approval(action, APPROVER, core.audit(APPROVER, "approval.given"))
        won = w.store.transition(
            action.id,
            [ActionStatus.AWAITING_APPROVAL],
            ActionStatus.APPROVED,
            w.lifecycle.core.audit(APPROVER, "action.approved"),
            values={"decided_by": APPROVER},
        )
        assert won is not None
        w.lifecycle.control.pause(ADMIN, "")
        w.lifecycle.execution.execute(action.id)
        assert w.workers.wait_idle(10)
        # Paused, it stays approved (it runs after /resume), and nothing ran.
        row = w.store.get_action(action.id)
        assert row is not None and row.status == ActionStatus.APPROVED
        assert row.revision == 1 and runs(tmp_path) == []
        # The claim itself carries "and not paused": an executor whose gate check saw
        # Warden running still loses to a pause that committed first.
        core.now = lambda: Now(paused=False, autonomy={}, at=utcnow())  # type: ignore[method-assign]
        w.lifecycle.execution.execute(action.id)
        del core.now
        assert w.workers.wait_idle(10)
        row = w.store.get_action(action.id)
        assert row is not None and row.status == ActionStatus.APPROVED and runs(tmp_path) == []
        assert "action.executing" not in [r.kind for r in w.store.audit_rows(subject=action.id)]
        w.lifecycle.control.resume(ADMIN)
        assert w.workers.wait_idle(30)
        assert runs(tmp_path) == [f"restart web {action.id}"]


def test_low_risk_auto_runs_without_a_click(
    database_url: str, policy: Policy, chat: RecordingChat
) -> None:
    with warden(database_url, policy, chat) as w:
        action = mention(w, "announce deploy finished", REQUESTER)
        assert action is not None
        row = w.store.get_action(action.id)
        assert row is not None and row.status == ActionStatus.SUCCEEDED
        assert any(
            p["channel"] == "C0GENERAL" and p["text"] == "deploy finished" for p in chat.posts
        )


def test_reject_edit_and_stale_clicks(
    database_url: str, policy: Policy, chat: RecordingChat, tmp_path: Path
) -> None:
    with warden(database_url, policy, chat) as w:
        action = mention(w, "restart web", REQUESTER)
        assert action is not None
        errors = w.lifecycle.approvals.edit(action.id, 1, APPROVER, {"service": "Bad Name!"})
        assert isinstance(errors, dict) and "service" in errors
        assert w.lifecycle.approvals.edit(action.id, 1, STRANGER, {"service": "api"}).ok is False  # type: ignore[union-attr]
        result = w.lifecycle.approvals.edit(action.id, 1, APPROVER, {"service": "api"})
        assert not isinstance(result, dict) and result.ok
        stale = w.lifecycle.approvals.approve(action.id, 1, APPROVER)
        assert not stale.ok and "changed" in stale.text
        row = w.store.get_action(action.id)
        assert row is not None and row.revision == 2 and '"api"' in row.args_json
        assert w.lifecycle.approvals.reject(action.id, 2, STRANGER, "no").ok is False
        assert w.lifecycle.approvals.reject(action.id, 2, APPROVER, "not today").ok
        assert not w.lifecycle.approvals.approve(action.id, 2, APPROVER2).ok
        assert w.workers.wait_idle(10) and runs(tmp_path) == []
        row = w.store.get_action(action.id)
        assert row is not None and row.status == ActionStatus.REJECTED
        assert row.status_note == "Reason: not today"


def test_edit_voids_earlier_approvals(
    database_url: str, policy: Policy, chat: RecordingChat, tmp_path: Path
) -> None:
    with warden(database_url, policy, chat) as w:
        action = mention(w, "scale api in prod", REQUESTER)
        assert action is not None
        assert w.lifecycle.approvals.approve(action.id, 1, APPROVER).ok
        edited = w.lifecycle.approvals.edit(
            action.id, 1, APPROVER3, {"service": "web", "env": "prod"}
        )
        assert not isinstance(edited, dict) and edited.ok
        assert w.workers.wait_idle(30)  # the edited call's dry run, made after the ack
        row = w.store.get_action(action.id)
        assert row is not None and row.edited_by == APPROVER3
        assert row.preview and "would scale web in prod" in row.preview
        # The first approval was for revision 1; revision 2 needs two fresh approvals.
        assert "1 of 2" in w.lifecycle.approvals.approve(action.id, 2, APPROVER2).text
        # The editor counts as a requester (four eyes).
        own = w.lifecycle.approvals.approve(action.id, 2, APPROVER3)
        assert not own.ok and "four eyes" in own.text
        assert w.workers.wait_idle(10) and runs(tmp_path, "scale") == []
        assert w.lifecycle.approvals.approve(action.id, 2, APPROVER).ok
        assert w.workers.wait_idle(30)
        assert runs(tmp_path, "scale") == ["scale web prod"]


def test_expiry(database_url: str, policy: Policy, chat: RecordingChat, tmp_path: Path) -> None:
    clock_offset = [timedelta(0)]
    with warden(database_url, policy, chat, clock=lambda: utcnow() + clock_offset[0]) as w:
        action = mention(w, "restart web", REQUESTER)
        assert action is not None
        clock_offset[0] = timedelta(hours=2)
        assert w.lifecycle.sweeps.expired() == 1
        reply = w.lifecycle.approvals.approve(action.id, 1, APPROVER)
        assert not reply.ok
        assert w.workers.wait_idle(10) and runs(tmp_path) == []
        row = w.store.get_action(action.id)
        assert row is not None and row.status == ActionStatus.EXPIRED


def test_undo_within_window(
    database_url: str, policy: Policy, chat: RecordingChat, tmp_path: Path
) -> None:
    clock_offset = [timedelta(0)]
    with warden(database_url, policy, chat, clock=lambda: utcnow() + clock_offset[0]) as w:
        a = mention(w, "restart web", REQUESTER)
        b = mention(w, "restart api", REQUESTER)
        assert a is not None and b is not None
        for act in (a, b):
            assert w.lifecycle.approvals.approve(act.id, 1, APPROVER).ok
        assert w.workers.wait_idle(30)
        # Undo of a high-risk action follows four eyes too: not the requester, not a stranger.
        assert "other than the requester" in w.lifecycle.approvals.undo(a.id, 1, REQUESTER).text
        assert "other than the requester" in w.lifecycle.approvals.undo(a.id, 1, STRANGER).text
        assert w.lifecycle.approvals.undo(a.id, 1, APPROVER).ok
        assert w.workers.wait_idle(30)
        assert runs(tmp_path, "undo") == ["undo web"]
        assert not w.lifecycle.approvals.undo(a.id, 1, APPROVER).ok  # only once
        clock_offset[0] = timedelta(hours=2)
        assert w.lifecycle.sweeps.undo_windows() == 1
        assert not w.lifecycle.approvals.undo(b.id, 1, APPROVER).ok
        row = w.store.get_action(a.id)
        assert row is not None and row.status == ActionStatus.UNDONE


def test_interrupted_execution_becomes_needs_review(
    database_url: str, policy: Policy, chat: RecordingChat, tmp_path: Path
) -> None:
    with warden(database_url, policy, chat) as w:
        action = mention(w, "restart web", REQUESTER)
        assert action is not None
        assert w.store.transition(
            action.id,
            [ActionStatus.AWAITING_APPROVAL],
            ActionStatus.APPROVED,
            w.lifecycle.core.audit(APPROVER, "action.approved"),
        )
        assert w.store.transition(
            action.id,
            [ActionStatus.APPROVED],
            ActionStatus.EXECUTING,
            w.lifecycle.core.audit("warden", "action.executing"),
            values={"owner": "dead-replica", "lease_until": utcnow() - timedelta(seconds=1)},
        )
    # A new process starts on the same database.
    with warden(database_url, policy, chat) as w2:
        w2.start()
        try:
            assert w2.workers.wait_idle(10)
            row = w2.store.get_action(action.id)
            assert row is not None and row.status == ActionStatus.NEEDS_REVIEW
            assert any(p["channel"] == "C0OPS" and "needs review" in p["text"] for p in chat.posts)
            assert runs(tmp_path) == []
        finally:
            w2.jobs.stop()


def test_request_accepted_before_crash_is_planned_after_restart(
    database_url: str, policy: Policy, chat: RecordingChat
) -> None:
    from bot.intake import Incoming

    with warden(database_url, policy, chat) as w:
        w.workers.planners.shutdown(wait=True)  # the crash: nothing will plan it here
        assert w.lifecycle.intake.accept(
            Incoming(
                event_id="EvCRASH",
                channel="C0GENERAL",
                user=REQUESTER,
                text="restart web",
                ts="1.000001",
            )
        )
    with warden(database_url, policy, chat) as w2:
        w2.lifecycle.sweeps.recover()
        assert w2.workers.wait_idle(30)
        req = w2.store.latest_request_in_thread("C0GENERAL", "1.000001")
        assert req is not None and req.status == "planned"
        actions = w2.store.actions_for_request(req.id)
        assert [a.status for a in actions] == [ActionStatus.AWAITING_APPROVAL]


def test_duplicate_event_id_is_one_request(
    database_url: str, policy: Policy, chat: RecordingChat
) -> None:
    from bot.intake import Incoming

    with warden(database_url, policy, chat) as w:
        msg = Incoming(
            event_id="EvSAME",
            channel="C0GENERAL",
            user=REQUESTER,
            text="restart web",
            ts="1.000002",
        )
        with ThreadPoolExecutor(10) as pool:
            accepted = list(pool.map(lambda _: w.lifecycle.intake.accept(msg), range(10)))
        assert accepted.count(True) == 1
        assert w.workers.wait_idle(30)
        assert len([p for p in chat.posts if p["card"]]) == 1


def test_audit_chain_detects_tampering(
    database_url: str, policy: Policy, chat: RecordingChat
) -> None:
    from sqlalchemy import text

    with warden(database_url, policy, chat) as w:
        for service in ("a", "b", "c"):
            mention(w, f"restart {service}", REQUESTER)
        count, problems = w.store.verify_audit()
        assert problems == [] and count >= 9

        def broken_after(sql: str) -> list[str]:
            with w.db.engine.begin() as conn:
                conn.execute(text(sql))
            return [p.message for p in w.store.verify_audit()[1]]

        rows = w.store.audit_rows()
        original = rows[3]
        assert any(
            "altered" in m
            for m in broken_after(
                f"UPDATE audit_event SET actor = 'mallory' WHERE seq = {original.seq}"
            )
        )
        broken_after(
            f"UPDATE audit_event SET actor = '{original.actor}' WHERE seq = {original.seq}"
        )
        assert w.store.verify_audit()[1] == []
        last = rows[-1]
        assert any(
            "removed from the end" in m
            for m in broken_after(f"DELETE FROM audit_event WHERE seq = {last.seq}")
        )


def test_audit_deletion_and_reorder_detected(
    database_url: str, policy: Policy, chat: RecordingChat
) -> None:
    from sqlalchemy import text

    with warden(database_url, policy, chat) as w:
        mention(w, "restart a", REQUESTER)
        with w.db.engine.begin() as conn:
            conn.execute(text("DELETE FROM audit_event WHERE seq = 2"))
        msgs = [p.message for p in w.store.verify_audit()[1]]
        assert any("row 3: expected row 2" in m for m in msgs)
    with warden(database_url, policy, chat) as w:
        mention(w, "restart b", REQUESTER)
        rows = w.store.audit_rows()
        a, b = rows[-2], rows[-3]
        with w.db.engine.begin() as conn:
            conn.execute(text(f"UPDATE audit_event SET seq = -1 WHERE seq = {a.seq}"))
            conn.execute(text(f"UPDATE audit_event SET seq = {a.seq} WHERE seq = {b.seq}"))
            conn.execute(text(f"UPDATE audit_event SET seq = {b.seq} WHERE seq = -1"))
        assert w.store.verify_audit()[1]


def test_every_transition_is_audited(
    database_url: str, policy: Policy, chat: RecordingChat
) -> None:
    with warden(database_url, policy, chat) as w:
        action = mention(w, "restart web", REQUESTER)
        assert action is not None
        w.lifecycle.approvals.approve(action.id, 1, APPROVER)
        assert w.workers.wait_idle(30)
        rows: list[AuditEvent] = w.store.audit_rows(subject=action.id)
        path = [(r.before, r.after) for r in rows if r.kind.startswith("action.")]
        assert path == [
            (None, "awaiting_approval"),
            ("awaiting_approval", "approved"),
            ("approved", "executing"),
            ("executing", "succeeded"),
        ]
        assert all(
            r.trace_id == action.trace_id and r.policy_version == policy.version for r in rows
        )
        assert any(r.kind == "approval.given" and r.actor == APPROVER for r in rows)


def _unused(_: Action) -> None:
    pass


def test_secrets_in_command_output_never_reach_the_audit_log(
    database_url: str, chat: RecordingChat, tmp_path: Path
) -> None:
    from bot.policy import parse_policy
    from tests.conftest import policy_data

    data = policy_data(tmp_path)
    data["runbooks"]["leak"] = {
        "description": "Print a credential",
        "command": ["echo", "connected with password=hunter22 token xoxb-123456789012-abcdef"],
        "risk": "medium",
    }
    data["aliases"]["leak"] = {"runbook": "leak"}
    with warden(database_url, parse_policy(data), chat) as w:
        action = mention(w, "leak", REQUESTER)
        assert action is not None
        assert w.lifecycle.approvals.approve(action.id, action.revision, APPROVER).ok
        assert w.workers.wait_idle(30)
        done = w.store.get_action(action.id)
        assert done is not None and done.status == ActionStatus.SUCCEEDED
        stored = done.result or ""
        audited = " ".join(str(a.data) for a in w.store.audit_rows(subject=action.id))
        for text in (stored, audited):
            assert "hunter22" not in text and "xoxb-123456789012" not in text
        assert "[redacted" in audited


def test_pause_between_approval_and_start_leaves_the_action_runnable(
    database_url: str, policy: Policy, chat: RecordingChat, tmp_path: Path
) -> None:
    with warden(database_url, policy, chat) as w:
        action = mention(w, "restart web", REQUESTER)
        assert action is not None
        record = w.store.record_approval

        def record_then_pause(*args: object, **kwargs: object) -> int | None:
            count = record(*args, **kwargs)  # type: ignore[arg-type]
            w.lifecycle.control.pause(ADMIN, "racing")  # commits between approval and transition
            return count

        w.store.record_approval = record_then_pause  # type: ignore[method-assign]
        reply = w.lifecycle.approvals.approve(action.id, action.revision, APPROVER)
        del w.store.record_approval
        assert reply.ok and "paused" in reply.text and "recorded" in reply.text
        assert w.workers.wait_idle(30)
        assert runs(tmp_path) == []
        row = w.store.get_action(action.id)
        assert row is not None and row.status == ActionStatus.AWAITING_APPROVAL
        # Resumed (here without the resume sweep, as by another replica): the approver's
        # next click finishes the job instead of being told they already approved.
        assert w.store.set_paused(
            False, "", ADMIN, w.lifecycle.core.audit(ADMIN, "control.resumed")
        )
        again = w.lifecycle.approvals.approve(action.id, action.revision, APPROVER)
        assert again.ok, again.text
        assert w.workers.wait_idle(30)
        assert runs(tmp_path) == [f"restart web {action.id}"]


def test_fifty_distinct_approvers_and_executors_race_on_a_critical_action(
    database_url: str, chat: RecordingChat, tmp_path: Path
) -> None:
    from bot.policy import parse_policy
    from tests.conftest import policy_data

    approvers = [f"U0A{i:03d}" for i in range(50)]
    data = policy_data(tmp_path)
    data["access"]["approvers"] = [*approvers, REQUESTER]
    policy = parse_policy(data)
    with warden(database_url, policy, chat) as w:
        action = mention(w, "scale api in prod", REQUESTER)
        assert action is not None and action.required_approvals == 2
        barrier = threading.Barrier(100)

        def race(i: int) -> bool:
            barrier.wait()
            if i % 2:
                w.lifecycle.execution.execute(action.id)  # a sweep or replica trying to run it
                return False
            return w.lifecycle.approvals.approve(action.id, action.revision, approvers[i // 2]).ok

        with ThreadPoolExecutor(100) as pool:
            list(pool.map(race, range(100)))
        assert w.workers.wait_idle(30)
        for _ in range(5):
            w.lifecycle.execution.execute(action.id)  # late duplicates change nothing
        assert runs(tmp_path, "scale") == ["scale api prod"]
        final = w.store.get_action(action.id)
        assert final is not None and final.status == ActionStatus.SUCCEEDED
        _count, problems = w.store.verify_audit()
        assert problems == []


def test_a_card_reserved_by_a_dead_process_is_posted_again(
    database_url: str, policy: Policy, chat: RecordingChat
) -> None:
    with warden(database_url, policy, chat) as w:
        w.store.heartbeat(w.lifecycle.owner, utcnow())
        mine = mention(w, "restart web", REQUESTER)
        dead = mention(w, "restart api", REQUESTER)
        assert mine is not None and dead is not None
        w.store.set_card(mine.id, f"pending:{w.lifecycle.owner}"[:64])  # posting right now
        w.store.set_card(dead.id, "pending:gone-host:4242:abcdef")  # crashed mid-post
        assert w.store.release_dead_card_reservations(utcnow(), w.lifecycle.owner) == 1
        # Its post may have reached Slack: the next attempt looks for the card first.
        assert w.store.get_action(dead.id).card_ts == UNSURE  # type: ignore[union-attr]
        assert w.store.get_action(mine.id).card_ts.startswith("pending:")  # type: ignore[union-attr]


def test_an_approval_recorded_while_paused_does_not_run_once_its_card_expired(
    database_url: str, policy: Policy, chat: RecordingChat, tmp_path: Path
) -> None:
    offset = [timedelta(0)]
    with warden(database_url, policy, chat, clock=lambda: utcnow() + offset[0]) as w:
        action = mention(w, "restart web", REQUESTER)
        assert action is not None
        assert w.lifecycle.control.pause(ADMIN, "").ok
        assert w.lifecycle.approvals.approve(action.id, 1, APPROVER).ok
        offset[0] = timedelta(hours=2)  # past approval_ttl (1h), before the expiry sweep ran
        assert w.lifecycle.control.resume(ADMIN).ok
        assert w.workers.wait_idle(30)
        assert runs(tmp_path) == []
        row = w.store.get_action(action.id)
        assert row is not None and row.status == ActionStatus.EXPIRED


def test_a_runbook_cut_off_by_its_timeout_needs_review_not_failed(
    database_url: str, tmp_path: Path, chat: RecordingChat
) -> None:
    """A killed command may have done part of its work: nobody may read it as "failed"."""
    from bot.policy import parse_policy
    from tests.conftest import policy_data

    log = tmp_path / "hang.log"
    data = policy_data(tmp_path)
    data["runbooks"]["hang"] = {
        "description": "Start something slow",
        "command": ["sh", "-c", 'echo "started $0" >> "$1"; exec sleep 30', "{name}", str(log)],
        "risk": "medium",
        "timeout": "1s",
        "params": {"name": {"choices": ["job"]}},
    }
    data["aliases"]["hang {name}"] = {"runbook": "hang"}
    with warden(database_url, parse_policy(data), chat) as w:
        action = mention(w, "hang job", REQUESTER)
        assert action is not None and action.status == ActionStatus.AWAITING_APPROVAL
        assert w.lifecycle.approvals.approve(action.id, 1, APPROVER).ok
        assert w.workers.wait_idle(30)
        row = w.store.get_action(action.id)
        assert row is not None and row.status == ActionStatus.NEEDS_REVIEW
        assert "timeout" in (row.status_note or "")
        assert row.undo_until is None
        assert log.read_text().strip() == "started job"


def test_a_python_tool_cut_off_by_its_timeout_is_an_unknown_outcome(
    database_url: str, policy: Policy, chat: RecordingChat, monkeypatch: Any
) -> None:
    from pydantic import BaseModel

    from bot import execution
    from bot.tools import Tool, ToolResult

    class NoArgs(BaseModel):
        pass

    release = threading.Event()
    started = threading.Event()

    def run(_args: NoArgs, _ctx: Any) -> ToolResult:
        started.set()
        release.wait(30)
        return ToolResult(ok=True, output="late")

    slow = Tool(name="slow", description="slow", args=NoArgs, run=run, timeout_s=0.05)
    monkeypatch.setattr(execution, "CALL_GRACE_S", 0.05)
    with warden(database_url, policy, chat) as w:
        try:
            result = w.lifecycle.executor._call(slow, lambda: slow.run(NoArgs(), None))  # type: ignore[arg-type]
            assert started.is_set()
            assert not result.ok and result.unknown
            assert "outcome is unknown" in result.output
        finally:
            release.set()
        # A tool that raises is a plain failure, not an unknown outcome.
        boom = Tool(name="boom", description="x", args=NoArgs, run=run, timeout_s=5)
        failed = w.lifecycle.executor._call(boom, lambda: 1 / 0)  # type: ignore[arg-type,return-value]
        assert not failed.ok and not failed.unknown and "ZeroDivisionError" in failed.output
