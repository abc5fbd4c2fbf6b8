"""Scheduled jobs (APScheduler 3.x, in-process).

Each job is an importable top-level function referenced by its "module:function" name in
`JOBS` (the form APScheduler needs to persist and find a job); it takes the `instance` id of
the Lifecycle it serves and looks it up. To add one: write `def my_job(instance: str) -> object`
here and add a `Job` row.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from apscheduler.schedulers.background import BackgroundScheduler

from storage.repo import HEARTBEAT_EVERY

if TYPE_CHECKING:
    from bot.lifecycle import Lifecycle

log = logging.getLogger(__name__)

_INSTANCES: dict[str, Lifecycle] = {}
_GUARD = threading.Lock()


def expire_approvals(instance: str) -> int:
    """Awaiting actions past `approval_ttl` become `expired`; their cards say so."""
    return _INSTANCES[instance].sweep_expired()


def close_undo_windows(instance: str) -> int:
    """Succeeded actions past `undo_window` lose their Undo button."""
    return _INSTANCES[instance].sweep_undo_windows()


def heartbeat(instance: str) -> None:
    """Tell the other replicas this process is alive (its `executing` runs are not orphans)."""
    lifecycle = _INSTANCES.get(instance)
    if lifecycle is not None:  # None: stopping
        lifecycle.store.heartbeat(lifecycle.owner, lifecycle.clock())


def flag_interrupted(instance: str) -> int:
    """Executions whose lease ran out or whose owner stopped heartbeating become `needs_review`."""
    return _INSTANCES[instance].sweep_interrupted()


def requeue_requests(instance: str) -> int:
    """Requests nobody is planning (e.g. their replica died) are planned again."""
    return _INSTANCES[instance].sweep_requests()


def repair_cards(instance: str) -> int:
    """Cards that were never posted (a crash between commit and post) are posted."""
    return _INSTANCES[instance].sweep_cards()


def forget_old_events(instance: str) -> int:
    """Slack event ids are kept 48 h for de-duplication (Slack retries within ~5 min)."""
    lifecycle = _INSTANCES[instance]
    return lifecycle.store.forget_events_before(lifecycle.clock() - timedelta(hours=48))


def publish_audit_anchor(instance: str) -> tuple[int, str]:
    """Each day the audit chain's tip goes to the admin channel, outside the database."""
    return _INSTANCES[instance].publish_audit_anchor()


@dataclass(kw_only=True, frozen=True)
class Job:
    func: str
    seconds: int


JOBS = [
    Job(func="bot.jobs:heartbeat", seconds=int(HEARTBEAT_EVERY.total_seconds())),
    Job(func="bot.jobs:expire_approvals", seconds=30),
    Job(func="bot.jobs:close_undo_windows", seconds=30),
    Job(func="bot.jobs:flag_interrupted", seconds=30),
    Job(func="bot.jobs:requeue_requests", seconds=60),
    Job(func="bot.jobs:repair_cards", seconds=60),
    Job(func="bot.jobs:forget_old_events", seconds=3600),
    Job(func="bot.jobs:publish_audit_anchor", seconds=86400),
]


class Jobs:
    """The scheduler for one Lifecycle."""

    def __init__(self, lifecycle: Lifecycle) -> None:
        self.instance = lifecycle.owner
        with _GUARD:
            _INSTANCES[self.instance] = lifecycle
        self.scheduler: Any = BackgroundScheduler(timezone="UTC")
        for job in JOBS:
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

    def stop(self) -> None:
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)
        with _GUARD:
            _INSTANCES.pop(self.instance, None)
