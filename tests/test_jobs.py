"""Jobs that must happen once per deployment run on one replica, at wall-clock times."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

from bot.jobs import JOBS, Job, period_of, run_once
from bot.policy import Policy
from tests.conftest import RecordingChat
from tests.harness import warden


def test_a_daily_job_is_due_from_its_time_until_midnight() -> None:
    job = Job(func="x:y", daily_at="00:05")
    assert period_of(job, datetime(2026, 11, 25, 0, 4, tzinfo=UTC)) is None
    assert period_of(job, datetime(2026, 11, 25, 0, 5, tzinfo=UTC)) == "2026-11-25"
    assert period_of(job, datetime(2026, 11, 25, 23, 59, tzinfo=UTC)) == "2026-11-25"
    anchor = next(j for j in JOBS if j.func.endswith("publish_audit_anchor"))
    assert anchor.daily_at and not anchor.seconds  # not "every 86 400 s from process start"


def test_the_audit_anchor_is_posted_once_a_day_by_one_of_several_replicas(
    database_url: str, policy: Policy
) -> None:
    chat = RecordingChat()
    # Tomorrow 09:00: after the job's time, and never before a row's real creation time.
    at = (datetime.now(UTC) + timedelta(days=1)).replace(hour=9, minute=0)
    next_day = (at + timedelta(days=1)).replace(hour=0, minute=6)
    with (
        warden(database_url, policy, chat, clock=lambda: at) as a,
        warden(database_url, policy, chat, clock=lambda: at, upgrade=False) as b,
        warden(database_url, policy, chat, clock=lambda: at, upgrade=False) as c,
    ):
        replicas = [a, b, c]
        a.store.audit(a.lifecycle.core.audit("U0ADMIN", "test.row"))
        for w in replicas:
            w.jobs.start()  # each starts and catches up on today's period at once
        func = "bot.jobs:publish_audit_anchor"
        with ThreadPoolExecutor(6) as pool:  # and the cron fires on all of them together
            list(pool.map(lambda w: run_once(w.lifecycle.owner, func, "00:05"), replicas * 2))
        for w in replicas:
            assert w.workers.wait_idle(30)
        anchors = [p for p in chat.posts if "Audit anchor" in p["text"]]
        assert len(anchors) == 1 and anchors[0]["channel"] == "C0OPS"
        # A restart later the same day posts nothing new; the next day posts again.
        assert run_once(a.lifecycle.owner, func, "00:05") is None
        a.lifecycle.core.clock = lambda: next_day
        assert run_once(a.lifecycle.owner, func, "00:05") is not None
        assert a.workers.wait_idle(30)
        assert len([p for p in chat.posts if "Audit anchor" in p["text"]]) == 2
        for w in replicas:
            w.jobs.stop()
