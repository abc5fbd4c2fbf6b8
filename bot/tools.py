"""The tool registry: every action Warden can take is a `Tool` with a declared contract.

A tool declares its pydantic argument model, its risk tier and how arguments can raise it,
preconditions, an optional dry-run preview and an optional undo. Tools never decide whether
they may run: the gate does (`bot/gate.py`). `read_only` tools have no side effects and may
be run by the agent loop to gather facts; everything else only ever runs after the gate.

Register a tool with the decorator::

    @BUILTINS.tool(name="post_message", args=PostMessageArgs, risk=Risk.LOW,
                   description="Post a message to a channel")
    def post_message(args: PostMessageArgs, ctx: ToolContext) -> ToolResult: ...
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ValidationError

from bot.chat import Chat
from bot.errors import ToolArgumentsError, UnknownTool
from bot.policy_types import Risk

A = TypeVar("A", bound=BaseModel)


@dataclass(kw_only=True, frozen=True)
class ToolContext:
    """What a running tool may know. `action_id` is the idempotency key for the call."""

    action_id: str
    trace_id: str
    requester: str
    channel: str | None = None
    thread_ts: str | None = None
    chat: Chat | None = None


@dataclass(kw_only=True, frozen=True)
class ToolResult:
    """The outcome of running (or undoing) a tool. `output` is plain text, possibly long."""

    ok: bool
    output: str = ""  # what the tool or command printed: untrusted, redacted before storing
    note: str = ""  # Warden's own words about the result, e.g. "posted to <#C…>": trusted
    undo_data: dict[str, Any] = field(default_factory=dict)
    # The call was cut off (a timeout): it may have done part or all of its work, so the
    # action needs a person's review rather than being reported as failed.
    unknown: bool = False


RunFn = Callable[[A, ToolContext], ToolResult]
UndoFn = Callable[[A, ToolContext, dict[str, Any]], ToolResult]
PreviewFn = Callable[[A, ToolContext], str]  # raises ToolFailed when no preview can be made
Precondition = Callable[[A], str | None]


@dataclass(kw_only=True, frozen=True)
class Tool(Generic[A]):
    """A registered tool and its contract."""

    name: str
    description: str
    args: type[A]
    run: RunFn[A]
    risk: Risk = Risk.MEDIUM
    risk_from_args: Callable[[A], Risk] | None = None
    preconditions: tuple[Precondition[A], ...] = ()
    dry_run: PreviewFn[A] | None = None
    undo: UndoFn[A] | None = None
    read_only: bool = False
    timeout_s: float = 60.0
    examples: tuple[dict[str, Any], ...] = ()
    # For tools that post to Slack: the channel a call targets, so the gate can keep it to
    # the request's own channel (and those `tools.NAME.channels` lists).
    target_channel: Callable[[A], str] | None = None
    # Where it came from, for `warden tools`: "built-in", "runbook", "endpoint" or
    # "plugin <package>" (set by the loader, bot/plugins.py).
    source: str = "built-in"

    def validate(self, raw: dict[str, Any]) -> A:
        """Validate raw arguments; raise ToolArgumentsError with a readable reason."""
        if not isinstance(raw, dict):
            raise ToolArgumentsError(f"{self.name}: arguments must be an object")
        try:
            return self.args.model_validate(raw)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'arguments'}: "
                f"{e['msg'].removeprefix('Value error, ')}"
                for e in exc.errors()
            )
            raise ToolArgumentsError(f"{self.name}: {problems}") from None

    def canonical(self, args: A) -> str:
        """Canonical JSON of validated arguments: what an approval binds to."""
        return canonical_json(args.model_dump(mode="json"))

    def risk_for(self, args: A) -> Risk:
        """The tier for this call: the declared tier, raised (never lowered) by arguments."""
        if self.risk_from_args is None:
            return self.risk
        return self.risk.at_least(self.risk_from_args(args))

    def failed_precondition(self, args: A) -> str | None:
        for check in self.preconditions:
            reason = check(args)
            if reason:
                return reason
        return None

    @property
    def reversible(self) -> bool:
        return self.undo is not None

    def json_schema(self) -> dict[str, Any]:
        return self.args.model_json_schema()


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


class ToolRegistry:
    """Tools by name. Lookup of an unknown name raises `UnknownTool` (fail closed)."""

    def __init__(self, tools: Iterable[Tool[Any]] = ()) -> None:
        self._tools: dict[str, Tool[Any]] = {}
        for t in tools:
            self.register(t)

    def register(self, tool: Tool[Any]) -> Tool[Any]:
        if tool.name in self._tools:
            raise ValueError(f"tool {tool.name!r} is registered twice")
        self._tools[tool.name] = tool
        return tool

    def tool(
        self,
        *,
        name: str,
        args: type[A],
        description: str,
        risk: Risk = Risk.MEDIUM,
        risk_from_args: Callable[[A], Risk] | None = None,
        preconditions: Iterable[Precondition[A]] = (),
        dry_run: PreviewFn[A] | None = None,
        undo: UndoFn[A] | None = None,
        read_only: bool = False,
        timeout_s: float = 60.0,
        examples: Iterable[dict[str, Any]] = (),
        target_channel: Callable[[A], str] | None = None,
    ) -> Callable[[RunFn[A]], RunFn[A]]:
        """Decorator registering a run function together with its contract."""

        def register(run: RunFn[A]) -> RunFn[A]:
            self.register(
                Tool(
                    name=name,
                    description=description,
                    args=args,
                    run=run,
                    risk=risk,
                    risk_from_args=risk_from_args,
                    preconditions=tuple(preconditions),
                    dry_run=dry_run,
                    undo=undo,
                    read_only=read_only,
                    timeout_s=timeout_s,
                    examples=tuple(examples),
                    target_channel=target_channel,
                )
            )
            return run

        return register

    def get(self, name: str) -> Tool[Any]:
        try:
            return self._tools[name]
        except KeyError:
            raise UnknownTool(f"there is no tool called {name!r}") from None

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def __iter__(self) -> Iterator[Tool[Any]]:
        return iter(sorted(self._tools.values(), key=lambda t: t.name))

    def names(self) -> list[str]:
        return sorted(self._tools)
