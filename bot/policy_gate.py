"""`[gate]` (confidence floors, approval and undo windows, reminders), `[tools.NAME]`
overrides and `[[freeze]]` change freezes.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta

from pydantic import Field, field_validator, model_validator

from bot.policy_types import (
    SLACK_CHANNEL_ID,
    Autonomy,
    Duration,
    OptionalDuration,
    Risk,
    StrictModel,
    check_approver_sources,
    key_error,
    span,
)


class GatePolicy(StrictModel):
    min_confidence: float = Field(default=0.8, ge=0.0, le=1.0)
    clarify_below: float = Field(default=0.5, ge=0.0, le=1.0)
    approval_ttl: Duration = timedelta(hours=24)
    undo_window: Duration = timedelta(hours=1)
    # A card still waiting this long after it was posted: its approvers get a DM with its
    # buttons (once) …
    remind_after: OptionalDuration = timedelta(hours=2)
    # … and this long after: it is escalated to the admin channel (once).
    escalate_after: OptionalDuration = timedelta(hours=8)

    @model_validator(mode="after")
    def _order(self) -> GatePolicy:
        if self.clarify_below > self.min_confidence:
            raise ValueError("clarify_below must not be greater than min_confidence")
        # Defaults that outlive a short approval_ttl simply never fire (the card expires
        # first); a time set on purpose must make sense.
        ttl = span(self.approval_ttl)
        chosen = self.model_fields_set
        for key in ("remind_after", "escalate_after"):
            value: timedelta | None = getattr(self, key)
            if key in chosen and value is not None and value >= self.approval_ttl:
                raise key_error(
                    key,
                    f"{span(value)} is not shorter than gate.approval_ttl ({ttl}): "
                    "the card would expire first",
                )
        remind, escalate = self.remind_after, self.escalate_after
        if (
            chosen & {"remind_after", "escalate_after"}
            and remind is not None
            and escalate is not None
            and escalate <= remind
            and escalate < self.approval_ttl
        ):
            raise key_error(
                "escalate_after",
                f"{span(escalate)} must be later than gate.remind_after "
                f"({span(remind)}): approvers are reminded before admins are told",
            )
        return self


class ToolOverride(StrictModel):
    """`[tools.NAME]`: one tool's autonomy, approvers, confidence floors and reach."""

    autonomy: Autonomy = Autonomy.APPROVE
    approvers: list[str] | None = None
    min_confidence: float | None = Field(default=None, ge=0.0, le=1.0)
    clarify_below: float | None = Field(default=None, ge=0.0, le=1.0)
    channels: list[str] | None = None  # for tools that post: where else they may post
    max_per_request: int = Field(default=3, ge=1, le=10)

    @field_validator("approvers")
    @classmethod
    def _ids(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else check_approver_sources(value, "approvers")

    @field_validator("channels")
    @classmethod
    def _channels(cls, value: list[str] | None) -> list[str] | None:
        for channel in value or []:
            if not SLACK_CHANNEL_ID.match(channel):
                raise ValueError(f"{channel!r} is not a Slack channel id (like C0123ABCD)")
        return value

    @model_validator(mode="after")
    def _floors(self) -> ToolOverride:
        if (
            self.min_confidence is not None
            and self.clarify_below is not None
            and self.clarify_below > self.min_confidence
        ):
            raise ValueError("clarify_below must not be greater than min_confidence")
        return self


# Tools whose default differs from `approve`: a `remember` runs at once (its author sees it on
# the card and can forget it), unless the taint rule asks for the author's click.
DEFAULT_OVERRIDES: dict[str, ToolOverride] = {"remember": ToolOverride(autonomy=Autonomy.AUTO)}


WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_WEEKLY = re.compile(r"^(mon|tue|wed|thu|fri|sat|sun)\s+([01]\d|2[0-3]):([0-5]\d)$")


class FreezeWindow(StrictModel):
    """`[[freeze]]`: a change freeze. While one is in force, calls of its `tiers` or above
    also need an admin's approval (and none runs unattended). Weekly (`start = "fri 16:00"`,
    `end = "mon 08:00"` in `timezone`) or dated (`start` and `end` TOML datetimes with an
    offset, e.g. a holiday freeze)."""

    name: str = Field(min_length=1, max_length=64)
    start: str | datetime
    end: str | datetime
    timezone: str = "UTC"
    tiers: Risk = Risk.HIGH
    reason: str = Field(default="", max_length=300)

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f'{value!r} is not a time zone (like "Europe/Paris")') from None
        return value

    @model_validator(mode="after")
    def _shape(self) -> FreezeWindow:
        weekly = [isinstance(v, str) for v in (self.start, self.end)]
        if all(weekly):
            for key, value in (("start", self.start), ("end", self.end)):
                if not _WEEKLY.match(str(value).strip().lower()):
                    raise key_error(key, f'{value!r}: write a weekday and a time, like "fri 16:00"')
            if self.minute_of_week(str(self.start)) == self.minute_of_week(str(self.end)):
                raise key_error("end", "a weekly freeze must end at another time than it starts")
            return self
        if any(weekly):
            raise key_error("end", "start and end are both weekly times or both datetimes")
        assert isinstance(self.start, datetime) and isinstance(self.end, datetime)
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise key_error("start", "dated freezes need an offset (2026-12-24T00:00:00+01:00)")
        if self.end <= self.start:
            raise key_error("end", "a freeze must end after it starts")
        return self

    @staticmethod
    def minute_of_week(text: str) -> int:
        found = _WEEKLY.match(text.strip().lower())
        assert found is not None
        day, hour, minute = found.groups()
        return WEEKDAYS.index(day) * 1440 + int(hour) * 60 + int(minute)

    def covers(self, at: datetime) -> bool:
        """Whether the freeze is in force at `at` (an aware datetime)."""
        if isinstance(self.start, datetime) and isinstance(self.end, datetime):
            return self.start <= at < self.end
        from zoneinfo import ZoneInfo

        local = at.astimezone(ZoneInfo(self.timezone))
        now = local.weekday() * 1440 + local.hour * 60 + local.minute
        start, end = self.minute_of_week(str(self.start)), self.minute_of_week(str(self.end))
        return start <= now < end if start < end else now >= start or now < end

    def until_text(self) -> str:
        if isinstance(self.end, datetime):
            return self.end.strftime("%Y-%m-%d %H:%M %z")
        return f"{str(self.end).strip().capitalize()} {self.timezone}"
