"""The incident lookups: `export_incident_timeline` and `list_open_incidents` (a private
incident's title, channel name and timeline only when asked in its own channel).
"""

from __future__ import annotations

import json
from typing import Any

from bot.incident_args import IncidentArgs, NoArgs
from bot.incident_kit import IncidentKit
from bot.incident_words import export_text, may_see, number
from bot.policy_types import Risk
from bot.tools import Tool, ToolContext, ToolResult
from storage.models import IncidentStatus


def lookup_tools(kit: IncidentKit) -> list[Tool[Any]]:
    """The read-only incident lookups."""
    store = kit.store

    def export(args: IncidentArgs, ctx: ToolContext) -> ToolResult:
        if store is None:
            return ToolResult(ok=False, output="not connected")
        row = store.incident(args.incident)
        if row is None or row.status == IncidentStatus.CANCELLED:
            return ToolResult(ok=False, output=f"there is no incident {number(args.incident)}")
        if not may_see(row, ctx):
            return ToolResult(
                ok=False,
                output=(
                    f"{number(row)} is private; its timeline is shown only when asked in its "
                    "own channel"
                ),
            )
        return ToolResult(ok=True, output=export_text(row, store.incident_timeline(args.incident)))

    def listing(_args: NoArgs, ctx: ToolContext) -> ToolResult:
        if store is None:
            return ToolResult(ok=False, output="not connected")
        items = []
        for row in store.open_incidents():
            seen = may_see(row, ctx)
            items.append(
                {
                    "number": number(row),
                    "severity": row.severity,
                    "lead": row.lead,
                    "comms": row.comms,
                    "channel": row.channel,
                    "channel_name": row.channel_name if seen else None,
                    "private": row.private,
                    "title": row.title if seen else "(private: ask in its channel)",
                    "declared_at": row.declared_at.isoformat(),
                    "last_status_update_at": row.last_update_at.isoformat(),
                }
            )
        return ToolResult(ok=True, output=json.dumps(items, ensure_ascii=False))

    return [
        Tool(
            name="export_incident_timeline",
            args=IncidentArgs,
            run=export,
            read_only=True,
            risk=Risk.LOW,
            timeout_s=10,
            description=(
                "An incident's timeline as text: declared, roles, severity, status updates, "
                "notes, resolution, each with who and when (a private incident's only when "
                "asked in its channel)"
            ),
            examples=({"incident": 12},),
        ),
        Tool(
            name="list_open_incidents",
            args=NoArgs,
            run=listing,
            read_only=True,
            risk=Risk.LOW,
            timeout_s=10,
            description=(
                "List the open incidents with their number, severity, lead and channel (a "
                "private incident's title only when asked in its channel)"
            ),
        ),
    ]
