"""Channel operations as tools: create a channel, invite people, set its topic or purpose,
pin a message, archive it, and look one up.

Each acts through the Chat port (`bot/chat.py`), never Slack directly. A refusal
(`ChatRefused`: the channel name is taken, Warden is not in the channel…) becomes a failed
result in plain words and nothing was done; a call whose answer never came (a dropped
connection, a 5xx that outlasted slack-sdk's retries) ends as `unknown` — the action needs a
person's review, since the change may have happened.

Reach is the gate's: every tool that changes an existing channel declares `target_channel`,
so `bot/gate.py` keeps it to the channel the request was made in and the channels
`tools.NAME.channels` lists (never the admin channel). Creating a channel reaches no
existing one, which is why `create_channel` can invite people as it creates.

Idempotency: `ctx.action_id` is the key. A new channel carries a note with the action id
(message metadata), so a second run of the same action finds its own channel instead of
failing on `name_taken`; topic, purpose, pin and archive are states, so doing them again is
harmless, and an "already" answer is reported as such with nothing for Undo to reverse.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator

from bot.chat import ChannelInfo, Chat
from bot.errors import ChatRefused, ToolFailed
from bot.plugins import PluginContext
from bot.policy import SLACK_CHANNEL_ID, SLACK_USER_ID, Risk
from bot.sanitize import neutralise
from bot.tools import PreviewFn, RunFn, Tool, ToolContext, ToolResult, UndoFn

log = logging.getLogger(__name__)

NAME_RULE = "^[a-z0-9_-]{1,80}$"
MAX_TEXT = 250  # Slack's limit for a topic and for a purpose
MAX_PEOPLE = 30
# A channel Warden created this long before a `name_taken` answer, with no note saying for
# which action, may be this very call's (slack-sdk retried a create whose answer was lost).
RECENT_S = 120


def _channel_ref(value: Any) -> Any:
    """`<#C0123ABCD|name>` — how Slack writes a channel in a message — means C0123ABCD."""
    if isinstance(value, str):
        value = value.strip()
        m = re.fullmatch(r"<#([A-Z0-9]+)(?:\|[^>]*)?>", value)
        return m.group(1) if m else value
    return value


def _user_ref(value: Any) -> Any:
    """`<@U0123ABCD>` or `<@U0123ABCD|name>` — a mention — means U0123ABCD."""
    if isinstance(value, str):
        value = value.strip()
        m = re.fullmatch(r"<@([A-Z0-9]+)(?:\|[^>]*)?>", value)
        return m.group(1) if m else value
    return value


def _people(value: Any) -> Any:
    """A list of people; "U1 U2" or "U1, U2" (an alias's placeholder is one string) too."""
    if isinstance(value, str):
        return [v for v in re.split(r"[\s,]+", value) if v]
    return value


# Field first, validator after: the before-validator then wraps the constrained string, so
# the pattern is both checked and shown in the schema the model sees.
ChannelId = Annotated[
    str,
    Field(
        description="Slack channel id, like C0123ABCD",
        pattern=SLACK_CHANNEL_ID.pattern,
        max_length=32,
    ),
    BeforeValidator(_channel_ref),
]
UserId = Annotated[
    str,
    Field(
        description="Slack user id, like U012ABCDEF", pattern=SLACK_USER_ID.pattern, max_length=32
    ),
    BeforeValidator(_user_ref),
]
People = Annotated[
    list[UserId],
    Field(description="Slack user ids", max_length=MAX_PEOPLE),
    BeforeValidator(_people),
]
MessageTs = Annotated[
    str,
    Field(description="The message's ts, like 1712345678.123456", pattern=r"^\d{9,10}\.\d{6}$"),
]


def _unique(users: list[str]) -> list[str]:
    return list(dict.fromkeys(users))


# Characters text a person (or a model) writes must not carry: C0/C1 controls other than tab
# and line breaks (PostgreSQL refuses NUL in text; a terminal obeys escapes) and the bidi
# overrides and isolates that make a title read differently from what it is ("\u202egnp.exe").
_CONTROLS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def no_controls(value: str) -> str:
    """A field validator for people's words: refuse control characters, naming the first
    (tabs and line breaks are fine). Titles, texts, topics and summaries use it."""
    found = _CONTROLS.search(value)
    if found is not None:
        raise ValueError(
            f"must not contain control characters (found U+{ord(found.group(0)):04X}); "
            "write plain text"
        )
    return value


class CreateChannelArgs(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(
        description=(
            "The new channel's name: lowercase letters, digits, - and _, at most 80 "
            "characters, e.g. inc-checkout-latency"
        ),
        json_schema_extra={"pattern": NAME_RULE},
    )
    private: bool = Field(default=False, description="Make it a private channel")
    members: People = Field(
        default_factory=list,
        description=(
            "People to invite once it exists (Slack user ids); the requester is not added "
            "unless named here"
        ),
    )

    @field_validator("name", mode="before")
    @classmethod
    def _name(cls, value: Any) -> Any:
        # "#Inc Checkout" is how people write it; Slack's own client makes it inc-checkout.
        if isinstance(value, str):
            value = re.sub(r"\s+", "-", value.strip().removeprefix("#").strip()).lower()
            if not re.fullmatch(NAME_RULE, value):
                raise ValueError(
                    "a channel name is 1 to 80 lowercase letters, digits, - and _ "
                    "(no spaces, dots or other signs)"
                )
        return value

    @field_validator("members")
    @classmethod
    def _members(cls, value: list[str]) -> list[str]:
        return _unique(value)


class InviteArgs(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    channel: ChannelId
    users: People = Field(description="The people to add (Slack user ids)")

    @field_validator("users")
    @classmethod
    def _users(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("name at least one person to invite")
        return _unique(value)


class TopicArgs(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    channel: ChannelId
    topic: str = Field(description='The new topic ("" clears it)', max_length=MAX_TEXT)

    _topic = field_validator("topic")(no_controls)


class PurposeArgs(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    channel: ChannelId
    purpose: str = Field(
        description='The channel\'s new purpose, its description ("" clears it)',
        max_length=MAX_TEXT,
    )

    _purpose = field_validator("purpose")(no_controls)


class PinArgs(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    channel: ChannelId
    ts: MessageTs


class ChannelArgs(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    channel: ChannelId


# -- plain words -----------------------------------------------------------------------------


def _is_channel(channel: str | None) -> bool:
    """A channel, not a DM: only a channel may be named in a message as <#C…>."""
    return bool(channel) and not str(channel).startswith("D")


def _where(channel: str) -> str:
    return f"<#{channel}>"


def _refusal(exc: ChatRefused, where: str) -> str:
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


def _people_refused(exc: ChatRefused) -> str:
    words = {
        "user_not_found": "not found",
        "cant_invite_self": "that is Warden itself",
        "cant_invite": "cannot be invited there",
        "already_in_channel": "already in it",
        "user_is_restricted": "a guest who cannot join it",
    }
    return "; ".join(f"`{u}`: {words.get(code, code)}" for u, code in sorted(exc.refused.items()))


def _failed(message: str) -> ToolResult:
    return ToolResult(ok=False, note=message)


def _unknown(what: str, exc: Exception) -> ToolResult:
    """The change may or may not have happened: a person has to look."""
    log.warning("channel call without an answer: %s: %s", what, type(exc).__name__)
    return ToolResult(
        ok=False,
        unknown=True,
        output=f"{type(exc).__name__}: {exc}",
        note=f"Slack did not answer, so whether Warden {what} is unknown; check before retrying",
    )


def _no_chat() -> ToolResult:
    return _failed("Warden has no connection to Slack here")


def _not_a_dm(args: Any) -> str | None:
    channel = str(getattr(args, "channel", ""))
    if channel.startswith("D"):
        return f"{channel} is a direct message, not a channel"
    return None


def _describe(info: ChannelInfo) -> str:
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


def _info_or_fail(chat: Chat, channel: str) -> ChannelInfo:
    """For previews: the channel, or ToolFailed in plain words."""
    try:
        return chat.channel_info(channel)
    except ChatRefused as exc:
        raise ToolFailed(_refusal(exc, _where(channel))) from None


# -- create_channel --------------------------------------------------------------------------


def _create_preview(args: CreateChannelArgs, ctx: ToolContext) -> str:
    if ctx.chat is None:
        raise ToolFailed("no connection to Slack")
    try:
        existing = ctx.chat.find_channel(args.name)
    except ChatRefused as exc:
        raise ToolFailed(_refusal(exc, f"#{args.name}")) from None
    if existing is not None:
        state = "archived" if existing.is_archived else "in use"
        return (
            f"#{args.name} already exists ({state}): this call would fail. "
            "Edit it to use another name."
        )
    kind = "private" if args.private else "public"
    people = (
        f", then invite {', '.join(args.members)}" if args.members else ", with only Warden in it"
    )
    return f"Would create the {kind} channel #{args.name}{people}. The name is free."


def _own_channel(chat: Chat, name: str, ctx: ToolContext, started: float) -> ToolResult | str:
    """After `name_taken`: the channel if it is this action's own (a retry), or the result."""
    taken = f"#{name}"
    try:
        existing = chat.find_channel(name)
        marked = chat.creating_action(existing.id) if existing and existing.by_warden else None
    except ChatRefused as exc:
        return _failed(f"{taken} already exists, and looking it up failed: {_refusal(exc, taken)}")
    if existing is None or not existing.by_warden:
        return _failed(f"{taken} already exists; pick another name")
    if marked == ctx.action_id:
        return existing.id
    if marked is None and existing.created >= started - RECENT_S:
        # Warden made it moments ago and never said for which action: a create whose answer
        # was lost (and retried) looks exactly like this one, so a person decides.
        return ToolResult(
            ok=False,
            unknown=True,
            note=(
                f"{taken} already exists: Warden created it moments ago, perhaps for this very "
                f"call, and could not record it; check <#{existing.id}> and archive it if unwanted"
            ),
        )
    return _failed(f"{taken} already exists (Warden created it for another request)")


def _invite_what_we_can(
    chat: Chat, channel: str, users: list[str]
) -> tuple[list[str], list[str], str]:
    """Invite `users`: (invited, already in, what went wrong). Slack's all-or-nothing answer
    is narrowed once: people already in are left out and the rest invited again."""
    if not users:
        return [], [], ""
    try:
        chat.invite(channel, users)
        return list(users), [], ""
    except ChatRefused as exc:
        refused = dict(exc.refused)
        if not refused and exc.code == "already_in_channel" and len(users) == 1:
            refused = {users[0]: exc.code}
        already = [u for u in users if refused.get(u) == "already_in_channel"]
        others = {u: c for u, c in refused.items() if c != "already_in_channel"}
        if others or not already:
            why = _people_refused(exc) if refused else _refusal(exc, _where(channel))
            return [], already, f"nobody was invited: {why}"
        rest = [u for u in users if u not in already]
        if not rest:
            return [], already, ""
        try:
            chat.invite(channel, rest)
        except ChatRefused as again:
            why = _people_refused(again) if again.refused else _refusal(again, _where(channel))
            return [], already, f"nobody was invited: {why}"
        return rest, already, ""


def _create(args: CreateChannelArgs, ctx: ToolContext) -> ToolResult:
    """Create the channel (or find this action's own, on a second run), leave the note that
    says who asked and for which action, then invite the members."""
    chat = ctx.chat
    if chat is None:
        return _no_chat()
    started = time.time()
    fresh = True
    try:
        channel = chat.create_channel(args.name, args.private)
    except ChatRefused as exc:
        if exc.code != "name_taken":
            return _failed(f"#{args.name} was not created: {_refusal(exc, '#' + args.name)}")
        own = _own_channel(chat, args.name, ctx, started)
        if isinstance(own, ToolResult):
            return own
        channel, fresh = own, False
    except Exception as exc:
        return _unknown(f"created #{args.name}", exc)
    undo = {"channel": channel, "name": args.name}
    if fresh:
        try:
            chat.post_creation_note(
                channel,
                f"Created by Warden for <@{ctx.requester}>"
                + (f" (asked in <#{ctx.channel}>)" if _is_channel(ctx.channel) else "")
                + f", action `{ctx.action_id[:8]}`.",
                ctx.action_id,
            )
        except Exception as exc:  # the channel exists either way; only the note is missing
            log.warning("creation note not posted in %s: %s", channel, type(exc).__name__)
    try:
        invited, already, problem = _invite_what_we_can(chat, channel, args.members)
    except Exception as exc:
        invited, already, problem = [], [], f"the invitations got no answer ({type(exc).__name__})"
    note = f"{'created' if fresh else 'found its own'} <#{channel}>"
    if invited:
        note += f" and invited {', '.join(f'`{u}`' for u in invited)}"
    if already:
        note += f"; {', '.join(f'`{u}`' for u in already)} already in it"
    if problem:
        note += f"; {problem}"
    return ToolResult(ok=True, note=note, undo_data=undo)


def _undo_create(args: CreateChannelArgs, ctx: ToolContext, data: dict[str, Any]) -> ToolResult:
    if ctx.chat is None:
        return _no_chat()
    channel = str(data.get("channel") or "")
    if not channel:
        return _failed("nothing to undo: the new channel's id was not recorded")
    try:
        ctx.chat.archive(channel)
    except ChatRefused as exc:
        if exc.code == "already_archived":
            return ToolResult(ok=True, note=f"{_where(channel)} was already archived")
        return _failed(f"{_where(channel)} was not archived: {_refusal(exc, _where(channel))}")
    except Exception as exc:
        return _unknown(f"archived {_where(channel)}", exc)
    return ToolResult(ok=True, note=f"archived {_where(channel)}")


# -- invite_to_channel -----------------------------------------------------------------------


def _invite_preview(args: InviteArgs, ctx: ToolContext) -> str:
    if ctx.chat is None:
        raise ToolFailed("no connection to Slack")
    info = _info_or_fail(ctx.chat, args.channel)
    kind = "private" if info.is_private else "public"
    history = " They will see its history." if info.is_private else ""
    return (
        f"Would invite {', '.join(args.users)} to the {kind} channel #{info.name}."
        f"{history}\n{_describe(info)}"
    )


def _invite(args: InviteArgs, ctx: ToolContext) -> ToolResult:
    chat = ctx.chat
    if chat is None:
        return _no_chat()
    try:
        invited, already, problem = _invite_what_we_can(chat, args.channel, args.users)
    except Exception as exc:
        return _unknown(f"invited them to {_where(args.channel)}", exc)
    if problem:
        return _failed(problem)
    data = {"channel": args.channel, "invited": invited}
    if not invited:
        return ToolResult(
            ok=True,
            note=f"everyone named was already in {_where(args.channel)}; nobody was invited",
            undo_data=data,
        )
    note = f"invited {', '.join(f'`{u}`' for u in invited)} to {_where(args.channel)}"
    if already:
        note += f"; {', '.join(f'`{u}`' for u in already)} already in it"
    return ToolResult(ok=True, note=note, undo_data=data)


def _undo_invite(args: InviteArgs, ctx: ToolContext, data: dict[str, Any]) -> ToolResult:
    """Remove the people this action invited (and only them); someone who left is fine."""
    if ctx.chat is None:
        return _no_chat()
    channel = str(data.get("channel") or args.channel)
    invited = [str(u) for u in data.get("invited") or []]
    if not invited:
        return ToolResult(ok=True, note="nobody to remove: this action invited nobody")
    problems: list[str] = []
    for user in invited:
        try:
            ctx.chat.kick(channel, user)
        except ChatRefused as exc:
            if exc.code != "not_in_channel":
                problems.append(f"`{user}`: {_refusal(exc, _where(channel))}")
        except Exception as exc:
            return _unknown(f"removed everyone from {_where(channel)}", exc)
    if problems:
        return _failed(f"not everyone was removed from {_where(channel)}: {'; '.join(problems)}")
    return ToolResult(
        ok=True, note=f"removed {', '.join(f'`{u}`' for u in invited)} from {_where(channel)}"
    )


# -- set_channel_topic / set_channel_purpose -------------------------------------------------


def _text_tools(field: str, words: str) -> tuple[RunFn[Any], UndoFn[Any], PreviewFn[Any]]:
    """Run, undo and preview for a channel's topic or purpose (`field`): the previous value
    is kept in undo_data, and undo puts it back only if nobody has changed it since."""

    def current(info: ChannelInfo) -> str:
        return info.topic if field == "topic" else info.purpose

    def setter(chat: Chat) -> Callable[[str, str], None]:
        return chat.set_topic if field == "topic" else chat.set_purpose

    def clean(text: str) -> str:
        # Model-written and shown to the channel: no pings, no foreign links.
        return neutralise(text, allowed_domains=[], limit=MAX_TEXT) if text else ""

    def preview(args: Any, ctx: ToolContext) -> str:
        if ctx.chat is None:
            raise ToolFailed("no connection to Slack")
        info = _info_or_fail(ctx.chat, args.channel)
        new = clean(getattr(args, field))
        return (
            f"Would set the {words} of #{info.name}.\n"
            f"now: {current(info) or '(none)'}\nthen: {new or '(none)'}"
        )

    def run(args: Any, ctx: ToolContext) -> ToolResult:
        chat = ctx.chat
        if chat is None:
            return _no_chat()
        where = _where(args.channel)
        try:
            before = current(chat.channel_info(args.channel))
        except ChatRefused as exc:
            return _failed(f"the {words} was not set: {_refusal(exc, where)}")
        new = clean(getattr(args, field))
        try:
            setter(chat)(args.channel, new)
        except ChatRefused as exc:
            return _failed(f"the {words} was not set: {_refusal(exc, where)}")
        except Exception as exc:
            return _unknown(f"set the {words} of {where}", exc)
        return ToolResult(
            ok=True,
            note=f"set the {words} of {where}"
            + (" (it was already that)" if before == new else ""),
            output=f"before: {before or '(none)'}\nnow: {new or '(none)'}",
            undo_data={"channel": args.channel, "previous": before, "set": new},
        )

    def undo(args: Any, ctx: ToolContext, data: dict[str, Any]) -> ToolResult:
        chat = ctx.chat
        if chat is None:
            return _no_chat()
        channel = str(data.get("channel") or args.channel)
        where = _where(channel)
        previous, mine = str(data.get("previous", "")), str(data.get("set", ""))
        try:
            now = current(chat.channel_info(channel))
        except ChatRefused as exc:
            return _failed(f"the {words} was not restored: {_refusal(exc, where)}")
        if now != mine:
            # Someone changed it after Warden did: theirs stays.
            return _failed(f"the {words} of {where} was changed again since; it was left as it is")
        try:
            setter(chat)(channel, previous)
        except ChatRefused as exc:
            return _failed(f"the {words} was not restored: {_refusal(exc, where)}")
        except Exception as exc:
            return _unknown(f"restored the {words} of {where}", exc)
        return ToolResult(
            ok=True, note=f"restored the {words} of {where}", output=previous or "(none)"
        )

    return run, undo, preview


_topic_run, _topic_undo, _topic_preview = _text_tools("topic", "topic")
_purpose_run, _purpose_undo, _purpose_preview = _text_tools("purpose", "purpose")


# -- pin_message ------------------------------------------------------------------------------


def _pin(args: PinArgs, ctx: ToolContext) -> ToolResult:
    if ctx.chat is None:
        return _no_chat()
    where = _where(args.channel)
    data: dict[str, Any] = {"channel": args.channel, "ts": args.ts, "pinned": True}
    try:
        ctx.chat.pin(args.channel, args.ts)
    except ChatRefused as exc:
        if exc.code == "already_pinned":
            # Pinned before this action: Undo must leave it pinned.
            return ToolResult(
                ok=True,
                note=f"that message in {where} was already pinned",
                undo_data={**data, "pinned": False},
            )
        return _failed(f"nothing was pinned: {_refusal(exc, where)}")
    except Exception as exc:
        return _unknown(f"pinned the message in {where}", exc)
    return ToolResult(ok=True, note=f"pinned the message in {where}", undo_data=data)


def _unpin(args: PinArgs, ctx: ToolContext, data: dict[str, Any]) -> ToolResult:
    if ctx.chat is None:
        return _no_chat()
    channel, ts = str(data.get("channel") or args.channel), str(data.get("ts") or args.ts)
    where = _where(channel)
    if not data.get("pinned"):
        return ToolResult(ok=True, note="nothing to undo: it was pinned before this action")
    try:
        ctx.chat.unpin(channel, ts)
    except ChatRefused as exc:
        if exc.code in ("no_pin", "not_pinned"):
            return ToolResult(ok=True, note=f"that message in {where} was no longer pinned")
        return _failed(f"it was not unpinned: {_refusal(exc, where)}")
    except Exception as exc:
        return _unknown(f"unpinned the message in {where}", exc)
    return ToolResult(ok=True, note=f"unpinned the message in {where}")


# -- archive_channel --------------------------------------------------------------------------


def _archive_preview(args: ChannelArgs, ctx: ToolContext) -> str:
    if ctx.chat is None:
        raise ToolFailed("no connection to Slack")
    info = _info_or_fail(ctx.chat, args.channel)
    if info.is_general:
        head = f"#{info.name} is the general channel: Slack will refuse to archive it."
    elif info.is_archived:
        head = f"#{info.name} is already archived: nothing would change."
    else:
        head = f"Would archive #{info.name}: it stays readable, nobody can post in it."
    return f"{head}\n{_describe(info)}"


def _archive(args: ChannelArgs, ctx: ToolContext) -> ToolResult:
    if ctx.chat is None:
        return _no_chat()
    where = _where(args.channel)
    try:
        ctx.chat.archive(args.channel)
    except ChatRefused as exc:
        if exc.code == "already_archived":
            # Archived before this action: Undo must not bring it back.
            return ToolResult(
                ok=True,
                note=f"{where} was already archived",
                undo_data={"channel": args.channel, "archived": False},
            )
        return _failed(f"{where} was not archived: {_refusal(exc, where)}")
    except Exception as exc:
        return _unknown(f"archived {where}", exc)
    return ToolResult(
        ok=True,
        note=f"archived {where}",
        undo_data={"channel": args.channel, "archived": True},
    )


def _unarchive(args: ChannelArgs, ctx: ToolContext, data: dict[str, Any]) -> ToolResult:
    if ctx.chat is None:
        return _no_chat()
    channel = str(data.get("channel") or args.channel)
    where = _where(channel)
    if not data.get("archived"):
        return ToolResult(ok=True, note="nothing to undo: it was archived before this action")
    try:
        ctx.chat.unarchive(channel)
    except ChatRefused as exc:
        if exc.code == "not_archived":
            return ToolResult(ok=True, note=f"{where} was already back")
        return _failed(f"{where} was not unarchived: {_refusal(exc, where)}")
    except Exception as exc:
        return _unknown(f"unarchived {where}", exc)
    return ToolResult(ok=True, note=f"unarchived {where}")


# -- channel_info (read-only) -----------------------------------------------------------------


def _lookup(args: ChannelArgs, ctx: ToolContext) -> ToolResult:
    """A channel's facts for the model. A private channel's are shown only when asked in it:
    a lookup is not gated, and the requester may not be one of its members."""
    if ctx.chat is None:
        return _no_chat()
    try:
        info = ctx.chat.channel_info(args.channel)
    except ChatRefused as exc:
        return ToolResult(ok=False, output=_refusal(exc, args.channel))
    if info.is_private and ctx.channel != info.id:
        return ToolResult(
            ok=False, output="that channel is private; its details are shown only when asked in it"
        )
    return ToolResult(
        ok=True,
        output=json.dumps(
            {
                "id": info.id,
                "name": info.name,
                "private": info.is_private,
                "archived": info.is_archived,
                "general": info.is_general,
                "warden_is_member": info.is_member,
                "created_by_warden": info.by_warden,
                "members": info.num_members,
                "topic": info.topic,
                "purpose": info.purpose,
            }
        ),
    )


def _target(args: Any) -> str:
    return str(args.channel)


REACH = (
    "Only in the channel this request was made in, unless the policy lists others for this "
    "tool; never a direct message"
)


def channel_tools() -> list[Tool[Any]]:
    """The channel tools (they reach Slack through `ToolContext.chat` when they run)."""
    return [
        Tool(
            name="create_channel",
            args=CreateChannelArgs,
            run=_create,
            description=(
                "Create a Slack channel (public unless `private`), optionally inviting people "
                "into it at once; Undo archives it"
            ),
            risk=Risk.MEDIUM,
            dry_run=_create_preview,
            undo=_undo_create,
            timeout_s=30,
            examples=(
                {"name": "inc-checkout-latency", "members": ["U012ABCDEF"]},
                {"name": "proj-billing-v2", "private": True},
            ),
        ),
        Tool(
            name="invite_to_channel",
            args=InviteArgs,
            run=_invite,
            description=(
                "Invite people to a Slack channel (they see its history); Undo removes those "
                f"it invited. {REACH}"
            ),
            risk=Risk.MEDIUM,
            preconditions=(_not_a_dm,),
            dry_run=_invite_preview,
            undo=_undo_invite,
            timeout_s=30,
            examples=({"channel": "C0123ABCD", "users": ["U012ABCDEF", "U034GHIJKL"]},),
            target_channel=_target,
        ),
        Tool(
            name="set_channel_topic",
            args=TopicArgs,
            run=_topic_run,
            description=(
                f"Set a Slack channel's topic (at most {MAX_TEXT} characters); Undo puts the "
                f"previous topic back. {REACH}"
            ),
            risk=Risk.LOW,
            preconditions=(_not_a_dm,),
            dry_run=_topic_preview,
            undo=_topic_undo,
            timeout_s=15,
            examples=({"channel": "C0123ABCD", "topic": "SEV2: checkout latency — IC @riley"},),
            target_channel=_target,
        ),
        Tool(
            name="set_channel_purpose",
            args=PurposeArgs,
            run=_purpose_run,
            description=(
                f"Set a Slack channel's purpose, its description (at most {MAX_TEXT} "
                f"characters); Undo puts the previous one back. {REACH}"
            ),
            risk=Risk.LOW,
            preconditions=(_not_a_dm,),
            dry_run=_purpose_preview,
            undo=_purpose_undo,
            timeout_s=15,
            examples=({"channel": "C0123ABCD", "purpose": "Coordination of the Q3 billing work"},),
            target_channel=_target,
        ),
        Tool(
            name="pin_message",
            args=PinArgs,
            run=_pin,
            description=f"Pin a message (by its ts) in a Slack channel; Undo unpins it. {REACH}",
            risk=Risk.LOW,
            preconditions=(_not_a_dm,),
            undo=_unpin,
            timeout_s=15,
            examples=({"channel": "C0123ABCD", "ts": "1712345678.123456"},),
            target_channel=_target,
        ),
        Tool(
            name="archive_channel",
            args=ChannelArgs,
            run=_archive,
            description=(
                "Archive a Slack channel: it stays readable, nobody can post in it; Undo "
                f"unarchives it. {REACH}"
            ),
            risk=Risk.HIGH,
            preconditions=(_not_a_dm,),
            dry_run=_archive_preview,
            undo=_unarchive,
            timeout_s=15,
            examples=({"channel": "C0123ABCD"},),
            target_channel=_target,
        ),
        Tool(
            name="channel_info",
            args=ChannelArgs,
            run=_lookup,
            description=(
                "Look up a Slack channel: name, private or public, archived, member count, "
                "topic and purpose"
            ),
            risk=Risk.LOW,
            read_only=True,
            timeout_s=10,
            examples=({"channel": "C0123ABCD"},),
        ),
    ]


def tools(ctx: PluginContext) -> list[Tool[Any]]:
    """The `warden.tools` entry point of the channel tools."""
    return channel_tools()
