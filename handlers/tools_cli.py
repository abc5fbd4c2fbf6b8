"""`warden tools`: every tool this Warden has, and one call's card rendered offline.

    warden tools [--json] [--config FILE]
    warden tools show NAME [--args JSON] [--json] [--no-dry-run] [--config FILE]
                           [--requester USER] [--channel CHANNEL] [--confidence N]
    warden tools show --says "TEXT" …

The list names each tool's source (built-in, runbook, endpoint, `plugin <package>`), its tier
and whether its arguments can raise it, its autonomy stage as the gate would apply it now
(`Gate.autonomy_label`, the one `/warden autonomy` shows, given the run-time changes stored in
the configured database), whether it has an undo and a dry run, and its description. A tool
whose stage was set at run time is marked, with who set it and when. The database is only
read: when it cannot be reached or has no schema yet, the list shows the policy's stages and
says so in one line.

`show` validates the arguments, gives the tier for them, asks the gate what it would decide
for a requester in a channel, and renders the card Slack would get — the same `Card`
bot/delivery.py builds, as text, or as Block Kit JSON (handlers/blocks.py) with `--json`.
`--says` starts from what a person would type instead: the `[aliases]` turn it into the call
(no model is asked), so an alias can be seen rendered before it is deployed. A tool with a
dry run has it run through the executor's dry-run path (`Executor.dry_run`), the one that
fills a card's preview; the tool itself never runs, nor does a read-only lookup. All of it
happens offline: a scratch SQLite database that is thrown away, no Slack (a dry run that
needs Slack fails and says so), no Claude. The run-time control state — autonomy changes, the
global pause and the scoped pauses in force — is read from the configured database and copied
into the scratch one through the Store's own writes, so the gate decides and the card shows
what the running Warden would; `show` names the run-time change behind the stage, if any,
and every pause that holds the call (the gate's `Pause.holds`).

Exit status: 0 for a card the gate lets through (to wait for approval, as a suggestion, or
to run at once); 1 when the gate would refuse the call or ask a question instead; 2 for bad
input (unknown tool, bad JSON, invalid arguments, an alias that matches nothing) or a bad
configuration.
"""

from __future__ import annotations

import json
import re
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, cast

from sqlalchemy import inspect
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from bot.app import Warden, build, check
from bot.cards import Card
from bot.chat import Chat
from bot.control import scope_label
from bot.core import Core, new_id, new_trace
from bot.errors import ToolArgumentsError, UnknownTool
from bot.execution import Preview
from bot.gate import Gate
from bot.gate_text import span_text, until_text
from bot.gate_types import GATE, Decision, Now, Origin, Verdict
from bot.governor import GOVERNOR
from bot.planner import AliasPlanner, PlanRequest, Proposals
from bot.policy import Policy
from bot.policy_types import Risk
from bot.settings import Settings
from bot.tools import Tool, ToolRegistry, canonical_json
from handlers.blocks import render_card
from storage.db import Database, normalise_url
from storage.models import Action, ActionStatus, AutonomySetting, PauseScope
from storage.repo import PauseState, Store

REQUESTER = "U0REQUESTER"
CHANNEL = "C0REQUEST"
SCRATCH_TS = "0000000000.000000"
READ_ONLY = "read-only"
# What a terminal must not be sent from untrusted text (tool output, model-written words):
# control characters other than newline and tab, which could rewrite what is on screen.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_EMOJI = re.compile(r"^(?::[a-z0-9_+-]+: )+")


class BadInput(Exception):
    """What the person typed cannot be shown: exit 2 with this message."""


# -- the run-time state ----------------------------------------------------------------------

# What of the schema the run-time state is read from (`warden db upgrade` creates it).
RUN_TIME_TABLES = frozenset({"autonomy_setting", "control", "pause_scope"})
CONNECT_TIMEOUT_S = 5


@dataclass(kw_only=True, frozen=True)
class RunTime:
    """The run-time control state read from the configured database: autonomy changes made
    with `/warden autonomy` (or by the governor), the global pause and the scoped pauses in
    force. `problem` says why none of it could be read ("" when it was)."""

    autonomy: dict[str, AutonomySetting]
    pause: PauseState | None = None
    scopes: tuple[PauseScope, ...] = ()
    problem: str = ""

    @property
    def overrides(self) -> dict[str, str]:
        """The stored stages, as the gate takes them (`Gate.autonomy`)."""
        return {tool: s.autonomy for tool, s in self.autonomy.items()}


def read_run_time(settings: Settings) -> RunTime:
    """Read the run-time control state from `settings.database_url`, changing nothing: a
    SQLite file that does not exist is not created, a schema that is missing is not made, and
    a database that cannot be reached or read gives a `RunTime` with only its `problem`."""
    shown = make_url(settings.database_url).render_as_string(hide_password=True)
    url = normalise_url(settings.database_url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if not parsed.database or not Path(parsed.database).is_file():
            return RunTime(autonomy={}, problem=f"there is no database at {shown} yet")
    elif "connect_timeout" not in parsed.query:
        parsed = parsed.update_query_dict({"connect_timeout": str(CONNECT_TIMEOUT_S)})
        url = parsed.render_as_string(hide_password=False)
    try:
        db = Database(url)
    except (ValueError, SQLAlchemyError) as exc:
        return RunTime(autonomy={}, problem=f"cannot open {shown}: {_first_line(exc)}")
    try:
        try:
            tables = set(inspect(db.read_engine).get_table_names())
        except (SQLAlchemyError, OSError) as exc:
            return RunTime(autonomy={}, problem=f"cannot reach {shown}: {_first_line(exc)}")
        missing = RUN_TIME_TABLES - tables
        if missing == RUN_TIME_TABLES:
            return RunTime(
                autonomy={},
                problem=f"{shown} has no Warden schema yet; `warden db upgrade` creates it",
            )
        if missing:
            return RunTime(
                autonomy={},
                problem=f"{shown} has an older schema, without {', '.join(sorted(missing))}; "
                "`warden db upgrade` brings it up to date",
            )
        store = Store(db)
        try:
            autonomy = store.autonomy_settings()
            pause, scopes = store.pauses()
        except (SQLAlchemyError, OSError) as exc:
            return RunTime(autonomy={}, problem=f"cannot read {shown}: {_first_line(exc)}")
        return RunTime(autonomy=autonomy, pause=pause, scopes=tuple(scopes))
    finally:
        db.dispose()


def _first_line(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None)
    text = str(orig if orig is not None else exc).strip() or type(exc).__name__
    return terminal(text.splitlines()[0])[:200]


def fallback_line(problem: str) -> str:
    """The one line that says run-time changes are not shown, and why."""
    return f"autonomy as the policy sets it — run-time changes and pauses not shown: {problem}"


@dataclass(kw_only=True, frozen=True)
class RunTimeAutonomy:
    """A tool's stage set at run time that the gate applies in place of the policy's."""

    autonomy: str
    policy: str  # the stage the policy alone would give
    changed_by: str
    changed_at: str  # ISO 8601, UTC

    @property
    def overrides_policy(self) -> bool:
        return self.autonomy != self.policy

    def text(self) -> str:
        """Where the stage comes from, in words: e.g. "set at run time by U0ADMIN at
        2026-11-25 09:14 UTC, over the policy's approve"."""
        who = "the autonomy governor" if self.changed_by == GOVERNOR else self.changed_by
        when = datetime.fromisoformat(self.changed_at)
        said = f"set at run time by {terminal(who)} at {when:%Y-%m-%d %H:%M} UTC"
        if self.overrides_policy:
            return f"{said}, over the policy's {self.policy}"
        return f"{said} (the same as the policy's; it holds even if the policy changes)"


def run_time_autonomy(gate: Gate, tool: str, run_time: RunTime) -> RunTimeAutonomy | None:
    """The run-time change behind `tool`'s stage now, if the gate applies one: its stage with
    the stored overrides is the stored one (the gate ignores a stage it does not know, and a
    read-only lookup has none)."""
    setting = run_time.autonomy.get(tool)
    if setting is None:
        return None
    applied = gate.autonomy_label(tool, run_time.overrides)
    if applied != setting.autonomy:
        return None
    at = setting.changed_at
    at = at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)
    return RunTimeAutonomy(
        autonomy=applied,
        policy=gate.autonomy_label(tool, {}),
        changed_by=setting.changed_by,
        changed_at=at.isoformat(),
    )


# -- the list --------------------------------------------------------------------------------


@dataclass(kw_only=True, frozen=True)
class ToolLine:
    """One tool as `warden tools` lists it."""

    name: str
    source: str
    risk: str
    raised_by_arguments: bool
    max_risk: str | None  # the highest tier its arguments reach, when the policy says (runbooks)
    autonomy: str  # as the gate applies it now (the policy's, with any run-time change)
    read_only: bool
    undo: bool
    dry_run: bool
    description: str
    run_time: RunTimeAutonomy | None = None  # the run-time change behind `autonomy`, if any

    @property
    def tier(self) -> str:
        if not self.raised_by_arguments:
            return self.risk
        if self.max_risk and self.max_risk != self.risk:
            return f"{self.risk} (args: up to {self.max_risk})"
        return f"{self.risk} (args may raise)"

    def as_json(self) -> dict[str, Any]:
        """The line as JSON: `run_time` only for a tool whose stage was set at run time."""
        data = asdict(self)
        if self.run_time is None:
            del data["run_time"]
        return data


def tool_lines(
    policy: Policy, registry: ToolRegistry, run_time: RunTime | None = None
) -> list[ToolLine]:
    """Every tool, described from its contract, with its stage as the gate would apply it now
    (with the run-time changes in `run_time`; without it, the policy's)."""
    gate = Gate(policy, registry)
    overrides = run_time.overrides if run_time is not None else {}
    lines = []
    for tool in registry:
        raised = tool.risk_from_args is not None
        label = gate.autonomy_label(tool.name, overrides)
        lines.append(
            ToolLine(
                name=tool.name,
                source=tool.source,
                risk=tool.risk.value,
                raised_by_arguments=raised,
                max_risk=policy.max_risk(tool.name, tool.risk).value
                if raised and tool.name in policy.runbooks
                else None,
                # The gate's label for a lookup explains itself at length; a column says it short.
                autonomy=READ_ONLY if tool.read_only else label,
                read_only=tool.read_only,
                undo=tool.reversible,
                dry_run=tool.dry_run is not None,
                description=tool.description,
                run_time=run_time_autonomy(gate, tool.name, run_time)
                if run_time is not None
                else None,
            )
        )
    return lines


def list_tools(
    settings: Settings,
    *,
    as_json: bool = False,
    out: IO[str] | None = None,
    err: IO[str] | None = None,
) -> int:
    """`warden tools`: the table (or JSON) of every tool, each with the stage the gate would
    apply now. Raises ConfigError on bad config."""
    out, err = out or sys.stdout, err or sys.stderr
    policy, registry = check(settings)
    run_time = read_run_time(settings)
    lines = tool_lines(policy, registry, run_time)
    if as_json:
        out.write(json.dumps([line.as_json() for line in lines], indent=2) + "\n")
        if run_time.problem:  # stdout stays JSON; the note goes beside it
            err.write(f"warden: {fallback_line(run_time.problem)}\n")
        return 0
    yes = {True: "yes", False: "—"}
    rows = [("TOOL", "SOURCE", "TIER", "AUTONOMY", "UNDO", "DRY RUN", "DESCRIPTION")]
    rows += [
        (
            t.name,
            t.source,
            t.tier,
            f"{t.autonomy}*" if t.run_time is not None else t.autonomy,
            yes[t.undo],
            yes[t.dry_run],
            t.description,
        )
        for t in lines
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        out.write("  ".join([*cells, row[-1]]).rstrip() + "\n")
    changed = [t for t in lines if t.run_time is not None]
    if changed:
        out.write(
            "\n* set at run time (`/warden autonomy`); the gate applies it, not the policy:\n"
        )
        for t in changed:
            assert t.run_time is not None
            out.write(f"  {t.name}: {t.autonomy} — {t.run_time.text()}\n")
    out.write(f"\n{len(lines)} tools · policy {policy.version} · ")
    if run_time.problem:
        out.write(f"{fallback_line(run_time.problem)}\n")
    else:
        out.write(
            "autonomy as the gate applies it now: the policy and the run-time changes in the "
            f"database ({len(changed)} tool{'' if len(changed) == 1 else 's'} changed)\n"
        )
    return 0


# -- show -----------------------------------------------------------------------------------


@dataclass(kw_only=True, frozen=True)
class Call:
    """The call to show: a tool, its raw arguments, and why it was proposed."""

    tool: str
    args: dict[str, Any]
    rationale: str
    said: str = ""


def show_tool(
    settings: Settings,
    name: str | None,
    *,
    args_json: str | None = None,
    says: str | None = None,
    requester: str = REQUESTER,
    channel: str | None = None,
    confidence: float = 1.0,
    as_json: bool = False,
    dry_run: bool = True,
    out: IO[str] | None = None,
    err: IO[str] | None = None,
) -> int:
    """`warden tools show`: one call's tier, the gate's answer and its card, offline."""
    out, err = out or sys.stdout, err or sys.stderr
    if not 0.0 <= confidence <= 1.0:
        err.write("warden: --confidence must be between 0 and 1\n")
        return 2
    policy, registry = check(settings)
    try:
        call = _call(policy, registry, name, args_json, says, requester)
        tool = registry.get(call.tool)
    except BadInput as exc:
        err.write(f"warden: {exc}\n")
        return 2
    except UnknownTool as exc:
        known = ", ".join(registry.names())
        err.write(f"warden: {exc} (known: {known}); `warden tools` lists them\n")
        return 2
    try:
        parsed = tool.validate(call.args)
    except ToolArgumentsError as exc:
        schema = json.dumps(tool.json_schema().get("properties", {}), indent=2)
        err.write(f"warden: invalid arguments: {exc}\nits arguments:\n{schema}\n")
        return 2
    risk = tool.risk_for(parsed)
    if not as_json:
        _header(out, tool, policy, tool.canonical(parsed), risk)
    if tool.read_only:
        # A lookup is never proposed, so it has no card; running it is not a preview.
        _no_card(
            out,
            as_json,
            "read-only lookup: the agent runs it while planning to gather facts; it is never "
            "proposed, so it has no card, and `warden tools show` does not run it",
        )
        return 0
    where = channel or _default_channel(tool, parsed)
    run_time = read_run_time(settings)
    with _scratch_warden(settings, policy) as w:
        core = w.lifecycle.core
        _copy_run_time(core, run_time)
        now = core.now()
        origin = Origin(requester=requester, channel=where, said=call.said)
        decision = core.gate.decide(
            tool=call.tool, args=call.args, confidence=confidence, origin=origin, now=now
        )
        if not as_json:
            _run_time_lines(out, core.gate, decision, run_time, now, where)
        elif run_time.problem:  # stdout stays JSON; the note goes beside it
            err.write(f"warden: {fallback_line(run_time.problem)}\n")
        if decision.verdict is Verdict.CLARIFY:
            _no_card(
                out,
                as_json,
                f"gate: would ask a question instead of proposing ({decision.reason}: "
                f"{confidence:.0%} is below clarify_below)",
            )
            return 1
        shown: Preview | None = None
        if dry_run and tool.dry_run is not None and decision.verdict is not Verdict.REFUSE:
            trace = new_trace()
            shown = w.lifecycle.executor.dry_run(call.tool, decision.args, requester, trace)
        action = _action(decision, call, shown, core.clock(), policy, confidence, origin)
        card = w.lifecycle.delivery.card_of(action)
    text, blocks = render_card(card)
    if as_json:
        out.write(json.dumps({"text": text, "blocks": blocks}, indent=2, ensure_ascii=False))
        out.write("\n")
    else:
        _verdict(out, decision, shown, tool.dry_run is not None)
        out.write("\ncard:\n")
        out.write(card_text(card))
    return 1 if card.status is ActionStatus.REFUSED else 0


def _call(
    policy: Policy,
    registry: ToolRegistry,
    name: str | None,
    args_json: str | None,
    says: str | None,
    requester: str,
) -> Call:
    """The call to show, from NAME and --args, or from what a person says (the aliases)."""
    if says is not None:
        if args_json is not None:
            raise BadInput("give --args or --says, not both (--says makes the arguments)")
        plan = AliasPlanner(policy, registry).plan(
            PlanRequest(
                request_id="warden-tools-show",
                trace_id=new_trace(),
                text=says,
                requester=requester,
                channel=CHANNEL,
            )
        )
        if not isinstance(plan, Proposals) or not plan.calls:
            message = getattr(plan, "message", "") or "no alias matches"
            raise BadInput(f"no alias turns {says!r} into a call:\n{message}")
        proposed = plan.calls[0]
        if name is not None and proposed.tool != name:
            raise BadInput(f"{says!r} calls {proposed.tool!r}, not {name!r}")
        return Call(tool=proposed.tool, args=proposed.args, rationale=proposed.rationale, said=says)
    if name is None:
        raise BadInput("name a tool (`warden tools` lists them), or give --says TEXT")
    try:
        raw = json.loads(args_json) if args_json is not None else {}
    except ValueError as exc:
        raise BadInput(f"--args is not valid JSON: {exc}") from None
    except RecursionError:
        # The standard library's parser recurses once a level: hostile nesting ends it.
        raise BadInput("--args is not valid JSON: it is nested too deeply") from None
    if not isinstance(raw, dict):
        shown = repr(raw) if len(args_json or "") <= 200 else f"{repr(raw)[:200]}…"
        raise BadInput(f'--args must be a JSON object, like \'{{"name": "value"}}\', not {shown}')
    return Call(tool=name, args=raw, rationale="(shown with `warden tools show`)")


def _no_card(out: IO[str], as_json: bool, why: str) -> None:
    """Say why there is no card (as JSON with `--json`, so the output still parses)."""
    out.write(
        json.dumps({"text": None, "blocks": None, "note": why}) + "\n" if as_json else why + "\n"
    )


def _default_channel(tool: Tool[Any], parsed: Any) -> str:
    """Where the call is asked from: a tool that posts is asked in the channel it posts to
    (the gate keeps such tools to the request's own channel), anything else in a stand-in."""
    if tool.target_channel is not None:
        return tool.target_channel(parsed)
    return CHANNEL


def _copy_run_time(core: Core, run_time: RunTime) -> None:
    """Put the run-time control state read from the configured database into the scratch
    one, through the same Store writes `/warden autonomy` and `/pause` use, so the scratch
    Warden's gate (`Core.now`) and cards see it as the running Warden does."""
    store = core.store
    for s in run_time.autonomy.values():
        store.set_autonomy(
            s.tool,
            s.autonomy,
            s.changed_by,
            core.audit(s.changed_by, "tool.autonomy", tool=s.tool, autonomy=s.autonomy),
        )
    pause = run_time.pause
    if pause is not None and pause.paused:
        store.set_paused(
            True,
            pause.reason,
            pause.changed_by,
            core.audit(pause.changed_by, "control.paused", reason=pause.reason),
            until=pause.until,
        )
    for scope in run_time.scopes:
        store.start_pause_scope(
            kind=scope.kind,
            value=scope.value,
            tiers=scope.tiers,
            reason=scope.reason,
            by=scope.paused_by,
            now=scope.started_at,
            until=scope.until,
            audit_=core.audit(
                scope.paused_by, "control.scope_paused", scope=scope.kind, value=scope.value
            ),
        )


def _run_time_lines(
    out: IO[str], gate: Gate, decision: Decision, run_time: RunTime, now: Now, channel: str
) -> None:
    """The stage the gate gave this call and where it comes from (the policy, or a run-time
    change), and every pause that holds the call: the global one, and each scope whose
    `Pause.holds` says so."""
    stage = decision.autonomy.value
    if run_time.problem:
        out.write(f"{fallback_line(run_time.problem)}\nautonomy: {stage}\n")
        return
    changed = run_time_autonomy(gate, decision.tool, run_time)
    out.write(
        f"autonomy: {stage} — {changed.text()}\n"
        if changed is not None
        else f"autonomy: {stage} (the policy's; no run-time change)\n"
    )
    held = []
    if now.paused:
        pause = run_time.pause
        by = f" by {terminal(pause.changed_by)}" if pause is not None and pause.changed_by else ""
        reason = f": {terminal(pause.reason)}" if pause is not None and pause.reason else ""
        held.append(f"everything (Warden is paused){by}{_until(now.paused_until, now)}{reason}")
    for p in now.pauses:
        if p.holds(decision.tool, channel, decision.risk):
            reason = f": {terminal(p.reason)}" if p.reason else ""
            held.append(
                f"{scope_label(p.kind, p.value)} by {terminal(p.by)}{_until(p.until, now)}{reason}"
            )
    if not held:
        out.write("paused: no pause holds this call\n")
    for line in held:
        out.write(f"paused: {line}\n")


def _until(until: datetime | None, now: Now) -> str:
    return f" until {until_text(until, now.at)}" if until is not None else ""


@contextmanager
def _scratch_warden(settings: Settings, policy: Policy) -> Iterator[Warden]:
    """Warden built the one way it is built (`bot.app.build`) on a throwaway SQLite database,
    with no Slack and no Claude: its gate, executor and card facts are the production ones."""
    with tempfile.TemporaryDirectory(prefix="warden-tools-") as tmp:
        scratch = settings.model_copy(
            update={
                "database_url": f"sqlite:///{Path(tmp) / 'scratch.db'}",
                "anthropic_api_key": None,
            }
        )
        w = build(scratch, policy=policy, chat=cast(Chat, NoSlack()))
        try:
            yield w
        finally:
            w.workers.shutdown(wait=True)
            w.lifecycle.stop()
            w.db.dispose()


def _action(
    decision: Decision,
    call: Call,
    shown: Preview | None,
    now: datetime,
    policy: Policy,
    confidence: float,
    origin: Origin,
) -> Action:
    """The action the planner would store for this decision (as bot/planning.py makes it),
    never stored: a card is built from it."""
    status = decision.status
    note = decision.reason if status is ActionStatus.REFUSED else decision.checkpoint or None
    preview = None
    if decision.verdict in (Verdict.AWAIT, Verdict.SUGGEST) and shown is not None:
        preview = shown.text
        if decision.needs_preview and not shown.ok:
            status, note = ActionStatus.REFUSED, f"Critical actions need a {shown.problem}."
    return Action(
        id=new_id(),
        request_id=new_id(),
        trace_id=new_trace(),
        tool=decision.tool,
        args_json=decision.args_json or canonical_json(call.args),
        policy_version=decision.policy_version,
        risk=decision.risk.value,
        autonomy=decision.autonomy.value,
        confidence=confidence,
        rationale=call.rationale,
        preview=preview,
        required_approvals=decision.required_approvals,
        requester=origin.requester,
        channel=origin.channel,
        thread_ts=SCRATCH_TS,
        status=status,
        status_note=note,
        expires_at=now + policy.gate.approval_ttl
        if status is ActionStatus.AWAITING_APPROVAL
        else None,
        decided_by=GATE if status is ActionStatus.APPROVED else None,
    )


def _header(out: IO[str], tool: Tool[Any], policy: Policy, args: str, risk: Risk) -> None:
    out.write(f"{tool.name} — {tool.source}\n  {tool.description}\n")
    out.write(f"arguments: {args} (valid)\n")
    declared = tool.risk.value
    how = (
        f" (declared {declared}; these arguments raise it)"
        if risk is not tool.risk
        else " (its arguments can raise it)"
        if tool.risk_from_args is not None
        else ""
    )
    out.write(f"tier for these arguments: {risk.value}{how}\n")
    extras = []
    if tool.reversible:
        extras.append(f"undo for {span_text(policy.gate.undo_window)} after it succeeds")
    if tool.dry_run is not None:
        extras.append("a dry run")
    out.write(f"has: {', '.join(extras) or 'no undo, no dry run'}\n")


def _verdict(out: IO[str], decision: Decision, shown: Preview | None, has_dry_run: bool) -> None:
    what = {
        Verdict.REFUSE: "would refuse it",
        Verdict.RUN_NOW: "would let it run at once (no click)",
        Verdict.AWAIT: f"would wait for {decision.required_approvals} approval(s)",
        Verdict.SUGGEST: "would post it as a suggestion (no Approve button)",
    }.get(decision.verdict, decision.verdict.value)
    reason = f": {terminal(decision.reason)}" if decision.reason else ""
    out.write(f"gate: {what}{reason}\n")
    if shown is not None:
        state = "ok" if shown.ok else "failed"
        out.write(f"dry run ({state}, through the executor, offline):\n")
        out.write(_indent(terminal(shown.text or shown.problem)) + "\n")
    elif has_dry_run:
        why = "the gate refuses the call" if decision.verdict is Verdict.REFUSE else "--no-dry-run"
        out.write(f"dry run: not run ({why})\n")


def card_text(card: Card) -> str:
    """A card as plain text for a terminal: the facts the Block Kit card shows, in its order.
    Untrusted fields have control characters removed (they are not Slack-neutralised: they
    are not posted)."""
    lines = [f"┌ {card.tool} — {card.status.value.replace('_', ' ')}"]

    def add(label: str, value: str) -> None:
        body = value.splitlines() or [""]
        lines.append((f"│ {label}: {body[0]}" if label else f"│ {body[0]}").rstrip())
        lines.extend(f"│     {more}" for more in body[1:])

    add("What will run", terminal(card.what))
    add("Why", terminal(card.why))
    add("Confidence", f"{round(card.confidence * 100)}%")
    add("Risk", card.risk.value)
    add("Requested by", card.requester)
    add("Who may approve", f"{card.rule}: {', '.join(card.approvers) or 'nobody'}")
    if card.expires_at is not None:
        add("Expires", f"{card.expires_at:%Y-%m-%d %H:%M} UTC")
    if card.taint:
        add("Needs a person's click", terminal(card.taint))
    for earlier in card.previously:
        add("Previously", terminal(earlier))
    if card.preview:
        add("Preview (dry run)", "\n" + terminal(card.preview))
    add("Status", _EMOJI.sub("", card.status_line))
    if card.note:
        add("Note", terminal(card.note))
    if card.paused:
        note = card.pause_note or "Warden is paused: nothing runs until /resume"
        add("", f"{terminal(note).rstrip('.')}.")
    if card.waiting_for_preview:
        add("", "Dry run in progress; Approve appears with it.")
    if card.buttons:
        add("Buttons", " ".join(f"[{b.label}]" for b in card.buttons))
    lines.append(f"└ policy {card.policy_version}")
    return "\n".join(lines) + "\n"


def terminal(text: str) -> str:
    """Untrusted text made safe to print: no control characters but newline and tab."""
    return _CONTROL.sub("", text)


def _indent(text: str) -> str:
    return "\n".join(f"    {line}" for line in text.splitlines() or [""])


class NoSlack:
    """The `Chat` of an offline Warden: anything that would reach Slack fails, saying why
    (a dry run that reads Slack fails and shows this; nothing is ever posted). Every method
    of the port, present and future, answers the same way, hence `__getattr__` and the cast
    where it is used."""

    def __getattr__(self, name: str) -> Callable[..., Any]:
        if name.startswith("_"):
            raise AttributeError(name)

        def offline(*_: Any, **__: Any) -> Any:
            raise ConnectionError(
                f"offline: `warden tools show` does not connect to Slack ({name})"
            )

        return offline
