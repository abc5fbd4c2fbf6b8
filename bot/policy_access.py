"""`[access]` (admins, approvers, per-channel approvers) and `[oncall.NAME]` rotations:
the people a policy names.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from pydantic import Field, field_validator

from bot.policy_types import (
    SLACK_CHANNEL_ID,
    Duration,
    StrictModel,
    check_approver_sources,
    check_user_ids,
)


class ChannelAccess(StrictModel):
    """`[access.channels.C…]`: who approves what is asked in that channel (a tool's own
    `approvers` still win)."""

    approvers: list[str]

    @field_validator("approvers")
    @classmethod
    def _sources(cls, value: list[str]) -> list[str]:
        return check_approver_sources(value, "approvers")


class Access(StrictModel):
    admins: list[str] = Field(default_factory=list)
    approvers: list[str] = Field(default_factory=list)
    admin_channel: str
    channels: dict[str, ChannelAccess] = Field(default_factory=dict)

    @field_validator("admins")
    @classmethod
    def _ids(cls, value: list[str]) -> list[str]:
        return check_user_ids(value, "user list")

    @field_validator("approvers")
    @classmethod
    def _sources(cls, value: list[str]) -> list[str]:
        return check_approver_sources(value, "approvers")

    @field_validator("channels")
    @classmethod
    def _channel_ids(cls, value: dict[str, ChannelAccess]) -> dict[str, ChannelAccess]:
        for channel in value:
            if not SLACK_CHANNEL_ID.match(channel):
                raise ValueError(f"{channel!r} is not a Slack channel id (like C0123ABCD)")
        return value

    @field_validator("admin_channel")
    @classmethod
    def _channel(cls, value: str) -> str:
        if not SLACK_CHANNEL_ID.match(value):
            raise ValueError(f"{value!r} is not a Slack channel id (like C0123ABCD)")
        return value


class Rotation(StrictModel):
    """`[oncall.NAME]`: an on-call rotation — `people` take turns of `every`, the first from
    `start` (an aware TOML datetime: the first handover). `oncall:NAME` names whoever is on
    call as an approver; the `who_is_on_call` lookup reads it too."""

    description: str = Field(default="", max_length=200)
    people: list[str] = Field(min_length=1)
    start: datetime
    every: Duration = timedelta(days=7)

    @field_validator("people")
    @classmethod
    def _people(cls, value: list[str]) -> list[str]:
        return check_user_ids(value, "people")

    @field_validator("start")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("write the first handover with an offset (2026-01-05T09:00:00+01:00)")
        return value

    @field_validator("every")
    @classmethod
    def _turn(cls, value: timedelta) -> timedelta:
        if value < timedelta(hours=1):
            raise ValueError("a turn on call lasts at least 1h")
        return value

    def turn(self, at: datetime) -> int:
        """The number of the turn in force at `at` (negative before `start`)."""
        aware = at if at.tzinfo is not None else at.replace(tzinfo=UTC)
        return (aware - self.start) // self.every

    def on_call(self, at: datetime) -> str:
        return self.people[self.turn(at) % len(self.people)]

    def next_handover(self, at: datetime) -> datetime:
        return self.start + self.every * (self.turn(at) + 1)
