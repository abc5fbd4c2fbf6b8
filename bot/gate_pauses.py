"""Pause rules: what the global pause and the scoped pauses (`/pause tool:`, `channel:`,
`tier:`) hold. The same rule in SQL is `storage.pauses.held_by_a_pause`;
tests/test_scoped_pause.py checks the two agree."""

from __future__ import annotations

from typing import Any

from bot.gate_text import until_text
from bot.gate_types import Now
from bot.policy_types import Risk
from bot.tools import Tool, ToolRegistry


def held_tiers(lowest: Risk) -> str:
    """The tiers a `tier:` scope holds, as its row stores them for the SQL guard
    (",high,critical,"): `lowest` and every tier above it."""
    return "," + ",".join(r.value for r in Risk if r.rank >= lowest.rank) + ","


def paused_for(tool: str, channel: str, risk: Risk | str, now: Now) -> str | None:
    """Why a call of `tool` asked in `channel` at tier `risk` is held by a pause now, in
    the words its card shows (None: no pause holds it). The global pause holds every
    call; a scoped pause only its own (`Pause.holds`). The executor's claim carries the
    same rule in its SQL (`storage.pauses.held_by_a_pause`), so a pause that committed
    first wins over a claim even when this answer was read just before it."""
    if now.paused:
        if now.paused_until is None:
            return "Warden is paused: nothing runs until /resume"
        ends = until_text(now.paused_until, now.at)
        return f"Warden is paused until {ends}: nothing runs until then or /resume"
    for pause in now.pauses:
        if pause.holds(tool, channel, risk):
            return pause.text(now.at)
    return None


def reaches_out(tool: Tool[Any]) -> bool:
    """Whether running `tool` can touch anything outside Warden: every tool with side
    effects, and read-only lookups that run a command or call an endpoint. Pauses stop
    these; other lookups (memory, tasks, Slack's directory) are never paused."""
    return not tool.read_only or tool.source in ("runbook", "endpoint")


def may_pause_tool(registry: ToolRegistry, tool: str) -> str | None:
    """Why `/pause tool:NAME` can't pause `tool` (None: it can): an unknown tool, or a
    read-only lookup that no pause stops (`reaches_out`)."""
    if tool not in registry:
        return f"there is no tool called `{tool[:64]}` (`/warden autonomy` lists them)"
    if not reaches_out(registry.get(tool)):
        return (
            f"`{tool}` is a read-only lookup that runs no command and calls no endpoint, "
            "so a pause would hold nothing"
        )
    return None
