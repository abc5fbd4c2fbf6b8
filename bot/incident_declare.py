"""`declare_incident`: store the incident, create its channel (`inc-YYYYMMDD-slug`), post the
summary, invite the people, set purpose and topic; Undo cancels it and archives the channel
while nobody but its declarer has worked on it.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from bot.channel_create import own_channel as _own_channel
from bot.channel_edits import invite_what_we_can as _invite_what_we_can
from bot.channel_words import failed as _failed
from bot.channel_words import mention as _where
from bot.channel_words import refusal as _refusal
from bot.channel_words import unknown as _unknown
from bot.errors import ChatRefused, ToolFailed
from bot.gate_text import span_text
from bot.incident_args import DeclareArgs
from bot.incident_kit import IncidentKit
from bot.incident_words import MAX_TOPIC, channel_name, name_of, number, set_topic, who
from bot.policy_types import Risk
from bot.tools import Tool, ToolContext, ToolResult
from storage.incidents import Outcome
from storage.models import Incident, IncidentStatus

log = logging.getLogger(__name__)


def declare_tool(kit: IncidentKit) -> Tool[Any]:
    """The `declare_incident` tool."""
    safe = kit.safe
    every = kit.every
    offline = kit.offline
    entry = kit.entry
    to_channel = kit.to_channel
    store = kit.store
    lasting = kit.lasting
    clock = kit.clock

    def people(args: DeclareArgs, requester: str) -> list[str]:
        lead = args.lead or requester
        found = [requester, lead, *([args.comms] if args.comms else []), *args.responders]
        return list(dict.fromkeys(found))

    def declare_preview(args: DeclareArgs, ctx: ToolContext) -> str:
        if ctx.chat is None:
            raise ToolFailed("no connection to Slack")
        name = channel_name(lasting(args.title), clock().date())
        try:
            existing = ctx.chat.find_channel(name)
        except ChatRefused as exc:
            raise ToolFailed(_refusal(exc, f"#{name}")) from None
        lead = args.lead or ctx.requester
        kind = "private" if args.private else "public"
        head = (
            f"#{name} already exists: this declaration would fail. Edit the title."
            if existing is not None
            else f"Would create the {kind} channel #{name} (the name is free)."
        )
        # A preview is shown as data (mentions inert): people by name.
        invited = ", ".join(name_of(ctx.chat, u) for u in people(args, ctx.requester))
        shown_topic = " · ".join(
            [args.severity.upper(), "Open", f"Lead: {name_of(ctx.chat, lead)}"]
            + ([f"Comms: {name_of(ctx.chat, args.comms)}"] if args.comms else [])
        )
        return (
            f"{head}\nPost the summary there, invite {invited}.\n"
            f"Topic: {shown_topic}\nPurpose: {safe(args.title, MAX_TOPIC)}\n"
            f"The lead is reminded after {span_text(every())} without a status update."
        )

    def summary_text(incident: Incident, summary: str) -> str:
        roles = f"Lead: {who(incident.lead)}" + (
            f" · Comms: {who(incident.comms)}" if incident.comms else ""
        )
        body = safe(summary, 2000) if summary else "_No summary yet._"
        return (
            f":rotating_light: *{number(incident)} · {incident.severity.upper()} — "
            f"{safe(incident.title, 300)}*\n"
            f"Declared by {who(incident.created_by)} · {roles}\n{body}\n"
            f"_Status updates, roles, severity and the timeline go through @warden; the lead "
            f"is reminded after {span_text(every())} without a status update._"
        )

    def declare(args: DeclareArgs, ctx: ToolContext) -> ToolResult:
        chat = ctx.chat
        if store is None or chat is None:
            return offline()
        now = clock()
        title = lasting(args.title)
        summary = lasting(args.summary) if args.summary else ""
        lead = args.lead or ctx.requester
        incident, _new = store.declare_incident(
            title=title,
            severity=args.severity,
            private=args.private,
            channel_name=channel_name(title, now.date()),
            lead=lead,
            comms=args.comms,
            action_id=ctx.action_id,
            entry=entry(
                "declared",
                ctx,
                f"{args.severity.upper()}, lead {who(lead)}"
                + (f", comms {who(args.comms)}" if args.comms else "")
                + f": {title}",
                now,
            ),
            next_reminder_at=now + every(),
        )
        n = int(incident.id or 0)
        if incident.status == IncidentStatus.CANCELLED:
            return _failed(f"{number(n)} was cancelled; declare a new incident")
        name = incident.channel_name
        channel = incident.channel
        fresh = False
        if channel is None:
            started = time.time()  # compared with Slack's own creation time
            try:
                channel = chat.create_channel(name, incident.private)
                fresh = True
            except ChatRefused as exc:
                if exc.code != "name_taken":
                    return gave_up(n, f"#{name} was not created: {_refusal(exc, '#' + name)}", ctx)
                own = _own_channel(chat, name, ctx, started)
                if isinstance(own, ToolResult):
                    if own.unknown:
                        return own
                    taken = own.note.removesuffix("; pick another name")
                    return gave_up(n, f"{taken}; edit the title for another channel name", ctx)
                channel = own
            except Exception as exc:
                return _unknown(f"created #{name}", exc)
            if fresh:
                try:
                    chat.post_creation_note(
                        channel,
                        f"Channel of {number(n)}, declared through Warden by "
                        f"{who(ctx.requester)} (action `{ctx.action_id[:8]}`).",
                        ctx.action_id,
                    )
                except Exception as exc:  # the channel exists either way; only the note is lost
                    log.warning("creation note not posted in %s: %s", channel, type(exc).__name__)
            placed = incident.model_copy(update={"channel": channel})
            store.set_incident_channel(
                n, channel, to_channel(placed, summary_text(placed, summary))
            )
            incident = store.incident(n) or placed
        assert channel is not None
        problems: list[str] = []
        try:
            invited, _already, problem = _invite_what_we_can(
                chat, channel, people(args, ctx.requester)
            )
        except Exception as exc:
            invited, problem = [], f"the invitations got no answer ({type(exc).__name__})"
        if problem:
            problems.append(problem)
        try:
            chat.set_purpose(channel, safe(incident.title, MAX_TOPIC))
        except ChatRefused as exc:
            problems.append(f"the purpose was not set: {_refusal(exc, _where(channel))}")
        except Exception as exc:
            problems.append(f"the purpose got no answer ({type(exc).__name__})")
        if topic_problem := set_topic(chat, incident):
            problems.append(topic_problem)
        note = f"declared {number(n)} ({incident.severity.upper()}) in <#{channel}>"
        if invited:
            note += f" and invited {', '.join(who(u) for u in invited)}"
        if problems:
            note += "; " + "; ".join(problems)
        return ToolResult(
            ok=True,
            note=note,
            output=f"{number(n)}: #{name}",
            undo_data={"incident": n, "channel": channel},
        )

    def gave_up(n: int, why: str, ctx: ToolContext) -> ToolResult:
        """The channel cannot be made: the incident is cancelled, so it is never listed open."""
        if store is not None:
            store.cancel_incident(n, entry("cancelled", ctx, f"not declared: {why}"), ())
        return _failed(f"{number(n)} was not declared: {why}")

    def undo_declare(args: DeclareArgs, ctx: ToolContext, data: dict[str, Any]) -> ToolResult:
        chat = ctx.chat
        if store is None or chat is None:
            return offline()
        n = int(data.get("incident") or 0)
        channel = str(data.get("channel") or "")
        if not n:
            return _failed("nothing to undo: the incident's number was not recorded")
        # Cancelled first, and only if nobody but its declarer has worked on it since: the
        # storage's conditional update decides, then the channel follows. Undo never wipes
        # out a live incident others are running.
        outcome = store.cancel_incident(
            n, entry("cancelled", ctx, "declaration undone"), (), unless_others_changed=True
        )
        if outcome is Outcome.CHANGED:
            return _failed(
                f"{number(n)} was changed since by someone other than who declared it; it "
                "stays open and its channel as it is (resolve it instead)"
            )
        if outcome is Outcome.MISSING:
            return _failed(f"there is no incident {number(n)} declared by this action")
        state = f"{number(n)} {'cancelled' if outcome is Outcome.DONE else 'was already cancelled'}"
        if not channel:
            return ToolResult(ok=True, note=state)
        where = _where(channel)
        try:
            chat.archive(channel)
        except ChatRefused as exc:
            if exc.code != "already_archived":
                return _failed(
                    f"{state}, but {where} was not archived: {_refusal(exc, where)}; "
                    "archive it by hand"
                )
        except Exception as exc:
            return _unknown(f"archived {where} ({state})", exc)
        return ToolResult(ok=True, note=f"archived {where}; {state}")

    return Tool(
        name="declare_incident",
        args=DeclareArgs,
        run=declare,
        undo=undo_declare,
        dry_run=declare_preview,
        risk=Risk.MEDIUM,
        timeout_s=60,
        description=(
            "Declare an incident: creates its channel #inc-<date>-<title>, posts the "
            "summary there, invites the requester, lead, comms and responders, and sets the "
            "topic to severity, status and lead; Undo archives the channel and cancels it"
        ),
        examples=(
            {"severity": "sev2", "title": "Checkout is slow in EU"},
            {
                "severity": "sev1",
                "title": "Payments failing",
                "summary": "Card payments fail with 502 since 09:10 UTC",
                "lead": "U012ABCDEF",
                "responders": ["U034GHIJKL"],
            },
        ),
    )
