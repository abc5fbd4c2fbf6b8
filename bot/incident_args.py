"""The incident tools' arguments: what each tool takes, validated before it runs.

Incident numbers are read loosely ("12", "#12", "INC-12", "incident 12") and so are
severities ("SEV2", "sev 2", "2"); text people wrote may hold no control characters. The
tools themselves are in `bot/incidents.py` and the `bot/incident_*.py` modules it names.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator

from bot.channel_args import People, UserId, no_controls

SEVERITIES = ("sev1", "sev2", "sev3", "sev4")
Severity = Literal["sev1", "sev2", "sev3", "sev4"]


def _incident_ref(value: Any) -> Any:
    """ "12", "#12", "INC-12" and "incident 12" all mean incident 12."""
    if isinstance(value, bool):
        raise ValueError("an incident number is a whole number, like 12 or INC-12")
    if isinstance(value, str):
        text = value.strip().lower().lstrip("#").strip()
        text = re.sub(r"^(?:incident|inc)[\s#-]*", "", text)
        if not text.isdigit():
            raise ValueError(f"{value[:40]!r} is not an incident number (like 12 or INC-12)")
        return int(text)
    return value


def _severity(value: Any) -> Any:
    """ "SEV2", "sev 2", "Sev-2" and "2" all mean sev2."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if isinstance(value, str):
        text = re.sub(r"[\s_-]+", "", value.strip().lower())
        text = "sev" + text if text.isdigit() else text
        if text not in SEVERITIES:
            raise ValueError(f"{value[:20]!r} is not a severity: give sev1, sev2, sev3 or sev4")
        return text
    return value


IncidentNumber = Annotated[
    int,
    Field(description="The incident's number, as in INC-12 (12)", ge=1),
    BeforeValidator(_incident_ref),
]
SeverityArg = Annotated[
    Severity,
    Field(description="sev1 (the worst: a major outage) to sev4 (minor)"),
    BeforeValidator(_severity),
]


def _one_line(value: str) -> str:
    value = " ".join(value.split())
    if not value:
        raise ValueError("it is empty")
    return value


class DeclareArgs(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    severity: SeverityArg
    title: str = Field(
        description="What is wrong, in a few words (it names the channel)",
        min_length=1,
        max_length=150,
    )
    summary: str = Field(
        default="", description="What is known so far, posted in the channel", max_length=2000
    )
    lead: UserId | None = Field(
        default=None, description="Slack user id of the incident lead (default: the requester)"
    )
    comms: UserId | None = Field(default=None, description="Slack user id of who handles comms")
    responders: People = Field(
        default_factory=list, description="Slack user ids of people to invite to the channel"
    )
    private: bool = Field(default=False, description="Make the incident channel private")

    _title = field_validator("title")(_one_line)
    _plain = field_validator("title", "summary")(no_controls)

    @field_validator("responders")
    @classmethod
    def _responders(cls, value: list[str]) -> list[str]:
        return list(dict.fromkeys(value))


class RoleArgs(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    incident: IncidentNumber
    role: Literal["lead", "comms"] = Field(description="lead (the incident lead) or comms")
    person: UserId


class SeverityArgs(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    incident: IncidentNumber
    severity: SeverityArg


class UpdateArgs(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    incident: IncidentNumber
    text: str = Field(
        description="The status update: what changed, what is next", min_length=1, max_length=3000
    )

    _text = field_validator("text")(no_controls)


class EntryArgs(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    incident: IncidentNumber
    text: str = Field(description="What happened, for the timeline", min_length=1, max_length=1000)

    _text = field_validator("text")(_one_line)
    _plain = field_validator("text")(no_controls)


class ResolveArgs(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    incident: IncidentNumber
    summary: str = Field(
        description="How it ended: cause, fix, follow-ups", min_length=1, max_length=3000
    )

    _summary = field_validator("summary")(no_controls)


class IncidentArgs(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    incident: IncidentNumber


class NoArgs(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
