"""The gate's words for times and states: when a pause ends (`until_text`), a window
(`span_text`) and an action's status (`words`)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from storage.models import utcnow


def until_text(until: datetime, at: datetime | None) -> str:
    """When a pause ends, in UTC: "14:30 UTC" today, "Tue 15 Dec 14:30 UTC" another day."""
    until = until if until.tzinfo is not None else until.replace(tzinfo=UTC)
    until = until.astimezone(UTC)
    today = (at if at is not None else utcnow()).astimezone(UTC).date()
    return until.strftime("%H:%M UTC" if until.date() == today else "%a %d %b %H:%M UTC")


def span_text(span: timedelta) -> str:
    """A window in words: "10m", "1h", "24h", "7d"."""
    seconds = int(span.total_seconds())
    if seconds % 86400 == 0 and seconds > 86400:
        return f"{seconds // 86400}d"
    if seconds % 3600 == 0:
        return f"{seconds // 3600}h"
    if seconds % 60 == 0:
        return f"{seconds // 60}m"
    return f"{seconds}s"


def words(status: str) -> str:
    """An action's status in words: "awaiting approval"."""
    return status.replace("_", " ")
