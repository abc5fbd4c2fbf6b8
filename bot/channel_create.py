"""create_channel: create a Slack channel, invite the people named, and on a second run of
the same action find the channel it made instead of failing on `name_taken`. Undo archives
it. See `bot/channel_tools.py`.

`own_channel` is shared: `bot/incident_declare.py` opens its incident channels through it.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from bot.channel_args import CreateChannelArgs
from bot.channel_edits import invite_what_we_can
from bot.channel_words import failed, mention, no_chat, refusal, unknown
from bot.chat import Chat
from bot.errors import ChatRefused, ToolFailed
from bot.tools import ToolContext, ToolResult

log = logging.getLogger(__name__)

# A channel Warden created this long before a `name_taken` answer, with no note saying for
# which action, may be this very call's (slack-sdk retried a create whose answer was lost).
RECENT_S = 120


def _is_channel(channel: str | None) -> bool:
    """A channel, not a DM: only a channel may be named in a message as <#C…>."""
    return bool(channel) and not str(channel).startswith("D")


def create_preview(args: CreateChannelArgs, ctx: ToolContext) -> str:
    """The dry run: whether the name is free, and who would be invited."""
    if ctx.chat is None:
        raise ToolFailed("no connection to Slack")
    try:
        existing = ctx.chat.find_channel(args.name)
    except ChatRefused as exc:
        raise ToolFailed(refusal(exc, f"#{args.name}")) from None
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


def own_channel(chat: Chat, name: str, ctx: ToolContext, started: float) -> ToolResult | str:
    """After `name_taken`: the channel if it is this action's own (a retry), or the result."""
    taken = f"#{name}"
    try:
        existing = chat.find_channel(name)
        marked = chat.creating_action(existing.id) if existing and existing.by_warden else None
    except ChatRefused as exc:
        return failed(f"{taken} already exists, and looking it up failed: {refusal(exc, taken)}")
    if existing is None or not existing.by_warden:
        return failed(f"{taken} already exists; pick another name")
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
    return failed(f"{taken} already exists (Warden created it for another request)")


def create(args: CreateChannelArgs, ctx: ToolContext) -> ToolResult:
    """Create the channel (or find this action's own, on a second run), leave the note that
    says who asked and for which action, then invite the members."""
    chat = ctx.chat
    if chat is None:
        return no_chat()
    started = time.time()
    fresh = True
    try:
        channel = chat.create_channel(args.name, args.private)
    except ChatRefused as exc:
        if exc.code != "name_taken":
            return failed(f"#{args.name} was not created: {refusal(exc, '#' + args.name)}")
        own = own_channel(chat, args.name, ctx, started)
        if isinstance(own, ToolResult):
            return own
        channel, fresh = own, False
    except Exception as exc:
        return unknown(f"created #{args.name}", exc)
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
        invited, already, problem = invite_what_we_can(chat, channel, args.members)
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


def undo_create(args: CreateChannelArgs, ctx: ToolContext, data: dict[str, Any]) -> ToolResult:
    """Undo of `create`: archive the channel this action created."""
    if ctx.chat is None:
        return no_chat()
    channel = str(data.get("channel") or "")
    if not channel:
        return failed("nothing to undo: the new channel's id was not recorded")
    try:
        ctx.chat.archive(channel)
    except ChatRefused as exc:
        if exc.code == "already_archived":
            return ToolResult(ok=True, note=f"{mention(channel)} was already archived")
        return failed(f"{mention(channel)} was not archived: {refusal(exc, mention(channel))}")
    except Exception as exc:
        return unknown(f"archived {mention(channel)}", exc)
    return ToolResult(ok=True, note=f"archived {mention(channel)}")
