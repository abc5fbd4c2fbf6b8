"""Scheduled jobs (APScheduler 3.x, in-process).

Each job is an importable top-level function referenced by its "module:function" name in
`JOBS` (the form APScheduler needs to persist and find a job); it takes the `instance` id of
the Lifecycle it serves and looks it up. Sweeps run on every replica (they are idempotent).
A job that must happen once per deployment (`Job.once`) runs at wall-clock times from a
cron trigger — daily at a time, or every minute — and the replica that claims the period in
the `job_run` table runs it; a replica starting after a daily job's time catches up on a
missed day.

To add one: write `def my_job(instance: str) -> object` here and add a `Job` row.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from apscheduler.schedulers.background import BackgroundScheduler

from bot.incident_reminders import remind_due_incidents
from bot.tasks import fire_due_reminders
from storage.outbox import HEARTBEAT_EVERY

if TYPE_CHECKING:
    from bot.lifecycle import Lifecycle

log = logging.getLogger(__name__)

_INSTANCES: dict[str, Lifecycle] = {}
_GUARD = threading.Lock()


def expire_approvals(instance: str) -> int:
    """Awaiting actions past `approval_ttl` become `expired`; their cards say so."""
    lifecycle = _INSTANCES.get(instance)  # None: stopping
    return lifecycle.sweeps.expired() if lifecycle is not None else 0


def remind_waiting_cards(instance: str) -> int:
    """Cards still waiting remind their approvers (`gate.remind_after`), then reach the
    admin channel (`gate.escalate_after`): once per card across replicas."""
    lifecycle = _INSTANCES.get(instance)  # None: stopping
    return lifecycle.sweeps.waiting_cards() if lifecycle is not None else 0


def close_undo_windows(instance: str) -> int:
    """Succeeded actions past `undo_window` lose their Undo button."""
    lifecycle = _INSTANCES.get(instance)  # None: stopping
    return lifecycle.sweeps.undo_windows() if lifecycle is not None else 0


def heartbeat(instance: str) -> None:
    """Tell the other replicas this process is alive (its `executing` runs are not orphans)."""
    lifecycle = _INSTANCES.get(instance)
    if lifecycle is not None:  # None: stopping
        lifecycle.store.heartbeat(lifecycle.owner, lifecycle.core.clock())


def flag_interrupted(instance: str) -> int:
    """Executions whose lease ran out or whose owner stopped heartbeating become `needs_review`."""
    lifecycle = _INSTANCES.get(instance)  # None: stopping
    return lifecycle.sweeps.interrupted() if lifecycle is not None else 0


def requeue_requests(instance: str) -> int:
    """Requests nobody is planning (e.g. their replica died) are planned again."""
    lifecycle = _INSTANCES.get(instance)  # None: stopping
    return lifecycle.sweeps.requests() if lifecycle is not None else 0


def deliver_outbox(instance: str) -> int:
    """Slack messages owed but not delivered (a crash, a failed post) are delivered."""
    lifecycle = _INSTANCES.get(instance)  # None: stopping
    return lifecycle.sweeps.outbox() if lifecycle is not None else 0


def repair_cards(instance: str) -> int:
    """Card reservations of dead processes are released; stranded approved actions start."""
    lifecycle = _INSTANCES.get(instance)  # None: stopping
    return lifecycle.sweeps.cards() if lifecycle is not None else 0


def run_checks(instance: str) -> int:
    """Due outcome checks (a runbook's `verify`) are started; dead checkers' ones requeued."""
    lifecycle = _INSTANCES.get(instance)  # None: stopping
    return lifecycle.sweeps.checks() if lifecycle is not None else 0


def forget_old_events(instance: str) -> int:
    """Slack event and trigger ids are kept 48 h for de-duplication (Slack retries within
    ~5 min); delivered outbox rows are kept 7 days; claims of each-minute jobs, a day."""
    lifecycle = _INSTANCES.get(instance)
    if lifecycle is None:  # stopping
        return 0
    now = lifecycle.core.clock()
    return (
        lifecycle.store.forget_events_before(now - timedelta(hours=48))
        + lifecycle.store.forget_delivered_before(now - timedelta(days=7))
        + sum(
            lifecycle.store.forget_job_runs_before(job.func, now - timedelta(days=1))
            for job in JOBS
            if job.every_minute
        )
    )


def forget_personal_data(instance: str) -> int:
    """Sealed personal values of requests nothing can still act on are dropped (a few
    minutes after the last change, so a late card update can still show them); facts past
    their expiry or closed long ago are deleted."""
    lifecycle = _INSTANCES.get(instance)
    if lifecycle is None:  # stopping
        return 0
    return lifecycle.sweeps.personal_data()


def evaluate_alerts(instance: str) -> list[str]:
    """`[alerts]` are checked against the rates of the moment; crossed ones are posted to the
    admin channel (each minute, on the replica that claims the minute; the alert's own
    cool-down, kept in storage, holds even if two replicas evaluate)."""
    lifecycle = _INSTANCES.get(instance)  # None: stopping
    return lifecycle.alerts.evaluate() if lifecycle is not None else []


def fire_reminders(instance: str) -> int:
    """Reminders that fell due are posted, each occurrence once however many replicas run
    this (a conditional update of the reminder's `next_at` decides, `bot/tasks.py`); ones
    missed while Warden was down or paused post once, and the next is the first to come."""
    lifecycle = _INSTANCES.get(instance)  # None: stopping
    return fire_due_reminders(lifecycle.core) if lifecycle is not None else 0


def remind_incident_leads(instance: str) -> int:
    """The lead of an open incident with no status update for `[incidents]
    status_update_every` is reminded in its channel, once however many replicas run this (a
    conditional update of the incident's `next_reminder_at` decides,
    `bot/incident_reminders.py`)."""
    lifecycle = _INSTANCES.get(instance)  # None: stopping
    return remind_due_incidents(lifecycle.core) if lifecycle is not None else 0


def auto_resume(instance: str) -> int:
    """Timed pauses (`/pause 30m …`) whose time is up end, each announced once however many
    replicas run this (a conditional update of the pause decides, `Sweeps.auto_resume`)."""
    lifecycle = _INSTANCES.get(instance)  # None: stopping
    return lifecycle.sweeps.auto_resume() if lifecycle is not None else 0


def publish_audit_anchor(instance: str) -> tuple[int, str]:
    """Each day the audit chain's tip goes to the admin channel, outside the database."""
    lifecycle = _INSTANCES.get(instance)  # None: stopping
    return lifecycle.sweeps.publish_audit_anchor() if lifecycle is not None else (0, "")


@dataclass(kw_only=True, frozen=True)
class Job:
    func: str
    seconds: int = 0  # run every `seconds` on every replica …
    daily_at: str = ""  # … or once per deployment per day at this UTC time ("HH:MM") …
    every_minute: bool = False  # … or once per deployment each minute

    @property
    def once(self) -> bool:
        """Run once per deployment per period, by the replica that claims it."""
        return bool(self.daily_at) or self.every_minute


JOBS = [
    Job(func="bot.jobs:heartbeat", seconds=int(HEARTBEAT_EVERY.total_seconds())),
    Job(func="bot.jobs:expire_approvals", seconds=30),
    Job(func="bot.jobs:close_undo_windows", seconds=30),
    Job(func="bot.jobs:remind_waiting_cards", seconds=30),
    Job(func="bot.jobs:flag_interrupted", seconds=30),
    Job(func="bot.jobs:deliver_outbox", seconds=5),
    Job(func="bot.jobs:requeue_requests", seconds=60),
    Job(func="bot.jobs:repair_cards", seconds=60),
    Job(func="bot.jobs:run_checks", seconds=5),
    Job(func="bot.jobs:forget_old_events", seconds=3600),
    Job(func="bot.jobs:forget_personal_data", seconds=300),
    Job(func="bot.jobs:fire_reminders", seconds=15),
    Job(func="bot.jobs:auto_resume", seconds=15),
    Job(func="bot.jobs:remind_incident_leads", seconds=30),
    Job(func="bot.jobs:publish_audit_anchor", daily_at="00:05"),
    Job(func="bot.jobs:evaluate_alerts", every_minute=True),
]


def _resolve(ref: str) -> Callable[[str], Any]:
    import importlib

    module, _, name = ref.partition(":")
    fn: Callable[[str], Any] = getattr(importlib.import_module(module), name)
    return fn


def period_of(job: Job, now: datetime) -> str | None:
    """The period a once-per-deployment job is due for at `now` (None: not yet today)."""
    if job.every_minute:
        return now.strftime("%Y-%m-%dT%H:%M")
    hour, minute = (int(p) for p in job.daily_at.split(":"))
    due = now.replace(hour=hour, minute=minute, second=0, microsecond=0)
    return now.strftime("%Y-%m-%d") if now >= due else None


def run_once(instance: str, func: str, daily_at: str = "", every_minute: bool = False) -> object:
    """Run a once-per-deployment job if this replica claims the current period."""
    lifecycle = _INSTANCES.get(instance)
    if lifecycle is None:
        return None
    job = Job(func=func, daily_at=daily_at, every_minute=every_minute)
    period = period_of(job, lifecycle.core.clock())
    if period is None or not lifecycle.store.claim_job(func, period, lifecycle.owner):
        return None
    return _resolve(func)(instance)


class Jobs:
    """The scheduler for one Lifecycle."""

    def __init__(self, lifecycle: Lifecycle) -> None:
        self.instance = lifecycle.owner
        with _GUARD:
            _INSTANCES[self.instance] = lifecycle
        self.scheduler: Any = BackgroundScheduler(timezone="UTC")
        for job in JOBS:
            if job.every_minute:
                self.scheduler.add_job(
                    "bot.jobs:run_once",
                    "cron",
                    minute="*",
                    kwargs={"instance": self.instance, "func": job.func, "every_minute": True},
                    id=job.func,
                    coalesce=True,
                    max_instances=1,
                    misfire_grace_time=30,
                )
                continue
            if job.daily_at:
                hour, minute = job.daily_at.split(":")
                self.scheduler.add_job(
                    "bot.jobs:run_once",
                    "cron",
                    hour=int(hour),
                    minute=int(minute),
                    kwargs={"instance": self.instance, "func": job.func, "daily_at": job.daily_at},
                    id=job.func,
                    coalesce=True,
                    max_instances=1,
                    misfire_grace_time=3600,
                )
                continue
            self.scheduler.add_job(
                job.func,
                "interval",
                seconds=job.seconds,
                kwargs={"instance": self.instance},
                id=job.func,
                coalesce=True,
                max_instances=1,
            )

    def start(self) -> None:
        self.scheduler.start()
        # A deployment restarted after a daily job's time catches up on today's period (on a
        # worker, not as a one-off scheduler job, which races the scheduler's shutdown).
        lifecycle = _INSTANCES.get(self.instance)
        if lifecycle is None:
            return
        for job in JOBS:
            if job.daily_at:
                lifecycle.workers.executors.submit(run_once, self.instance, job.func, job.daily_at)

    def stop(self) -> None:
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)
        with _GUARD:
            _INSTANCES.pop(self.instance, None)
