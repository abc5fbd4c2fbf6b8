"""Alerts: when each last fired; the cool-down is a conditional update, so two replicas fire once
(part of `storage.repo.Store`).

`fire_alert` is one conditional upsert on `alert_state`: the row is inserted if the alert never
fired, or updated only if it last fired before the cool-down began. Its row count decides
whether this caller fires, and the audit row and the admin channel's message are written in
the same transaction — so two replicas evaluating the same minute post one alert.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete
from sqlmodel import col, select

from storage import audit
from storage.db import Database
from storage.models import AlertState, JobRun
from storage.outbox import Notice, OutboxQueries, insert_for


class AlertQueries:
    db: Database

    def fire_alert(
        self,
        key: str,
        value: float,
        now: datetime,
        cooldown: timedelta,
        *,
        policy_version: str = "",
        data: dict[str, Any] | None = None,
        notices: Sequence[Notice] = (),
    ) -> bool:
        """Fire alert `key` (e.g. "override_spike", "tool_error_rate:restart_service") at `now`
        unless it fired within `cooldown`: True for the one caller that fires it, which wrote
        the `alert.fired` audit row (with `data`) and `notices` in the same transaction."""
        table = AlertState.__table__  # type: ignore[attr-defined]
        stmt = (
            insert_for(self.db, table)
            .values(key=key, fired_at=now, value=value)
            .on_conflict_do_update(
                index_elements=["key"],
                set_={"fired_at": now, "value": value},
                where=table.c.fired_at <= now - cooldown,
            )
            .returning(table.c.key)
        )
        with self.db.write() as s:
            if s.execute(stmt).first() is None:
                return False
            audit.append(
                s,
                actor="warden",
                kind="alert.fired",
                subject=f"alert:{key}"[:64],
                policy_version=policy_version,
                data={"key": key, **(data or {})},
            )
            OutboxQueries._enqueue(s, notices)
            return True

    def alert_states(self) -> dict[str, AlertState]:
        """When each alert last fired, and the value it fired with."""
        with self.db.read() as s:
            return {row.key: row for row in s.exec(select(AlertState)).all()}

    def forget_job_runs_before(self, name: str, cutoff: datetime) -> int:
        """The claims a frequent once-per-deployment job (the alert evaluation, each minute)
        left in `job_run` before `cutoff`: once the period is past they decide nothing."""
        with self.db.write() as s:
            r = s.exec(delete(JobRun).where(col(JobRun.name) == name, col(JobRun.ran_at) < cutoff))
            return int(r.rowcount or 0)
