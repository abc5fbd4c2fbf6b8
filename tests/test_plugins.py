"""The plugin API (bot/plugins.py) under attack, `warden tools`, and the example plugin
(examples/warden-example-plugin) end to end through Slack.

Every way a plugin can be broken — it fails to import, names something that is not a tool,
declares a tool with a bad contract, or a name another plugin or a runbook has — stops
start-up with an error naming the plugin: `warden check` (and `warden tools`) exit 2 saying
so, and `bot.app.build` raises. Warden's own tools come through the same door.
"""

from __future__ import annotations

import importlib
import json
import logging
import re
import sys
import textwrap
import tomllib
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import bot.plugins as plugins
from bot.app import build, build_registry
from bot.errors import ConfigError
from bot.execution import Executor
from bot.gate import Gate
from bot.plugins import Plugin, PluginContext, PluginError, discover, load_tools
from bot.policy import Policy, parse_policy
from bot.settings import Settings
from handlers.blocks import APPROVE
from handlers.cli import main
from tests.conftest import APPROVER, REQUESTER, RecordingChat, policy_data
from tests.slack_fixtures import CHANNEL, SlackFactory, buttons, card_text
from tests.test_policy import _toml

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = "plugin warden-example-plugin"
OWN = {
    "messages": "bot.builtin_tools:BUILTINS",
    "lookups": "bot.lookup_tools:tools",
    "memory": "bot.memory:tools",
}

# A throwaway plugin module: one tool whose contract each test bends. `run` and `undo` leave
# a mark in MARKS so a test can tell whether tool code ran.
TOOL_MODULE = """
from pydantic import BaseModel, ConfigDict

from bot.policy_types import Risk
from bot.tools import Tool, ToolRegistry, ToolResult

MARKS = []


class Args(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    team: str = "payments"


class Loose(BaseModel):
    team: str = "payments"


def run(args, ctx):
    MARKS.append(("run", ctx.action_id))
    return ToolResult(ok=True, output="ran")


def undo(args, ctx, data):
    MARKS.append(("undo", ctx.action_id))
    return ToolResult(ok=True)


def preview(args, ctx):
    MARKS.append(("dry_run", ctx.action_id))
    return f"would page {args.team}"


REGISTRY = ToolRegistry()
REGISTRY.tool(**{spec})(run)
"""
GOOD = 'name="acme_page", args=Args, description="Page someone", risk=Risk.LOW'


@pytest.fixture(autouse=True)
def _quiet(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """`warden tools` quiets the root logger for its own output; put it back for the next
    test. No ambient Claude key either: everything here is offline."""
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    monkeypatch.delenv("ANTHROPIC_BASE_URL", raising=False)
    level = logging.getLogger().level
    yield
    logging.getLogger().setLevel(level)


@dataclass
class Modules:
    """Throwaway plugin modules written to a directory on sys.path, forgotten afterwards."""

    where: Path
    names: list[str] = field(default_factory=list)

    def write(self, source: str) -> str:
        name = f"acme_{uuid.uuid4().hex[:10]}"
        (self.where / f"{name}.py").write_text(textwrap.dedent(source))
        importlib.invalidate_caches()
        self.names.append(name)
        return name

    def tool(self, spec: str = GOOD) -> str:
        return self.write(TOOL_MODULE.replace("{spec}", "dict(" + spec + ")"))


@pytest.fixture
def modules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Modules]:
    where = tmp_path / "site"
    where.mkdir()
    monkeypatch.syspath_prepend(str(where))
    made = Modules(where)
    yield made
    for name in made.names:
        sys.modules.pop(name, None)


def acme(value: str, name: str = "acme", distribution: str = "acme-tools") -> Plugin:
    return Plugin(name=name, value=value, distribution=distribution, version="1.0")


def own_plugins() -> list[Plugin]:
    return [p for p in discover() if p.builtin]


def installed(monkeypatch: pytest.MonkeyPatch, *extra: Plugin, own: bool = True) -> None:
    """Discovery finds Warden's own entry points (unless `own` is False) and `extra`."""
    found = [*(own_plugins() if own else []), *extra]
    monkeypatch.setattr(plugins, "discover", lambda: list(found))


def policy_file(tmp_path: Path, **overrides: Any) -> Path:
    path = tmp_path / "warden.toml"
    path.write_text(_toml(policy_data(tmp_path, **overrides)))
    return path


def start_up_error(path: Path, capsys: pytest.CaptureFixture[str]) -> str:
    """`warden check` and `warden tools` both refuse (exit 2); what they said."""
    assert main(["check", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert main(["tools", "--config", str(path)]) == 2
    assert same(capsys.readouterr().err) == same(err)
    return err


def same(message: str) -> str:
    """A message with object addresses (`<object object at 0x7f…>`) made comparable."""
    return re.sub(r"0x[0-9a-f]+", "0x…", message)


# -- Warden's own tools come through the entry points ----------------------------------------


def test_wardens_own_tools_are_entry_points_of_the_group() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = project["entry-points"][plugins.GROUP]
    assert OWN.items() <= declared.items()  # pyproject.toml declares these (among others) …
    own = {p.name: p.value for p in own_plugins()}
    assert own == declared  # … and what it declares is installed (else: pip install -e .)
    assert discover()[: len(own)] == own_plugins()  # Warden's own load first


def test_built_ins_lookups_and_memory_each_come_from_their_entry_point(
    policy: Policy, monkeypatch: pytest.MonkeyPatch
) -> None:
    everything = {t.name: t for t in load_tools(PluginContext(policy=policy))}
    came_from = {
        "messages": {"post_message"},
        "lookups": {"list_pending_actions", "lookup_user", "who_is_on_call"},
        "memory": {"remember", "search_memory"},
    }
    for name, tools in came_from.items():
        assert all(everything[t].source == "built-in" for t in tools)
        without = [p for p in discover() if not (p.builtin and p.name == name)]
        monkeypatch.setattr(plugins, "discover", lambda without=without: list(without))
        left = {t.name for t in load_tools(PluginContext(policy=policy))}
        assert left == set(everything) - tools, name
    monkeypatch.undo()
    # Without the `messages` entry point the policy's `[tools.post_message]` names nothing.
    installed(monkeypatch, *[p for p in discover() if p.name != "messages"], own=False)
    with pytest.raises(ConfigError, match=r"tools\.post_message: no such tool"):
        build_registry(policy)


@pytest.mark.parametrize("how", ["discover", "entry_points"])
def test_without_wardens_own_entry_points_it_refuses_to_start(
    how: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    if how == "discover":
        installed(monkeypatch, own=False)
    else:  # the package's metadata is gone: nothing in the group at all
        monkeypatch.setattr(plugins.metadata, "entry_points", lambda **_: [])
    err = start_up_error(policy_file(tmp_path), capsys)
    assert "Warden's own tools were not found" in err and "pip install -e ." in err


# -- plugins that cannot be loaded ------------------------------------------------------------

BROKEN: dict[str, tuple[str | None, str, str]] = {
    # case: (module source, or None for a module that does not exist; attribute; the error)
    "import error": (
        "import acme_pagerduty_sdk_not_installed\n",
        "REGISTRY",
        "ModuleNotFoundError",
    ),
    "syntax error": ("def tools(ctx:\n", "tools", "SyntaxError"),
    "raises at import": (
        "raise RuntimeError('PAGERDUTY_TOKEN is not set')\n",
        "REGISTRY",
        "RuntimeError: PAGERDUTY_TOKEN is not set",
    ),
    # Not caught, it would end `warden check` with the plugin's status: 0, "OK".
    "exits at import": ("import sys\nsys.exit(0)\n", "REGISTRY", "SystemExit"),
    "not installed": (None, "REGISTRY", "ModuleNotFoundError"),
    "no such attribute": ("X = 1\n", "REGISTRY", "AttributeError"),
    "not a registry": ("REGISTRY = 42\n", "REGISTRY", "must name a ToolRegistry or a function"),
    "returns a non-tool": ("def tools(ctx):\n    return [object()]\n", "tools", "is not a Tool"),
    "returns a string": ("def tools(ctx):\n    return 'acme_page'\n", "tools", "is not a Tool"),
    "returns nothing": ("def tools(ctx):\n    pass\n", "tools", "failed to make its tools"),
    "factory raises": (
        "def tools(ctx):\n    raise KeyError('PAGERDUTY_TOKEN')\n",
        "tools",
        "failed to make its tools: KeyError",
    ),
    "factory exits": (
        "import sys\ndef tools(ctx):\n    sys.exit(3)\n",
        "tools",
        "failed to make its tools: SystemExit",
    ),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_a_plugin_that_cannot_be_loaded_stops_start_up_naming_it(
    case: str,
    modules: Modules,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    source, attribute, error = BROKEN[case]
    module = modules.write(source) if source is not None else "acme_never_installed"
    installed(monkeypatch, acme(f"{module}:{attribute}"))
    err = start_up_error(policy_file(tmp_path), capsys)
    assert f"plugin 'acme' ({module}:{attribute}, from acme-tools 1.0)" in err
    assert error in err


# -- plugins that declare a tool Warden cannot accept -----------------------------------------

BAD_TOOLS: dict[str, tuple[str, str]] = {
    "bad name": (GOOD.replace('"acme_page"', '"Acme-Page"'), "lowercase letters"),
    "name not text": (GOOD.replace('"acme_page"', "None"), "lowercase letters"),
    "reserved name": (GOOD.replace('"acme_page"', '"warden_ask"'), "reserved"),
    "no description": (GOOD.replace('"Page someone"', '"   "'), "needs a description"),
    "description not text": (GOOD.replace('"Page someone"', "None"), "needs a description"),
    "arguments allow extras": (GOOD.replace("args=Args", "args=Loose"), "extra='forbid'"),
    "arguments not a model": (GOOD.replace("args=Args", "args=dict"), "a pydantic model"),
    "risk not a tier": (GOOD.replace("risk=Risk.LOW", 'risk="low"'), "risk must be one of"),
    "read-only with undo": (GOOD + ", read_only=True, undo=undo", "nothing to undo"),
    "read-only with a dry run": (GOOD + ", read_only=True, dry_run=preview", "or preview"),
    "read-only but risky": (
        GOOD.replace("Risk.LOW", "Risk.HIGH") + ", read_only=True",
        "a read-only tool is low risk",
    ),
    "invalid example": (GOOD + ", examples=[{'team': 5}]", "example {'team': 5} is not valid"),
    "example with extra": (GOOD + ", examples=[{'cc': 'all'}]", "is not valid"),
    "no timeout": (GOOD + ", timeout_s=0", "timeout_s"),
    "timeout not a number": (GOOD + ", timeout_s='60'", "timeout_s"),
    "undo not a function": (GOOD + ", undo='undo'", "undo must be a function"),
    "tier from arguments not a tier": (
        GOOD + ", risk_from_args=lambda a: 'high', examples=[{}]",
        "risk_from_args must return a Risk, not 'high'",
    ),
}


@pytest.mark.parametrize("case", list(BAD_TOOLS))
def test_a_tool_with_a_bad_contract_stops_start_up_naming_plugin_and_tool(
    case: str,
    modules: Modules,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    spec, error = BAD_TOOLS[case]
    module = modules.tool(spec)
    installed(monkeypatch, acme(f"{module}:REGISTRY"))
    err = start_up_error(policy_file(tmp_path), capsys)
    assert f"plugin 'acme' ({module}:REGISTRY, from acme-tools 1.0): tool " in err
    assert error in err


def test_the_same_contract_is_accepted_when_nothing_is_bent(
    modules: Modules, policy: Policy, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The bad-contract cases above fail for their one reason: the unbent tool loads."""
    installed(monkeypatch, acme(f"{modules.tool()}:REGISTRY"))
    registry = build_registry(policy)
    assert registry.get("acme_page").source == "plugin acme-tools"


# -- names: between plugins, with Warden's own, with runbooks ----------------------------------


def test_two_plugins_declaring_one_name_stop_start_up_naming_both(
    modules: Modules, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    first, second = modules.tool(), modules.tool()
    installed(
        monkeypatch,
        acme(f"{first}:REGISTRY"),
        acme(f"{second}:REGISTRY", name="pager", distribution="pager-tools"),
    )
    err = start_up_error(policy_file(tmp_path), capsys)
    assert (
        f"tool 'acme_page' is declared by plugin 'acme' ({first}:REGISTRY, from acme-tools "
        f"1.0) and by plugin 'pager' ({second}:REGISTRY, from pager-tools 1.0)"
    ) in err


def test_a_plugin_cannot_take_a_built_in_name(
    modules: Modules, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    module = modules.tool(GOOD.replace('"acme_page"', '"post_message"'))
    installed(monkeypatch, acme(f"{module}:REGISTRY"))
    err = start_up_error(policy_file(tmp_path), capsys)
    assert "tool 'post_message' is declared by plugin 'messages'" in err
    assert f"and by plugin 'acme' ({module}:REGISTRY" in err


def test_one_plugin_declaring_a_name_twice_is_named(
    modules: Modules, policy: Policy, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = modules.write(
        TOOL_MODULE.replace("REGISTRY.tool(**{spec})(run)", "")
        + "\ndef tools(ctx):\n"
        + "    one = Tool(name='acme_page', description='Page', args=Args, run=run,"
        + " risk=Risk.LOW)\n"
        + "    return [one, one]\n"
    )
    installed(monkeypatch, acme(f"{module}:tools"))
    with pytest.raises(PluginError, match=r"'acme_page' is declared twice by plugin 'acme'"):
        build_registry(policy)


@dataclass(frozen=True)
class FakeDistribution:
    metadata: dict[str, str]
    version: str


@dataclass(frozen=True)
class FakeEntryPoint:
    name: str
    value: str
    dist: FakeDistribution


def test_the_same_entry_point_seen_twice_loads_once(
    modules: Modules, policy: Policy, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A package installed both editable and from a wheel: its entry point appears twice."""
    module = modules.tool()
    real = list(plugins.metadata.entry_points(group=plugins.GROUP))
    acme_dist = FakeDistribution({"Name": "acme-tools"}, "1.0")
    twice = [FakeEntryPoint("acme", f"{module}:REGISTRY", acme_dist) for _ in range(2)]

    def entry_points(*, group: str) -> list[Any]:
        assert group == plugins.GROUP
        return [*twice, *real]

    monkeypatch.setattr(plugins.metadata, "entry_points", entry_points)
    found = [p for p in discover() if p.distribution == "acme-tools"]
    assert found == [acme(f"{module}:REGISTRY")]
    own = len(own_plugins())
    assert [p.builtin for p in discover()][:own] == [True] * own  # Warden's first
    registry = build_registry(policy)
    assert registry.get("acme_page").source == "plugin acme-tools"


def test_a_runbook_named_like_a_plugin_tool_stops_start_up(
    modules: Modules, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    installed(monkeypatch, acme(f"{modules.tool()}:REGISTRY"))
    runbooks = policy_data(tmp_path)["runbooks"]
    runbooks["acme_page"] = runbooks.pop("flush_cache")
    aliases = {k: v for k, v in policy_data(tmp_path)["aliases"].items() if "flush" not in k}
    err = start_up_error(policy_file(tmp_path, runbooks=runbooks, aliases=aliases), capsys)
    assert "runbooks.acme_page: the name is taken by a plugin acme-tools tool" in err


def test_build_raises_for_a_broken_plugin_and_binds_factories_to_its_store(
    database_url: str, modules: Modules, policy: Policy, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What `warden serve` and `warden dev` run: the same refusal, on both databases; and a
    factory plugin gets Warden's store and chat there (None while only checking)."""
    settings = Settings(DATABASE_URL=database_url)
    for source, attribute, error in (BROKEN["raises at import"], BROKEN["returns a non-tool"]):
        module = modules.write(source or "")
        installed(monkeypatch, acme(f"{module}:{attribute}"))
        with pytest.raises(PluginError, match=f"plugin 'acme' \\({module}:{attribute}") as exc:
            build(settings, policy=policy, chat=RecordingChat())
        assert error in str(exc.value)
    seen = modules.write(
        TOOL_MODULE.replace("REGISTRY.tool(**{spec})(run)", "")
        + "\nSEEN = []\n\ndef tools(ctx):\n"
        + "    SEEN.append((ctx.store is not None, ctx.chat is not None))\n"
        + "    return [Tool(name='acme_page', description='Page', args=Args, run=run,"
        + " risk=Risk.LOW)]\n"
    )
    installed(monkeypatch, acme(f"{seen}:tools"))
    build_registry(policy)
    w = build(settings, policy=policy, chat=RecordingChat())
    try:
        assert w.registry.get("acme_page").source == "plugin acme-tools"
    finally:
        w.workers.shutdown(wait=True)
        w.lifecycle.stop()
        w.db.dispose()
    assert sys.modules[seen].SEEN == [(False, False), (True, True)]


# -- warden tools ------------------------------------------------------------------------------


def listing(path: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, dict[str, Any]]:
    assert main(["tools", "--json", "--config", str(path)]) == 0
    return {t["name"]: t for t in json.loads(capsys.readouterr().out)}


def test_warden_tools_lists_every_tool_with_source_tier_autonomy_undo_and_dry_run(
    modules: Modules,
    tmp_path: Path,
    policy: Policy,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    module = modules.tool(GOOD + ", risk_from_args=lambda a: Risk.LOW, dry_run=preview")
    installed(monkeypatch, *[p for p in discover() if not p.builtin], acme(f"{module}:REGISTRY"))
    path = policy_file(tmp_path)
    tools = listing(path, capsys)
    registry = build_registry(policy)
    assert set(tools) == set(registry.names())
    gate = Gate(policy, registry)
    for name, t in tools.items():  # autonomy as the gate reports it for /warden autonomy
        label = gate.autonomy_label(name, {})
        assert t["autonomy"] == ("read-only" if label.startswith("read-only") else label)
    assert tools["post_message"] | {"description": ""} == {
        "name": "post_message",
        "source": "built-in",
        "risk": "low",
        "raised_by_arguments": False,
        "max_risk": None,
        "autonomy": "auto",
        "read_only": False,
        "undo": True,
        "dry_run": False,
        "description": "",
    }
    assert tools["restart_service"]["source"] == "runbook"
    assert (tools["restart_service"]["undo"], tools["restart_service"]["dry_run"]) == (True, True)
    assert tools["scale"]["raised_by_arguments"] and tools["scale"]["max_risk"] == "critical"
    assert tools["lookup_user"]["autonomy"] == "read-only" and tools["lookup_user"]["read_only"]
    assert tools["acme_page"]["source"] == "plugin acme-tools"
    assert tools["acme_page"]["raised_by_arguments"] and tools["acme_page"]["dry_run"]
    assert tools["remember"]["autonomy"] == "auto"  # Warden's default for it, from the policy
    assert main(["tools", "--config", str(path)]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == [
        "TOOL",
        "SOURCE",
        "TIER",
        "AUTONOMY",
        "UNDO",
        "DRY",
        "RUN",
        "DESCRIPTION",
    ]
    row = {line.split()[0]: line for line in table[1:] if line.strip()}
    assert "plugin acme-tools" in row["acme_page"] and "low (args may raise)" in row["acme_page"]
    assert "medium (args: up to critical)" in row["scale"]
    assert row["post_message"].split()[1:4] == ["built-in", "low", "auto"]
    assert "Post a message to a Slack channel" in row["post_message"]


def test_policy_autonomy_shows_in_the_listing(tmp_path: Path, capsys: Any) -> None:
    path = policy_file(tmp_path, tools={"restart_service": {"autonomy": "suggest"}})
    tools = listing(path, capsys)
    assert tools["restart_service"]["autonomy"] == "suggest"
    assert tools["flush_cache"]["autonomy"] == "approve"


# -- warden tools show -------------------------------------------------------------------------


@dataclass
class ToolCalls:
    """Which of the executor's faces ran during a `warden tools show`."""

    faces: list[str] = field(default_factory=list)


@pytest.fixture
def executor_faces(monkeypatch: pytest.MonkeyPatch) -> ToolCalls:
    """Count the executor's dry runs; a run, undo or lookup during `show` fails the test."""
    calls = ToolCalls()
    dry_run = Executor.dry_run

    def counted(self: Executor, *args: Any, **kwargs: Any) -> Any:
        calls.faces.append("dry_run")
        return dry_run(self, *args, **kwargs)

    def forbidden(face: str) -> Callable[..., Any]:
        def call(*_: Any, **__: Any) -> Any:
            calls.faces.append(face)
            raise AssertionError(f"`warden tools show` called the executor's {face}")

        return call

    monkeypatch.setattr(Executor, "dry_run", counted)
    for face in ("run", "undo", "verify", "read_only"):
        if hasattr(Executor, face):
            monkeypatch.setattr(Executor, face, forbidden(face))
    return calls


def show(path: Path, *argv: str) -> list[str]:
    return ["tools", "show", *argv, "--config", str(path)]


def test_show_validates_gives_the_tier_and_renders_the_card_with_its_dry_run(
    tmp_path: Path, executor_faces: ToolCalls, capsys: pytest.CaptureFixture[str]
) -> None:
    path = policy_file(tmp_path)
    assert main(show(path, "restart_service", "--args", '{"service": "web"}')) == 0
    out = capsys.readouterr().out
    assert "restart_service — runbook" in out
    assert 'arguments: {"service":"web"} (valid)' in out
    assert "tier for these arguments: high" in out
    assert "gate: would wait for 1 approval(s)" in out
    assert "dry run (ok, through the executor, offline):\n    would restart web" in out
    card = out.split("card:\n", 1)[1]
    assert "restart_service — awaiting approval" in card
    assert "one approver who is not the requester" in card
    assert "Preview (dry run):\n│     would restart web" in card
    assert "[Approve] [Approve identical calls for 30 min] [Edit] [Reject] [Break glass]" in card
    assert executor_faces.faces == ["dry_run"]
    assert not (tmp_path / "runbook.log").exists()  # the runbook itself never ran


def test_show_raised_tier_for_arguments_and_two_approvers_for_critical(
    tmp_path: Path, executor_faces: ToolCalls, capsys: pytest.CaptureFixture[str]
) -> None:
    path = policy_file(tmp_path)
    assert main(show(path, "scale", "--args", '{"service": "api", "env": "prod"}')) == 0
    out = capsys.readouterr().out
    assert "tier for these arguments: critical (declared medium; these arguments raise it)" in out
    assert "gate: would wait for 2 approval(s)" in out
    assert "two approvers, neither the requester" in out
    assert "would scale api in prod" in out


def test_show_a_plugin_tool_runs_only_its_dry_run(
    modules: Modules,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    executor_faces: ToolCalls,
    capsys: pytest.CaptureFixture[str],
) -> None:
    module = modules.tool(GOOD + ", dry_run=preview, undo=undo")
    installed(monkeypatch, acme(f"{module}:REGISTRY"))
    path = policy_file(tmp_path)
    assert main(show(path, "acme_page", "--args", '{"team": "platform"}')) == 0
    out = capsys.readouterr().out
    assert "acme_page — plugin acme-tools" in out and "would page platform" in out
    assert "has: undo for 1h after it succeeds, a dry run" in out
    marks = sys.modules[module].MARKS
    assert [face for face, _ in marks] == ["dry_run"]  # never run, never undone
    assert marks[0][1].startswith("dryrun-")  # the executor's dry-run context
    assert main(show(path, "acme_page", "--no-dry-run")) == 0
    assert "dry run: not run (--no-dry-run)" in capsys.readouterr().out
    assert len(marks) == 1 and executor_faces.faces == ["dry_run"]


def test_show_a_read_only_lookup_runs_nothing(
    modules: Modules,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    executor_faces: ToolCalls,
    capsys: pytest.CaptureFixture[str],
) -> None:
    module = modules.tool(GOOD + ", read_only=True")
    installed(monkeypatch, acme(f"{module}:REGISTRY"))
    path = policy_file(tmp_path)
    assert main(show(path, "acme_page", "--args", '{"team": "platform"}')) == 0
    assert "read-only lookup" in capsys.readouterr().out
    assert sys.modules[module].MARKS == [] and executor_faces.faces == []


def test_show_says_renders_an_alias_before_it_is_deployed(
    tmp_path: Path, executor_faces: ToolCalls, capsys: pytest.CaptureFixture[str]
) -> None:
    aliases = {
        **policy_data(tmp_path)["aliases"],
        "bounce {service}": {"runbook": "restart_service"},
    }
    path = policy_file(tmp_path, aliases=aliases)
    assert main(show(path, "--says", "bounce checkout-api")) == 0
    out = capsys.readouterr().out
    assert 'arguments: {"service":"checkout-api"} (valid)' in out
    assert 'matches the command "bounce {service}"' in out
    assert main(show(path, "flush_cache", "--says", "bounce web")) == 2
    assert "'bounce web' calls 'restart_service', not 'flush_cache'" in capsys.readouterr().err


def test_show_block_kit_json_is_the_card_slack_gets(
    tmp_path: Path, executor_faces: ToolCalls, capsys: pytest.CaptureFixture[str]
) -> None:
    path = policy_file(tmp_path)
    assert main(show(path, "--says", "restart web", "--json")) == 0
    message = json.loads(capsys.readouterr().out)
    assert message["text"] == "restart_service: awaiting approval (high risk)"
    assert message["blocks"][0]["text"]["text"] == "restart_service — awaiting approval"
    text = card_text(message)
    assert "would restart web" in text and "Preview (dry run)" in text
    actions = [b for b in message["blocks"] if b["type"] == "actions"]
    assert actions[0]["elements"][0]["action_id"] == APPROVE
    assert main(["tools", "--json", "show", "lookup_user", "--args", '{"user": "U0REQ"}',
                 "--config", str(path)]) == 0  # fmt: skip
    assert json.loads(capsys.readouterr().out)["blocks"] is None  # a lookup has no card


def test_show_a_call_the_gate_refuses_exits_1_with_the_reason_on_the_card(
    tmp_path: Path, executor_faces: ToolCalls, capsys: pytest.CaptureFixture[str]
) -> None:
    path = policy_file(tmp_path)
    args = '{"channel": "C0OPS", "text": "hello"}'
    assert main(show(path, "post_message", "--args", args)) == 1
    out = capsys.readouterr().out
    assert "gate: would refuse it: Warden's admin channel is not a place a tool may post" in out
    assert "Refused by the gate" in out
    assert (
        main(show(path, "restart_service", "--args", '{"service":"web"}', "--confidence", "0.2"))
        == 1
    )
    assert "would ask a question instead" in capsys.readouterr().out
    assert executor_faces.faces == []  # nothing previewed for a call that goes nowhere


@pytest.mark.parametrize(
    ("argv", "error"),
    [
        (["restart_service", "--args", '{"service": '], "--args is not valid JSON"),
        (["restart_service", "--args", '["web"]'], "--args must be a JSON object"),
        (["reboot_everything"], "there is no tool called 'reboot_everything' (known: "),
        (["restart_service", "--args", '{"service": "Web; rm -rf /"}'], "invalid arguments"),
        (["restart_service", "--args", '{"service": "web", "now": true}'], "invalid arguments"),
        (["--says", "make me a sandwich"], "no alias turns 'make me a sandwich' into a call"),
        (["--says", "restart web", "--args", "{}"], "give --args or --says, not both"),
        ([], "name a tool"),
        (["restart_service", "--args", '{"service": "web"}', "--confidence", "7"], "--confidence"),
    ],
)
def test_show_bad_input_is_a_clear_message_and_exit_2(
    argv: list[str],
    error: str,
    tmp_path: Path,
    executor_faces: ToolCalls,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(show(policy_file(tmp_path), *argv)) == 2
    captured = capsys.readouterr()
    assert error in captured.err and "Traceback" not in captured.err
    assert captured.out == "" and executor_faces.faces == []


# -- the example plugin, installed, end to end -------------------------------------------------


def test_the_example_plugin_is_listed_and_pages_through_slack(
    slack_factory: SlackFactory,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Installed (`make check`: pip install -e examples/warden-example-plugin): `warden tools`
    lists its tools as a plugin's; an alias targets `page_oncall`; the mention's card shows
    its dry run; an approval pages once; Undo cancels the page."""
    pager = tmp_path / "pages.jsonl"
    monkeypatch.setenv("WARDEN_EXAMPLE_PAGER_FILE", str(pager))
    monkeypatch.delenv("WARDEN_EXAMPLE_TEAMS", raising=False)
    aliases = {**policy_data(tmp_path)["aliases"], "page {team} {message}": {"tool": "page_oncall"}}
    path = policy_file(tmp_path, aliases=aliases)
    tools = listing(path, capsys)
    assert tools.get("page_oncall", {}).get("source") == EXAMPLE, (
        "the example plugin is not installed: pip install -e examples/warden-example-plugin"
    )
    assert tools["roll_dice"]["source"] == EXAMPLE and tools["roll_dice"]["autonomy"] == "read-only"
    assert tools["page_oncall"]["undo"] and tools["page_oncall"]["dry_run"]

    slack = slack_factory(policy_=parse_policy(policy_data(tmp_path, aliases=aliases)))
    action, card = slack.mention_and_card("page payments checkout is failing")
    assert (action.tool, action.status, action.risk) == ("page_oncall", "awaiting_approval", "low")
    assert json.loads(action.args_json) == {
        "team": "payments",
        "message": "checkout is failing",
        "urgent": False,
    }
    shown = card_text(card)
    assert "would page the payments on-call: checkout is failing" in shown  # its dry run
    assert buttons(card) == ["Approve", "Approve identical calls for 30 min", "Edit", "Reject"]
    assert not pager.exists()
    assert slack.ws.click(APPROVER, CHANNEL, card["ts"], "warden_approve").status == 200
    slack.idle()
    done = slack.store.get_action(action.id)
    assert done.status == "succeeded", done.status_note
    sent = [json.loads(line) for line in pager.read_text().splitlines()]
    assert [(p["event"], p["page"], p["team"]) for p in sent] == [("sent", action.id, "payments")]
    assert sent[0]["requested_by"] == REQUESTER
    final = slack.card(action.id)
    assert "paged the payments on-call" in card_text(final) and "Undo" in buttons(final)
    assert slack.ws.click(APPROVER, CHANNEL, final["ts"], "warden_undo").status == 200
    slack.idle()
    assert slack.store.get_action(action.id).status == "undone"
    events = [json.loads(line)["event"] for line in pager.read_text().splitlines()]
    assert events == ["sent", "cancelled"]
    assert "Undone" in card_text(slack.card(action.id))
    _count, problems = slack.store.verify_audit()
    assert problems == []
