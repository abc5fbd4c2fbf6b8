"""Planning: turning a request's text into proposals, a question, or "I don't know".

`Planner` is the protocol every planner implements. Planners only *propose*: what they return
is untrusted data that the gate (`bot/gate.py`) validates and decides on. `AliasPlanner` maps
the `[aliases]` of `warden.toml` deterministically (confidence 1.0, no LLM); `ChainPlanner`
tries planners in order, so aliases always go first.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from bot.errors import ToolArgumentsError, UnknownTool
from bot.policy import PLACEHOLDER, Policy
from bot.tools import ToolRegistry

MENTION = re.compile(r"<@[UW][A-Z0-9]+(?:\|[^>]*)?>")


@dataclass(kw_only=True, frozen=True)
class Usage:
    """Tokens and cost a plan consumed (zero for planners without a model)."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cost_usd: float = 0.0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            cache_read_tokens=self.cache_read_tokens + other.cache_read_tokens,
            cache_write_tokens=self.cache_write_tokens + other.cache_write_tokens,
            cost_usd=self.cost_usd + other.cost_usd,
        )


@dataclass(kw_only=True, frozen=True)
class ProposedCall:
    """One tool call the planner wants: untrusted until the gate has validated it."""

    tool: str
    args: dict[str, Any]
    confidence: float
    rationale: str


@dataclass(kw_only=True, frozen=True)
class Proposals:
    calls: tuple[ProposedCall, ...]
    message: str = ""
    usage: Usage = field(default_factory=Usage)


@dataclass(kw_only=True, frozen=True)
class Clarify:
    question: str
    usage: Usage = field(default_factory=Usage)


@dataclass(kw_only=True, frozen=True)
class Unknown:
    """The planner cannot help; `message` says so plainly (and what it can do instead)."""

    message: str
    usage: Usage = field(default_factory=Usage)
    retryable: bool = False


Plan = Proposals | Clarify | Unknown


@dataclass(kw_only=True, frozen=True)
class Turn:
    """One earlier exchange in the request's thread, for follow-ups."""

    role: str  # "requester" | "warden" | "other"
    author: str
    text: str


ReadOnlyRunner = Callable[[str, dict[str, Any]], str]


@dataclass(kw_only=True, frozen=True)
class PlanRequest:
    request_id: str
    trace_id: str
    text: str
    requester: str
    channel: str
    thread_ts: str | None = None
    history: tuple[Turn, ...] = ()
    run_read_only: ReadOnlyRunner | None = None
    # The text holds placeholders for personal data (`<EMAIL_1>`): `reveal` puts the values
    # back into arguments to validate them, `mask` takes them out of anything said back.
    reveal: Callable[[Any], Any] = field(default=lambda value: value)
    mask: Callable[[str], str] = field(default=lambda text: text)
    memory: str = ""  # remembered facts with provenance (`bot/memory.py`): data, not orders


class Planner(Protocol):
    """Turns a request into a `Plan`. Must not have side effects beyond read-only lookups."""

    def plan(self, request: PlanRequest) -> Plan:
        """Plan one request."""


def clean_text(text: str) -> str:
    """The request as a person typed it: bot mentions removed, whitespace folded."""
    return " ".join(MENTION.sub(" ", text).split()).strip()


@dataclass(kw_only=True, frozen=True)
class _Alias:
    pattern: str
    regex: re.Pattern[str]
    tool: str
    fixed: dict[str, str]


def _compile(pattern: str) -> re.Pattern[str]:
    out, pos = [], 0
    for m in PLACEHOLDER.finditer(pattern):
        out.append(r"\s+".join(re.escape(w) for w in pattern[pos : m.start()].split(" ")))
        out.append(f"(?P<{m.group(1)}>.+?)")
        pos = m.end()
    out.append(r"\s+".join(re.escape(w) for w in pattern[pos:].split(" ")))
    return re.compile("^" + "".join(out) + r"[.!]?$", re.IGNORECASE | re.DOTALL)


class AliasPlanner:
    """Deterministic commands from `[aliases]`: no LLM, confidence 1.0."""

    def __init__(self, policy: Policy, registry: ToolRegistry) -> None:
        self.registry = registry
        self.aliases = [
            _Alias(pattern=p, regex=_compile(p), tool=t.tool_name, fixed=dict(t.args))
            for p, t in policy.aliases.items()
        ]

    def plan(self, request: PlanRequest) -> Plan:
        """The first alias whose pattern matches and whose arguments are valid for its tool.

        A pattern that matches with invalid arguments ("restart the thing that broke") is a
        near miss, not a command: the next planner gets a chance, and without one the answer
        says what was wrong.
        """
        text = clean_text(request.text)
        near_miss = ""
        for alias in self.aliases:
            match = alias.regex.match(text)
            if not match:
                continue
            args: dict[str, Any] = {**alias.fixed, **match.groupdict()}
            try:
                self.registry.get(alias.tool).validate(request.reveal(args))
            except (ToolArgumentsError, UnknownTool) as exc:
                near_miss = near_miss or request.mask(
                    f"It looks like `{alias.pattern}`, but {exc}."
                )
                continue
            return Proposals(
                calls=(
                    ProposedCall(
                        tool=alias.tool,
                        args=args,
                        confidence=1.0,
                        rationale=(
                            f'You asked "{text}", which matches the command "{alias.pattern}".'
                        ),
                    ),
                )
            )
        help_text = self.help_text(text)
        return Unknown(message=f"{near_miss}\n{help_text}" if near_miss else help_text)

    def help_text(self, text: str = "") -> str:
        lines = []
        if text:
            lines.append(f"I don't know how to do \u201c{text[:200]}\u201d.")
        if self.aliases:
            lines.append("Here is what I can do:")
            for alias in self.aliases:
                tool = self.registry.get(alias.tool) if alias.tool in self.registry else None
                what = f" \u2014 {tool.description}" if tool else ""
                lines.append(f"\u2022 `{alias.pattern}`{what}")
        else:
            lines.append("No commands are configured yet ([aliases] in warden.toml).")
        return "\n".join(lines)


def close_planner(planner: Planner) -> None:
    """Release what a planner holds (an HTTP connection pool); planners need not hold any."""
    close = getattr(planner, "close", None)
    if callable(close):
        close()


class ChainPlanner:
    """Try planners in order; the first that does not answer `Unknown` wins."""

    def __init__(self, planners: Sequence[Planner], fallback_note: str = "") -> None:
        self.planners = list(planners)
        self.fallback_note = fallback_note

    def close(self) -> None:
        for planner in self.planners:
            close_planner(planner)

    def plan(self, request: PlanRequest) -> Plan:
        last: Plan = Unknown(message="I don't know how to help with that.")
        for planner in self.planners:
            last = planner.plan(request)
            if not isinstance(last, Unknown):
                return last
        if self.fallback_note and isinstance(last, Unknown):
            return Unknown(
                message=f"{last.message}\n{self.fallback_note}",
                usage=last.usage,
                retryable=last.retryable,
            )
        return last
