"""What the channel tools accept: their argument models, Slack ids written as Slack writes
them in a message (`<#C…|name>`, `<@U…>`), and their limits (a channel name's rule, a topic's
length, how many people at once). See `bot/channel_tools.py`.

`no_controls` is the field validator every tool uses for people's words (titles, topics,
summaries): `bot/tasks.py` and `bot/incident_args.py` use it too.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator

from bot.policy_types import SLACK_CHANNEL_ID, SLACK_USER_ID

NAME_RULE = "^[a-z0-9_-]{1,80}$"
MAX_TEXT = 250  # Slack's limit for a topic and for a purpose
MAX_PEOPLE = 30


def _channel_ref(value: Any) -> Any:
    """`<#C0123ABCD|name>` — how Slack writes a channel in a message — means C0123ABCD."""
    if isinstance(value, str):
        value = value.strip()
        m = re.fullmatch(r"<#([A-Z0-9]+)(?:\|[^>]*)?>", value)
        return m.group(1) if m else value
    return value


def _user_ref(value: Any) -> Any:
    """`<@U0123ABCD>` or `<@U0123ABCD|name>` — a mention — means U0123ABCD."""
    if isinstance(value, str):
        value = value.strip()
        m = re.fullmatch(r"<@([A-Z0-9]+)(?:\|[^>]*)?>", value)
        return m.group(1) if m else value
    return value


def _people(value: Any) -> Any:
    """A list of people; "U1 U2" or "U1, U2" (an alias's placeholder is one string) too."""
    if isinstance(value, str):
        return [v for v in re.split(r"[\s,]+", value) if v]
    return value


# Field first, validator after: the before-validator then wraps the constrained string, so
# the pattern is both checked and shown in the schema the model sees.
ChannelId = Annotated[
    str,
    Field(
        description="Slack channel id, like C0123ABCD",
        pattern=SLACK_CHANNEL_ID.pattern,
        max_length=32,
    ),
    BeforeValidator(_channel_ref),
]
UserId = Annotated[
    str,
    Field(
        description="Slack user id, like U012ABCDEF", pattern=SLACK_USER_ID.pattern, max_length=32
    ),
    BeforeValidator(_user_ref),
]
People = Annotated[
    list[UserId],
    Field(description="Slack user ids", max_length=MAX_PEOPLE),
    BeforeValidator(_people),
]
MessageTs = Annotated[
    str,
    Field(description="The message's ts, like 1712345678.123456", pattern=r"^\d{9,10}\.\d{6}$"),
]


def _unique(users: list[str]) -> list[str]:
    return list(dict.fromkeys(users))


# Characters text a person (or a model) writes must not carry: C0/C1 controls other than tab
# and line breaks (PostgreSQL refuses NUL in text; a terminal obeys escapes) and the bidi
# overrides and isolates that make a title read differently from what it is ("\u202egnp.exe").
_CONTROLS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def no_controls(value: str) -> str:
    """A field validator for people's words: refuse control characters, naming the first
    (tabs and line breaks are fine). Titles, texts, topics and summaries use it."""
    found = _CONTROLS.search(value)
    if found is not None:
        raise ValueError(
            f"must not contain control characters (found U+{ord(found.group(0)):04X}); "
            "write plain text"
        )
    return value


class CreateChannelArgs(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(
        description=(
            "The new channel's name: lowercase letters, digits, - and _, at most 80 "
            "characters, e.g. inc-checkout-latency"
        ),
        json_schema_extra={"pattern": NAME_RULE},
    )
    private: bool = Field(default=False, description="Make it a private channel")
    members: People = Field(
        default_factory=list,
        description=(
            "People to invite once it exists (Slack user ids); the requester is not added "
            "unless named here"
        ),
    )

    @field_validator("name", mode="before")
    @classmethod
    def _name(cls, value: Any) -> Any:
        # "#Inc Checkout" is how people write it; Slack's own client makes it inc-checkout.
        if isinstance(value, str):
            value = re.sub(r"\s+", "-", value.strip().removeprefix("#").strip()).lower()
            if not re.fullmatch(NAME_RULE, value):
                raise ValueError(
                    "a channel name is 1 to 80 lowercase letters, digits, - and _ "
                    "(no spaces, dots or other signs)"
                )
        return value

    @field_validator("members")
    @classmethod
    def _members(cls, value: list[str]) -> list[str]:
        return _unique(value)


class InviteArgs(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    channel: ChannelId
    users: People = Field(description="The people to add (Slack user ids)")

    @field_validator("users")
    @classmethod
    def _users(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("name at least one person to invite")
        return _unique(value)


class TopicArgs(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    channel: ChannelId
    topic: str = Field(description='The new topic ("" clears it)', max_length=MAX_TEXT)

    _topic = field_validator("topic")(no_controls)


class PurposeArgs(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    channel: ChannelId
    purpose: str = Field(
        description='The channel\'s new purpose, its description ("" clears it)',
        max_length=MAX_TEXT,
    )

    _purpose = field_validator("purpose")(no_controls)


class PinArgs(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    channel: ChannelId
    ts: MessageTs


class ChannelArgs(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    channel: ChannelId
