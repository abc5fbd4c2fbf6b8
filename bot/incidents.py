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

Incidents are seen workspace-wide, but a private incident's title, channel name and timeline
are shown only to a lookup made in its own channel.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
import unicodedata
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator

from bot.channel_args import NAME_RULE, People, UserId, no_controls
from bot.channel_create import own_channel as _own_channel
from bot.channel_edits import invite_what_we_can as _invite_what_we_can
from bot.channel_words import failed as _failed
from bot.channel_words import mention as _where
from bot.channel_words import refusal as _refusal
from bot.channel_words import unknown as _unknown
from bot.chat import Chat
from bot.errors import ChatRefused, ToolFailed
from bot.gate import span_text
from bot.plugins import PluginContext
from bot.policy import Policy, Risk
from bot.sanitize import neutralise
from bot.tools import Tool, ToolContext, ToolResult
from storage.incidents import Entry, IncidentChange, Outcome
from storage.models import Incident, IncidentEvent, IncidentStatus, utcnow
from storage.outbox import Notice
from storage.repo import Store

if TYPE_CHECKING:
    from bot.core import Core

log = logging.getLogger(__name__)

SEVERITIES = ("sev1", "sev2", "sev3", "sev4")
Severity = Literal["sev1", "sev2", "sev3", "sev4"]
MAX_NAME = 80  # Slack's limit for a channel name
MAX_TOPIC = 250  # … and for a topic or purpose
PREFIX = "inc"

# What each kind of timeline entry is called in an export.
KINDS = {
    "declared": "declared",
    "lead": "lead",
    "comms": "comms",
    "lead_restored": "lead restored (undo)",
    "comms_restored": "comms restored (undo)",
    "severity": "severity",
    "severity_restored": "severity restored (undo)",
    "update": "status update",
    "note": "note",
    "resolved": "resolved",
    "reopened": "reopened (undo)",
    "cancelled": "cancelled",
}


# -- arguments -------------------------------------------------------------------------------


def _incident_ref(value: Any) -> Any:
    """ "12", "#12", "INC-12" and "incident 12" all mean incident 12."""
    if isinstance(value, bool):
        raise ValueError("an incident number is a whole number, like 12 or INC-12")
    if isinstance(value, str):
        text = value.strip().lower().lstrip("#").strip()
        text = re.sub(r"^(?:incident|inc)[\s#-]*", "", text)
        if not text.isdigit():
            raise ValueError(f"{value[:40]!r} is not an incident number (like 12 or INC-12)")
        return int(text)
    return value


def _severity(value: Any) -> Any:
    """ "SEV2", "sev 2", "Sev-2" and "2" all mean sev2."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if isinstance(value, str):
        text = re.sub(r"[\s_-]+", "", value.strip().lower())
        text = "sev" + text if text.isdigit() else text
        if text not in SEVERITIES:
            raise ValueError(f"{value[:20]!r} is not a severity: give sev1, sev2, sev3 or sev4")
        return text
    return value


IncidentNumber = Annotated[
    int,
    Field(description="The incident's number, as in INC-12 (12)", ge=1),
    BeforeValidator(_incident_ref),
]
SeverityArg = Annotated[
    Severity,
    Field(description="sev1 (the worst: a major outage) to sev4 (minor)"),
    BeforeValidator(_severity),
]


def _one_line(value: str) -> str:
    value = " ".join(value.split())
    if not value:
        raise ValueError("it is empty")
    return value


class DeclareArgs(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    severity: SeverityArg
    title: str = Field(
        description="What is wrong, in a few words (it names the channel)",
        min_length=1,
        max_length=150,
    )
    summary: str = Field(
        default="", description="What is known so far, posted in the channel", max_length=2000
    )
    lead: UserId | None = Field(
        default=None, description="Slack user id of the incident lead (default: the requester)"
    )
    comms: UserId | None = Field(default=None, description="Slack user id of who handles comms")
    responders: People = Field(
        default_factory=list, description="Slack user ids of people to invite to the channel"
    )
    private: bool = Field(default=False, description="Make the incident channel private")

    _title = field_validator("title")(_one_line)
    _plain = field_validator("title", "summary")(no_controls)

    @field_validator("responders")
    @classmethod
    def _responders(cls, value: list[str]) -> list[str]:
        return list(dict.fromkeys(value))


class RoleArgs(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    incident: IncidentNumber
    role: Literal["lead", "comms"] = Field(description="lead (the incident lead) or comms")
    person: UserId


class SeverityArgs(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    incident: IncidentNumber
    severity: SeverityArg


class UpdateArgs(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    incident: IncidentNumber
    text: str = Field(
        description="The status update: what changed, what is next", min_length=1, max_length=3000
    )

    _text = field_validator("text")(no_controls)


class EntryArgs(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    incident: IncidentNumber
    text: str = Field(description="What happened, for the timeline", min_length=1, max_length=1000)

    _text = field_validator("text")(_one_line)
    _plain = field_validator("text")(no_controls)


class ResolveArgs(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    incident: IncidentNumber
    summary: str = Field(
        description="How it ended: cause, fix, follow-ups", min_length=1, max_length=3000
    )

    _summary = field_validator("summary")(no_controls)


class IncidentArgs(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    incident: IncidentNumber


class NoArgs(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# -- words -----------------------------------------------------------------------------------


def number(incident: Incident | int) -> str:
    """How people name an incident: INC-12."""
    return f"INC-{incident if isinstance(incident, int) else incident.id}"


def slug(title: str) -> str:
    """A title as channel-name words: "Checkout: 5xx in EU!" → "checkout-5xx-in-eu"."""
    ascii_ = unicodedata.normalize("NFKD", title).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", ascii_.lower()).strip("-")


def channel_name(title: str, day: date) -> str:
    """`inc-YYYYMMDD-slug`, cut to Slack's 80 characters at a word where it can be. A title
    with no Latin letters or digits ("決済が失敗している") gets `incident-` and a short hash of
    itself: stable for a retried declaration, and not the name of every such incident that
    day."""
    head = f"{PREFIX}-{day:%Y%m%d}-"
    words = slug(title) or f"incident-{hashlib.sha256(title.encode()).hexdigest()[:8]}"
    name = head + words
    if len(name) > MAX_NAME:
        cut = name[:MAX_NAME]
        name = cut.rsplit("-", 1)[0] if cut.rfind("-") > len(head) else cut
    name = name.rstrip("-")
    if not re.fullmatch(NAME_RULE, name):  # pragma: no cover - built from [a-z0-9-] only
        raise ValueError(f"{name!r} is not a channel name")
    return name


def who(user: str | None) -> str:
    return f"<@{user}>" if user else "nobody"


def _name_of(chat: Chat, user: str | None) -> str:
    """A person as a topic shows them (topics are plain text: mentions stay raw there)."""
    if not user:
        return "none"
    try:
        name = chat.user_info(user).get("name") or user
    except Exception:  # the topic then shows the id
        name = user
    return f"@{name}"


def topic(chat: Chat, incident: Incident) -> str:
    """The incident channel's topic: severity, status, lead and comms."""
    parts = [
        incident.severity.upper(),
        str(incident.status).capitalize(),
        f"Lead: {_name_of(chat, incident.lead)}",
    ]
    if incident.comms:
        parts.append(f"Comms: {_name_of(chat, incident.comms)}")
    return neutralise(" · ".join(parts), allowed_domains=[], limit=MAX_TOPIC)


def _set_topic(chat: Chat, incident: Incident) -> str:
    """Bring the topic up to date; what went wrong in plain words, or ""."""
    if not incident.channel:
        return ""
    where = _where(incident.channel)
    try:
        chat.set_topic(incident.channel, topic(chat, incident))
    except ChatRefused as exc:
        return f"the topic of {where} was not updated: {_refusal(exc, where)}"
    except Exception as exc:
        log.warning("topic of %s not set: %s", incident.channel, type(exc).__name__)
        return f"the topic of {where} got no answer from Slack ({type(exc).__name__})"
    return ""


def _at(moment: datetime) -> str:
    return f"{moment.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC"


def _may_see(incident: Incident, ctx: ToolContext) -> bool:
    """A private incident's contents are shown only where it lives: its own channel."""
    return not incident.private or (
        incident.channel is not None and ctx.channel == incident.channel
    )


def export_text(incident: Incident, events: Sequence[IncidentEvent]) -> str:
    """An incident's timeline as text: its facts, then every entry, oldest first, with when
    and who."""
    lines = [
        f"{number(incident)} · {incident.severity.upper()} · {incident.status}"
        + (f" · <#{incident.channel}> (#{incident.channel_name})" if incident.channel else ""),
        f"Title: {incident.title}",
        f"Lead: {who(incident.lead)} · Comms: {who(incident.comms)}",
        f"Declared {_at(incident.declared_at)} by {who(incident.created_by)}"
        + (f" · resolved {_at(incident.resolved_at)}" if incident.resolved_at else ""),
    ]
    if incident.summary:
        lines.append(f"Summary: {incident.summary}")
    lines += ["", "Timeline (UTC):"]
    lines += [
        f"{_at(e.at)} · {KINDS.get(e.kind, e.kind)} · {who(e.author)} · {e.text}" for e in events
    ]
    return "\n".join(lines)


# -- the tools -------------------------------------------------------------------------------


def incident_tools(
    store: Store | None,
    policy: Policy,
    lasting: Callable[[str], str] = str,
    clock: Callable[[], datetime] = utcnow,
) -> list[Tool[Any]]:
    """The incident tools, bound to a store (None while only checking configuration), the
    policy, the lasting form of people's words and Warden's clock."""

    def safe(text: str, limit: int = 3000) -> str:
        return neutralise(text, allowed_domains=list(policy.agent.link_domains), limit=limit)

    def every() -> timedelta:
        return policy.incidents.status_update_every

    def offline() -> ToolResult:
        return _failed("Warden has no database or no connection to Slack here")

    def entry(kind: str, ctx: ToolContext, text: str, at: datetime | None = None) -> Entry:
        return Entry(
            kind=kind, author=ctx.requester, at=at or clock(), text=text, action_id=ctx.action_id
        )

    def find(incident_id: int) -> Incident:
        """For previews: the incident, or ToolFailed in plain words."""
        row = store.incident(incident_id) if store is not None else None
        if row is None or row.status == IncidentStatus.CANCELLED:
            raise ToolFailed(f"there is no incident {number(incident_id)}")
        return row

    def is_open(args: Any) -> str | None:
        """Precondition: the incident exists and is open."""
        if store is None:
            return None
        row = store.incident(args.incident)
        if row is None or row.status == IncidentStatus.CANCELLED:
            return f"there is no incident {number(args.incident)}"
        if row.status != IncidentStatus.OPEN:
            return f"{number(row)} is {row.status}; it takes no more changes"
        return None

    def exists(args: Any) -> str | None:
        """Precondition: the incident exists (open or resolved)."""
        if store is None:
            return None
        row = store.incident(args.incident)
        if row is None or row.status == IncidentStatus.CANCELLED:
            return f"there is no incident {number(args.incident)}"
        return None

    def not_changed(change: IncidentChange, n: int) -> ToolResult:
        """A change that did not happen, in plain words (None of them changed anything)."""
        if change.outcome is Outcome.MISSING or change.incident is None:
            return _failed(f"there is no incident {number(n)}")
        if change.outcome is Outcome.NOT_OPEN:
            return _failed(f"{number(n)} is {change.incident.status}; nothing was changed")
        return _failed(f"{number(n)} was changed by someone else meanwhile; nothing was changed")

    def to_channel(incident: Incident, text: str) -> list[Notice]:
        return [Notice(channel=incident.channel, text=text)] if incident.channel else []

    def elsewhere(row: Incident | None, ctx: ToolContext) -> ToolResult | None:
        """A private incident is changed only from its own channel, where its contents may
        be seen: asked anywhere else a change is refused (a role change would invite someone
        into its private channel, past the channel tools' reach; an update would post there
        words its members never saw asked)."""
        if row is None or _may_see(row, ctx):
            return None
        where = f", <#{row.channel}>" if row.channel else ""
        return _failed(
            f"{number(row)} is private: it is changed only from its own channel{where}; ask there"
        )

    # -- declare_incident ----------------------------------------------------------------

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
        invited = ", ".join(_name_of(ctx.chat, u) for u in people(args, ctx.requester))
        shown_topic = " · ".join(
            [args.severity.upper(), "Open", f"Lead: {_name_of(ctx.chat, lead)}"]
            + ([f"Comms: {_name_of(ctx.chat, args.comms)}"] if args.comms else [])
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
        if topic_problem := _set_topic(chat, incident):
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

    # -- assign_incident_role ------------------------------------------------------------

    def role_preview(args: RoleArgs, ctx: ToolContext) -> str:
        if ctx.chat is None:
            raise ToolFailed("no connection to Slack")
        row = find(args.incident)
        now = getattr(row, args.role)
        person = _name_of(ctx.chat, args.person)
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
            f"(now: {_name_of(ctx.chat, now)}), invite them{where} and update its topic."
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
            if topic_problem := _set_topic(chat, incident):
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
        if topic_problem := _set_topic(chat, change.incident):
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
        if topic_problem := _set_topic(chat, incident):
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
        if topic_problem := _set_topic(chat, incident):
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
        if topic_problem := _set_topic(chat, change.incident):
            note += f"; {topic_problem}"
        return ToolResult(ok=True, note=note)

    # -- lookups -------------------------------------------------------------------------

    def export(args: IncidentArgs, ctx: ToolContext) -> ToolResult:
        if store is None:
            return ToolResult(ok=False, output="not connected")
        row = store.incident(args.incident)
        if row is None or row.status == IncidentStatus.CANCELLED:
            return ToolResult(ok=False, output=f"there is no incident {number(args.incident)}")
        if not _may_see(row, ctx):
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
            seen = _may_see(row, ctx)
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
        ),
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


def tools(ctx: PluginContext) -> list[Tool[Any]]:
    """The `warden.tools` entry point of the incident tools."""
    return incident_tools(ctx.store, ctx.policy, ctx.lasting, ctx.clock)


# -- status-update reminders -----------------------------------------------------------------


def reminder_text(incident: Incident, now: datetime, every: str) -> str:
    """What a reminder posts: the lead mentioned, how long since the last status update."""
    minutes = int((now - incident.last_update_at).total_seconds() // 60)
    quiet = span_text(timedelta(minutes=max(1, minutes)))
    return (
        f":bell: {who(incident.lead)}, {number(incident)} ({incident.severity.upper()}) has "
        f"had no status update for {quiet}. Please post one through @warden (a status update "
        f"of {number(incident)}); the next reminder comes {every} after this one without one."
    )


def remind_due_incidents(core: Core) -> int:
    """Remind the lead of every open incident whose status update is overdue at the core's
    clock, each reminder once across replicas (the storage claim decides), and move the next
    one `status_update_every` on. Returns how many this replica posted."""
    now = core.clock()
    every = core.policy.incidents.status_update_every
    posted = 0
    for incident in core.store.due_incident_reminders(now):
        due = incident.next_reminder_at
        if due is None or incident.channel is None:  # pragma: no cover - the query excludes them
            continue
        notice = Notice(
            channel=incident.channel, text=reminder_text(incident, now, span_text(every))
        )
        if core.store.claim_incident_reminder(
            int(incident.id or 0),
            due=due,
            next_at=now + every,
            notice=notice,
            policy_version=core.policy.version,
        ):
            posted += 1
    if posted:
        core.kick()
    return posted
