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
from bot.policy import Policy
from bot.policy_types import PLACEHOLDER
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
    """The request as a person typed it: bot mentions removed, whitespace folded.

    A mention ends with `>`, so none starts after the text's last `>`: `MENTION` only reads
    the text up to there. Otherwise every `<@U1|` with no `>` after it would scan to the end
    of the text (`[^>]*`), quadratic on a long message made of them; now each such scan stops
    at a `>` that ends the mention it removes, so the work is linear in the text's length.
    """
    end = text.rfind(">") + 1
    return " ".join((MENTION.sub(" ", text[:end]) + text[end:]).split()).strip()


def _literal(text: str) -> str:
    """Literal text of an alias pattern as a regex: its words, any case, and any run of
    whitespace where the pattern has a space."""
    return r"\s+".join(re.escape(word) for word in text.split(" "))


_FLAGS = re.IGNORECASE | re.DOTALL
_END = r"[.!]?$"  # one "." or "!" ending the request is left out of the last placeholder


@dataclass(frozen=True)
class AliasPattern:
    r"""An alias pattern ("deploy {version} to {env}") compiled once, matched in linear time.

    A pattern is literal text and placeholders. It matches a whole request (the text as
    `clean_text` leaves it), case-insensitively, with an optional "." or "!" at the end; each
    placeholder captures at least one character, as few as possible, leftmost first. That is
    the first match of the regex `^deploy\s+(?P<version>.+?)\s+to\s+(?P<env>.+?)[.!]?$`,
    which is how aliases were first matched, but that regex backtracks: on a request that
    fails late, it retries every end of each placeholder against every end of the next:
    O(n^k) steps for k placeholders (a quarter of a second for 4,000 words and two
    placeholders, most of a second for 400 words and three).

    Here the literal text after each placeholder is found with one forward search from one
    character past the placeholder's start, and its first occurrence ends the placeholder;
    the matcher never goes back. That is the same match: in clean text a literal occupies a
    fixed number of characters wherever it occurs (a space in the pattern is one space), so
    if a match exists at all, moving a literal to its first occurrence only lengthens the
    placeholder after it, which takes any characters, and the regex's first match is that
    one. The last placeholder is found the same way: the first place from which the text
    after it and the optional "." or "!" reach the end. Each search is linear, and each
    starts where the previous one stopped.
    """

    source: str
    names: tuple[str, ...]
    head: re.Pattern[str]  # the text before the first placeholder (the whole, if none)
    stops: tuple[re.Pattern[str], ...]  # what ends each placeholder: the text after it

    @classmethod
    def compile(cls, pattern: str) -> AliasPattern:
        pieces = PLACEHOLDER.split(pattern)  # text, name, text, name, …, text
        texts, names = pieces[0::2], tuple(pieces[1::2])
        for index, name in enumerate(names):
            if name in names[:index]:
                raise re.error(f"redefinition of group name {name!r} in {pattern!r}")
        if not names:
            return cls(pattern, (), re.compile(_literal(texts[0]) + _END, _FLAGS), ())
        middles = tuple(re.compile(_literal(text), _FLAGS) for text in texts[1:-1])
        last = re.compile(_literal(texts[-1]) + _END, _FLAGS)
        return cls(pattern, names, re.compile(_literal(texts[0]), _FLAGS), (*middles, last))

    def match(self, text: str) -> dict[str, str] | None:
        """The placeholders' values if `text` (cleaned) matches the whole pattern, else None."""
        return self.match_counted(text)[0]

    def match_counted(self, text: str) -> tuple[dict[str, str] | None, int]:
        """`match`, and the work it took: how many start positions its searches tried (at
        most one per character of `text` and one per placeholder, plus one)."""
        head = self.head.match(text)
        if head is None or not self.names:
            return (None if head is None else {}), 1
        values: dict[str, str] = {}
        start, tried = head.end(), 1
        for name, stop in zip(self.names, self.stops, strict=True):
            if start >= len(text):  # a placeholder takes at least one character
                return None, tried
            found = stop.search(text, start + 1)
            tried += (len(text) if found is None else found.start()) - start
            if found is None:
                return None, tried
            values[name] = text[start : found.start()]
            start = found.end()
        return values, tried


@dataclass(kw_only=True, frozen=True)
class _Alias:
    pattern: str
    matcher: AliasPattern
    tool: str
    fixed: dict[str, str]


class AliasPlanner:
    """Deterministic commands from `[aliases]`: no LLM, confidence 1.0."""

    def __init__(self, policy: Policy, registry: ToolRegistry) -> None:
        self.registry = registry
        self.aliases = [
            _Alias(pattern=p, matcher=AliasPattern.compile(p), tool=t.tool_name, fixed=dict(t.args))
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
            values = alias.matcher.match(text)
            if values is None:
                continue
            args: dict[str, Any] = {**alias.fixed, **values}
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
