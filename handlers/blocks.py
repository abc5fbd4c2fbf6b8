"""Block Kit: Slack's wire format for cards, the App Home and the Edit / Reject modals.

The product describes a card (`bot.cards.Card`), a home (`bot.reports.Home`) and an edit
form (`bot.approvals.EditForm`); this module renders them within Slack's limits — 50 blocks a
message (100 in views), 3000 characters a section, 2000 a button value, 150 a header — and
neutralises every untrusted field (`bot.sanitize`). Warden's own words and the user ids it
names are rendered as they are, so its mentions stay real. It also parses what comes back:
button values and modal metadata, strictly.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from bot.approvals import EditForm
from bot.cards import Button, Card, Intent
from bot.feedback import MAX_COMMENT
from bot.policy_types import Risk
from bot.reports import Home, HomeBreakGlass, HomeItem, HomeStats, HomeTask
from bot.sanitize import neutralise

SECTION_MAX = 3000
MAX_BLOCKS = 50
HEADER_MAX = 150

APPROVE, EDIT, REJECT, UNDO = "warden_approve", "warden_edit", "warden_reject", "warden_undo"
FORGET = "warden_forget"  # App Home: forget one remembered fact (value: its id)
CANCEL = "warden_cancel"  # stop a running command (value: as the card's other buttons)
VOTE_UP, VOTE_DOWN = "warden_vote_up", "warden_vote_down"  # 👍 / 👎 on an ended action
GRANT = "warden_grant"  # Approve, and approve identical calls for 30 minutes
BREAK_GLASS, ACKNOWLEDGE = "warden_break_glass", "warden_ack"  # an admin alone; its review
ACTION_IDS = {
    Intent.APPROVE: APPROVE,
    Intent.EDIT: EDIT,
    Intent.REJECT: REJECT,
    Intent.UNDO: UNDO,
    Intent.CANCEL: CANCEL,
    Intent.VOTE_UP: VOTE_UP,
    Intent.VOTE_DOWN: VOTE_DOWN,
    Intent.GRANT: GRANT,
    Intent.BREAK_GLASS: BREAK_GLASS,
    Intent.ACKNOWLEDGE: ACKNOWLEDGE,
}
EDIT_VIEW, REJECT_VIEW, FEEDBACK_VIEW = "warden_edit", "warden_reject", "warden_feedback"
BREAK_GLASS_VIEW = "warden_break_glass"
BREAK_GLASS_REASON_MAX = 500

RISK_BADGE = {
    Risk.LOW: ":large_green_circle: low",
    Risk.MEDIUM: ":large_yellow_circle: medium",
    Risk.HIGH: ":large_orange_circle: high",
    Risk.CRITICAL: ":red_circle: critical",
}

_ACTION_ID = re.compile(r"[0-9a-f]{1,32}")
_REVISION = re.compile(r"[0-9]{1,9}")
_CHANNEL = re.compile(r"[A-Z0-9]{0,32}")


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


def mention(user: str) -> str:
    return f"<@{user}>"


def card_value(action_id: str, revision: int) -> str:
    """What every button carries: the action and the revision the clicker saw."""
    return f"{action_id}:{revision}"


def parse_card_value(value: object) -> tuple[str, int] | None:
    """(action id, revision) from a button's value, or None for anything malformed."""
    if not isinstance(value, str):
        return None
    action_id, _, rev = value.partition(":")
    if not _ACTION_ID.fullmatch(action_id) or not _REVISION.fullmatch(rev):
        return None
    return action_id, int(rev)


def button(b: Button, value: str) -> dict[str, Any]:
    out: dict[str, Any] = {
        "type": "button",
        "text": {"type": "plain_text", "text": b.label},
        "action_id": ACTION_IDS[b.intent],
        "value": value[:2000],
    }
    if b.style:
        out["style"] = b.style
    if b.confirm:
        stop = b.intent is Intent.CANCEL
        out["confirm"] = {
            "title": {"type": "plain_text", "text": "Stop this?" if stop else "Run this?"},
            "text": {"type": "mrkdwn", "text": clip(b.confirm, 300)},
            "confirm": {"type": "plain_text", "text": "Stop it" if stop else b.label},
            "deny": {"type": "plain_text", "text": "Keep it running" if stop else "Cancel"},
        }
    return out


def what_will_run(card: Card, limit: int = 1500) -> str:
    """The call, neutralised and in a code block: the card, its reminder DM and the App Home
    show it the same way (`limit`: characters of the call kept)."""
    return f"*What will run*\n{code(safe(card.what, card.allowed_domains, limit), limit + 100)}"


def confidence_text(card: Card) -> str:
    """The planner's confidence, saying whose arguments it was for once they were edited."""
    confidence = f"{round(card.confidence * 100)}%"
    if card.edited_by:
        confidence += f" (before the edit by {mention(card.edited_by)})"
    return confidence


def render_card(card: Card) -> tuple[str, list[dict[str, Any]]]:
    """A card's fallback text and blocks (a reminder DM's copy: `render_nudge`)."""
    if card.nudge is not None:
        return render_nudge(card)
    d = card.allowed_domains
    blocks: list[dict[str, Any]] = [header(f"{card.tool} — {card.status.value.replace('_', ' ')}")]
    blocks.append(section(what_will_run(card)))
    why = safe(card.why, d, 1500)
    if card.edited_by:
        why += (
            f"\n:pencil2: Edited by {mention(card.edited_by)}: the arguments changed, so the "
            "confidence below was the planner's, for the original arguments."
        )
    blocks.append(section(f"*Why*\n{why}"))
    who = ", ".join(mention(u) for u in card.approvers[:20]) or "nobody"
    fields = [
        f"*Confidence*\n{confidence_text(card)}",
        f"*Risk*\n{RISK_BADGE[card.risk]}",
        f"*Requested by*\n{mention(card.requester)}",
        f"*Who may approve*\n{clip(card.rule, 200)}: {who}",
    ]
    if card.expires_at is not None:
        fields.append(f"*Expires*\n{when(card.expires_at)}")
    blocks.append(
        {"type": "section", "fields": [{"type": "mrkdwn", "text": clip(f, 2000)} for f in fields]}
    )
    if card.taint:
        blocks.append(
            context(
                ":shield: Needs a person's click: the plan read text not written by the "
                f"requester ({safe(card.taint, d, 300)})."
            )
        )
    if card.previously:
        earlier = "\n".join(f"• {safe(p, d, 400)}" for p in card.previously)
        blocks.append(section(f":bookmark: *Previously*\n{earlier}"))
    if card.preview:
        blocks.append(section(f"*Preview (dry run)*\n{code(safe(card.preview, d, 2500))}"))
    blocks.append({"type": "divider"})
    stopped, too_late = cancel_words(card)
    line = card.status_line + stopped
    if card.approved_by:
        line += " · approved by " + ", ".join(mention(u) for u in card.approved_by)
        if card.buttons and card.buttons[0].intent is Intent.APPROVE:
            line += f" ({len(card.approved_by)} of {card.required_approvals})"
    if card.decided_by:
        verb = "rejected" if card.status.value == "rejected" else "undo requested"
        line += f" · {verb} by {mention(card.decided_by)}"
    blocks.append(section(line + too_late))
    if card.progress is not None:
        shown = code(safe(card.progress, d, 1500)) if card.progress else "_(no output yet)_"
        blocks.append(section(f"*Output so far* (last lines)\n{shown}"))
    if card.note:
        blocks.append(section(safe(card.note, d, 1000)))
    if card.result is not None or card.result_note:
        label = {"succeeded": "Output", "cancelled": "Output until it was stopped"}.get(
            card.status.value, "Details"
        )
        body = card.result_note or ""
        if card.result:
            body += ("\n" if body else "") + code(safe(card.result, d, 2600))
        blocks.append(section(f"*{label}*\n{body or code('(no output)')}"))
    if card.check:
        blocks.append(section(check_line(card)))
    blocks += attention_blocks(card)
    if card.paused:
        note = card.pause_note or "Warden is paused: nothing runs until /resume"
        blocks.append(context(f":double_vertical_bar: {clip(note, 600).rstrip('.')}."))
    if card.waiting_for_preview:
        blocks.append(context(":hourglass: Dry run in progress; Approve appears with it."))
    value = card_value(card.action_id, card.revision)
    if card.buttons:
        blocks.append(
            {
                "type": "actions",
                "block_id": f"card:{card.action_id}",
                "elements": [button(b, value) for b in card.buttons],
            }
        )
    if card.feedback is not None:
        up, down = card.feedback
        blocks.append(context(f"Feedback: 👍 {up} · 👎 {down}"))
        blocks.append(
            {
                "type": "actions",
                "block_id": f"feedback:{card.action_id}",
                "elements": [button(b, value) for b in card.feedback_buttons],
            }
        )
    blocks.append(
        context(
            f"trace `{card.trace_id}` · action `{card.action_id}` · rev {card.revision} · "
            f"policy `{card.policy_version}`"
            + (f" · undo until {when(card.undo_until)}" if card.undo_until else "")
        )
    )
    return card.summary, blocks[:MAX_BLOCKS]


def cancel_words(card: Card) -> tuple[str, str]:
    """What the status line says about a Cancel, right after the status (stopping now;
    stopped, by whom, after how long) and at its end (asked for as the run was ending
    anyway: nothing was stopped)."""
    if card.cancel_by is None:
        return "", ""
    who = mention(card.cancel_by)
    if card.status.value == "executing":
        return f" · :octagonal_sign: stopping: {who} clicked Cancel", ""
    if card.status.value == "cancelled":
        after = f" after {card.running_for}" if card.running_for else ""
        return f" by {who}{after}; the command may have done part of its work", ""
    if card.status.value in ("succeeded", "failed"):
        return "", f" · {who} clicked Cancel as it was ending; nothing was stopped"
    return "", ""


def attention_blocks(card: Card) -> list[dict[str, Any]]:
    """What kept the card in sight: approvals by 30-minute grants (and grants for the call
    that did not count, with the gate's reason), the reminder and the escalation, and a break
    glass with its review."""
    blocks: list[dict[str, Any]] = []
    for who, until in card.granted:
        blocks.append(
            context(f":repeat: Approved by {mention(who)}'s 30-minute grant (until {when(until)})")
        )
    if card.grant_misses:
        blocks.append(
            context(
                "\n".join(
                    f":information_source: {mention(who)}'s 30-minute approval doesn't cover "
                    f"this: {clip(why, 200)}"
                    for who, why in card.grant_misses
                )
            )
        )
    if card.reminded_at is not None:
        people = ", ".join(mention(u) for u in card.reminded[:20]) or "nobody"
        blocks.append(context(f":alarm_clock: Reminded {people} at {when(card.reminded_at)}"))
    if card.escalated_at is not None:
        where = f"<#{card.escalated_to}>" if card.escalated_to else "the admin channel"
        blocks.append(context(f":mega: Escalated to {where} at {when(card.escalated_at)}"))
    if card.break_glass_by:
        reason = safe(card.break_glass_reason or "", card.allowed_domains, 600)
        review = (
            f"Acknowledged by {mention(card.acknowledged_by)} at {when(card.acknowledged_at)}."
            if card.acknowledged_by
            else "Waiting for an approver to acknowledge it."
        )
        blocks.append(
            section(
                f":warning: *Break glass* by {mention(card.break_glass_by)}: {reason}\n{review}"
            )
        )
    return blocks


def render_nudge(card: Card) -> tuple[str, list[dict[str, Any]]]:
    """A reminder DM: why it came, what will run, and the card's own Approve / Reject (the
    same action ids and values, so the same listeners and the same gate)."""
    d = card.allowed_domains
    blocks: list[dict[str, Any]] = [
        section(card.nudge or ""),
        section(what_will_run(card)),
        context(f"*Why*: {safe(card.why, d, 500)} · who may approve: {clip(card.rule, 200)}"),
    ]
    if card.buttons:
        value = card_value(card.action_id, card.revision)
        blocks.append(
            {
                "type": "actions",
                "block_id": f"nudge:{card.action_id}",
                "elements": [button(b, value) for b in card.buttons],
            }
        )
    blocks.append(context(f"action `{card.action_id}` · rev {card.revision}"))
    return f"Reminder: {card.tool} is waiting for your approval", blocks


def stats_blocks(stats: HomeStats) -> list[dict[str, Any]]:
    """The App Home's admin section: the main rates with their trend, and the worst tools."""
    title = f"*How Warden is doing* (last {stats.window}, trend against the {stats.window} before)"
    if stats.empty:
        return [{"type": "divider"}, section(f"{title}\nNo data yet.")]
    worst = (
        "*Worst tools*\n" + "\n".join(f"• {line}" for line in stats.worst)
        if stats.worst
        else "*Worst tools*\nNo tool is failing or being overridden."
    )
    return [
        {"type": "divider"},
        section(title + "\n" + "\n".join(f"• {line}" for line in stats.rates)),
        context(stats.summary),
        section(worst),
        context("`/warden stats [tool] [24h|7d]` for more · admins only"),
    ]


def break_glass_blocks(items: Sequence[HomeBreakGlass]) -> list[dict[str, Any]]:
    """The App Home's "Break glass to review": each action an admin ran alone, with its
    Acknowledge button (the card's own action id and value: the same listener and gate)."""
    if not items:
        return []
    blocks: list[dict[str, Any]] = [
        {"type": "divider"},
        section(f"*Break glass to review* ({len(items)})"),
    ]
    for item in items[:10]:
        a = item.action
        text = (
            f":warning: *{clip(a.tool, 64)}* ({a.status.replace('_', ' ')}) run alone by "
            f"{mention(a.break_glass_by or '')} in {item.where}: {item.reason}"
        )
        block: dict[str, Any] = section(text)
        block["block_id"] = f"glass:{a.id}"
        if item.may_acknowledge:
            block["accessory"] = button(
                Button(intent=Intent.ACKNOWLEDGE, label="Acknowledge"),
                card_value(a.id, a.revision),
            )
        blocks.append(block)
    return blocks


def task_blocks(tasks: Sequence[HomeTask]) -> list[dict[str, Any]]:
    """The App Home's "Your tasks": one section (titles neutralised), so it costs two blocks
    however many tasks there are."""
    if not tasks:
        return [{"type": "divider"}, section("*Your tasks*\nNo open tasks.")]
    lines = []
    for t in tasks:
        who = f" · {mention(t.assignee)}" if t.assignee else " · unassigned"
        due = f" · {':warning: ' if t.overdue else ''}due {t.due}" if t.due else ""
        lines.append(f"• `#{t.task_id}` {clip(t.title, 200)} — {t.where}{who}{due}")
    return [
        {"type": "divider"},
        section(clip(f"*Your tasks* ({len(tasks)})\n" + "\n".join(lines), SECTION_MAX)),
    ]


def check_line(card: Card) -> str:
    """A card's outcome-check line (`verify`): due, running, passed, failed (with what the
    check printed), could not check, or not run because the action was undone."""
    note = safe(card.check_note or "", card.allowed_domains, 400)
    line = {
        "pending": f":hourglass_flowing_sand: due at {when(card.check_at)}",
        "running": ":hourglass_flowing_sand: running now",
        "passed": ":white_check_mark: passed",
        "failed": f":x: failed: {code(note or '(no output)', 460)}",
        "error": f":warning: could not check: {note or 'unknown reason'}",
        "canceled": f":heavy_minus_sign: {note or 'not run'}",
    }.get(card.check or "", card.check or "")
    return f"*Outcome check:* {line}"


# One waiting action on the App Home is three blocks (the call, its buttons, its ids), its
# call one section: these bounds on the neutralised fields keep that section, with its other
# words (tool, risk, confidence, people), under SECTION_MAX, so no code block loses its end.
HOME_WHAT, HOME_WHY, HOME_PREVIEW = 1100, 300, 700
HOME_INTENTS = (Intent.APPROVE, Intent.GRANT, Intent.EDIT, Intent.REJECT)


def waiting_blocks(item: HomeItem) -> list[dict[str, Any]]:
    """One action waiting on the App Home, from its card's data and neutralised as on the
    card: what will run, why, the confidence and risk, who edited it, the dry-run preview;
    then the card's own Approve / Grant / Edit / Reject (same action ids and values, so the
    same listeners and gate, which decides when a click arrives)."""
    card, d = item.card, item.card.allowed_domains
    lines = [
        f"*{clip(card.tool, 64)}* · {RISK_BADGE[card.risk]} risk · confidence "
        f"{confidence_text(card)} · requested by {mention(card.requester)} in {item.where}",
        what_will_run(card, HOME_WHAT),
        f"*Why*\n{safe(card.why, d, HOME_WHY)}",
    ]
    if card.edited_by:
        lines.append(
            f":pencil2: Edited by {mention(card.edited_by)}: the arguments changed, so the "
            "confidence above was the planner's, for the original arguments."
        )
    if card.preview:
        lines.append(
            f"*Preview (dry run)*\n{code(safe(card.preview, d, HOME_PREVIEW), HOME_PREVIEW + 100)}"
        )
    notes = [f"action `{card.action_id[:8]}` · rev {card.revision}"]
    if card.expires_at is not None:
        notes[0] += f" · expires {when(card.expires_at)}"
    if card.waiting_for_preview:
        notes.append(":hourglass: Dry run in progress; Approve appears with it.")
    if card.taint:
        notes.append(
            ":shield: Needs a person's click: the plan read text not written by the "
            f"requester ({safe(card.taint, d, 300)})."
        )
    if card.previously:
        notes.append(
            ":bookmark: *Previously*: " + " · ".join(safe(p, d, 200) for p in card.previously)
        )
    blocks = [section("\n".join(lines))]
    buttons = [b for b in card.buttons if b.intent in HOME_INTENTS]
    if buttons:
        value = card_value(card.action_id, card.revision)
        blocks.append(
            {
                "type": "actions",
                "block_id": f"home:{card.action_id}",
                "elements": [button(b, value) for b in buttons],
            }
        )
    blocks.append(context("\n".join(notes)))
    return blocks


def home_view(home: Home) -> dict[str, Any]:
    """The App Home: what waits for this person, with Approve / Reject that behave exactly
    like the card's (same action ids and values, so the same listeners and gate)."""
    blocks: list[dict[str, Any]] = [header("Warden")]
    if home.paused_by:
        ends = f" until {home.paused_until}" if home.paused_until else ""
        blocks.append(
            section(
                f":double_vertical_bar: *Paused* by {mention(home.paused_by)}{ends}. "
                f"Nothing runs until {'then or ' if ends else ''}/resume."
            )
        )
    if home.scoped_pauses:
        blocks.append(
            section(
                clip(
                    ":double_vertical_bar: *Scoped pauses* (the rest runs as usual)\n"
                    + "\n".join(home.scoped_pauses),
                    2900,
                )
            )
        )
    blocks.append(
        section(
            f"*Waiting for you* ({len(home.waiting)})"
            if home.waiting
            else "*Waiting for you*\nNothing needs your approval right now."
        )
    )
    for item in home.waiting:
        blocks += waiting_blocks(item)
    blocks += break_glass_blocks(home.break_glass)
    blocks += task_blocks(home.tasks)
    if home.stats is not None:
        blocks += stats_blocks(home.stats)
    blocks.append({"type": "divider"})
    blocks.append(
        section(
            "*What Warden remembers about you*"
            if home.remembered
            else "*What Warden remembers about you*\nNothing yet."
        )
    )
    for fact_id, text in home.remembered:
        blocks.append(
            {
                "type": "section",
                "block_id": f"fact:{fact_id}",
                "text": {"type": "mrkdwn", "text": clip(text, 3000)},
                "accessory": {
                    "type": "button",
                    "action_id": FORGET,
                    "text": {"type": "plain_text", "text": "Forget"},
                    "value": str(fact_id),
                    "style": "danger",
                },
            }
        )
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


def break_glass_modal(action_id: str, revision: int, channel: str) -> dict[str, Any]:
    """Break glass: an admin runs a high-risk action alone, and must say why."""
    return {
        "type": "modal",
        "callback_id": BREAK_GLASS_VIEW,
        "private_metadata": f"{action_id}:{revision}:{channel}",
        "title": {"type": "plain_text", "text": "Break glass"},
        "submit": {"type": "plain_text", "text": "Run it now"},
        "close": {"type": "plain_text", "text": "Cancel"},
        "blocks": [
            context(
                ":warning: This runs a high-risk action on your approval alone. The card is "
                "flagged, the admin channel is told, and it stays listed until another "
                "approver acknowledges it."
            ),
            {
                "type": "input",
                "block_id": "reason",
                "label": {"type": "plain_text", "text": "Why can't this wait for an approver?"},
                "element": {
                    "type": "plain_text_input",
                    "action_id": "value",
                    "multiline": True,
                    "min_length": 1,
                    "max_length": BREAK_GLASS_REASON_MAX,
                },
            },
        ],
    }


def feedback_modal(action_id: str, revision: int, channel: str) -> dict[str, Any]:
    """ "What went wrong?" after a 👎 (optional: the vote is already recorded)."""
    return {
        "type": "modal",
        "callback_id": FEEDBACK_VIEW,
        "private_metadata": f"{action_id}:{revision}:{channel}",
        "title": {"type": "plain_text", "text": "Feedback"},
        "submit": {"type": "plain_text", "text": "Send"},
        "close": {"type": "plain_text", "text": "Skip"},
        "blocks": [
            context("Your 👎 is recorded. Anything to add helps tune what Warden may do alone."),
            {
                "type": "input",
                "block_id": "comment",
                "optional": True,
                "label": {"type": "plain_text", "text": "What went wrong?"},
                "element": {
                    "type": "plain_text_input",
                    "action_id": "value",
                    "multiline": True,
                    "max_length": MAX_COMMENT,
                },
            },
        ],
    }


def parse_reason(value: object, limit: int = BREAK_GLASS_REASON_MAX) -> str | None:
    """A required reason typed in a modal (break glass): its text, or None when it is
    missing, blank or longer than the field allows (Slack enforces the length; a forged
    submission may not)."""
    if not isinstance(value, str):
        return None
    text = value.strip()
    return text if text and len(text) <= limit else None


def parse_metadata(value: object) -> tuple[str, int, str] | None:
    """(action id, revision, channel) from a modal's private_metadata, or None."""
    if not isinstance(value, str):
        return None
    parts = value.split(":")
    if len(parts) != 3:
        return None
    parsed = parse_card_value(f"{parts[0]}:{parts[1]}")
    if parsed is None or not _CHANNEL.fullmatch(parts[2]):
        return None
    return parsed[0], parsed[1], parts[2]
