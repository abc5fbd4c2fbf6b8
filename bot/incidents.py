"""Incidents: declare one, run it in its own channel, resolve it, and keep its timeline.

Tools (the `warden.tools` entry point `incidents`, so they come through the plugin door):

| tool | tier | undo |
| --- | --- | --- |
| `declare_incident` | medium | archives the channel, marks the incident cancelled |
| `assign_incident_role` (lead, comms) | low | gives the role back to who had it |
| `set_incident_severity` | low; sev2 medium; sev1 high (four eyes) | restores the previous one |
| `post_incident_update` (a status update) | low | — (it was said) |
| `add_incident_timeline_entry` | low | deletes the entry |
| `resolve_incident` | medium | reopens it |
| `export_incident_timeline`, `list_open_incidents` | read-only lookups | — |

Declaring stores the incident row first, unique on the action id and with the channel name it
will ask for (`inc-YYYYMMDD-slug`, the date of Warden's clock, at most Slack's 80 characters),
then creates the channel. A retried declaration finds the row, and the channel by the note
Warden leaves in it (`bot/channel_create.py`), so a crash between the two never makes two. The
summary is posted in the channel, the requester, the lead, comms and the responders are
invited, the purpose is the title and the topic says severity, status, lead and comms.

Every change is one write in storage (`storage/incidents.py`): a conditional update, the
timeline entry, and the message it owes the incident channel (an outbox row), together; a
retried call finds its entry and changes nothing again. Channel operations go through the
Chat port; Slack's refusals become failed results (or notes, when the incident itself
changed) in plain words. Text people wrote through the model is kept in its lasting form
(personal data as keyed placeholders) and neutralised before it is posted.

While an incident is open, its lead is reminded in the channel when no status update was
posted for `[incidents] status_update_every` (`remind_due_incidents`, the
`bot.jobs:remind_incident_leads` job on every replica; a conditional update of
`next_reminder_at` decides, so two replicas remind once).

Where each part lives:

| module | what |
| --- | --- |
| `bot/incidents.py` | the tool list (`incident_tools`) and the `warden.tools` entry point `tools` |
| `bot/incident_args.py` | the tools' argument models (incident numbers, severities) |
| `bot/incident_words.py` | `INC-12`, the channel name `inc-YYYYMMDD-slug`, the topic, the export |
| `bot/incident_kit.py` | what the tools are bound to and the helpers they share |
| `bot/incident_declare.py` | `declare_incident` and its undo |
| `bot/incident_changes.py` | roles, severity, status updates, timeline entries, resolve |
| `bot/incident_lookups.py` | `export_incident_timeline`, `list_open_incidents` |
| `bot/incident_reminders.py` | the lead's status-update reminders (`remind_due_incidents`) |

Incidents are seen workspace-wide, but a private incident's title, channel name and timeline
are shown only to a lookup made in its own channel.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from bot.incident_changes import change_tools
from bot.incident_declare import declare_tool
from bot.incident_kit import IncidentKit
from bot.incident_lookups import lookup_tools
from bot.plugins import PluginContext
from bot.policy import Policy
from bot.tools import Tool
from storage.models import utcnow
from storage.repo import Store


def incident_tools(
    store: Store | None,
    policy: Policy,
    lasting: Callable[[str], str] = str,
    clock: Callable[[], datetime] = utcnow,
) -> list[Tool[Any]]:
    """The incident tools, bound to a store (None while only checking configuration), the
    policy, the lasting form of people's words and Warden's clock."""
    kit = IncidentKit(store, policy, lasting, clock)
    return [declare_tool(kit), *change_tools(kit), *lookup_tools(kit)]


def tools(ctx: PluginContext) -> list[Tool[Any]]:
    """The `warden.tools` entry point of the incident tools."""
    return incident_tools(ctx.store, ctx.policy, ctx.lasting, ctx.clock)
