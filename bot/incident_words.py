"""How incidents are named and shown: `INC-12`, the incident channel's name
(`inc-YYYYMMDD-slug`) and topic, people as mentions or topic names, and the timeline export.
"""

from __future__ import annotations

import hashlib
import logging
import re
import unicodedata
from collections.abc import Sequence
from datetime import UTC, date, datetime

from bot.channel_args import NAME_RULE
from bot.channel_words import mention as _where
from bot.channel_words import refusal as _refusal
from bot.chat import Chat
from bot.errors import ChatRefused
from bot.sanitize import neutralise
from bot.tools import ToolContext
from storage.models import Incident, IncidentEvent

log = logging.getLogger(__name__)

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


def name_of(chat: Chat, user: str | None) -> str:
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
        f"Lead: {name_of(chat, incident.lead)}",
    ]
    if incident.comms:
        parts.append(f"Comms: {name_of(chat, incident.comms)}")
    return neutralise(" · ".join(parts), allowed_domains=[], limit=MAX_TOPIC)


def set_topic(chat: Chat, incident: Incident) -> str:
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


def may_see(incident: Incident, ctx: ToolContext) -> bool:
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
