"""The channel tools that change an existing channel: invite_to_channel, set_channel_topic,
set_channel_purpose, pin_message and archive_channel, each with its dry run and its Undo.
Each declares `target_channel`, so the gate keeps it to the request's channel and the ones
the policy lists. See `bot/channel_tools.py`.

`invite_what_we_can` is shared: `create_channel` and `bot/incident_declare.py` invite through it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bot.channel_args import MAX_TEXT, ChannelArgs, InviteArgs, PinArgs
from bot.channel_words import (
    describe,
    failed,
    info_or_fail,
    mention,
    no_chat,
    people_refused,
    refusal,
    unknown,
)
from bot.chat import ChannelInfo, Chat
from bot.errors import ChatRefused, ToolFailed
from bot.sanitize import neutralise
from bot.tools import PreviewFn, RunFn, ToolContext, ToolResult, UndoFn

# -- invite_to_channel -----------------------------------------------------------------------


def invite_what_we_can(
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
            why = people_refused(exc) if refused else refusal(exc, mention(channel))
            return [], already, f"nobody was invited: {why}"
        rest = [u for u in users if u not in already]
        if not rest:
            return [], already, ""
        try:
            chat.invite(channel, rest)
        except ChatRefused as again:
            why = people_refused(again) if again.refused else refusal(again, mention(channel))
            return [], already, f"nobody was invited: {why}"
        return rest, already, ""


def invite_preview(args: InviteArgs, ctx: ToolContext) -> str:
    """The dry run: the channel, and whether the newcomers will see a private history."""
    if ctx.chat is None:
        raise ToolFailed("no connection to Slack")
    info = info_or_fail(ctx.chat, args.channel)
    kind = "private" if info.is_private else "public"
    history = " They will see its history." if info.is_private else ""
    return (
        f"Would invite {', '.join(args.users)} to the {kind} channel #{info.name}."
        f"{history}\n{describe(info)}"
    )


def invite(args: InviteArgs, ctx: ToolContext) -> ToolResult:
    """Invite the people named (those already in are left out); Undo gets who was invited."""
    chat = ctx.chat
    if chat is None:
        return no_chat()
    try:
        invited, already, problem = invite_what_we_can(chat, args.channel, args.users)
    except Exception as exc:
        return unknown(f"invited them to {mention(args.channel)}", exc)
    if problem:
        return failed(problem)
    data = {"channel": args.channel, "invited": invited}
    if not invited:
        return ToolResult(
            ok=True,
            note=f"everyone named was already in {mention(args.channel)}; nobody was invited",
            undo_data=data,
        )
    note = f"invited {', '.join(f'`{u}`' for u in invited)} to {mention(args.channel)}"
    if already:
        note += f"; {', '.join(f'`{u}`' for u in already)} already in it"
    return ToolResult(ok=True, note=note, undo_data=data)


def undo_invite(args: InviteArgs, ctx: ToolContext, data: dict[str, Any]) -> ToolResult:
    """Remove the people this action invited (and only them); someone who left is fine."""
    if ctx.chat is None:
        return no_chat()
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
                problems.append(f"`{user}`: {refusal(exc, mention(channel))}")
        except Exception as exc:
            return unknown(f"removed everyone from {mention(channel)}", exc)
    if problems:
        return failed(f"not everyone was removed from {mention(channel)}: {'; '.join(problems)}")
    return ToolResult(
        ok=True, note=f"removed {', '.join(f'`{u}`' for u in invited)} from {mention(channel)}"
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
        info = info_or_fail(ctx.chat, args.channel)
        new = clean(getattr(args, field))
        return (
            f"Would set the {words} of #{info.name}.\n"
            f"now: {current(info) or '(none)'}\nthen: {new or '(none)'}"
        )

    def run(args: Any, ctx: ToolContext) -> ToolResult:
        chat = ctx.chat
        if chat is None:
            return no_chat()
        where = mention(args.channel)
        try:
            before = current(chat.channel_info(args.channel))
        except ChatRefused as exc:
            return failed(f"the {words} was not set: {refusal(exc, where)}")
        new = clean(getattr(args, field))
        try:
            setter(chat)(args.channel, new)
        except ChatRefused as exc:
            return failed(f"the {words} was not set: {refusal(exc, where)}")
        except Exception as exc:
            return unknown(f"set the {words} of {where}", exc)
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
            return no_chat()
        channel = str(data.get("channel") or args.channel)
        where = mention(channel)
        previous, mine = str(data.get("previous", "")), str(data.get("set", ""))
        try:
            now = current(chat.channel_info(channel))
        except ChatRefused as exc:
            return failed(f"the {words} was not restored: {refusal(exc, where)}")
        if now != mine:
            # Someone changed it after Warden did: theirs stays.
            return failed(f"the {words} of {where} was changed again since; it was left as it is")
        try:
            setter(chat)(channel, previous)
        except ChatRefused as exc:
            return failed(f"the {words} was not restored: {refusal(exc, where)}")
        except Exception as exc:
            return unknown(f"restored the {words} of {where}", exc)
        return ToolResult(
            ok=True, note=f"restored the {words} of {where}", output=previous or "(none)"
        )

    return run, undo, preview


topic_run, topic_undo, topic_preview = _text_tools("topic", "topic")
purpose_run, purpose_undo, purpose_preview = _text_tools("purpose", "purpose")


# -- pin_message ------------------------------------------------------------------------------


def pin(args: PinArgs, ctx: ToolContext) -> ToolResult:
    """Pin the message; one already pinned is reported so, and Undo leaves it pinned."""
    if ctx.chat is None:
        return no_chat()
    where = mention(args.channel)
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
        return failed(f"nothing was pinned: {refusal(exc, where)}")
    except Exception as exc:
        return unknown(f"pinned the message in {where}", exc)
    return ToolResult(ok=True, note=f"pinned the message in {where}", undo_data=data)


def unpin(args: PinArgs, ctx: ToolContext, data: dict[str, Any]) -> ToolResult:
    """Undo of `pin`: unpin the message, if this action pinned it."""
    if ctx.chat is None:
        return no_chat()
    channel, ts = str(data.get("channel") or args.channel), str(data.get("ts") or args.ts)
    where = mention(channel)
    if not data.get("pinned"):
        return ToolResult(ok=True, note="nothing to undo: it was pinned before this action")
    try:
        ctx.chat.unpin(channel, ts)
    except ChatRefused as exc:
        if exc.code in ("no_pin", "not_pinned"):
            return ToolResult(ok=True, note=f"that message in {where} was no longer pinned")
        return failed(f"it was not unpinned: {refusal(exc, where)}")
    except Exception as exc:
        return unknown(f"unpinned the message in {where}", exc)
    return ToolResult(ok=True, note=f"unpinned the message in {where}")


# -- archive_channel --------------------------------------------------------------------------


def archive_preview(args: ChannelArgs, ctx: ToolContext) -> str:
    """The dry run: what archiving would do to the channel, and the channel's details."""
    if ctx.chat is None:
        raise ToolFailed("no connection to Slack")
    info = info_or_fail(ctx.chat, args.channel)
    if info.is_general:
        head = f"#{info.name} is the general channel: Slack will refuse to archive it."
    elif info.is_archived:
        head = f"#{info.name} is already archived: nothing would change."
    else:
        head = f"Would archive #{info.name}: it stays readable, nobody can post in it."
    return f"{head}\n{describe(info)}"


def archive(args: ChannelArgs, ctx: ToolContext) -> ToolResult:
    """Archive the channel; one already archived is reported so, and Undo leaves it."""
    if ctx.chat is None:
        return no_chat()
    where = mention(args.channel)
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
        return failed(f"{where} was not archived: {refusal(exc, where)}")
    except Exception as exc:
        return unknown(f"archived {where}", exc)
    return ToolResult(
        ok=True,
        note=f"archived {where}",
        undo_data={"channel": args.channel, "archived": True},
    )


def unarchive(args: ChannelArgs, ctx: ToolContext, data: dict[str, Any]) -> ToolResult:
    """Undo of `archive`: unarchive the channel, if this action archived it."""
    if ctx.chat is None:
        return no_chat()
    channel = str(data.get("channel") or args.channel)
    where = mention(channel)
    if not data.get("archived"):
        return ToolResult(ok=True, note="nothing to undo: it was archived before this action")
    try:
        ctx.chat.unarchive(channel)
    except ChatRefused as exc:
        if exc.code == "not_archived":
            return ToolResult(ok=True, note=f"{where} was already back")
        return failed(f"{where} was not unarchived: {refusal(exc, where)}")
    except Exception as exc:
        return unknown(f"unarchived {where}", exc)
    return ToolResult(ok=True, note=f"unarchived {where}")
