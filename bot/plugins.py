"""Plugins: every Python tool Warden has comes through one door, the entry-point group
`warden.tools` — Warden's own built-ins included (see `[project.entry-points."warden.tools"]`
in pyproject.toml), so the door third parties use is the one the product itself is tested
through.

An entry point names either

- a `ToolRegistry` whose tools were declared with its `@registry.tool(...)` decorator, or
- a function `tools(ctx: PluginContext) -> Iterable[Tool]`, for tools that need Warden's
  store, chat or policy (bound once at start-up; `ctx.store` and `ctx.chat` are None while
  Warden only checks its configuration: `warden check`, `warden tools`).

A third-party package declares, in its own pyproject.toml::

    [project.entry-points."warden.tools"]
    pagerduty = "warden_pagerduty:REGISTRY"

Loading fails closed: a plugin that cannot be imported, returns something that is not a
tool, declares a tool with a bad contract, or a name another plugin (or a runbook) already
has, stops Warden at start-up with a `PluginError` naming the plugin. The same entry point
seen twice (a package installed both editable and from a wheel) loads once.

The contract is checked against a tool's own examples at start-up; a model proposes other
arguments. So the parts of the contract the gate calls on every proposal fail closed too
(`fail_closed`): a tier its `risk_from_args` cannot give is the highest, a precondition that
raises refuses the call, and a reach its `target_channel` cannot say is no channel at all.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import datetime
from importlib import metadata
from typing import Any

from pydantic import BaseModel

from bot.chat import Chat
from bot.errors import ConfigError, PreconditionFailed
from bot.policy import Policy
from bot.policy_types import Risk
from bot.tools import Tool, ToolRegistry
from storage.models import utcnow
from storage.repo import Store

log = logging.getLogger(__name__)

GROUP = "warden.tools"
OWN_DISTRIBUTION = "warden"
TOOL_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
RESERVED = frozenset({"warden_ask", "warden_cannot_help"})  # the planner's control tools


class PluginError(ConfigError):
    """A plugin that cannot be loaded, or declares a tool Warden cannot accept."""


@dataclass(kw_only=True, frozen=True)
class PluginContext:
    """What a tool factory may bind its tools to."""

    policy: Policy
    store: Store | None = None
    chat: Chat | None = None
    # Turns text a tool stores for good into its lasting, masked form (personal data becomes
    # a keyed placeholder): memory uses it; other tools that keep people's words should too.
    lasting: Callable[[str], str] = str
    # Warden's clock (the Lifecycle's): tools that date or schedule things read it, so a
    # test's clock moves them as it moves the jobs.
    clock: Callable[[], datetime] = utcnow


@dataclass(kw_only=True, frozen=True)
class Plugin:
    """One entry point of the group."""

    name: str
    value: str  # "module:attribute"
    distribution: str  # the installed package that declares it
    version: str

    @property
    def builtin(self) -> bool:
        return self.distribution == OWN_DISTRIBUTION

    @property
    def source(self) -> str:
        """How `warden tools` names where a tool came from."""
        return "built-in" if self.builtin else f"plugin {self.distribution}"

    def describe(self) -> str:
        return f"plugin {self.name!r} ({self.value}, from {self.distribution} {self.version})"


def discover() -> list[Plugin]:
    """Every entry point of the group, once each, in a stable order (Warden's own first)."""
    seen: dict[tuple[str, str], Plugin] = {}
    for ep in metadata.entry_points(group=GROUP):
        dist = ep.dist
        plugin = Plugin(
            name=ep.name,
            value=ep.value,
            distribution=(dist.metadata["Name"] if dist is not None else "unknown") or "unknown",
            version=(dist.version if dist is not None else "") or "",
        )
        seen.setdefault((plugin.name, plugin.value), plugin)
    return sorted(seen.values(), key=lambda p: (not p.builtin, p.distribution, p.name))


def _load_object(plugin: Plugin) -> Any:
    module_name, _, attribute = plugin.value.partition(":")
    try:
        obj: Any = __import__(module_name, fromlist=["_"])
        for part in attribute.split(".") if attribute else []:
            obj = getattr(obj, part)
    # Any import-time failure of third-party code; SystemExit too: a plugin that calls
    # sys.exit() while importing would otherwise end `warden check` with its status (0: "OK").
    except (Exception, SystemExit) as exc:
        raise PluginError(
            f"{plugin.describe()} failed to load: {type(exc).__name__}: {exc}"
        ) from None
    return obj


def check_tool(tool: object, where: str) -> Tool[Any]:
    """A tool's contract, checked before Warden accepts it (raises PluginError)."""
    if not isinstance(tool, Tool):
        raise PluginError(f"{where}: {tool!r} is not a Tool")
    problems: list[str] = []
    # A Tool is a plain dataclass: nothing checked its fields' types when it was made.
    if not (isinstance(tool.name, str) and TOOL_NAME.match(tool.name)):
        problems.append("its name must be lowercase letters, digits and _ (at most 64)")
    if isinstance(tool.name, str) and tool.name in RESERVED:
        problems.append("the name is reserved for Warden's planner")
    if not (isinstance(tool.description, str) and tool.description.strip()):
        problems.append("it needs a description (the model and the card show it)")
    if not callable(tool.run):
        problems.append("run must be a function")
    for field in ("risk_from_args", "dry_run", "undo", "target_channel"):
        if getattr(tool, field) is not None and not callable(getattr(tool, field)):
            problems.append(f"{field} must be a function or None")
    if not (isinstance(tool.preconditions, tuple) and all(map(callable, tool.preconditions))):
        problems.append("preconditions must be functions")
    if not isinstance(tool.examples, tuple):
        problems.append("examples must be a tuple of argument objects")
    if not (isinstance(tool.args, type) and issubclass(tool.args, BaseModel)):
        problems.append("its arguments must be a pydantic model")
    elif tool.args.model_config.get("extra") != "forbid":
        problems.append("its argument model must forbid extra fields (extra='forbid')")
    if not isinstance(tool.risk, Risk):
        problems.append(f"risk must be one of {', '.join(r.value for r in Risk)}")
    if (
        isinstance(tool.timeout_s, bool)
        or not isinstance(tool.timeout_s, int | float)
        or not 0 < tool.timeout_s <= 3600
    ):
        problems.append("timeout_s must be between 0 and 3600 seconds")
    if tool.read_only and (tool.undo is not None or tool.dry_run is not None):
        problems.append("a read-only tool has nothing to undo or preview")
    if tool.read_only and tool.risk is not Risk.LOW:
        problems.append("a read-only tool is low risk")
    if problems:  # what follows calls the argument model and risk_from_args
        raise PluginError(f"{where}: tool {tool.name!r}: {'; '.join(problems)}")
    for example in tool.examples:
        try:
            parsed = tool.validate(example)
        except Exception as exc:
            problems.append(f"example {example!r} is not valid: {exc}")
            continue
        if tool.risk_from_args is None:
            continue
        # The tier its arguments give must be a Risk: the gate ranks it, and a "high" string
        # would crash a decision instead of refusing one.
        try:
            raised: object = tool.risk_from_args(parsed)
        except Exception as exc:
            raised = f"{type(exc).__name__}: {exc}"
        if not isinstance(raised, Risk):
            problems.append(
                f"risk_from_args must return a Risk, not {raised!r} (for example {example!r})"
            )
    if problems:
        raise PluginError(f"{where}: tool {tool.name!r}: {'; '.join(problems)}")
    return tool


def tools_of(plugin: Plugin, ctx: PluginContext) -> list[Tool[Any]]:
    """The tools one plugin declares, checked, each marked with where it came from."""
    obj = _load_object(plugin)
    where = plugin.describe()
    if isinstance(obj, ToolRegistry):
        found: Iterable[object] = list(obj)
    elif callable(obj):
        try:
            made = obj(ctx)
            found = list(made)
        except PluginError:
            raise
        except (Exception, SystemExit) as exc:
            raise PluginError(
                f"{where} failed to make its tools: {type(exc).__name__}: {exc}"
            ) from None
    else:
        raise PluginError(
            f"{where} must name a ToolRegistry or a function tools(ctx) -> [Tool], "
            f"not {type(obj).__name__}"
        )
    return [fail_closed(replace(check_tool(t, where), source=plugin.source)) for t in found]


NO_CHANNEL = "(no channel: its target_channel failed)"
"""The reach of a call whose `target_channel` raised: matches no request's channel, so the
gate refuses it."""


def fail_closed(tool: Tool[Any]) -> Tool[Any]:
    """`tool` with the contract functions the gate calls for every proposal — the tier its
    arguments give, its preconditions, the channel it reaches — made to fail closed for
    arguments its examples never showed, instead of raising into the planner (which then
    drops the request with no answer): an exception or a tier that is not a `Risk` gives
    `Risk.CRITICAL`; a precondition that raises (other than `PreconditionFailed`, the way
    to refuse with a reason) refuses the call saying so; a `target_channel` that raises
    reaches `NO_CHANNEL`. Each failure is logged with the tool's name."""
    changes: dict[str, Any] = {}
    raise_tier = tool.risk_from_args
    if raise_tier is not None:

        def tier(args: Any) -> Risk:
            try:
                found: object = raise_tier(args)
            except Exception as exc:
                log.warning("%s: risk_from_args raised %s; critical", tool.name, repr(exc))
                return Risk.CRITICAL
            if not isinstance(found, Risk):
                log.warning("%s: risk_from_args gave %r; critical", tool.name, found)
                return Risk.CRITICAL
            return found

        changes["risk_from_args"] = tier
    if tool.preconditions:
        changes["preconditions"] = tuple(_guarded(tool.name, p) for p in tool.preconditions)
    reach = tool.target_channel
    if reach is not None:

        def target(args: Any) -> str:
            try:
                channel: object = reach(args)
            except Exception as exc:
                log.warning("%s: target_channel raised %s", tool.name, repr(exc))
                return NO_CHANNEL
            return channel if isinstance(channel, str) else NO_CHANNEL

        changes["target_channel"] = target
    return replace(tool, **changes) if changes else tool


def _guarded(name: str, check: Callable[[Any], str | None]) -> Callable[[Any], str | None]:
    def guarded(args: Any) -> str | None:
        try:
            reason: object = check(args)
        except PreconditionFailed:
            raise
        except Exception as exc:
            log.warning("%s: a precondition raised %s", name, repr(exc))
            return f"its precondition check failed ({type(exc).__name__}: {exc})"
        return str(reason) if reason else None  # as the gate reads it: falsy lets it through

    return guarded


def load_tools(ctx: PluginContext, plugins: Iterable[Plugin] | None = None) -> list[Tool[Any]]:
    """Every plugin's tools; a name declared twice is an error naming both plugins."""
    owner: dict[str, Plugin] = {}
    out: list[Tool[Any]] = []
    for plugin in discover() if plugins is None else plugins:
        for tool in tools_of(plugin, ctx):
            if tool.name in owner:
                first = owner[tool.name]
                raise PluginError(
                    f"tool {tool.name!r} is declared twice by {plugin.describe()}"
                    if first == plugin
                    else f"tool {tool.name!r} is declared by {first.describe()} "
                    f"and by {plugin.describe()}"
                )
            owner[tool.name] = plugin
            out.append(tool)
    if not any(p.builtin for p in owner.values()):
        raise PluginError(
            "Warden's own tools were not found: the package is not installed "
            "(pip install -e .), so its entry points are missing"
        )
    return out
