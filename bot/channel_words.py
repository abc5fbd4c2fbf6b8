"""The channel tools' results in plain words: Slack's refusals (`ChatRefused`) as a sentence
that says what was wrong and what to do, a failed result when nothing was done, an unknown
one when Slack never answered, and a channel described in a few lines. See
`bot/channel_tools.py`; the incident modules (`bot/incident_*.py`) word their own channel
calls with these too.
"""

from __future__ import annotations

import logging

from bot.channel_args import MAX_TEXT
from bot.chat import ChannelInfo, Chat
from bot.errors import ChatRefused, ToolFailed
from bot.tools import ToolResult

log = logging.getLogger(__name__)


def mention(channel: str) -> str:
    """How a message names a channel: `<#C…>`, which Slack shows as its name."""
    return f"<#{channel}>"


def refusal(exc: ChatRefused, where: str) -> str:
    """Slack's refusal in plain words (`where` names the channel: `#name` or `<#C…>`)."""
    code = exc.code
    words = {
        "name_taken": f"{where} already exists (archived channels keep their names)",
        "invalid_name_specials": "a channel name is lowercase letters, digits, - and _ only",
        "invalid_name_punctuation": "a channel name needs a letter or a digit",
        "invalid_name_maxlength": "a channel name is at most 80 characters",
        "invalid_name_required": "the channel needs a name",
        "invalid_name": "Slack does not accept that channel name",
        "channel_not_found": f"{where} was not found, or it is private and Warden is not in it",
        "not_in_channel": f"Warden is not a member of {where}; invite @warden there first",
        "is_archived": f"{where} is archived; it takes no changes until it is unarchived",
        "already_archived": f"{where} is already archived",
        "not_archived": f"{where} is not archived",
        "cant_archive_general": f"{where} is the general channel; it cannot be archived",
        "cant_kick_from_general": f"nobody can be removed from {where}, the general channel",
        "method_not_supported_for_channel_type": f"{where} is not a channel Warden can manage",
        "too_long": f"Slack takes at most {MAX_TEXT} characters there",
        "message_not_found": f"that message was not found in {where}",
        "bad_timestamp": "that is not a message's ts",
        "not_pinnable": "that kind of message cannot be pinned",
        "no_pin": "that message is not pinned",
        "already_pinned": "that message is already pinned",
        "too_many_pins": f"{where} has as many pins as Slack allows",
        "user_not_found": "a person named was not found",
        "cant_invite_self": "Warden cannot invite itself",
        "cant_invite": "a person named cannot be invited to that channel",
        "missing_scope": (
            "Warden's Slack app lacks the permission for this; update the app from "
            "slack-manifest.json and reinstall it"
        ),
        "restricted_action": "the workspace's settings do not let Warden do this",
        "ratelimited": "Slack asked Warden to slow down; try again in a minute",
    }
    return words.get(code, f"Slack refused it ({code})")


def people_refused(exc: ChatRefused) -> str:
    """Why Slack refused each person named, in plain words (`U1`: not found; …)."""
    words = {
        "user_not_found": "not found",
        "cant_invite_self": "that is Warden itself",
        "cant_invite": "cannot be invited there",
        "already_in_channel": "already in it",
        "user_is_restricted": "a guest who cannot join it",
    }
    return "; ".join(f"`{u}`: {words.get(code, code)}" for u, code in sorted(exc.refused.items()))


def failed(message: str) -> ToolResult:
    """A failed result whose note, `message`, says in plain words why nothing was done."""
    return ToolResult(ok=False, note=message)


def unknown(what: str, exc: Exception) -> ToolResult:
    """The change may or may not have happened: a person has to look."""
    log.warning("channel call without an answer: %s: %s", what, type(exc).__name__)
    return ToolResult(
        ok=False,
        unknown=True,
        output=f"{type(exc).__name__}: {exc}",
        note=f"Slack did not answer, so whether Warden {what} is unknown; check before retrying",
    )


def no_chat() -> ToolResult:
    """The result of a call made where Warden has no connection to Slack."""
    return failed("Warden has no connection to Slack here")


def describe(info: ChannelInfo) -> str:
    """A channel in a few lines (its topic and purpose are people's words: shown as data)."""
    kind = "private channel" if info.is_private else "public channel"
    lines = [
        f"#{info.name} ({info.id}): {kind}"
        + (", archived" if info.is_archived else "")
        + (", the workspace's general channel" if info.is_general else ""),
        f"members: {info.num_members if info.num_members is not None else 'unknown'}"
        + ("" if info.is_member else " (Warden is not one of them)"),
        f"topic: {info.topic or '(none)'}",
        f"purpose: {info.purpose or '(none)'}",
    ]
    return "\n".join(lines)


def info_or_fail(chat: Chat, channel: str) -> ChannelInfo:
    """For previews: the channel, or ToolFailed in plain words."""
    try:
        return chat.channel_info(channel)
    except ChatRefused as exc:
        raise ToolFailed(refusal(exc, mention(channel))) from None
