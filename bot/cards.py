"""What a card says, as plain data: the product's description of an action for people.

A card is built from the stored action alone (plus the facts in `CardFacts`), so rebuilding
it after any transition, or after a restart, gives the same card. `handlers/blocks.py`
turns it into Slack's Block Kit; nothing here knows Slack's wire format. Text is marked by
where it came from: `untrusted` fields (the model's rationale, arguments, command output,
refusal reasons, people's reasons) are neutralised when rendered; Warden's own words and the
user ids it names are not, so its mentions stay real.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from enum import StrEnum

from bot.gate_types import FEEDBACK_ON
from bot.memory import REMEMBER
from bot.policy_types import Risk
from storage.models import UNDOABLE, Action, ActionStatus


class Intent(StrEnum):
    """What a button asks for; `handlers/` maps each to an action id."""

    APPROVE = "approve"
    EDIT = "edit"
    REJECT = "reject"
    UNDO = "undo"
    CANCEL = "cancel"  # stop a running command
    VOTE_UP = "vote_up"  # feedback on an action that has ended
    VOTE_DOWN = "vote_down"
    GRANT = "grant"  # approve, and approve identical calls for 30 minutes
    BREAK_GLASS = "break_glass"  # an admin runs a high-risk call alone, with a reason
    ACKNOWLEDGE = "acknowledge"  # an approver reviewed a break glass


@dataclass(kw_only=True, frozen=True)
class Button:
    intent: Intent
    label: str
    style: str | None = None  # "primary" | "danger"
    confirm: str | None = None  # a question to confirm before the click counts


GRANT_LABEL = "Approve identical calls for 30 min"

FEEDBACK_BUTTONS = (
    Button(intent=Intent.VOTE_UP, label="👍"),
    Button(intent=Intent.VOTE_DOWN, label="👎"),
)

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
    ActionStatus.CANCELLED: ":octagonal_sign: Cancelled",
}

SHOWS_RESULT = (
    ActionStatus.SUCCEEDED,
    ActionStatus.FAILED,
    ActionStatus.UNDONE,
    ActionStatus.UNDO_FAILED,
    ActionStatus.NEEDS_REVIEW,
    ActionStatus.CANCELLED,
)

CANCEL_BUTTON = Button(
    intent=Intent.CANCEL,
    label="Cancel",
    style="danger",
    confirm="Stop this command? Its processes get SIGTERM, then SIGKILL; what it has already "
    "done stays done.",
)


@dataclass(kw_only=True, frozen=True)
class CardFacts:
    """What a card shows that is not a column of the action (read when it is built)."""

    rule: str
    approvers: tuple[str, ...]
    approved_by: tuple[str, ...]
    paused: bool = False
    pause_note: str = ""  # the gate's words for the pause that holds it (`Gate.paused_for`)
    command: str | None = None
    allowed_domains: tuple[str, ...] = ()
    previously: tuple[str, ...] = ()  # earlier decisions about what this call touches
    feedback: tuple[int, int] = (0, 0)  # 👍, 👎 given so far
    # Approvals that came from approvers' 30-minute grants: (approver, grant's end).
    granted: tuple[tuple[str, datetime], ...] = ()
    admin_channel: str = ""  # where an escalation went


@dataclass(kw_only=True, frozen=True)
class Card:
    """One action's card."""

    action_id: str
    revision: int
    trace_id: str
    policy_version: str
    tool: str
    status: ActionStatus
    risk: Risk
    what: str  # untrusted: the command or the arguments
    why: str  # untrusted: the planner's rationale
    confidence: float
    requester: str
    edited_by: str | None
    taint: str | None  # untrusted: names what entered the loop
    rule: str
    approvers: tuple[str, ...]
    approved_by: tuple[str, ...]
    required_approvals: int
    expires_at: datetime | None
    preview: str | None  # untrusted: dry-run output
    status_line: str
    decided_by: str | None  # who rejected or asked for the undo
    note: str | None  # untrusted: refusal reasons, a rejecter's reason, Warden's notes
    result: str | None  # untrusted: tool output
    result_note: str | None  # trusted: Warden's own words about the result
    paused: bool
    pause_note: str = ""  # trusted: Warden's words (a pause's reason made safe by `Core.now`)
    waiting_for_preview: bool
    undo_until: datetime | None
    buttons: tuple[Button, ...]
    allowed_domains: tuple[str, ...]
    previously: tuple[str, ...] = ()  # untrusted: people's reasons are in them
    # A runbook's outcome check (`verify`): its state (`VerifyStatus`: pending, running,
    # passed, failed, error, canceled), when it is due (pending) or was done, and its note
    # (untrusted: the check's own output, redacted and cut short). None: no check.
    check: str | None = None
    check_at: datetime | None = None
    check_note: str | None = None
    # Once it has ended: 👍 / 👎 buttons and the tallies so far (None: no feedback yet).
    feedback_buttons: tuple[Button, ...] = ()
    feedback: tuple[int, int] | None = None
    # A live run: how long it has been running (or ran, once stopped), e.g. "1 min 05 s",
    # and the last lines of its output so far (untrusted: command output).
    running_for: str | None = None
    progress: str | None = None
    # Who clicked Cancel (a Slack user id), while it stops, once it was stopped, or when the
    # click came as it was ending anyway (then nothing was stopped).
    cancel_by: str | None = None
    # Keeping it in sight: who was reminded and when; when it was escalated, and where.
    reminded: tuple[str, ...] = ()
    reminded_at: datetime | None = None
    escalated_at: datetime | None = None
    escalated_to: str = ""
    # Approvals given by 30-minute grants: (approver, the grant's end).
    granted: tuple[tuple[str, datetime], ...] = ()
    # While it waits: approvers whose 30-minute grant for this exact call did not count,
    # each with the gate's reason (trusted: Warden's words, `Gate.grant_counts`).
    grant_misses: tuple[tuple[str, str], ...] = ()
    # Break glass: the admin who ran it alone, their reason (untrusted), and its review.
    break_glass_by: str | None = None
    break_glass_reason: str | None = None
    acknowledged_by: str | None = None
    acknowledged_at: datetime | None = None
    # Set on a reminder DM's copy of the card (`as_nudge`): why it came (Warden's words).
    nudge: str | None = None

    @property
    def summary(self) -> str:
        """The card in one line (notification text)."""
        return f"{self.tool}: {self.status.value.replace('_', ' ')} ({self.risk.value} risk)"


def build_card(action: Action, facts: CardFacts, now: datetime) -> Card:
    """The card for an action as it is now."""
    status = ActionStatus(action.status)
    risk = Risk(action.risk)
    args = json.loads(action.args_json) if action.args_json else {}
    what = facts.command or ", ".join(f"{k}={v}" for k, v in args.items()) or "(no arguments)"
    buttons: list[Button] = []
    waiting_for_preview = False
    if status is ActionStatus.AWAITING_APPROVAL:
        confirm = (
            f"Approve {action.tool} ({risk.value} risk)?"
            if risk in (Risk.HIGH, Risk.CRITICAL)
            else None
        )
        if risk is Risk.CRITICAL and not action.preview:
            waiting_for_preview = True
        else:
            buttons.append(
                Button(intent=Intent.APPROVE, label="Approve", style="primary", confirm=confirm)
            )
        if risk is not Risk.CRITICAL and action.tool != REMEMBER:
            buttons.append(
                Button(
                    intent=Intent.GRANT,
                    label=GRANT_LABEL,
                    confirm=(
                        f"Approve {action.tool} ({risk.value} risk), and count your approval "
                        "for identical calls (same arguments) proposed in the next 30 minutes?"
                    ),
                )
            )
        buttons += [
            Button(intent=Intent.EDIT, label="Edit"),
            Button(intent=Intent.REJECT, label="Reject", style="danger"),
        ]
        if risk is Risk.HIGH:
            # Shown to everyone (a message looks the same to all); the gate refuses anyone
            # but an admin when it is clicked.
            buttons.append(Button(intent=Intent.BREAK_GLASS, label="Break glass"))
    elif (
        status is ActionStatus.EXECUTING
        and facts.command is not None  # a runbook: its process group can be stopped
        and action.cancel_requested_by is None
    ):
        buttons.append(CANCEL_BUTTON)
    elif status in UNDOABLE and action.undo_until is not None and action.undo_until > now:
        # Undoing a `remember` forgets the fact: the author's "Forget it" at once.
        buttons.append(
            Button(intent=Intent.UNDO, label="Forget" if action.tool == REMEMBER else "Undo")
        )
    if action.break_glass_by and not action.acknowledged_by:
        buttons.append(Button(intent=Intent.ACKNOWLEDGE, label="Acknowledge break glass"))
    decided = (
        action.decided_by
        if status
        in (
            ActionStatus.REJECTED,
            ActionStatus.UNDONE,
            ActionStatus.UNDOING,
            ActionStatus.UNDO_FAILED,
        )
        else None
    )
    running = _running_for(action, status, now)
    return Card(
        action_id=action.id,
        revision=action.revision,
        trace_id=action.trace_id,
        policy_version=action.policy_version,
        tool=action.tool,
        status=status,
        risk=risk,
        what=what,
        why=action.rationale or "(no reason given)",
        confidence=action.confidence,
        requester=action.requester,
        edited_by=action.edited_by,
        taint=action.taint,
        rule=facts.rule,
        approvers=facts.approvers,
        approved_by=facts.approved_by,
        required_approvals=action.required_approvals,
        expires_at=action.expires_at
        if status in (ActionStatus.AWAITING_APPROVAL, ActionStatus.APPROVED)
        else None,
        preview=action.preview,
        status_line=STATUS_LINE[status]
        + (f" for {running}" if status is ActionStatus.EXECUTING and running else ""),
        decided_by=decided,
        note=action.status_note,
        result=action.result if status in SHOWS_RESULT and action.result is not None else None,
        result_note=action.result_note if status in SHOWS_RESULT else None,
        paused=facts.paused and status in (ActionStatus.AWAITING_APPROVAL, ActionStatus.APPROVED),
        pause_note=facts.pause_note,
        waiting_for_preview=waiting_for_preview,
        undo_until=action.undo_until if Intent.UNDO in {b.intent for b in buttons} else None,
        buttons=tuple(buttons),
        allowed_domains=facts.allowed_domains,
        previously=facts.previously,
        check=action.verify_status,
        check_at=action.verify_at,
        check_note=action.verify_note,
        feedback_buttons=FEEDBACK_BUTTONS if status in FEEDBACK_ON else (),
        feedback=facts.feedback if status in FEEDBACK_ON else None,
        running_for=running,
        # Only a command's output is shown live; other tools show their running time.
        progress=(action.progress or "")
        if status is ActionStatus.EXECUTING and facts.command is not None
        else None,
        cancel_by=action.cancel_requested_by,
        reminded=tuple(u for u in (action.reminded_users or "").split(",") if u),
        reminded_at=action.reminded_at,
        escalated_at=action.escalated_at,
        escalated_to=facts.admin_channel,
        granted=facts.granted,
        grant_misses=grant_misses(action, facts.approved_by),
        break_glass_by=action.break_glass_by,
        break_glass_reason=action.break_glass_reason,
        acknowledged_by=action.acknowledged_by,
        acknowledged_at=action.acknowledged_at,
    )


GRANT_MISSES_MAX = 3
"""At most this many approvers' grants that did not count are named on a card."""


def grant_note(revision: int, misses: Sequence[tuple[str, str]]) -> str:
    """What `Action.grant_note` keeps: approvers whose grant did not cover `revision` of the
    call, with the gate's reason, one per approver, at most `GRANT_MISSES_MAX`."""
    grants: list[list[str]] = []
    for who, why in misses:
        if who not in {g[0] for g in grants} and len(grants) < GRANT_MISSES_MAX:
            grants.append([who, why])
    return json.dumps({"revision": revision, "grants": grants}, separators=(",", ":"))


def grant_misses(action: Action, approved_by: Sequence[str] = ()) -> tuple[tuple[str, str], ...]:
    """The grants a waiting card names as not covering it (`Action.grant_note`): only while
    the revision they were judged on waits, less approvers whose own approval now counts."""
    if action.status != ActionStatus.AWAITING_APPROVAL or not action.grant_note:
        return ()
    try:
        note = json.loads(action.grant_note)
    except ValueError:
        return ()
    if not isinstance(note, dict) or note.get("revision") != action.revision:
        return ()
    found: list[tuple[str, str]] = []
    for item in note.get("grants") or []:
        if (
            isinstance(item, list)
            and len(item) == 2
            and all(isinstance(x, str) for x in item)
            and item[0] not in approved_by
        ):
            found.append((item[0], item[1]))
    return tuple(found[:GRANT_MISSES_MAX])


def as_nudge(card: Card, waited: str, where: str) -> Card:
    """A waiting card as the reminder DM an approver gets: the call, where it was asked
    (`where`: "<#C…>" or "a DM") and the card's own Approve and Reject (same intents, so
    the same handlers and the same gate)."""
    return replace(
        card,
        buttons=tuple(b for b in card.buttons if b.intent in (Intent.APPROVE, Intent.REJECT)),
        nudge=(
            f":alarm_clock: Reminder: *{card.tool}* ({card.risk.value} risk), requested by "
            f"<@{card.requester}> in {where}, has waited {waited} for an approval — yours "
            "would count."
        ),
    )


def _running_for(action: Action, status: ActionStatus, now: datetime) -> str | None:
    """How long a running action has been running, or a cancelled one ran (None otherwise)."""
    if action.started_at is None:
        return None
    if status is ActionStatus.EXECUTING:
        end = now
    elif status is ActionStatus.CANCELLED and action.finished_at is not None:
        end = action.finished_at
    else:
        return None
    return duration_text((_aware(end) - _aware(action.started_at)).total_seconds())


def _aware(at: datetime) -> datetime:
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def duration_text(seconds: float) -> str:
    """A running time in words: "12 s", "3 min 04 s", "1 h 02 min"."""
    whole = max(0, int(seconds))
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        return f"{whole // 60} min {whole % 60:02d} s"
    return f"{whole // 3600} h {whole % 3600 // 60:02d} min"
