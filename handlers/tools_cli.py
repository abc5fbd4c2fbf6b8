"""`warden tools`: every tool this Warden has, and one call's card rendered offline.

    warden tools [--json] [--config FILE]
    warden tools show NAME [--args JSON] [--json] [--no-dry-run] [--config FILE]
                           [--requester USER] [--channel CHANNEL] [--confidence N]
    warden tools show --says "TEXT" …

The list names each tool's source (built-in, runbook, endpoint, `plugin <package>`), its tier
and whether its arguments can raise it, its autonomy stage as the gate reports it for
`/warden autonomy` (from the policy: run-time changes live in the database), whether it has
an undo and a dry run, and its description.

`show` validates the arguments, gives the tier for them, asks the gate what it would decide
for a requester in a channel, and renders the card Slack would get — the same `Card`
bot/delivery.py builds, as text, or as Block Kit JSON (handlers/blocks.py) with `--json`.
`--says` starts from what a person would type instead: the `[aliases]` turn it into the call
(no model is asked), so an alias can be seen rendered before it is deployed. A tool with a
dry run has it run through the executor's dry-run path (`Executor.dry_run`), the one that
fills a card's preview; the tool itself never runs, nor does a read-only lookup. All of it
happens offline: a scratch SQLite database that is thrown away, no Slack (a dry run that
needs Slack fails and says so), no Claude.

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
from datetime import datetime
from pathlib import Path
from typing import IO, Any, cast

from bot.app import Warden, build, check
from bot.cards import Card
from bot.chat import Chat
from bot.core import new_id, new_trace
from bot.errors import ToolArgumentsError, UnknownTool
from bot.execution import Preview
from bot.gate import GATE, Decision, Gate, Origin, Verdict, span_text
from bot.planner import AliasPlanner, PlanRequest, Proposals
from bot.policy import Policy, Risk
from bot.settings import Settings
from bot.tools import Tool, ToolRegistry, canonical_json
from handlers.blocks import render_card
from storage.models import Action, ActionStatus

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


@dataclass(kw_only=True, frozen=True)
class ToolLine:
    """One tool as `warden tools` lists it."""

    name: str
    source: str
    risk: str
    raised_by_arguments: bool
    max_risk: str | None  # the highest tier its arguments reach, when the policy says (runbooks)
    autonomy: str
    read_only: bool
    undo: bool
    dry_run: bool
    description: str

    @property
    def tier(self) -> str:
        if not self.raised_by_arguments:
            return self.risk
        if self.max_risk and self.max_risk != self.risk:
            return f"{self.risk} (args: up to {self.max_risk})"
        return f"{self.risk} (args may raise)"


def tool_lines(policy: Policy, registry: ToolRegistry) -> list[ToolLine]:
    """Every tool, described from its contract, with its stage as the gate reports it."""
    gate = Gate(policy, registry)
    lines = []
    for tool in registry:
        raised = tool.risk_from_args is not None
        label = gate.autonomy_label(tool.name, {})
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
            )
        )
    return lines


def list_tools(settings: Settings, *, as_json: bool = False, out: IO[str] | None = None) -> int:
    """`warden tools`: the table (or JSON) of every tool. Raises ConfigError on bad config."""
    out = out or sys.stdout
    policy, registry = check(settings)
    lines = tool_lines(policy, registry)
    if as_json:
        out.write(json.dumps([asdict(line) for line in lines], indent=2) + "\n")
        return 0
    yes = {True: "yes", False: "—"}
    rows = [("TOOL", "SOURCE", "TIER", "AUTONOMY", "UNDO", "DRY RUN", "DESCRIPTION")]
    rows += [
        (t.name, t.source, t.tier, t.autonomy, yes[t.undo], yes[t.dry_run], t.description)
        for t in lines
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        out.write("  ".join([*cells, row[-1]]).rstrip() + "\n")
    out.write(
        f"\n{len(lines)} tools · policy {policy.version} · autonomy as the policy sets it "
        "(`/warden autonomy` shows changes made at run time)\n"
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
    with _scratch_warden(settings, policy) as w:
        core = w.lifecycle.core
        origin = Origin(requester=requester, channel=where, said=call.said)
        decision = core.gate.decide(
            tool=call.tool, args=call.args, confidence=confidence, origin=origin, now=core.now()
        )
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
    out.write(f"autonomy: {decision.autonomy.value}\n")
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
        add("", "Warden is paused: nothing runs until /resume.")
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
