"""The policy's building blocks: durations, Slack id patterns, risk tiers and autonomy,
the strict base model every `warden.toml` section derives from, and `key_error`.
"""

from __future__ import annotations

import re
from datetime import timedelta
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, PlainSerializer
from pydantic_core import PydanticCustomError

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
SLACK_USER_ID = re.compile(r"^[UW][A-Z0-9]{2,}$")
SLACK_CHANNEL_ID = re.compile(r"^[CGD][A-Z0-9]{2,}$")
SLACK_GROUP_ID = re.compile(r"^S[A-Z0-9]{2,}$")
ONCALL_SOURCE = re.compile(r"^oncall:([a-z][a-z0-9_-]{0,47})$")
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Warden's own credentials: never handed to a runbook, even when asked for by name.
SECRET_ENV = frozenset(
    {
        "SLACK_BOT_TOKEN",
        "SLACK_SIGNING_SECRET",
        "SLACK_APP_TOKEN",
        "SLACK_CLIENT_SECRET",
        "ANTHROPIC_API_KEY",
        "DATABASE_URL",
    }
)


def parse_duration(value: object) -> timedelta:
    """Parse "24h", "90s", "1h30m", "500ms" (or a number of seconds) into a timedelta."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        if value <= 0:
            raise ValueError("a duration must be positive")
        return timedelta(seconds=value)
    if not isinstance(value, str):
        raise ValueError('a duration is a string such as "30s", "15m", "24h" or "1h30m"')
    text = value.strip().lower()
    pos, total = 0, 0.0
    for match in _DURATION_PART.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if pos != len(text) or not text:
        raise ValueError(f'bad duration {value!r}: use forms like "30s", "15m", "24h", "1h30m"')
    if total <= 0:
        raise ValueError(f"bad duration {value!r}: must be positive")
    return timedelta(seconds=total)


def format_duration(value: timedelta) -> str:
    """The inverse of `parse_duration`, used to normalise the policy for hashing."""
    seconds = value.total_seconds()
    if seconds != int(seconds):
        return f"{round(seconds * 1000)}ms"
    return f"{int(seconds)}s"


Duration = Annotated[
    timedelta,
    BeforeValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str),
]


class Risk(StrEnum):
    """Risk tiers, ordered: a tool may raise its tier from its arguments, never lower it."""

    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return list(Risk).index(self)

    def at_least(self, other: Risk) -> Risk:
        return self if self.rank >= other.rank else other


class Autonomy(StrEnum):
    """How far a tool may go by itself: a card only, a card to approve, or run at once (low)."""

    SUGGEST = "suggest"
    APPROVE = "approve"
    AUTO = "auto"


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def key_error(key: str, message: str) -> PydanticCustomError:
    """A validation error about `key` below the model being validated (or, from `Policy`,
    the full key): `format_validation_error` appends it to the location, so the message
    names the exact key, e.g. `runbooks.scale.params.env.risk_if.production`."""
    return PydanticCustomError("policy_key", "{key}: {message}", {"key": key, "message": message})


def check_user_ids(ids: list[str], key: str) -> list[str]:
    for user in ids:
        if not SLACK_USER_ID.match(user):
            raise ValueError(f"{key}: {user!r} is not a Slack user id (like U012ABCDEF)")
    return ids


def check_approver_sources(sources: list[str], key: str) -> list[str]:
    """Approvers are people, named as user ids, Slack user groups (`S…`, their members) or
    on-call rotations (`oncall:NAME`, whoever is on call at the moment of a click)."""
    for source in sources:
        if not (
            SLACK_USER_ID.match(source)
            or SLACK_GROUP_ID.match(source)
            or ONCALL_SOURCE.match(source)
        ):
            raise ValueError(
                f"{key}: {source!r} is not a Slack user id (U012ABCDEF), a user group id "
                "(S012ABCDEF) or an on-call rotation (oncall:NAME)"
            )
    return sources


def _duration_or_off(value: object) -> timedelta | None:
    """A duration, or `"off"` (also `false`, `"0"`, `0`): the feature is turned off."""
    if value is None or value is False or value in ("off", "0", 0):
        return None
    return parse_duration(value)


def span(value: timedelta) -> str:
    """A duration as people write it in the policy: "90s", "30m", "2h", "7d"."""
    seconds = int(value.total_seconds())
    if seconds > 86400 and seconds % 86400 == 0:
        return f"{seconds // 86400}d"
    for unit, size in (("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


OptionalDuration = Annotated[
    timedelta | None,
    BeforeValidator(_duration_or_off),
    PlainSerializer(lambda v: "off" if v is None else format_duration(v), return_type=str),
]


AutonomyName = Literal["suggest", "approve", "auto"]
