"""`[runbooks.NAME]` commands, the `Param` rules they (and endpoints) validate arguments
with, and `[aliases]`.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated

from pydantic import Field, field_validator, model_validator

from bot.policy_types import (
    ENV_NAME,
    PLACEHOLDER,
    SECRET_ENV,
    Duration,
    Risk,
    StrictModel,
    key_error,
)


class Param(StrictModel):
    """A runbook or endpoint parameter: validated by `pattern` (full match) or `choices`
    before use."""

    pattern: str | None = None
    choices: list[str] | None = None
    description: str = ""
    risk_if: dict[str, Risk] = Field(default_factory=dict)

    @field_validator("pattern")
    @classmethod
    def _regex(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"bad regular expression {value!r}: {exc}") from exc
        return value

    @model_validator(mode="after")
    def _one_rule(self) -> Param:
        if (self.pattern is None) == (self.choices is None):
            raise ValueError("give exactly one of `pattern` or `choices`")
        if self.choices is not None and not self.choices:
            raise ValueError("`choices` must not be empty")
        for value in self.risk_if:
            # A key no argument can ever equal would silently leave that value at the base
            # tier (fail open), so it is an error, checked exactly as arguments are.
            where = f"risk_if.{value}"
            if self.choices is not None:
                if value not in self.choices:
                    raise key_error(
                        where,
                        f"{value!r} is not one of the choices ({', '.join(self.choices)})",
                    )
            elif value.startswith("-") or "\n" in value or "\x00" in value:
                raise key_error(where, f"{value!r} can never be a valid argument")
            elif self.pattern is not None and not re.fullmatch(self.pattern, value):
                raise key_error(
                    where, f"{value!r} does not fully match the pattern {self.pattern!r}"
                )
        return self


Argv = Annotated[list[str], Field(min_length=1)]


class Runbook(StrictModel):
    """An operator-defined command: the bridge from Warden to real infrastructure."""

    description: str
    command: Argv
    undo: Argv | None = None
    dry_run: Argv | None = None
    risk: Risk = Risk.MEDIUM
    timeout: Duration = timedelta(seconds=60)
    read_only: bool = False
    params: dict[str, Param] = Field(default_factory=dict)
    env: dict[str, str] = Field(default_factory=dict)
    pass_env: list[str] = Field(default_factory=list)
    # An outcome check run `verify_after` the command succeeded (service healthy, queue
    # drained): exit 0 means the outcome is good; anything else is a failed outcome.
    verify: Argv | None = None
    verify_after: Duration = timedelta(seconds=30)

    @field_validator("env")
    @classmethod
    def _env(cls, value: dict[str, str]) -> dict[str, str]:
        for name, text in value.items():
            if not ENV_NAME.match(name):
                raise key_error(name, "not an environment variable name (letters, digits, _)")
            if name.upper().startswith("WARDEN_"):
                raise key_error(name, "names starting WARDEN_ are set by Warden itself")
            if "\x00" in text:
                raise key_error(name, "a value may not contain a NUL character")
        return value

    @field_validator("pass_env")
    @classmethod
    def _pass_env(cls, value: list[str]) -> list[str]:
        for index, name in enumerate(value):
            if not ENV_NAME.match(name):
                raise key_error(f"[{index}]", f"{name!r} is not an environment variable name")
            if name in SECRET_ENV:
                raise key_error(
                    f"[{index}]",
                    f"{name} is one of Warden's own credentials and is never passed to a "
                    "runbook; give the runbook its own credential instead",
                )
            if name.upper().startswith("WARDEN_"):
                raise key_error(f"[{index}]", f"{name}: names starting WARDEN_ are set by Warden")
        return value

    @model_validator(mode="after")
    def _placeholders(self) -> Runbook:
        for name in self.pass_env:
            if name in self.env:
                raise key_error(f"env.{name}", "also listed in pass_env; keep one of the two")
        for key, argv in (
            ("command", self.command),
            ("undo", self.undo),
            ("dry_run", self.dry_run),
            ("verify", self.verify),
        ):
            for part in argv or []:
                for name in PLACEHOLDER.findall(part):
                    if name not in self.params:
                        raise ValueError(f"{key} uses {{{name}}} but params.{name} is not declared")
        if self.read_only and self.undo is not None:
            raise ValueError("a read_only runbook has nothing to undo")
        if self.read_only and self.verify is not None:
            raise ValueError("a read_only runbook changes nothing, so it has no outcome to verify")
        if self.verify_after > timedelta(hours=24):
            raise key_error("verify_after", "at most 24h: an outcome checked later says little")
        return self


class AliasTarget(StrictModel):
    runbook: str | None = None
    tool: str | None = None
    args: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _one_target(self) -> AliasTarget:
        if (self.runbook is None) == (self.tool is None):
            raise ValueError("give exactly one of `runbook` or `tool`")
        return self

    @property
    def tool_name(self) -> str:
        return self.runbook or self.tool or ""
