"""Block Kit for cards, answers and the App Home, always within Slack's limits.

A card is rendered from the stored action alone, so re-rendering after any transition (or
after a restart) gives the same card. Model- and command-written text is neutralised
(`bot/sanitize.py`) and truncated: 50 blocks a message, 3000 characters a section, 2000 a
button value, 150 a header.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bot.policy import Risk
from bot.sanitize import neutralise
from storage.models import Action, ActionStatus

SECTION_MAX = 3000
MAX_BLOCKS = 50
HEADER_MAX = 150

APPROVE, EDIT, REJECT, UNDO = "warden_approve", "warden_edit", "warden_reject", "warden_undo"

RISK_BADGE = {
    Risk.LOW: ":large_green_circle: low",
    Risk.MEDIUM: ":large_yellow_circle: medium",
    Risk.HIGH: ":large_orange_circle: high",
    Risk.CRITICAL: ":red_circle: critical",
}

STATUS_LINE = {
    ActionStatus.PROPOSED: ":hourglass: Proposed",
    ActionStatus.AWAITING_APPROVAL: ":raised_hand: Awaiting approval",
    ActionStatus.APPROVED: ":white_check_mark: Approved — starting",
    ActionStatus.EXECUTING: ":gear: Running",
    ActionStatus.SUCCEEDED: ":white_check_mark: Succeeded",
    ActionStatus.FAILED: ":x: Failed",
    ActionStatus.REJECTED: ":no_entry_sign: Rejected",
    ActionStatus.EXPIRED: ":alarm_clock: Expired — this can no longer run",
    ActionStatus.REFUSED: ":no_entry: Refused by the gate",
    ActionStatus.NEEDS_REVIEW: ":warning: Needs review — interrupted, outcome unknown",
    ActionStatus.SUGGESTED: ":bulb: Suggestion only",
    ActionStatus.UNDOING: ":leftwards_arrow_with_hook: Undoing",
    ActionStatus.UNDONE: ":leftwards_arrow_with_hook: Undone",
    ActionStatus.UNDO_FAILED: ":x: Undo failed",
}


@dataclass(kw_only=True, frozen=True)
class CardContext:
    """Facts a card shows that are not columns of the action."""

    rule: str
    approvers: Sequence[str]
    approved_by: Sequence[str]
    allowed_domains: Sequence[str] = ()
    paused: bool = False
    command: str | None = None


def clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: max(0, limit - 1)] + "…"


def code(text: str, limit: int = SECTION_MAX - 40) -> str:
    body = clip(text.replace("```", "`\u200b``"), limit - 8) or " "
    return f"```{body}```"


def safe(text: str, domains: Sequence[str], limit: int) -> str:
    return neutralise(text, allowed_domains=list(domains), limit=limit)


def section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": clip(text, SECTION_MAX)}}


def context(text: str) -> dict[str, Any]:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": clip(text, 2000)}]}


def header(text: str) -> dict[str, Any]:
    return {"type": "header", "text": {"type": "plain_text", "text": clip(text, HEADER_MAX)}}


def when(at: datetime | None) -> str:
    if at is None:
        return "—"
    ts = int(at.timestamp())
    return f"<!date^{ts}^{{date_short_pretty}} {{time}}|{at:%Y-%m-%d %H:%M} UTC>"


def button(
    text: str,
    action_id: str,
    value: str,
    style: str | None = None,
    confirm: dict[str, Any] | None = None,
) -> dict[str, Any]:
    b: dict[str, Any] = {
        "type": "button",
        "text": {"type": "plain_text", "text": text},
        "action_id": action_id,
        "value": value[:2000],
    }
    if style:
        b["style"] = style
    if confirm:
        b["confirm"] = confirm
    return b


def card_value(action: Action) -> str:
    """What every button carries: the action and the revision the clicker saw."""
    return f"{action.id}:{action.revision}"


def parse_card_value(value: str) -> tuple[str, int] | None:
    action_id, _, rev = (value or "").partition(":")
    if not action_id or not rev.isdigit() or len(action_id) > 32:
        return None
    return action_id, int(rev)


def render_card(
    action: Action, ctx: CardContext, now: datetime
) -> tuple[str, list[dict[str, Any]]]:
    """The card for an action: fallback text and blocks."""
    status = ActionStatus(action.status)
    risk = Risk(action.risk)
    domains = ctx.allowed_domains
    args = json.loads(action.args_json) if action.args_json else {}
    blocks: list[dict[str, Any]] = [header(f"{action.tool} — {status.value.replace('_', ' ')}")]
    what = ctx.command or ", ".join(f"{k}={v}" for k, v in args.items()) or "(no arguments)"
    blocks.append(section(f"*What will run*\n{code(safe(what, domains, 1500), 1600)}"))
    blocks.append(section(f"*Why*\n{safe(action.rationale or '(no reason given)', domains, 1500)}"))
    who = ", ".join(f"<@{u}>" for u in ctx.approvers[:20]) or "nobody"
    fields = [
        f"*Confidence*\n{round(action.confidence * 100)}%",
        f"*Risk*\n{RISK_BADGE[risk]}",
        f"*Requested by*\n<@{action.requester}>",
        f"*Who may approve*\n{clip(ctx.rule, 200)}: {who}",
    ]
    if status in (ActionStatus.AWAITING_APPROVAL, ActionStatus.APPROVED):
        fields.append(f"*Expires*\n{when(action.expires_at)}")
    blocks.append(
        {"type": "section", "fields": [{"type": "mrkdwn", "text": clip(f, 2000)} for f in fields]}
    )
    if action.preview:
        blocks.append(section(f"*Preview (dry run)*\n{code(safe(action.preview, domains, 2500))}"))
    blocks.append({"type": "divider"})
    line = STATUS_LINE[status]
    if ctx.approved_by:
        line += " · approved by " + ", ".join(f"<@{u}>" for u in ctx.approved_by)
        if status is ActionStatus.AWAITING_APPROVAL:
            line += f" ({len(ctx.approved_by)} of {action.required_approvals})"
    if action.decided_by and status in (
        ActionStatus.REJECTED,
        ActionStatus.UNDONE,
        ActionStatus.UNDOING,
        ActionStatus.UNDO_FAILED,
    ):
        verb = "rejected" if status is ActionStatus.REJECTED else "undo requested"
        line += f" · {verb} by <@{action.decided_by}>"
    blocks.append(section(line))
    if action.status_note:
        blocks.append(section(safe(action.status_note, domains, 1000)))
    if action.result is not None and status in (
        ActionStatus.SUCCEEDED,
        ActionStatus.FAILED,
        ActionStatus.UNDONE,
        ActionStatus.UNDO_FAILED,
        ActionStatus.NEEDS_REVIEW,
    ):
        label = "Output" if status is ActionStatus.SUCCEEDED else "Details"
        blocks.append(
            section(f"*{label}*\n{code(safe(action.result or '(no output)', domains, 2800))}")
        )
    if ctx.paused and status in (ActionStatus.AWAITING_APPROVAL, ActionStatus.APPROVED):
        blocks.append(
            context(":double_vertical_bar: Warden is paused: nothing runs until /resume.")
        )
    value = card_value(action)
    buttons: list[dict[str, Any]] = []
    if status is ActionStatus.AWAITING_APPROVAL:
        confirm = None
        if risk in (Risk.HIGH, Risk.CRITICAL):
            confirm = {
                "title": {"type": "plain_text", "text": "Run this?"},
                "text": {
                    "type": "mrkdwn",
                    "text": clip(f"Approve *{action.tool}* ({risk.value} risk)?", 300),
                },
                "confirm": {"type": "plain_text", "text": "Approve"},
                "deny": {"type": "plain_text", "text": "Cancel"},
            }
        if risk is Risk.CRITICAL and not action.preview:
            blocks.append(context(":hourglass: Dry run in progress; Approve appears with it."))
        else:
            buttons.append(button("Approve", APPROVE, value, "primary", confirm))
        buttons += [button("Edit", EDIT, value), button("Reject", REJECT, value, "danger")]
    elif (
        status is ActionStatus.SUCCEEDED
        and action.undo_until is not None
        and action.undo_until > now
    ):
        buttons.append(button("Undo", UNDO, value))
    if buttons:
        blocks.append({"type": "actions", "block_id": f"card:{action.id}", "elements": buttons})
    blocks.append(
        context(
            f"trace `{action.trace_id}` · action `{action.id}` · rev {action.revision} · "
            f"policy `{action.policy_version}`"
            + (
                f" · undo until {when(action.undo_until)}"
                if buttons and status is ActionStatus.SUCCEEDED
                else ""
            )
        )
    )
    text = f"{action.tool}: {status.value.replace('_', ' ')} ({risk.value} risk)"
    return text, blocks[:MAX_BLOCKS]
