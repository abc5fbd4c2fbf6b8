"""Tools that ship with Warden (runbooks from `warden.toml` are added at start-up)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from bot.policy_types import SLACK_CHANNEL_ID, Risk
from bot.sanitize import neutralise
from bot.tools import ToolContext, ToolRegistry, ToolResult

BUILTINS = ToolRegistry()


class PostMessageArgs(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    channel: str = Field(description="Slack channel id, like C0123ABCD", max_length=32)
    text: str = Field(description="The message, in Slack mrkdwn", min_length=1, max_length=3000)


def _channel_ok(args: PostMessageArgs) -> str | None:
    if not SLACK_CHANNEL_ID.match(args.channel):
        return f"{args.channel!r} is not a Slack channel id"
    return None


def _undo_post(args: PostMessageArgs, ctx: ToolContext, data: dict[str, Any]) -> ToolResult:
    if ctx.chat is None or "ts" not in data:
        return ToolResult(ok=False, output="nothing to undo: the message's id was not recorded")
    ctx.chat.delete(str(data["channel"]), str(data["ts"]))
    return ToolResult(ok=True, output="message deleted")


@BUILTINS.tool(
    name="post_message",
    args=PostMessageArgs,
    description="Post a message to a Slack channel as Warden",
    risk=Risk.LOW,
    preconditions=[_channel_ok],
    undo=_undo_post,
    timeout_s=15,
    examples=[{"channel": "C0GENERAL", "text": "Deploy of checkout-api finished."}],
    # The gate keeps it to the request's own channel (and `tools.post_message.channels`).
    target_channel=lambda args: args.channel,
)
def post_message(args: PostMessageArgs, ctx: ToolContext) -> ToolResult:
    """Post `text` (neutralised: no broadcasts, no foreign links) to `channel`: in the
    request's thread when it is the request's own channel."""
    if ctx.chat is None:
        return ToolResult(ok=False, output="no chat connection")
    text = neutralise(args.text, allowed_domains=[], limit=3000)
    thread = ctx.thread_ts if args.channel == ctx.channel else None
    ts = ctx.chat.post(args.channel, text, thread)
    return ToolResult(
        ok=True,
        note=f"posted to <#{args.channel}>",
        undo_data={"channel": args.channel, "ts": ts},
    )
