"""Changes to an open incident, each one write in storage (a conditional update, its timeline
entry and the message it owes the incident channel) and the topic following:
`assign_incident_role`, `set_incident_severity`, `post_incident_update`,
`add_incident_timeline_entry` and `resolve_incident`, with their undos.
"""

from __future__ import annotations

from typing import Any

from bot.channel_edits import invite_what_we_can as _invite_what_we_can
from bot.channel_words import failed as _failed
from bot.errors import ToolFailed
from bot.gate_text import span_text
from bot.incident_args import EntryArgs, ResolveArgs, RoleArgs, SeverityArgs, UpdateArgs
from bot.incident_kit import IncidentKit
from bot.incident_words import name_of, number, set_topic, who
from bot.policy_types import Risk
from bot.tools import Tool, ToolContext, ToolResult
from storage.incidents import Outcome


def change_tools(kit: IncidentKit) -> list[Tool[Any]]:
    """The tools that change an open incident, in the order they are listed."""
    safe = kit.safe
    every = kit.every
    offline = kit.offline
    entry = kit.entry
    find = kit.find
    is_open = kit.is_open
    exists = kit.exists
    not_changed = kit.not_changed
    to_channel = kit.to_channel
    elsewhere = kit.elsewhere
    store = kit.store
    lasting = kit.lasting
    clock = kit.clock

    # -- assign_incident_role ------------------------------------------------------------

    def role_preview(args: RoleArgs, ctx: ToolContext) -> str:
        if ctx.chat is None:
            raise ToolFailed("no connection to Slack")
        row = find(args.incident)
        now = getattr(row, args.role)
        person = name_of(ctx.chat, args.person)
        if now == args.person:
            return f"{person} is already the {args.role} of {number(row)}: nothing to do."
        # A private incident's channel name is its title's slug: never on a card elsewhere.
        where = (
            (" to its private channel" if row.private else f" to #{row.channel_name}")
            if row.channel
            else ""
        )
        return (
            f"Would make {person} the {args.role} of {number(row)} "
            f"(now: {name_of(ctx.chat, now)}), invite them{where} and update its topic."
        )

    def assign_role(args: RoleArgs, ctx: ToolContext) -> ToolResult:
        chat = ctx.chat
        if store is None or chat is None:
            return offline()
        row = store.incident(args.incident)
        if refused := elsewhere(row, ctx):
            return refused
        before = getattr(row, args.role) if row else None
        words = "incident lead" if args.role == "lead" else "comms lead"
        text = f"{who(args.person)} is now the {words}, assigned by {who(ctx.requester)}"
        change = store.assign_incident_role(
            args.incident,
            args.role,
            args.person,
            entry(args.role, ctx, f"{args.role}: {who(before)} → {who(args.person)}"),
            to_channel(row, f":busts_in_silhouette: {text}.") if row else [],
        )
        incident = change.incident
        if change.outcome is Outcome.ALREADY and incident is not None:
            return ToolResult(
                ok=True,
                note=f"{who(args.person)} was already the {args.role} of {number(incident)}",
                undo_data={"changed": False},
            )
        if change.outcome not in (Outcome.DONE, Outcome.REPEATED) or incident is None:
            return not_changed(change, args.incident)
        problems = []
        if incident.channel:
            try:
                _invited, _already, problem = _invite_what_we_can(
                    chat, incident.channel, [args.person]
                )
            except Exception as exc:
                problem = f"the invitation got no answer ({type(exc).__name__})"
            if problem:
                problems.append(problem)
            if topic_problem := set_topic(chat, incident):
                problems.append(topic_problem)
        note = f"{who(args.person)} is the {args.role} of {number(incident)}"
        if change.previous:
            note += f" (was {who(change.previous)})"
        if problems:
            note += "; " + "; ".join(problems)
        return ToolResult(
            ok=True,
            note=note,
            undo_data={
                "changed": change.outcome is Outcome.DONE,
                "previous": change.previous,
                "set": args.person,
            },
        )

    def restore(field: str, args: Any, ctx: ToolContext, data: dict[str, Any]) -> ToolResult:
        """Undo of a role or severity change: the previous value comes back, unless it was
        changed again since."""
        chat = ctx.chat
        if store is None or chat is None:
            return offline()
        if not data.get("changed"):
            return ToolResult(ok=True, note="nothing to undo: this call changed nothing")
        previous = data.get("previous")
        mine = str(data.get("set") or "")
        row = store.incident(args.incident)
        shown = (lambda v: str(v).upper()) if field == "severity" else who
        text = f"{field} back to {shown(previous)} (undo of {shown(mine)})"
        change = store.restore_incident_field(
            args.incident,
            field,
            now_value=mine,
            previous=str(previous) if previous is not None else None,
            entry=entry(f"{field}_restored", ctx, text),
            notices=to_channel(row, f":leftwards_arrow_with_hook: {text.capitalize()}.")
            if row
            else [],
        )
        if change.outcome is Outcome.CHANGED:
            return _failed(
                f"the {field} of {number(args.incident)} was changed again since; "
                "it was left as it is"
            )
        if change.outcome not in (Outcome.DONE, Outcome.REPEATED) or change.incident is None:
            return not_changed(change, args.incident)
        note = f"the {field} of {number(args.incident)} is {shown(previous)} again"
        if topic_problem := set_topic(chat, change.incident):
            note += f"; {topic_problem}"
        return ToolResult(ok=True, note=note)

    def unassign_role(args: RoleArgs, ctx: ToolContext, data: dict[str, Any]) -> ToolResult:
        return restore(args.role, args, ctx, data)

    # -- set_incident_severity -----------------------------------------------------------

    def severity_risk(args: SeverityArgs) -> Risk:
        # Raising to sev1 pages the world; say so with four eyes. Going down is cheap.
        return {"sev1": Risk.HIGH, "sev2": Risk.MEDIUM}.get(args.severity, Risk.LOW)

    def severity_preview(args: SeverityArgs, ctx: ToolContext) -> str:
        row = find(args.incident)
        if row.severity == args.severity:
            return f"{number(row)} is already {args.severity.upper()}: nothing to do."
        return (
            f"Would change {number(row)} from {row.severity.upper()} to "
            f"{args.severity.upper()}, say so in its channel and update its topic."
        )

    def set_severity(args: SeverityArgs, ctx: ToolContext) -> ToolResult:
        chat = ctx.chat
        if store is None or chat is None:
            return offline()
        row = store.incident(args.incident)
        if refused := elsewhere(row, ctx):
            return refused
        step = f"{row.severity.upper() if row else '?'} → {args.severity.upper()}"
        change = store.set_incident_severity(
            args.incident,
            args.severity,
            entry("severity", ctx, f"severity {step}"),
            to_channel(row, f":rotating_light: Severity changed: {step}, by {who(ctx.requester)}.")
            if row
            else [],
        )
        incident = change.incident
        if change.outcome is Outcome.ALREADY and incident is not None:
            return ToolResult(
                ok=True,
                note=f"{number(incident)} was already {args.severity.upper()}",
                undo_data={"changed": False},
            )
        if change.outcome not in (Outcome.DONE, Outcome.REPEATED) or incident is None:
            return not_changed(change, args.incident)
        note = f"{number(incident)} is {args.severity.upper()}"
        if change.previous:
            note += f" (was {change.previous.upper()})"
        if topic_problem := set_topic(chat, incident):
            note += f"; {topic_problem}"
        return ToolResult(
            ok=True,
            note=note,
            undo_data={
                "changed": change.outcome is Outcome.DONE,
                "previous": change.previous,
                "set": args.severity,
            },
        )

    def unset_severity(args: SeverityArgs, ctx: ToolContext, data: dict[str, Any]) -> ToolResult:
        return restore("severity", args, ctx, data)

    # -- post_incident_update ------------------------------------------------------------

    def update_preview(args: UpdateArgs, ctx: ToolContext) -> str:
        row = find(args.incident)
        where = f"<#{row.channel}>" if row.channel else "its channel (not created yet)"
        return (
            f"Would post this status update of {number(row)} in {where} and record it:\n"
            f"{safe(args.text)}"
        )

    def post_update(args: UpdateArgs, ctx: ToolContext) -> ToolResult:
        if store is None:
            return offline()
        row = store.incident(args.incident)
        if refused := elsewhere(row, ctx):
            return refused
        text = lasting(args.text)
        now = clock()
        notices = (
            to_channel(
                row,
                f":mega: *Status update* · {number(row)} · {row.severity.upper()} · by "
                f"{who(ctx.requester)}\n{safe(text)}",
            )
            if row
            else []
        )
        change = store.post_incident_update(
            args.incident,
            entry("update", ctx, text, now),
            notices,
            next_reminder_at=now + every(),
        )
        incident = change.incident
        if change.outcome not in (Outcome.DONE, Outcome.REPEATED) or incident is None:
            return not_changed(change, args.incident)
        where = f" in <#{incident.channel}>" if incident.channel else ""
        return ToolResult(
            ok=True,
            note=f"status update of {number(incident)} posted{where} and recorded",
        )

    # -- add_incident_timeline_entry -----------------------------------------------------

    def entry_preview(args: EntryArgs, ctx: ToolContext) -> str:
        row = find(args.incident)
        return f"Would add to the timeline of {number(row)}:\n{safe(args.text, 1000)}"

    def add_entry(args: EntryArgs, ctx: ToolContext) -> ToolResult:
        if store is None:
            return offline()
        if refused := elsewhere(store.incident(args.incident), ctx):
            return refused
        change = store.add_incident_note(args.incident, entry("note", ctx, lasting(args.text)))
        if change.outcome not in (Outcome.DONE, Outcome.REPEATED) or change.incident is None:
            return not_changed(change, args.incident)
        return ToolResult(
            ok=True,
            note=f"added to the timeline of {number(change.incident)}",
            undo_data={"incident": args.incident},
        )

    def remove_entry(args: EntryArgs, ctx: ToolContext, data: dict[str, Any]) -> ToolResult:
        if store is None:
            return offline()
        if not store.delete_incident_note(args.incident, ctx.action_id, "note"):
            return ToolResult(ok=True, note="the timeline entry was already gone")
        return ToolResult(ok=True, note=f"removed from the timeline of {number(args.incident)}")

    # -- resolve_incident ----------------------------------------------------------------

    def resolve_preview(args: ResolveArgs, ctx: ToolContext) -> str:
        row = find(args.incident)
        where = f"<#{row.channel}>" if row.channel else "its channel"
        return (
            f"Would resolve {number(row)} ({row.severity.upper()}), post the summary in "
            f"{where}, set its topic to Resolved and stop the status-update reminders:\n"
            f"{safe(args.summary)}"
        )

    def resolve(args: ResolveArgs, ctx: ToolContext) -> ToolResult:
        chat = ctx.chat
        if store is None or chat is None:
            return offline()
        row = store.incident(args.incident)
        if refused := elsewhere(row, ctx):
            return refused
        summary = lasting(args.summary)
        now = clock()
        lasted = span_text(now - row.declared_at) if row else ""
        notices = (
            to_channel(
                row,
                f":white_check_mark: *{number(row)} resolved* by {who(ctx.requester)} after "
                f"{lasted}\n*Summary:* {safe(summary)}",
            )
            if row
            else []
        )
        change = store.resolve_incident(
            args.incident,
            summary,
            entry("resolved", ctx, summary, now),
            notices,
        )
        incident = change.incident
        if change.outcome not in (Outcome.DONE, Outcome.REPEATED) or incident is None:
            return not_changed(change, args.incident)
        note = f"{number(incident)} resolved"
        if topic_problem := set_topic(chat, incident):
            note += f"; {topic_problem}"
        return ToolResult(ok=True, note=note, undo_data={"incident": args.incident})

    def reopen(args: ResolveArgs, ctx: ToolContext, data: dict[str, Any]) -> ToolResult:
        chat = ctx.chat
        if store is None or chat is None:
            return offline()
        now = clock()
        row = store.incident(args.incident)
        change = store.reopen_incident(
            args.incident,
            ctx.action_id,
            entry("reopened", ctx, "resolution undone"),
            to_channel(row, f":leftwards_arrow_with_hook: {number(row)} is open again.")
            if row
            else [],
            next_reminder_at=now + every(),
        )
        if change.outcome is Outcome.CHANGED:
            return _failed(f"{number(args.incident)} was changed since; it was left as it is")
        if change.outcome not in (Outcome.DONE, Outcome.REPEATED) or change.incident is None:
            return not_changed(change, args.incident)
        note = f"{number(args.incident)} is open again"
        if topic_problem := set_topic(chat, change.incident):
            note += f"; {topic_problem}"
        return ToolResult(ok=True, note=note)

    return [
        Tool(
            name="assign_incident_role",
            args=RoleArgs,
            run=assign_role,
            undo=unassign_role,
            dry_run=role_preview,
            preconditions=(is_open,),
            risk=Risk.LOW,
            timeout_s=30,
            description=(
                "Give an open incident's lead or comms role to someone (invites them to the "
                "incident channel, updates its topic); Undo gives it back"
            ),
            examples=({"incident": 12, "role": "lead", "person": "U012ABCDEF"},),
        ),
        Tool(
            name="set_incident_severity",
            args=SeverityArgs,
            run=set_severity,
            undo=unset_severity,
            dry_run=severity_preview,
            preconditions=(is_open,),
            risk=Risk.LOW,
            risk_from_args=severity_risk,
            timeout_s=30,
            description=(
                "Change an open incident's severity (sev1 worst … sev4); raising it to sev1 is "
                "high risk. Updates the topic; Undo restores the previous severity"
            ),
            examples=({"incident": 12, "severity": "sev1"}, {"incident": 12, "severity": "sev3"}),
        ),
        Tool(
            name="post_incident_update",
            args=UpdateArgs,
            run=post_update,
            dry_run=update_preview,
            preconditions=(is_open,),
            risk=Risk.LOW,
            timeout_s=15,
            description=(
                "Post a status update of an open incident in its channel and record it on the "
                "timeline (it resets the lead's status-update reminder)"
            ),
            examples=(
                {"incident": 12, "text": "Rolled back the 09:05 deploy; error rate falling."},
            ),
        ),
        Tool(
            name="add_incident_timeline_entry",
            args=EntryArgs,
            run=add_entry,
            undo=remove_entry,
            dry_run=entry_preview,
            preconditions=(exists,),
            risk=Risk.LOW,
            timeout_s=15,
            description=(
                "Add an entry to an incident's timeline (open or resolved); Undo removes it"
            ),
            examples=({"incident": 12, "text": "Paged the database on-call"},),
        ),
        Tool(
            name="resolve_incident",
            args=ResolveArgs,
            run=resolve,
            undo=reopen,
            dry_run=resolve_preview,
            preconditions=(is_open,),
            risk=Risk.MEDIUM,
            timeout_s=30,
            description=(
                "Resolve an open incident with a summary: posts it in the incident channel, "
                "sets the topic to Resolved, stops the reminders; Undo reopens it"
            ),
            examples=(
                {"incident": 12, "summary": "A bad config push; rolled back, follow-up INC-13"},
            ),
        ),
    ]
