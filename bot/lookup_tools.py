"""Read-only tools the agent loop may run to gather facts (never proposals, never gated).

They read Warden's own state or Slack's directory; they cannot change anything. Results go
back to the model fenced as data (`bot/sanitize.as_data`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from bot.chat import Chat
from bot.plugins import PluginContext
from bot.policy import Policy
from bot.policy_types import SLACK_USER_ID, Risk
from bot.tools import Tool, ToolContext, ToolResult
from storage.models import ActionStatus, utcnow
from storage.repo import Store


class NoArgs(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class UserArgs(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    user: str = Field(description="Slack user id, like U012ABCDEF", pattern=SLACK_USER_ID.pattern)


def visible(channel: str, requester: str, ctx: ToolContext) -> bool:
    """Whether a lookup made where `ctx` asked may show an action from `channel`: actions of
    the channel asked in, and — asked in the requester's own DM — the requester's own
    actions anywhere. Never another person's DM, never another channel's actions."""
    if channel == ctx.channel:
        return True
    asked_in_dm = (ctx.channel or "").startswith("D")
    return asked_in_dm and requester == ctx.requester and not channel.startswith("D")


def lookup_tools(store: Store | None, chat: Chat | None) -> list[Tool[Any]]:
    """The read-only tools, bound to a store and chat (None while only checking config)."""

    def pending(_: NoArgs, ctx: ToolContext) -> ToolResult:
        if store is None:
            return ToolResult(ok=False, output="not connected")
        rows = [
            a
            for a in store.actions_with_status(
                [ActionStatus.AWAITING_APPROVAL, ActionStatus.APPROVED, ActionStatus.EXECUTING],
                limit=500,
            )
            if visible(a.channel, a.requester, ctx)
        ][:25]
        items = [
            {
                "tool": a.tool,
                "args": json.loads(a.args_json),
                "status": a.status,
                "risk": a.risk,
                "requested_by": a.requester,
            }
            for a in rows
        ]
        return ToolResult(ok=True, output=json.dumps(items))

    def user(args: UserArgs, ctx: ToolContext) -> ToolResult:
        if chat is None:
            return ToolResult(ok=False, output="not connected")
        return ToolResult(ok=True, output=json.dumps(chat.user_info(args.user)))

    return [
        Tool(
            name="list_pending_actions",
            args=NoArgs,
            run=pending,
            risk=Risk.LOW,
            read_only=True,
            timeout_s=5,
            description=(
                "List Warden's actions that await approval or are running, in the channel "
                "this request was made in"
            ),
        ),
        Tool(
            name="lookup_user",
            args=UserArgs,
            run=user,
            risk=Risk.LOW,
            read_only=True,
            timeout_s=5,
            description="Look up a Slack user's name, title and time zone",
            examples=({"user": "U012ABCDEF"},),
        ),
    ]


class OnCallArgs(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    rotation: str | None = Field(
        default=None,
        description="a rotation's name from the policy (omit it for every rotation)",
        max_length=48,
    )


def oncall_tool(policy: Policy, clock: Callable[[], datetime] = utcnow) -> Tool[Any]:
    """`who_is_on_call`: the policy's `[oncall.*]` rotations, who is on call now and until
    when, and who is next (read-only)."""

    def who(args: OnCallArgs, ctx: ToolContext) -> ToolResult:
        names = sorted(policy.oncall) if args.rotation is None else [args.rotation]
        if not policy.oncall:
            return ToolResult(ok=True, output="no on-call rotation is configured")
        unknown = [n for n in names if n not in policy.oncall]
        if unknown:
            known = ", ".join(sorted(policy.oncall))
            return ToolResult(ok=False, output=f"no rotation {unknown[0]!r} (known: {known})")
        now = clock()
        rows = []
        for name in names:
            rotation = policy.oncall[name]
            handover = rotation.next_handover(now)
            rows.append(
                {
                    "rotation": name,
                    "description": rotation.description,
                    "on_call": rotation.on_call(now),
                    "until": handover.astimezone(UTC).isoformat(timespec="minutes"),
                    "next": rotation.on_call(handover),
                }
            )
        return ToolResult(ok=True, output=json.dumps(rows))

    return Tool(
        name="who_is_on_call",
        args=OnCallArgs,
        run=who,
        risk=Risk.LOW,
        read_only=True,
        timeout_s=5,
        description=(
            "Who is on call now in each of the policy's rotations, until when, and who is next"
        ),
        examples=({}, {"rotation": "primary"}),
    )


def tools(ctx: PluginContext) -> list[Tool[Any]]:
    """The `warden.tools` entry point of the read-only lookups."""
    # Warden's clock, as the gate reads it for `oncall:NAME` approvers: the two always agree.
    return [*lookup_tools(ctx.store, ctx.chat), oncall_tool(ctx.policy, ctx.clock)]
