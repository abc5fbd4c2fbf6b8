"""The policy file `warden.toml`: parsed with tomllib, validated by pydantic, fail closed.

Every key is validated and unknown keys are errors. `load_policy` turns any problem into a
`ConfigError` whose message names the offending key. `Policy.version` is a hash of the
normalised policy; it is recorded with every gate decision and every approval binds to it.
"""

from __future__ import annotations

import hashlib
import json
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError, ValidationInfo, field_validator, model_validator

from bot.errors import ConfigError
from bot.policy_access import Access, Rotation
from bot.policy_endpoints import Endpoint
from bot.policy_gate import DEFAULT_OVERRIDES, FreezeWindow, GatePolicy, ToolOverride
from bot.policy_runbooks import AliasTarget, Runbook
from bot.policy_sections import (
    AgentLimits,
    AlertsPolicy,
    GovernorPolicy,
    IncidentsPolicy,
    MemoryPolicy,
    RedactionPolicy,
    UsagePolicy,
    Workers,
)
from bot.policy_types import (
    ONCALL_SOURCE,
    PLACEHOLDER,
    SLACK_GROUP_ID,
    Autonomy,
    Risk,
    StrictModel,
    key_error,
)


class Policy(StrictModel):
    """The whole validated policy."""

    access: Access
    gate: GatePolicy = GatePolicy()
    tools: dict[str, ToolOverride] = Field(default_factory=dict)
    runbooks: dict[str, Runbook] = Field(default_factory=dict)
    endpoints: dict[str, Endpoint] = Field(default_factory=dict)
    aliases: dict[str, AliasTarget] = Field(default_factory=dict)
    agent: AgentLimits = AgentLimits()
    workers: Workers = Workers()
    redaction: RedactionPolicy = RedactionPolicy()
    memory: MemoryPolicy = MemoryPolicy()
    alerts: AlertsPolicy = AlertsPolicy()
    governor: GovernorPolicy = GovernorPolicy()
    usage: UsagePolicy = UsagePolicy()
    freeze: list[FreezeWindow] = Field(default_factory=list)
    oncall: dict[str, Rotation] = Field(default_factory=dict)
    incidents: IncidentsPolicy = IncidentsPolicy()

    @model_validator(mode="after")
    def _rotations_exist(self) -> Policy:
        places = [("access.approvers", self.access.approvers)]
        places += [
            (f"access.channels.{c}.approvers", a.approvers) for c, a in self.access.channels.items()
        ]
        places += [(f"tools.{t}.approvers", o.approvers or []) for t, o in self.tools.items()]
        for key, sources in places:
            for source in sources:
                found = ONCALL_SOURCE.match(source)
                if found and found.group(1) not in self.oncall:
                    raise key_error(
                        key,
                        f"{source!r}: no [oncall.{found.group(1)}] rotation "
                        f"(defined: {', '.join(sorted(self.oncall)) or 'none'})",
                    )
        return self

    @field_validator("runbooks", "endpoints")
    @classmethod
    def _names(cls, value: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        kind = "runbook" if info.field_name == "runbooks" else "endpoint"
        for name in value:
            if not re.fullmatch(r"[a-z][a-z0-9_]{0,47}", name):
                raise ValueError(f"{kind} name {name!r}: use lower_snake_case, at most 48 chars")
            if name.startswith("warden_"):
                raise ValueError(f"{kind} name {name!r}: names starting warden_ are reserved")
        return value

    @model_validator(mode="after")
    def _one_name_one_tool(self) -> Policy:
        for name in self.endpoints:
            if name in self.runbooks:
                raise key_error(
                    f"endpoints.{name}", "a runbook has this name; every tool needs its own"
                )
        return self

    @model_validator(mode="after")
    def _aliases(self) -> Policy:
        for pattern, target in self.aliases.items():
            if target.runbook is not None:
                runbook = self.runbooks.get(target.runbook)
                if runbook is None:
                    raise ValueError(
                        f"aliases.{pattern!r}: unknown runbook {target.runbook!r} "
                        f"(defined: {', '.join(sorted(self.runbooks)) or 'none'})"
                    )
                for name in PLACEHOLDER.findall(pattern):
                    if name not in runbook.params:
                        raise ValueError(
                            f"aliases.{pattern!r}: {{{name}}} is not a parameter of "
                            f"runbook {target.runbook!r}"
                        )
                for name in target.args:
                    if name not in runbook.params:
                        raise key_error(
                            f"aliases.{pattern!r}.args.{name}",
                            f"not a parameter of runbook {target.runbook!r} "
                            f"(its parameters: {', '.join(sorted(runbook.params)) or 'none'})",
                        )
        return self

    @cached_property
    def version(self) -> str:
        """A short hash of the normalised policy; any change to any rule changes it."""
        blob = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return "pv-" + hashlib.sha256(blob.encode()).hexdigest()[:12]

    def override(self, tool: str) -> ToolOverride:
        return self.tools.get(tool) or DEFAULT_OVERRIDES.get(tool) or ToolOverride()

    def approvers_for(self, tool: str, channel: str = "") -> list[str]:
        """The approver sources for a call of `tool` asked in `channel`: the tool's own, else
        the channel's, else `access.approvers` (people, groups and rotations: the gate turns
        them into people)."""
        own = self.override(tool).approvers
        if own is not None:
            return list(own)
        here = self.access.channels.get(channel)
        return list(here.approvers) if here is not None else list(self.access.approvers)

    def max_risk(self, tool: str, declared: Risk) -> Risk:
        """The highest tier a call of `tool` can reach: its declared tier, raised by any
        runbook's or endpoint's `risk_if` (a built-in tool's `risk_from_args` is code, not
        policy)."""
        risk = declared
        for declared_here in (self.runbooks.get(tool), self.endpoints.get(tool)):
            if declared_here is not None:
                risk = risk.at_least(declared_here.risk)
                for param in declared_here.params.values():
                    for bump in param.risk_if.values():
                        risk = risk.at_least(bump)
        return risk

    def check_tools(self, tools: Mapping[str, ToolShape]) -> None:
        """Cross-check `[tools.*]`, approvers and aliases against the registry; raise
        ConfigError naming the key.

        `tools` describes each registered tool: its declared tier, whether it is low risk
        whatever its arguments (only those may have autonomy "auto") and its argument names.
        """
        names = set(tools)
        for tool in self.tools:
            if tool not in names:
                raise ConfigError(f"tools.{tool}: no such tool (known: {', '.join(sorted(names))})")
        for pattern, target in self.aliases.items():
            if target.tool is None:
                continue
            shape = tools.get(target.tool)
            if shape is None:
                raise ConfigError(f"aliases.{pattern!r}: unknown tool {target.tool!r}")
            known = ", ".join(sorted(shape.fields)) or "none"
            for name in PLACEHOLDER.findall(pattern):
                if name not in shape.fields:
                    raise ConfigError(
                        f"aliases.{pattern!r}: {{{name}}} is not an argument of tool "
                        f"{target.tool!r} (its arguments: {known})"
                    )
            for name in target.args:
                if name not in shape.fields:
                    raise ConfigError(
                        f"aliases.{pattern!r}.args.{name}: not an argument of tool "
                        f"{target.tool!r} (its arguments: {known})"
                    )
        for tool in sorted(names):
            shape = tools[tool]
            autonomy = self.override(tool).autonomy
            if autonomy is Autonomy.AUTO and not shape.always_low:
                raise ConfigError(
                    f'tools.{tool}.autonomy: "auto" is only allowed for low-risk tools'
                )
            if autonomy is Autonomy.SUGGEST:
                continue
            own = self.override(tool).approvers is not None
            where = f"tools.{tool}.approvers" if own else "access.approvers"
            approvers = set(self.approvers_for(tool))
            if not approvers:
                raise ConfigError(
                    f"{where}: tool {tool!r} needs approval but nobody may approve it; "
                    'add Slack user ids, or set its autonomy to "suggest"'
                )
            # A user group's size is only known at run time (the gate counts its members
            # then and refuses a call too few may approve); a rotation is one person at a time.
            grouped = any(SLACK_GROUP_ID.match(a) for a in approvers)
            if (
                self.max_risk(tool, shape.risk) is Risk.CRITICAL
                and not grouped
                and len(approvers) < 2
            ):
                raise ConfigError(
                    f"{where}: tool {tool!r} can reach the critical tier, which needs two "
                    f"approvers other than the requester, but only {len(approvers)} is "
                    'configured; add Slack user ids, or set its autonomy to "suggest"'
                )


@dataclass(frozen=True)
class ToolShape:
    """What the policy checks need to know about a registered tool."""

    risk: Risk
    always_low: bool
    fields: frozenset[str]


def _location(loc: tuple[int | str, ...]) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        elif item in {"function-after", "function-before"} or "[" in str(item):
            continue
        else:
            parts.append(("." if parts else "") + str(item))
    return "".join(parts) or "(top level)"


def format_validation_error(exc: ValidationError, source: str) -> str:
    lines = [f"{source}: invalid policy"]
    for err in exc.errors():
        where = _location(err["loc"])
        message = err["msg"]
        if err["type"] == "policy_key":
            ctx = err.get("ctx") or {}
            key, message = str(ctx["key"]), str(ctx["message"])
            if where == "(top level)":
                where = key
            else:
                where += key if key.startswith("[") else f".{key}"
        if err["type"] == "extra_forbidden":
            message = "unknown key (not part of the policy format; check the spelling)"
        if err["type"] == "missing":
            message = "required key is missing"
        message = message.removeprefix("Value error, ")
        lines.append(f"  {where}: {message}")
    return "\n".join(lines)


def parse_policy(data: dict[str, Any], source: str = "warden.toml") -> Policy:
    """Validate a decoded TOML mapping; raise ConfigError naming each bad key."""
    try:
        return Policy.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, source)) from None


def load_policy(path: str | Path) -> Policy:
    """Read and validate `warden.toml`; any problem is a ConfigError (fail closed)."""
    file = Path(path)
    try:
        raw = file.read_bytes()
    except FileNotFoundError:
        raise ConfigError(
            f"{file}: policy file not found (set WARDEN_CONFIG or create warden.toml)"
        ) from None
    except OSError as exc:
        raise ConfigError(f"{file}: cannot read policy file: {exc}") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{file}: not valid TOML: {exc}") from None
    return parse_policy(data, str(file))
