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

Where each part is: the argument models in `bot/channel_args.py`; Slack's refusals and the
results in plain words in `bot/channel_words.py`; `create_channel` in
`bot/channel_create.py`; the tools that change an existing channel (invite, topic, purpose,
pin, archive) in `bot/channel_edits.py`; here the read-only `channel_info` and the list of
tools with their contracts (risk, dry run, Undo, reach).
"""

from __future__ import annotations

import json
from typing import Any

from bot.channel_args import (
    MAX_TEXT,
    ChannelArgs,
    CreateChannelArgs,
    InviteArgs,
    PinArgs,
    PurposeArgs,
    TopicArgs,
)
from bot.channel_create import create, create_preview, undo_create
from bot.channel_edits import (
    archive,
    archive_preview,
    invite,
    invite_preview,
    pin,
    purpose_preview,
    purpose_run,
    purpose_undo,
    topic_preview,
    topic_run,
    topic_undo,
    unarchive,
    undo_invite,
    unpin,
)
from bot.channel_words import no_chat, refusal
from bot.errors import ChatRefused
from bot.plugins import PluginContext
from bot.policy_types import Risk
from bot.tools import Tool, ToolContext, ToolResult

# -- channel_info (read-only) -----------------------------------------------------------------


def _lookup(args: ChannelArgs, ctx: ToolContext) -> ToolResult:
    """A channel's facts for the model. A private channel's are shown only when asked in it:
    a lookup is not gated, and the requester may not be one of its members."""
    if ctx.chat is None:
        return no_chat()
    try:
        info = ctx.chat.channel_info(args.channel)
    except ChatRefused as exc:
        return ToolResult(ok=False, output=refusal(exc, args.channel))
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


# -- the tools --------------------------------------------------------------------------------


def _not_a_dm(args: Any) -> str | None:
    channel = str(getattr(args, "channel", ""))
    if channel.startswith("D"):
        return f"{channel} is a direct message, not a channel"
    return None


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
            run=create,
            description=(
                "Create a Slack channel (public unless `private`), optionally inviting people "
                "into it at once; Undo archives it"
            ),
            risk=Risk.MEDIUM,
            dry_run=create_preview,
            undo=undo_create,
            timeout_s=30,
            examples=(
                {"name": "inc-checkout-latency", "members": ["U012ABCDEF"]},
                {"name": "proj-billing-v2", "private": True},
            ),
        ),
        Tool(
            name="invite_to_channel",
            args=InviteArgs,
            run=invite,
            description=(
                "Invite people to a Slack channel (they see its history); Undo removes those "
                f"it invited. {REACH}"
            ),
            risk=Risk.MEDIUM,
            preconditions=(_not_a_dm,),
            dry_run=invite_preview,
            undo=undo_invite,
            timeout_s=30,
            examples=({"channel": "C0123ABCD", "users": ["U012ABCDEF", "U034GHIJKL"]},),
            target_channel=_target,
        ),
        Tool(
            name="set_channel_topic",
            args=TopicArgs,
            run=topic_run,
            description=(
                f"Set a Slack channel's topic (at most {MAX_TEXT} characters); Undo puts the "
                f"previous topic back. {REACH}"
            ),
            risk=Risk.LOW,
            preconditions=(_not_a_dm,),
            dry_run=topic_preview,
            undo=topic_undo,
            timeout_s=15,
            examples=({"channel": "C0123ABCD", "topic": "SEV2: checkout latency — IC @riley"},),
            target_channel=_target,
        ),
        Tool(
            name="set_channel_purpose",
            args=PurposeArgs,
            run=purpose_run,
            description=(
                f"Set a Slack channel's purpose, its description (at most {MAX_TEXT} "
                f"characters); Undo puts the previous one back. {REACH}"
            ),
            risk=Risk.LOW,
            preconditions=(_not_a_dm,),
            dry_run=purpose_preview,
            undo=purpose_undo,
            timeout_s=15,
            examples=({"channel": "C0123ABCD", "purpose": "Coordination of the Q3 billing work"},),
            target_channel=_target,
        ),
        Tool(
            name="pin_message",
            args=PinArgs,
            run=pin,
            description=f"Pin a message (by its ts) in a Slack channel; Undo unpins it. {REACH}",
            risk=Risk.LOW,
            preconditions=(_not_a_dm,),
            undo=unpin,
            timeout_s=15,
            examples=({"channel": "C0123ABCD", "ts": "1712345678.123456"},),
            target_channel=_target,
        ),
        Tool(
            name="archive_channel",
            args=ChannelArgs,
            run=archive,
            description=(
                "Archive a Slack channel: it stays readable, nobody can post in it; Undo "
                f"unarchives it. {REACH}"
            ),
            risk=Risk.HIGH,
            preconditions=(_not_a_dm,),
            dry_run=archive_preview,
            undo=unarchive,
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
