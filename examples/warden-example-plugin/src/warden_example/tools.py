"""The example plugin's tools, declared with the same decorator Warden's built-ins use.

A tool never decides whether it may run: Warden's gate does, from the contract declared here
(risk tier, preconditions) and the operator's `warden.toml`. A tool only does its job, once
per action: `ctx.action_id` is the idempotency key, so a retry after a crash finds the work
already done instead of doing it twice.
"""

from __future__ import annotations

import fcntl
import json
import os
import random
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from pydantic import BaseModel, ConfigDict, Field

from bot.policy_types import Risk
from bot.tools import ToolContext, ToolRegistry, ToolResult

REGISTRY = ToolRegistry()

PAGER_FILE = "WARDEN_EXAMPLE_PAGER_FILE"
"""Where pages go: a file of JSON lines (a stand-in for a real paging service's API)."""
TEAMS = "WARDEN_EXAMPLE_TEAMS"
"""Optional, comma-separated: the only teams that may be paged."""

TEAM_PATTERN = r"^[a-z][a-z0-9-]{0,39}$"


# -- roll_dice: a read-only lookup ------------------------------------------------------------


class DiceArgs(BaseModel):
    # extra="forbid": an argument the model made up is an error, not silently dropped.
    model_config = ConfigDict(extra="forbid", frozen=True)

    dice: int = Field(default=1, ge=1, le=10, description="How many dice to roll")
    sides: int = Field(default=6, ge=2, le=100, description="How many sides each die has")


@REGISTRY.tool(
    name="roll_dice",
    args=DiceArgs,
    description="Roll dice, e.g. to pick who takes the next ticket (a read-only lookup)",
    risk=Risk.LOW,
    # Read-only: no side effects, so the agent may run it while planning to gather facts. It
    # is never proposed as an action and has nothing to preview or undo.
    read_only=True,
    timeout_s=5,
    examples=[{"dice": 2, "sides": 6}],
)
def roll_dice(args: DiceArgs, ctx: ToolContext) -> ToolResult:
    """Roll `dice` dice of `sides` sides; the output is JSON, handed to the model as data."""
    # Seeded with the call's id: the same call rolls the same numbers if it is asked again.
    rng = random.Random(ctx.action_id)
    rolls = [rng.randint(1, args.sides) for _ in range(args.dice)]
    return ToolResult(ok=True, output=json.dumps({"rolls": rolls, "total": sum(rolls)}))


# -- page_oncall: an action with a dry run and an undo ----------------------------------------


class PageArgs(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    team: str = Field(
        description="The team whose on-call person to page, like payments", pattern=TEAM_PATTERN
    )
    message: str = Field(description="What the page says", min_length=1, max_length=500)
    urgent: bool = Field(
        default=False, description="Wake them up now (raises the risk from low to medium)"
    )


def _tier(args: PageArgs) -> Risk:
    """An urgent page wakes someone up: medium risk. Warden only ever raises the declared
    tier with this, never lowers it."""
    return Risk.MEDIUM if args.urgent else Risk.LOW


def _known_team(args: PageArgs) -> str | None:
    """A precondition: None lets the call through; a string is the refusal the card shows."""
    teams = [t.strip() for t in os.environ.get(TEAMS, "").split(",") if t.strip()]
    if teams and args.team not in teams:
        return f"{args.team!r} has no on-call rota (teams: {', '.join(teams)})"
    return None


def _pager() -> Path | None:
    raw = os.environ.get(PAGER_FILE, "").strip()
    return Path(raw) if raw else None


@contextmanager
def _locked(path: Path) -> Iterator[IO[str]]:
    """The pager file, opened for appending and locked: two Warden replicas never interleave
    a check for an earlier page with the write of a new one (POSIX `flock`)."""
    with path.open("a+", encoding="utf-8") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            f.seek(0)
            yield f
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _events(f: IO[str], page: str) -> list[str]:
    """What happened to one page so far ("sent", "cancelled"), oldest first."""
    out: list[str] = []
    for line in f.read().splitlines():
        try:
            entry: Any = json.loads(line)
        except ValueError:
            continue  # a torn line (a crash mid-write) is not an event
        if isinstance(entry, dict) and entry.get("page") == page:
            out.append(str(entry.get("event")))
    return out


def _preview(args: PageArgs, ctx: ToolContext) -> str:
    """The dry run: what a run would do, with no side effect. Warden shows it on the card
    (and requires it for critical calls); `warden tools show` runs it offline."""
    path = _pager()
    where = str(path) if path else f"nowhere: {PAGER_FILE} is not set, so a run would fail"
    urgency = " (urgent)" if args.urgent else ""
    return f"would page the {args.team} on-call{urgency}: {args.message}\npager file: {where}"


def _cancel(args: PageArgs, ctx: ToolContext, data: dict[str, Any]) -> ToolResult:
    """The undo: cancel the page the run sent (`data` is the run's `undo_data`). Safe to
    repeat: a page cancelled already stays cancelled."""
    path = _pager()
    page = str(data.get("page") or "")
    if path is None or not page:
        return ToolResult(ok=False, output="nothing to cancel: the page was not recorded")
    with _locked(path) as f:
        events = _events(f, page)
        if "sent" not in events:
            return ToolResult(ok=False, output=f"page {page} was never sent")
        if "cancelled" not in events:
            f.write(json.dumps({"event": "cancelled", "page": page, "team": args.team}) + "\n")
    return ToolResult(ok=True, output=f"page {page} cancelled")


@REGISTRY.tool(
    name="page_oncall",
    args=PageArgs,
    description="Page a team's on-call person with a short message",
    risk=Risk.LOW,
    risk_from_args=_tier,
    preconditions=[_known_team],
    dry_run=_preview,
    undo=_cancel,
    timeout_s=10,
    examples=[
        {"team": "payments", "message": "checkout error rate is above 5%"},
        {"team": "platform", "message": "database primary is down", "urgent": True},
    ],
)
def page_oncall(args: PageArgs, ctx: ToolContext) -> ToolResult:
    """Send the page, once per action: a retry of the same action finds it sent."""
    path = _pager()
    if path is None:
        return ToolResult(ok=False, output=f"{PAGER_FILE} is not set: there is nowhere to page")
    undo = {"page": ctx.action_id}
    with _locked(path) as f:
        if "sent" in _events(f, ctx.action_id):
            return ToolResult(ok=True, note="already paged for this action", undo_data=undo)
        entry = {
            "event": "sent",
            "page": ctx.action_id,
            "team": args.team,
            "message": args.message,
            "urgent": args.urgent,
            "requested_by": ctx.requester,
            "trace": ctx.trace_id,
        }
        f.write(json.dumps(entry) + "\n")
    # `note` is Warden's trusted text on the card: only validated values go in it. The team
    # matched TEAM_PATTERN; the message (model-written) stays out of it.
    urgency = " (urgent)" if args.urgent else ""
    return ToolResult(
        ok=True,
        output=f"page {ctx.action_id} sent",
        note=f"paged the {args.team} on-call{urgency}",
        undo_data=undo,
    )
