"""Texts and views for slash commands, the App Home and the Edit / Reject modals."""

from __future__ import annotations

from collections import Counter
from typing import Any

from bot.cards import clip, context, header, section
from bot.lifecycle import EditForm, Lifecycle
from bot.policy import Autonomy
from storage.models import ActionStatus

EDIT_VIEW, REJECT_VIEW = "warden_edit", "warden_reject"

HELP = """*Warden* plans with an LLM and asks before it acts.
• Mention me with a request: `@warden restart checkout-api`
• Approvers click *Approve*, *Edit* or *Reject* on the card; *Undo* after success
• `/pause [reason]` stops everything at once (admins); `/resume` lifts it
• `/warden status` — paused?, what is waiting, usage
• `/warden pending` — actions waiting for your approval
• `/warden autonomy [tool] [suggest|approve|auto]` — show or change a tool's stage (admins)
• `/warden audit [verify|trace-id]` — check the audit chain or show one request's trail (admins)"""


def status_text(lc: Lifecycle) -> str:
    pause = lc.store.pause_state()
    counts = Counter(
        a.status
        for a in lc.store.actions_with_status(
            [
                ActionStatus.AWAITING_APPROVAL,
                ActionStatus.APPROVED,
                ActionStatus.EXECUTING,
                ActionStatus.NEEDS_REVIEW,
            ],
            limit=1000,
        )
    )
    usage = lc.store.usage_totals()
    state = (
        f":double_vertical_bar: *Paused* by <@{pause.changed_by}>"
        + (f": {lc._safe(pause.reason, 300)}" if pause.reason else "")
        if pause.paused
        else ":large_green_circle: *Running*"
    )
    lines = [
        state,
        f"Awaiting approval: {counts.get(ActionStatus.AWAITING_APPROVAL, 0)} · "
        f"running: {counts.get(ActionStatus.EXECUTING, 0) + counts.get(ActionStatus.APPROVED, 0)}"
        f" · needs review: {counts.get(ActionStatus.NEEDS_REVIEW, 0)}",
        f"Policy `{lc.policy.version}` · {len(lc.registry.names())} tools · "
        f"queued for planning: {lc.workers.planners.pending}",
        f"Model usage: {usage['requests']} requests, {usage['input_tokens']} in / "
        f"{usage['output_tokens']} out tokens, cache read {usage['cache_read_tokens']} / "
        f"write {usage['cache_write_tokens']}, ${usage['cost_usd']:.4f}",
    ]
    return "\n".join(lines)


def pending_text(lc: Lifecycle, user: str) -> str:
    actions = lc.awaiting_for(user)
    if not actions:
        return "Nothing is waiting for your approval."
    lines = [f"*{len(actions)} waiting for your approval:*"]
    for a in actions[:20]:
        lines.append(
            f"• *{a.tool}* ({a.risk}) requested by <@{a.requester}> in <#{a.channel}>"
            f" — action `{a.id[:8]}`"
        )
    return "\n".join(lines)


def autonomy_text(lc: Lifecycle, user: str, args: list[str]) -> str:
    overrides = lc.store.autonomy_overrides()
    if not args:
        return "\n".join(
            f"• `{t}`: {lc.gate.autonomy(t, overrides).value}" for t in lc.registry.names()
        )
    if not lc.is_admin(user):
        return "Only Warden admins can change autonomy."
    if len(args) != 2 or args[1] not in {a.value for a in Autonomy}:
        return "Usage: `/warden autonomy TOOL suggest|approve|auto`"
    tool, stage = args
    if tool not in lc.registry:
        return f"There is no tool called `{clip(tool, 64)}`."
    t = lc.registry.get(tool)
    if stage == Autonomy.AUTO and not (t.risk.value == "low" and t.risk_from_args is None):
        return f"`{tool}` is not low risk, so it can't be `auto`."
    lc.set_autonomy(tool, stage, user)
    return f"`{tool}` autonomy is now `{stage}`."


def audit_text(lc: Lifecycle, user: str, args: list[str]) -> str:
    if not lc.is_admin(user):
        return "Only Warden admins can read the audit trail here."
    if not args or args[0] == "verify":
        count, problems = lc.store.verify_audit()
        if not problems:
            return f":white_check_mark: Audit chain verifies ({count} rows)."
        return ":x: Audit chain broken:\n" + "\n".join(f"• {p.message}" for p in problems[:10])
    rows = lc.store.audit_rows(trace_id=args[0][:32], limit=40)
    if not rows:
        return f"No audit rows for trace `{clip(args[0], 32)}`."
    return "\n".join(
        f"`{r.seq}` {r.at:%H:%M:%S} {r.kind} by {r.actor}"
        + (f" ({r.before} → {r.after})" if r.after else "")
        for r in rows
    )


def home_view(lc: Lifecycle, user: str) -> dict[str, Any]:
    blocks: list[dict[str, Any]] = [header("Warden")]
    pause = lc.store.pause_state()
    if pause.paused:
        blocks.append(
            section(
                f":double_vertical_bar: *Paused* by <@{pause.changed_by}>. "
                "Nothing runs until /resume."
            )
        )
    waiting = lc.awaiting_for(user)
    blocks.append(
        section(
            f"*Waiting for you* ({len(waiting)})"
            if waiting
            else "*Waiting for you*\nNothing needs your approval right now."
        )
    )
    for a in waiting[:40]:
        blocks.append(
            section(
                f"*{a.tool}* · {a.risk} risk · requested by <@{a.requester}> in <#{a.channel}>\n"
                f"{lc._safe(a.rationale, 300)}"
            )
        )
        blocks.append(context(f"action `{a.id[:8]}` · open the card in <#{a.channel}> to decide"))
    return {"type": "home", "blocks": blocks[:100]}


def edit_modal(form: EditForm, channel: str) -> dict[str, Any]:
    blocks: list[dict[str, Any]] = []
    for name, value in form.args.items():
        element: dict[str, Any]
        if name in form.choices:
            options = [
                {"text": {"type": "plain_text", "text": clip(c, 75)}, "value": c[:150]}
                for c in form.choices[name][:100]
            ]
            element = {"type": "static_select", "action_id": "value", "options": options}
            initial = next((o for o in options if o["value"] == value), None)
            if initial:
                element["initial_option"] = initial
        else:
            element = {
                "type": "plain_text_input",
                "action_id": "value",
                "initial_value": clip(value, 3000),
                "multiline": len(value) > 80,
            }
        block: dict[str, Any] = {
            "type": "input",
            "block_id": f"arg:{name}"[:255],
            "label": {"type": "plain_text", "text": clip(name, 2000)},
            "element": element,
        }
        if form.hints.get(name):
            block["hint"] = {"type": "plain_text", "text": clip(form.hints[name], 2000)}
        blocks.append(block)
    if not blocks:
        blocks.append(section("This tool takes no arguments."))
    blocks.insert(
        0, context("Saving re-checks the call with the gate; earlier approvals no longer count.")
    )
    return {
        "type": "modal",
        "callback_id": EDIT_VIEW,
        "private_metadata": f"{form.action_id}:{form.revision}:{channel}",
        "title": {"type": "plain_text", "text": clip(f"Edit {form.tool}", 24)},
        "submit": {"type": "plain_text", "text": "Save"},
        "close": {"type": "plain_text", "text": "Cancel"},
        "blocks": blocks[:100],
    }


def reject_modal(action_id: str, revision: int, channel: str) -> dict[str, Any]:
    return {
        "type": "modal",
        "callback_id": REJECT_VIEW,
        "private_metadata": f"{action_id}:{revision}:{channel}",
        "title": {"type": "plain_text", "text": "Reject action"},
        "submit": {"type": "plain_text", "text": "Reject"},
        "close": {"type": "plain_text", "text": "Cancel"},
        "blocks": [
            {
                "type": "input",
                "block_id": "reason",
                "optional": True,
                "label": {"type": "plain_text", "text": "Reason (optional)"},
                "element": {
                    "type": "plain_text_input",
                    "action_id": "value",
                    "multiline": True,
                    "max_length": 500,
                },
            }
        ],
    }


def parse_metadata(value: str) -> tuple[str, int, str] | None:
    parts = (value or "").split(":")
    if len(parts) != 3 or not parts[1].isdigit():
        return None
    return parts[0], int(parts[1]), parts[2]
